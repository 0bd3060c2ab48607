// Agent health on a real nats-server: an agent that stops heartbeating goes unreachable after
// agentUnreachableMs (its task UNREACHABLE, its offers rescinded), then gone after agentGoneMs
// (its task GONE, a FAILURE event to the framework, the agent out of the state).
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClusterState, Subjects, decode } from '../../../shared/protocol/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { fastMasterConfig, shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'
import { killTaskGroup, readPid, recordPid } from '../../helpers/process-tasks.js'

const unreachableMs = fastMasterConfig.agentUnreachableMs!
const goneMs = fastMasterConfig.agentGoneMs!

let cluster: TestCluster
let workDir: string
const taskPids: number[] = []
t.before(async () => {
  cluster = await startCluster()
  workDir = await mkdtemp(join(tmpdir(), 'regatta-hb-agent-'))
  await cluster.startMaster('m1', fastMasterConfig)
})
t.teardown(async () => {
  // the stopped agent's task process is still ours: end it by its process group id
  for (const pid of taskPids) killTaskGroup(pid)
  await cluster.stop()
  await rm(workDir, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined)
})

async function state(): Promise<ClusterState> {
  const nc = await cluster.connect('state')
  try {
    const m = await nc.request(Subjects.masterState, new Uint8Array(), { timeout: 2_000 })
    return decode(ClusterState, m.data, 'state')
  } finally {
    await nc.close()
  }
}

t.test('Checks that a silent agent goes unreachable, then gone, and its framework hears UNREACHABLE, GONE and FAILURE', async (t) => {
  const agent = await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'hb-agent', workDir })
  const fw = await cluster.framework()
  const offer = await fw.nextOffer((o) => o.agentId === 'hb-agent')
  await fw.scheduler.launch(offer, [shellTask('hb-task', recordPid(join(workDir, 'hb-task.pid'), 'sleep 60'))], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('hb-task').includes('RUNNING'))
  taskPids.push(await readPid(join(workDir, 'hb-task.pid')))
  // the rest of the agent is offered again (no refuse filter)
  await fw.waitFor('an offer of the rest', () => fw.offers.some((o) => o.agentId === 'hb-agent'))

  let s = await state()
  t.equal(s.agents.find((a) => a.id === 'hb-agent')?.state, 'active')

  await agent.stop() // no more heartbeats
  const stoppedAt = Date.now()

  s = await waitUntil('the agent unreachable in the state', async () => {
    const st = await state()
    return st.agents.find((a) => a.id === 'hb-agent')?.state === 'unreachable' ? st : undefined
  }, unreachableMs + 5_000, 50)
  const unreachableAfter = Date.now() - stoppedAt
  t.ok(unreachableAfter >= unreachableMs - fastMasterConfig.heartbeatIntervalMs! - 100,
    `unreachable ${unreachableAfter} ms after the last heartbeat, not before agentUnreachableMs (${unreachableMs})`)
  t.equal(s.tasks.find((x) => x.taskId === 'hb-task')?.state, 'UNREACHABLE', 'the task is UNREACHABLE in the state')

  const unreachable = await fw.waitFor('UNREACHABLE', () => fw.updates.find((u) => u.taskId === 'hb-task' && u.state === 'UNREACHABLE'))
  t.equal(unreachable.agentId, 'hb-agent')
  t.equal(unreachable.source, 'master')
  t.equal(unreachable.reason, 'AGENT_UNREACHABLE')
  t.ok(unreachable.uuid, 'an update to acknowledge')
  await fw.waitFor('the offers of the agent rescinded', () => !fw.offers.some((o) => o.agentId === 'hb-agent'), 5_000)
  t.ok(fw.events.some((e) => e.type === 'RESCIND'), 'with RESCIND events')
  const unreachableAt = Date.now()

  const gone = await fw.waitFor('GONE', () => fw.updates.find((u) => u.taskId === 'hb-task' && u.state === 'GONE'), goneMs + 5_000)
  const goneAfter = Date.now() - unreachableAt
  t.ok(goneAfter >= goneMs - 600, `GONE ${goneAfter} ms after unreachable, not before agentGoneMs (${goneMs})`)
  t.equal(gone.reason, 'AGENT_GONE')
  t.equal(gone.agentId, 'hb-agent')
  const failure = await fw.waitFor('FAILURE', () => fw.events.find((e) => e.type === 'FAILURE'))
  t.same(failure, { type: 'FAILURE', agentId: 'hb-agent', message: 'agent gone' })
  t.same(fw.statesOf('hb-task'), ['STARTING', 'RUNNING', 'UNREACHABLE', 'GONE'])

  s = await state()
  t.notOk(s.agents.some((a) => a.id === 'hb-agent'), 'the gone agent left the state')
  t.notOk(s.tasks.some((x) => x.taskId === 'hb-task' && x.state !== 'GONE'), 'its task is not live any more')
  t.equal(s.used.cpus ?? 0, 0, 'nothing is counted as used')
})
