// A CI replica that wins the CI lease but cannot take the lead (its runs cannot be read: here the
// runs bucket is gone, as when JetStream stalls) steps down instead of holding the lease without
// leading, which would leave no replica running the framework and every run stuck. Once the
// runs can be read again, the lease lapses and a replica leads and runs pipelines.
import t from 'tap'
import { silentLogger } from '../../../shared/log/index.js'
import { httpAuthFrom } from '../../../shared/http/index.js'
import { runCi, type RunningCi } from '../../../services/ci/src/main.js'
import { RUNS_BUCKET } from '../../../services/ci/src/service.js'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { waitUntil } from '../../helpers/wait.js'

const TTL_MS = 1_000
const PIPELINE = `
name: lead
on: { push: { branches: [main] } }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.25, mem: 64 }
    steps:
      - run: echo led
`

let f: CiFixture
let b: RunningCi | undefined
t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', ci: { leaseTtlMs: TTL_MS } })
})
t.teardown(async () => {
  await b?.stop()
  await f?.stop()
})

t.test('Checks that a replica that cannot read its runs after winning the lease steps down, and a replica leads once they can be read', async (t) => {
  b = await runCi({
    natsUrl: f.cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, webhookSecret: f.webhookSecret, logger: silentLogger(), leaseTtlMs: TTL_MS,
    auth: httpAuthFrom({ operatorToken: f.operatorToken, openReads: true }, {}),
  })
  t.equal(f.ci.service.isLeader, true, 'the first replica leads')
  t.equal(b.service.isLeader, false, 'the second stands by')

  const nc = await f.cluster.nats.connect()
  const jsm = await nc.jetstreamManager()
  await f.ci.stop()
  // the runs are unreadable when the second replica wins the lease the first gave up
  await jsm.streams.delete(`KV_${RUNS_BUCKET}`)
  const lease = await nc.jetstream().views.kv('regatta-ci-leader')
  await waitUntil('the second replica to win the lease', async () => {
    const e = await lease.get('leader')
    return e?.operation === 'PUT' && e.value.length > 0
  }, 5_000, 20)
  await waitUntil('it to give the lease up again', async () => {
    const e = await lease.get('leader')
    return !e || e.operation !== 'PUT'
  }, TTL_MS * 4, 50)
  t.equal(b.service.isLeader, false, 'it does not lead with its runs unreadable')

  // the runs can be read again: a replica leads (the lease lapsed) and runs a push
  await nc.jetstream().views.kv(RUNS_BUCKET, { history: 1 })
  const ledAt = Date.now()
  await waitUntil('the second replica to lead', () => b!.service.isLeader, 10_000, 50)
  t.pass(`it leads ${Date.now() - ledAt} ms after the runs could be read again`)
  const sha = await f.repo.commit({ '.regatta/lead.yml': PIPELINE })
  const { pushPayload, webhookHeaders } = await import('../../helpers/github-api.js')
  const body = JSON.stringify(pushPayload({ repo: 'octo/app', cloneUrl: f.repo.url, after: sha, branch: 'main' }))
  const res = await fetch(`${b.url}/webhooks/github`, { method: 'POST', body, headers: webhookHeaders({ event: 'push', body, secret: f.webhookSecret }) })
  t.equal(res.status, 202)
  const run = await waitUntil('the run to succeed', async () => {
    const { runs } = await (await fetch(`${b!.url}/api/v1/runs`)).json() as { runs: Array<{ sha: string; state: string }> }
    const r = runs.find((x) => x.sha === sha)
    return r && ['succeeded', 'failed', 'error', 'cancelled'].includes(r.state) ? r : undefined
  }, 30_000, 100)
  t.equal(run.state, 'succeeded', 'the run went through the new leader')
  await nc.close()
})
