// Two CI service replicas: one holds the CI lease and runs the framework; the other serves the
// API and webhooks and hands its writes to the holder; when the holder stops, the other takes
// over its runs and finishes them, each job once.
import t from 'tap'
import { silentLogger } from '../../../shared/log/index.js'
import { httpAuthFrom } from '../../../shared/http/index.js'
import { runCi, type RunningCi } from '../../../services/ci/src/main.js'
import type { RunView } from '../../../services/ci/src/views.js'
import { FINAL_RUN_STATES, startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { pushPayload, webhookHeaders } from '../../helpers/github-api.js'
import { waitUntil } from '../../helpers/wait.js'

const PIPELINE = `
name: rep
on: { push: { branches: [main] }, manual: {} }
jobs:
  first:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo first
  slow:
    needs: [first]
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo slow starts; sleep 3; echo slow ends
`

let f: CiFixture
let b: RunningCi
t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', ci: { leaseTtlMs: 1_000 } })
  b = await runCi({
    natsUrl: f.cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, webhookSecret: f.webhookSecret, logger: silentLogger(), leaseTtlMs: 1_000,
    auth: httpAuthFrom({ operatorToken: f.operatorToken, openReads: true }, {}),
  })
})
t.teardown(async () => {
  await b?.stop()
  await f?.stop()
})

const getRun = async (url: string, runId: string): Promise<RunView> => await (await fetch(`${url}/api/v1/runs/${runId}`)).json() as RunView

t.test('Checks that one replica leads and a webhook sent to the other runs once', async (t) => {
  t.equal(f.ci.service.isLeader, true, 'the first replica leads')
  t.equal(b.service.isLeader, false, 'the second stands by')
  const sha = await f.repo.commit({ '.regatta/rep.yml': PIPELINE })
  const body = JSON.stringify(pushPayload({ repo: 'octo/app', cloneUrl: f.repo.url, after: sha, branch: 'main' }))
  const res = await fetch(`${b.url}/webhooks/github`, { method: 'POST', body, headers: webhookHeaders({ event: 'push', body, secret: f.webhookSecret }) })
  t.equal(res.status, 202, 'the standby accepts the webhook')
  const run = await f.waitForRun({ sha })
  t.equal(run.state, 'succeeded')
  const { runs } = await (await fetch(`${b.url}/api/v1/runs`)).json() as { runs: RunView[] }
  t.equal(runs.filter((r) => r.sha === sha).length, 1, 'one run, seen from the standby too')
  t.match(await (await fetch(`${b.url}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent('rep/slow')}/log`)).text(), /slow ends/, 'its log reads from the standby')
})

t.test('Checks that when the leading replica stops mid-run, the other takes over and finishes the run, each job once', async (t) => {
  const sha = await f.repo.commit({ 'again.txt': 'x' })
  const res = await fetch(`${b.url}/api/v1/runs`, { method: 'POST', headers: { 'content-type': 'application/json', ...f.authHeaders }, body: JSON.stringify({ repo: f.repo.url, ref: 'main', sha }) })
  const created = await res.json() as RunView
  t.equal(res.status, 201, `a manual run through the standby: ${JSON.stringify(created).slice(0, 300)}`)
  await waitUntil('the slow job running', async () => (await getRun(b.url, created.runId)).jobs.find((j) => j.id === 'rep/slow')?.state === 'running', 30_000, 100)
  const stoppedAt = Date.now()
  await f.ci.stop()
  await waitUntil('the second replica to lead', () => b.service.isLeader, 10_000, 50)
  t.pass(`the second replica leads ${Date.now() - stoppedAt} ms after the first stopped`)
  const run = await waitUntil('the run to end', async () => {
    const r = await getRun(b.url, created.runId)
    return FINAL_RUN_STATES.includes(r.state) ? r : undefined
  }, 30_000, 100)
  t.equal(run.state, 'succeeded', JSON.stringify(run.jobs.map((j) => [j.id, j.state, j.attempt])))
  for (const j of run.jobs) t.equal(j.attempt, 1, `${j.id} ran once`)
  const log = await (await fetch(`${b.url}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent('rep/slow')}/log`)).text()
  t.equal(log.match(/^slow starts$/gm)?.length, 1, 'the slow job started once')
  t.match(log, /slow ends/)
})
