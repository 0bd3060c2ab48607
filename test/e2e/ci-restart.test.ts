// The CI service killed in the middle of a run resumes it when restarted, and finishes it
// without running any job twice.
import t from 'tap'
import { ProcessContainerizer } from '../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../shared/log/index.js'
import { httpAuthFrom } from '../../shared/http/index.js'
import { runCi, type RunningCi } from '../../services/ci/src/main.js'
import { manualTrigger } from '../../services/ci/src/manual.js'
import { runView } from '../../services/ci/src/views.js'
import { startCluster, type TestCluster } from '../helpers/cluster.js'
import { createRepo, type TestRepo } from '../helpers/git-repo.js'

let cluster: TestCluster
let repo: TestRepo
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }) })
  repo = await createRepo()
})
t.teardown(async () => {
  await cluster.stop()
  await repo.remove()
})

const start = (): Promise<RunningCi> => runCi({ natsUrl: cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, logger: silentLogger(), auth: httpAuthFrom({ openReads: true }, {}) })

t.test('Checks that a restarted CI service resumes a run mid-job and finishes it, each job once', async (t) => {
  const sha = await repo.commit({
    '.regatta/ci.yml': `
name: ci
on: { manual: {} }
jobs:
  slow:
    image: any
    resources: { cpus: 0.5, mem: 64 }
    steps:
      - run: echo slow-start; sleep 3; echo slow-end
  next:
    needs: [slow]
    image: any
    resources: { cpus: 0.5, mem: 64 }
    steps:
      - run: echo next-ran
`,
  })
  let ci = await start()
  const doc = await ci.service.trigger(await manualTrigger(repo.url, 'main', sha))
  const runId = doc.meta.runId
  const deadline = Date.now() + 20_000
  while (runView((await ci.service.get(runId))!).jobs.find((j) => j.id === 'ci/slow')?.state !== 'running' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(runView((await ci.service.get(runId))!).jobs.find((j) => j.id === 'ci/slow')?.state, 'running', 'the slow job runs')
  await ci.stop()

  ci = await start()
  t.teardown(() => ci.stop())
  const end = Date.now() + 30_000
  let view = runView((await ci.service.get(runId))!)
  while (!['succeeded', 'failed', 'error', 'cancelled'].includes(view.state) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200))
    view = runView((await ci.service.get(runId))!)
  }
  t.equal(view.state, 'succeeded', JSON.stringify(view.jobs))
  for (const j of view.jobs) t.equal(j.attempt, 1, `${j.id} ran once`)
  const text = await (await fetch(`${ci.url}/api/v1/runs/${runId}/jobs/ci%2Fslow/log`)).text()
  t.equal(text.match(/^slow-start$/gm)?.length, 1, `the slow job started once: ${JSON.stringify(text)}`)
  t.match(text, /slow-end/)
})
