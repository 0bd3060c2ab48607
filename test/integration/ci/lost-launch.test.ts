// A launch the master accepted and then lost: the CI service asks about jobs launched a while
// ago whose task never started (RECONCILE), learns the task is unknown (LOST) and requeues the
// job, which then runs once, elsewhere, to success. The loss is made for real: the only agent
// is frozen (SIGSTOP) when the CI service's job is launched on it, so the master's LAUNCH never
// reaches it; the leading master then steps down (its tasks live only in its memory), the frozen
// agent is killed, and a standby master leads knowing nothing of the task. A new agent joins.
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { silentLogger } from '../../../shared/log/index.js'
import { httpAuthFrom } from '../../../shared/http/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { runCi, type RunningCi } from '../../../services/ci/src/main.js'
import { FINAL_RUN_STATES } from '../../../services/ci/src/machines/index.js'
import { fastMasterConfig, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { createRepo, type TestRepo } from '../../helpers/git-repo.js'
import { pushPayload, webhookHeaders } from '../../helpers/github-api.js'
import { startAgentProcess, stopAllProcesses } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'

const SECRET = 'lost-launch-secret'
const RECONCILE_MS = 1_000
// the frozen agent is not marked unreachable (and its task UNREACHABLE) before the failover
const masterConfig = { ...fastMasterConfig, agentUnreachableMs: 8_000, agentGoneMs: 30_000, agentReregisterMs: 1_500 }
const MARKER = join(tmpdir(), `regatta-lost-launch-${process.pid}-${randomBytes(3).toString('hex')}`)

const PIPELINE = `
name: once
on: { push: { branches: [main] } }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo "ran on $REGATTA_AGENT_ID" >> ${MARKER} && echo "built"
`

let cluster: TestCluster
let ci: RunningCi | undefined
let repo: TestRepo
const dirs: string[] = []
t.before(async () => {
  cluster = await startCluster()
  repo = await createRepo()
})
t.teardown(async () => {
  await ci?.stop()
  await stopAllProcesses()
  await cluster?.stop()
  await repo?.remove()
  for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
  await rm(MARKER, { force: true })
})

t.test('Checks that a launch the master lost is reconciled as LOST and requeued, and the job then runs once, on another agent, to success', async (t) => {
  const m1 = await cluster.startMaster('m1', masterConfig)
  const m2 = await cluster.startMaster('m2', masterConfig)
  t.ok(m1.isLeader && !m2.isLeader, 'm1 leads, m2 stands by')
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-agent-frozen-'))
  dirs.push(workDir)
  const frozen = await startAgentProcess({ natsUrl: cluster.nats.url, workDir, containerizer: 'process', resources: 'cpus:2;mem:2048;disk:1000' })
  ci = await runCi({
    natsUrl: cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, webhookSecret: SECRET, logger: silentLogger(),
    auth: httpAuthFrom({ operatorToken: 'lost-launch-operator', openReads: true }, {}), reconcileIntervalMs: RECONCILE_MS,
  })
  const service = ci.service

  // the only agent freezes; the push's job is launched on it, and the LAUNCH never reaches it
  frozen.kill('SIGSTOP')
  const sha = await repo.commit({ '.regatta/once.yml': PIPELINE })
  const body = JSON.stringify(pushPayload({ repo: 'octo/app', cloneUrl: repo.url, after: sha, branch: 'main' }))
  const res = await fetch(`${ci.url}/webhooks/github`, { method: 'POST', body, headers: webhookHeaders({ event: 'push', body, secret: SECRET }) })
  t.equal(res.status, 202)
  const lostTask = await waitUntil('the job to be launched on the frozen agent', async () => {
    const task = m1.state().tasks.find((x) => x.agentId === frozen.agentId)
    return task ? task : undefined
  }, 6_000, 20)
  t.equal(lostTask.state, 'STAGING', 'the master launched the task; the agent never got it')
  const launchedAt = Date.now()

  // the leading master goes (with what it knew of the task), the frozen agent dies, m2 leads
  await m1.stop()
  frozen.kill('SIGKILL')
  await frozen.exited
  await waitUntil('m2 to lead', async () => m2.isLeader, 10_000, 20)
  t.notOk(m2.state().tasks.some((x) => x.taskId === lostTask.taskId), 'the new leader knows nothing of the task')
  // somewhere for the requeued job to run
  const other = await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'agent-other', resources: 'cpus:2;mem:2048;disk:1000' })

  const runId = (await service.list()).find((r) => r.meta.trigger.sha === sha)!.meta.runId
  const done = await waitUntil('the run to end', async () => {
    const doc = await service.get(runId)
    return doc && FINAL_RUN_STATES.has(doc.machine.state) ? doc : undefined
  }, 30_000, 100)
  const endedMs = Date.now() - launchedAt
  t.equal(done.machine.state, 'succeeded', JSON.stringify(done.machine.snapshot.context.jobs))
  const attempts = await service.jobAttempts(runId, 'once/build')
  t.equal(attempts.length, 2, `two tasks: the lost one and its requeue (${JSON.stringify(attempts)})`)
  const [lost, ran] = attempts
  t.equal(lost!.taskId, lostTask.taskId)
  t.match(lost!.ended, { outcome: 'lost', reason: 'RECONCILIATION' }, 'the lost task ended as the reconciliation answered')
  t.match(ran!.ended, { outcome: 'succeeded' })
  const job = done.machine.snapshot.context.jobs['once/build']!.context
  t.equal(job.attempt, 1, 'the requeue spent no attempt')
  const lines = (await readFile(MARKER, 'utf8')).trim().split('\n')
  t.same(lines, [`ran on ${other.id}`], 'the job ran once, on the other agent')
  t.comment(`run ended ${endedMs} ms after the lost launch (reconcile every ${RECONCILE_MS} ms, re-registration wait ${masterConfig.agentReregisterMs} ms)`)
})
