// An agent that dies (kill -9, with its task's process group) just as the leading master goes
// away: the new leader never sees the agent's tasks (tasks are rebuilt from agents
// re-registering), so the framework's reconciliation is answered UNREACHABLE once the agent
// misses its re-registration window. Then, when the agent is declared gone, the framework must
// hear GONE, a stored update it acknowledges, rather than wait for the task forever.
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isTerminal } from '../../../shared/protocol/index.js'
import { fastMasterConfig, shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { startAgentProcess } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'

const REREGISTER_MS = 1_500
const GONE_MS = 3_000
const config = { ...fastMasterConfig, leaseTtlMs: 1_000, agentUnreachableMs: 1_500, agentGoneMs: GONE_MS, agentReregisterMs: REREGISTER_MS }

let cluster: TestCluster
let dir: string
t.before(async () => {
  cluster = await startCluster()
  dir = await mkdtemp(join(tmpdir(), 'regatta-stranded-'))
})
t.teardown(async () => {
  await cluster.stop()
  await rm(dir, { recursive: true, force: true })
})

/** The process group of a pid (field 5 of /proc/PID/stat). */
async function processGroupOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
}

t.test('Checks that a task whose agent died across a master failover is reported GONE once the agent is gone, not left UNREACHABLE forever', async (t) => {
  const m1 = await cluster.startMaster('m1', config)
  const m2 = await cluster.startMaster('m2', config)
  t.ok(m1.isLeader, 'm1 leads')
  const agent = await startAgentProcess({ natsUrl: cluster.nats.url, workDir: join(dir, 'agent'), containerizer: 'process', resources: 'cpus:1;mem:512;disk:1000' })
  t.teardown(() => agent.stop(2_000))
  const fw = await cluster.framework({ name: 'stranded', failoverTimeoutMs: 120_000 })
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))

  const pidFile = join(dir, 'task.pid')
  const offer = await fw.nextOffer((o) => o.agentId === agent.agentId)
  await fw.scheduler.launch(offer, [shellTask('stranded-1', `echo $$ > ${pidFile}; sleep 120`)], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('stranded-1').includes('RUNNING'))
  const pid = Number(await waitUntil('the task\'s pid', async () => (await readFile(pidFile, 'utf8').catch(() => '')).trim(), 10_000))
  const group = await processGroupOf(pid)

  // the machine goes away: the agent and its task, at once; and the leader with it
  agent.kill('SIGKILL')
  process.kill(-group, 'SIGKILL')
  await agent.exited
  await m1.stop()
  const failoverAt = Date.now()
  await fw.waitFor('m2 to lead', () => m2.isLeader, 10_000)

  const unreachable = await fw.waitFor('the reconciliation answer', () => fw.updates.find((u) => u.taskId === 'stranded-1' && u.state === 'UNREACHABLE'), 10_000)
  t.equal(unreachable.reason, 'RECONCILIATION', `the new leader answers UNREACHABLE once the agent missed re-registering: ${unreachable.message ?? ''}`)

  const gone = await fw.waitFor('GONE', () => fw.updates.find((u) => u.taskId === 'stranded-1' && u.state === 'GONE'), REREGISTER_MS + GONE_MS + 10_000)
  const tookMs = Date.now() - failoverAt
  t.equal(gone.reason, 'AGENT_GONE', `GONE: ${gone.message ?? ''}`)
  t.equal(gone.source, 'master')
  t.ok(gone.uuid, 'a stored update (with a uuid), delivered until acknowledged')
  t.ok(tookMs >= REREGISTER_MS + GONE_MS - 500, `not before the re-registration window and the agent-gone timeout (${tookMs} ms)`)
  t.ok(tookMs <= REREGISTER_MS + GONE_MS + 4_000, `soon after them (${tookMs} ms)`)
  t.equal(fw.updates.filter((u) => u.taskId === 'stranded-1' && isTerminal(u.state) && u.uuid).length, 1, 'one stored terminal update')
  const failure = await fw.waitFor('FAILURE', () => fw.events.find((e) => e.type === 'FAILURE'), 5_000)
  t.equal(failure.type === 'FAILURE' ? failure.agentId : '', agent.agentId, 'and a FAILURE naming the agent')
  t.notOk(m2.state().agents.some((a) => a.id === agent.agentId), 'the new leader no longer lists the agent')
})
