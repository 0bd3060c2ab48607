// The master's bounds on waits for tasks (services/master/src/task-deadlines.ts) on its real
// in-memory cluster state and its real allocator, with time passed in: which tasks are past
// their start deadline, the hold that keeps a framework off the agent where its task timed out
// starting (a REVIVE does not lift it), and tasks stranded by a failover. No I/O.
import t from 'tap'
import type { TaskInfo, TaskState, TaskStatus } from '../../../shared/protocol/index.js'
import { parseResources } from '../../../shared/resources/index.js'
import { Cluster, type AgentEntry, type FrameworkEntry } from '../../../services/master/src/cluster.js'
import { allocate } from '../../../services/master/src/allocator/index.js'
import {
  StrandedTasks, duration, holdFilters, overdueStarts, startTimeoutMessage,
} from '../../../services/master/src/task-deadlines.js'

const r = parseResources
const TIMEOUT = 60_000

function addAgent(c: Cluster, id: string, state: AgentEntry['state'] = 'active'): AgentEntry {
  const a: AgentEntry = {
    info: { id, hostname: `${id}.local`, pool: 'default', attributes: {}, resources: r('cpus:4;mem:4096'), containerizer: 'process' },
    state, draining: false, registeredAt: 0, lastHeartbeatAt: 0,
    revocable: [], used: [], offered: [], taskKeys: new Set(), idleSince: 0,
  }
  c.agents.set(id, a)
  return a
}

function addFramework(c: Cluster, id: string): FrameworkEntry {
  const f: FrameworkEntry = {
    info: { id, name: id, roles: ['*'] }, active: true, registeredAt: 0, lastSeenAt: 0,
    suppressed: new Set(), offerIds: new Set(), taskKeys: new Set(),
  }
  c.frameworks.set(id, f)
  return f
}

function launch(c: Cluster, taskId: string, agentId: string, state: TaskState, at: number, frameworkId = 'fw') {
  const info: TaskInfo = { taskId, frameworkId, agentId, role: '*', resources: r('cpus:1;mem:128'), container: { command: ['true'] } }
  const status: TaskStatus = { taskId, frameworkId, agentId, state, source: 'agent', timestamp: at }
  return c.addTask(info, status, at)
}

const offeredTo = (c: Cluster, now: number): Array<[string, string]> =>
  allocate(c.snapshot(now)).map((p) => [p.frameworkId, p.agentId] as [string, string]).sort()

t.test('Checks that only tasks STAGING or STARTING longer than the timeout since their launch, on an active agent, are overdue', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1')
  addAgent(c, 'gone-quiet', 'unreachable')
  addFramework(c, 'fw')
  launch(c, 'staging-old', 'a1', 'STAGING', 1_000)
  launch(c, 'starting-old', 'a1', 'STARTING', 1_000)
  launch(c, 'starting-new', 'a1', 'STARTING', 40_000)
  launch(c, 'running-old', 'a1', 'RUNNING', 1_000)
  launch(c, 'unreachable-old', 'gone-quiet', 'STARTING', 1_000)
  const now = 1_000 + TIMEOUT + 1
  t.same(overdueStarts(c, now, TIMEOUT).map((x) => x.info.taskId).sort(), ['staging-old', 'starting-old'],
    'STAGING and STARTING past the deadline; not RUNNING, not younger, not on an unreachable agent')
  t.same(overdueStarts(c, 1_000 + TIMEOUT, TIMEOUT), [], 'exactly at the deadline is not past it')

  // a status update does not restart the clock: the deadline counts from the launch
  const entry = c.tasks.get(`fw\u0000staging-old`)!
  c.applyStatus(entry, { ...entry.latest, state: 'STARTING', timestamp: now - 10 }, now - 10)
  t.ok(overdueStarts(c, now, TIMEOUT).some((x) => x.info.taskId === 'staging-old'), 'STAGING then STARTING still counts from the launch')
  c.applyStatus(entry, { ...entry.latest, state: 'LOST' }, now)
  t.notOk(overdueStarts(c, now, TIMEOUT).some((x) => x.info.taskId === 'staging-old'), 'an ended task is never overdue')
})

t.test('Checks that the message of a start timeout names the state, the agent, the timeout and how long it waited', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1')
  addFramework(c, 'fw')
  const task = launch(c, 'slow-pull', 'a1', 'STARTING', 0)
  const m = startTimeoutMessage(task, 10 * 60_000 + 400, 10 * 60_000)
  t.match(m, /task start timeout \(10m\)/)
  t.match(m, /still STARTING on agent a1 10m after its launch/)
  t.same(['800ms', '45s', '1m30s', '10m', '1h', '1h5m'].join(' '), [800, 45_000, 90_000, 600_000, 3_600_000, 3_900_000].map(duration).join(' '))
})

t.test('Checks that a hold keeps one framework off one agent until it ends, whatever it has, and survives a REVIVE', async (t) => {
  const c = new Cluster()
  const a1 = addAgent(c, 'a1')
  addAgent(c, 'a2')
  addFramework(c, 'fw')
  addFramework(c, 'other')
  a1.revocable = r('cpus:1;mem:512').map((x) => ({ ...x, revocable: true }))
  c.frameworks.get('fw')!.info.revocable = true
  c.holds.push({ frameworkId: 'fw', agentId: 'a1', until: 10_000 })

  const filters = holdFilters(c.holds, c, 5_000)
  t.equal(filters.length, 1)
  t.same(filters[0]!.resources.map((x) => `${x.name}${x.revocable ? '(revocable)' : ''}`).sort(), ['cpus', 'cpus(revocable)', 'mem', 'mem(revocable)'],
    'the filter covers all the agent has, revocable resources too')
  const during = offeredTo(c, 5_000)
  t.notOk(during.some(([f, a]) => f === 'fw' && a === 'a1'), `fw is offered nothing of a1 during the hold: ${JSON.stringify(during)}`)
  t.ok(during.some(([f, a]) => f === 'fw' && a === 'a2'), 'fw is offered the other agent')

  // a REVIVE clears DECLINE filters only (master.ts: cluster.filters = ...); the hold stays
  c.filters = []
  t.notOk(offeredTo(c, 6_000).some(([f, a]) => f === 'fw' && a === 'a1'), 'still held after the framework\'s filters are cleared')

  for (const id of [...c.offers.keys()]) c.removeOffer(id)
  const after = offeredTo(c, 10_001)
  t.ok(after.some(([f, a]) => f === 'fw' && a === 'a1'), `fw is offered a1 again once the hold ended: ${JSON.stringify(after)}`)
  t.equal(c.holds.length, 0, 'an ended hold is dropped')
  t.same(holdFilters([{ frameworkId: 'fw', agentId: 'nobody', until: 20_000 }], c, 0), [], 'a hold on an agent that went away filters nothing')
})

t.test('Checks that stranded tasks are kept per agent, once each, and handed out once', async (t) => {
  const s = new StrandedTasks()
  s.add('a1', 'fw', 't1')
  s.add('a1', 'fw', 't1')
  s.add('a1', 'fw', 't2')
  s.add('a2', 'other', 't1')
  t.equal(s.size, 3, 'a question asked twice is one stranded task')
  t.same(s.take('a1').map((x) => x.taskId).sort(), ['t1', 't2'])
  t.same(s.take('a1'), [], 'taken once')
  t.same(s.take('a2'), [{ frameworkId: 'other', taskId: 't1' }])
  t.equal(s.size, 0)
})

t.test('Checks that a task counts as ended once terminal here or forgotten after its end, so a returning agent is told to kill it', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1')
  addFramework(c, 'fw')
  const live = launch(c, 'live', 'a1', 'RUNNING', 0)
  const gone = launch(c, 'gone', 'a1', 'RUNNING', 0)
  c.applyStatus(gone, { ...gone.latest, state: 'GONE', source: 'master' }, 10)
  const acked = launch(c, 'acked', 'a1', 'RUNNING', 0)
  c.applyStatus(acked, { ...acked.latest, state: 'GONE', source: 'master' }, 10)
  c.forgetTask(`fw\u0000acked`)
  t.notOk(c.hasEnded(`fw\u0000${live.info.taskId}`), 'a running task has not ended')
  t.ok(c.hasEnded('fw\u0000gone'), 'a task the master reported GONE has')
  t.ok(c.hasEnded('fw\u0000acked'), 'so has one forgotten once its end was acknowledged')
  t.notOk(c.hasEnded('fw\u0000never-heard-of'), 'a task the master never knew has not (a new framework\'s launch is not refused)')
})
