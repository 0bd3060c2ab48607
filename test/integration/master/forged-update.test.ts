// Defense in depth behind the NATS permissions: on an open nats-server (no users, so a forged
// update does reach JetStream), the master and the framework's scheduler refuse a status update
// whose subject names another sender than the update claims, or that an agent sends for a task
// running on another agent. Real master, two real agents (process containerizer), a framework.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { pino } from 'pino'
import { AckPolicy } from 'nats'
import { Consumers, Streams, Subjects, encode, type TaskStatus } from '../../../shared/protocol/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { Master } from '../../../services/master/src/master.js'
import { MasterMetrics } from '../../../services/master/src/metrics.js'
import { silentLogger } from '../../../shared/log/index.js'
import { fastMasterConfig, shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

const processContainerizer = (): ProcessContainerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false })

let cluster: TestCluster
let master: Master
let fw: RecordingFramework
const metrics = new MasterMetrics({ processMetrics: false })
const warnings: Array<{ msg: string; why?: string; subject?: string; taskId?: string }> = []

t.before(async () => {
  cluster = await startCluster()
  // the master's warnings, kept to check that each refusal is logged
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line) as (typeof warnings)[number]) })
  master = new Master({ nc: await cluster.connect('master'), id: 'm1', logger, metrics, config: fastMasterConfig })
  await master.start()
  await waitUntil('the master to lead', () => master.isLeader)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-a', resources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]' })
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-b', resources: 'cpus:1;mem:512;disk:1000;ports:[31020-31030]' })
  fw = await cluster.framework({ id: 'fw-forged', name: 'forged' })
})
t.teardown(async () => {
  await master.stop().catch(() => undefined)
  await cluster.stop()
})

const refusedCount = async (): Promise<number> =>
  (await metrics.registry.getSingleMetric('regatta_master_status_updates_refused_total')!.get()).values[0]?.value ?? 0

const taskView = (taskId: string) => master.state().tasks.find((x) => x.taskId === taskId)

t.test('Checks that an update on agent A\'s subject for a task running on agent B, or whose sender does not match its subject, is refused by the master and the framework and never applied', async (t) => {
  // one long task on each agent
  const onB = await fw.nextOffer((o) => o.agentId === 'agent-b')
  await fw.scheduler.launch(onB, [shellTask('victim', 'sleep 30')])
  const onA = await fw.nextOffer((o) => o.agentId === 'agent-a')
  await fw.scheduler.launch(onA, [shellTask('own', 'sleep 30')])
  await fw.waitFor('both tasks running', () => fw.statesOf('victim').includes('RUNNING') && fw.statesOf('own').includes('RUNNING'))
  t.equal(taskView('victim')?.agentId, 'agent-b', 'the victim runs on agent B')

  const nc = await cluster.connect('forger')
  const js = nc.jetstream()
  const forge = (s: Partial<TaskStatus> & Pick<TaskStatus, 'taskId' | 'state'>): TaskStatus => ({
    frameworkId: fw.scheduler.frameworkId, agentId: 'agent-a', source: 'agent', uuid: randomUUID(), timestamp: Date.now(), ...s,
  })
  const fwId = fw.scheduler.frameworkId
  const forged: Array<{ subject: string; status: TaskStatus; why: RegExp }> = [
    // agent A (on its own subject) speaks for B's task
    { subject: Subjects.statusUpdate(fwId, 'agent-a'), status: forge({ taskId: 'victim', state: 'FINISHED', exitCode: 0 }), why: /runs on agent agent-b|launched on agent agent-b/ },
    // on A's subject, claiming to be B
    { subject: Subjects.statusUpdate(fwId, 'agent-a'), status: forge({ taskId: 'victim', state: 'FAILED', agentId: 'agent-b' }), why: /update of agent agent-b came on/ },
    // on A's subject, claiming to be the master
    { subject: Subjects.statusUpdate(fwId, 'agent-a'), status: forge({ taskId: 'victim', state: 'LOST', source: 'master' }), why: /source master came on/ },
    // on the master's subject, an agent's update
    { subject: Subjects.masterStatusUpdate(fwId), status: forge({ taskId: 'victim', state: 'KILLED', agentId: 'agent-b' }), why: /update of agent agent-b came on/ },
    // another framework's token in the subject
    { subject: Subjects.statusUpdate('fw-other', 'agent-b'), status: forge({ taskId: 'victim', state: 'FAILED', agentId: 'agent-b' }), why: /an update of framework/ },
  ]
  const before = await refusedCount()
  for (const f of forged) await js.publish(f.subject, encode({ updates: [f.status] }))
  await waitUntil('the master to refuse the forged updates', async () => (await refusedCount()) - before >= forged.length)
  t.equal((await refusedCount()) - before, forged.length, 'the master refused each forged update (counted once each)')
  for (const f of forged) {
    t.ok(warnings.some((w) => w.msg === 'refusing a status update' && w.subject === f.subject && f.why.test(w.why ?? '')), `logged: ${f.why.source}`)
  }
  const v = taskView('victim')
  t.equal(v?.state, 'RUNNING', 'the master still has the victim RUNNING')
  t.equal(v?.agentId, 'agent-b', 'on agent B')
  const forgedUuids = new Set(forged.map((f) => f.status.uuid))
  t.notOk(fw.updates.some((u) => u.uuid !== undefined && forgedUuids.has(u.uuid)), 'the framework was handed none of them')

  // and they are settled in JetStream: nothing left waiting for the master or the framework
  const jsm = await nc.jetstreamManager()
  await waitUntil('the forged messages to be acknowledged', async () => {
    const [m, f] = await Promise.all([jsm.consumers.info(Streams.updates, Consumers.masterUpdates), jsm.consumers.info(Streams.updates, Consumers.frameworkUpdates(fwId))])
    return m.num_pending === 0 && m.num_ack_pending === 0 && f.num_pending === 0 && f.num_ack_pending === 0
  })
  t.pass('the master and the framework consumers acknowledged the forged messages')

  // an agent's own update for its own task is still applied: the real kill of both tasks
  await fw.scheduler.kill('own')
  await fw.scheduler.kill('victim')
  const [own, victim] = await Promise.all([fw.terminal('own'), fw.terminal('victim')])
  t.match(own, { state: 'KILLED', agentId: 'agent-a' }, 'agent A\'s own task ends KILLED, reported by A')
  t.match(victim, { state: 'KILLED', agentId: 'agent-b' }, 'the victim ends KILLED, reported by B')
  t.equal(fw.statesOf('victim').filter((s) => s !== 'STAGING' && s !== 'STARTING' && s !== 'RUNNING').length, 1, 'the victim ended once')
})

t.test('Checks that a framework update consumer left with the filter of before the subjects named the agent is made again, and the framework gets its updates', async (t) => {
  const nc = await cluster.connect('upgrade')
  const jsm = await nc.jetstreamManager()
  const id = 'fw-upgraded'
  // the first framework lets its offers go, so that they come to this one at once
  await fw.scheduler.decline(fw.offers.map((o) => o.id), { refuseSeconds: 60 })
  fw.offers = []
  // as an older master made it: regatta.update.<fw>, which no update subject matches any more
  await jsm.consumers.add(Streams.updates, { durable_name: Consumers.frameworkUpdates(id), ack_policy: AckPolicy.Explicit, filter_subject: `regatta.update.${id}` })
  const old = await cluster.framework({ id, name: 'upgraded' })
  t.equal((await jsm.consumers.info(Streams.updates, Consumers.frameworkUpdates(id))).config.filter_subject, Subjects.frameworkStatusUpdates(id), 'the consumer filters regatta.update.<fw>.* now')
  await old.launch(shellTask('after-upgrade', 'true'))
  t.equal((await old.terminal('after-upgrade')).state, 'FINISHED', 'the framework got its task\'s updates')
})
