// The master's in-memory bookkeeping (services/master/src/cluster.ts): what each agent has used
// and offered as tasks come and go, the allocator's snapshot and the state view. No I/O.
import t from 'tap'
import type { Offer, Resource, TaskInfo, TaskState, TaskStatus } from '../../../shared/protocol/index.js'
import { normalize, parseResources } from '../../../shared/resources/index.js'
import { Cluster, taskKey, type AgentEntry, type FrameworkEntry } from '../../../services/master/src/cluster.js'

const r = parseResources
const norm = (rs: readonly Resource[]): Resource[] => normalize(rs).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))

function addAgent(c: Cluster, id = 'a1', resources = 'cpus:4;mem:4096', now = 1_000): AgentEntry {
  const a: AgentEntry = {
    info: { id, hostname: `${id}.local`, pool: 'default', attributes: {}, resources: r(resources), containerizer: 'process' },
    state: 'active', draining: false, registeredAt: now, lastHeartbeatAt: now,
    revocable: [], used: [], offered: [], taskKeys: new Set(), idleSince: now,
  }
  c.agents.set(id, a)
  return a
}

function addFramework(c: Cluster, id: string, roles = ['*'], now = 1_000): FrameworkEntry {
  const f: FrameworkEntry = {
    info: { id, name: id, roles }, active: true, registeredAt: now, lastSeenAt: now,
    suppressed: new Set(), offerIds: new Set(), taskKeys: new Set(),
  }
  c.frameworks.set(id, f)
  return f
}

function task(frameworkId: string, taskId: string, agentId: string, resources: string, role = '*'): TaskInfo {
  return { taskId, frameworkId, agentId, role, resources: r(resources), container: { command: ['true'] } }
}

function status(info: TaskInfo, state: TaskState, uuid = `${info.taskId}-${state}`): TaskStatus {
  return { taskId: info.taskId, frameworkId: info.frameworkId, agentId: info.agentId, state, uuid, source: 'agent', timestamp: 0 }
}

function offer(id: string, frameworkId: string, agentId: string, resources: string, role = '*'): Offer {
  return { id, frameworkId, agentId, hostname: `${agentId}.local`, pool: 'default', attributes: {}, role, resources: r(resources) }
}

t.test('Checks that addTask counts a live task\'s resources as used and indexes it by agent and framework', async (t) => {
  const c = new Cluster()
  const a = addAgent(c)
  const f = addFramework(c, 'fw')
  const info = task('fw', 't1', a.info.id, 'cpus:1;mem:256')
  const entry = c.addTask(info, status(info, 'STAGING'), 2_000)
  t.equal(entry.holdsResources, true)
  t.same(norm(a.used), norm(r('cpus:1;mem:256')))
  t.ok(a.taskKeys.has(taskKey('fw', 't1')))
  t.ok(f.taskKeys.has(taskKey('fw', 't1')))
  t.equal(c.tasks.get(taskKey('fw', 't1')), entry)

  const info2 = task('fw', 't2', a.info.id, 'cpus:0.5;mem:100')
  c.addTask(info2, status(info2, 'RUNNING'), 2_000)
  t.same(norm(a.used), norm(r('cpus:1.5;mem:356')), 'a second task adds up')
})

t.test('Checks that a task added in a terminal state holds nothing', async (t) => {
  const c = new Cluster()
  const a = addAgent(c)
  addFramework(c, 'fw')
  const info = task('fw', 'done', a.info.id, 'cpus:1;mem:256')
  const entry = c.addTask(info, status(info, 'FINISHED'), 2_000)
  t.equal(entry.holdsResources, false)
  t.same(a.used, [])
  t.ok(a.taskKeys.has(taskKey('fw', 'done')), 'still known on the agent')
})

t.test('Checks that applyStatus frees resources on the first terminal state, once, and sets the agent idle', async (t) => {
  const c = new Cluster()
  const a = addAgent(c, 'a1', 'cpus:4;mem:4096', 1_000)
  addFramework(c, 'fw')
  const i1 = task('fw', 't1', 'a1', 'cpus:1;mem:256')
  const i2 = task('fw', 't2', 'a1', 'cpus:2;mem:512')
  const e1 = c.addTask(i1, status(i1, 'STAGING'), 2_000)
  const e2 = c.addTask(i2, status(i2, 'STAGING'), 2_000)

  t.equal(c.applyStatus(e1, status(i1, 'RUNNING'), 3_000), true)
  t.equal(e1.state, 'RUNNING')
  t.equal(e1.updatedAt, 3_000)
  t.same(norm(a.used), norm(r('cpus:3;mem:768')), 'RUNNING changes nothing')

  t.equal(c.applyStatus(e1, status(i1, 'UNREACHABLE'), 3_500), true)
  t.equal(e1.holdsResources, true, 'UNREACHABLE is not terminal: the resources stay used')
  t.equal(c.applyStatus(e1, status(i1, 'RUNNING'), 3_600), true, 'and the task may come back')

  t.equal(c.applyStatus(e1, status(i1, 'FINISHED'), 4_000), true)
  t.equal(e1.holdsResources, false)
  t.same(norm(a.used), norm(r('cpus:2;mem:512')), 't1 is freed')
  t.equal(a.idleSince, 1_000, 'not idle while t2 runs')

  t.equal(c.applyStatus(e1, status(i1, 'FINISHED', 'again'), 4_500), true, 'the same terminal state again is accepted (redelivery)')
  t.same(norm(a.used), norm(r('cpus:2;mem:512')), 'but frees nothing twice')

  c.applyStatus(e2, status(i2, 'FAILED'), 5_000)
  t.same(a.used, [], 'everything free')
  t.equal(a.idleSince, 5_000, 'idle since the last task ended')
})

t.test('Checks that a stale status after a terminal one is refused', async (t) => {
  const c = new Cluster()
  const a = addAgent(c)
  addFramework(c, 'fw')
  const info = task('fw', 't1', a.info.id, 'cpus:1')
  const e = c.addTask(info, status(info, 'RUNNING'), 2_000)
  const killed = status(info, 'KILLED')
  c.applyStatus(e, killed, 3_000)
  for (const late of ['RUNNING', 'FAILED', 'STARTING', 'UNREACHABLE', 'LOST'] as const) {
    t.equal(c.applyStatus(e, status(info, late), 4_000), false, `${late} after KILLED is refused`)
  }
  t.equal(e.state, 'KILLED')
  t.equal(e.latest, killed, 'the latest status is still the terminal one')
  t.equal(e.updatedAt, 3_000)
  t.same(a.used, [], 'and nothing was counted again')
})

t.test('Checks that releaseTask gives resources back once, and to a missing agent not at all', async (t) => {
  const c = new Cluster()
  const a = addAgent(c)
  addFramework(c, 'fw')
  const info = task('fw', 't1', a.info.id, 'cpus:1;mem:64')
  const e = c.addTask(info, status(info, 'RUNNING'), 2_000)
  c.releaseTask(e, 3_000)
  c.releaseTask(e, 3_001)
  t.same(a.used, [])
  t.equal(e.holdsResources, false)
  t.equal(a.idleSince, 3_000)

  const gone = task('fw', 'orphan', 'no-such-agent', 'cpus:1')
  const eg = c.addTask(gone, status(gone, 'RUNNING'), 2_000)
  t.doesNotThrow(() => c.releaseTask(eg, 3_000), 'a task whose agent is gone')
  t.equal(eg.holdsResources, false)
})

t.test('Checks that forgetTask unindexes a task and keeps a bounded list of completed ones', async (t) => {
  const c = new Cluster()
  c.completedLimit = 3
  const a = addAgent(c)
  const f = addFramework(c, 'fw')
  for (let i = 0; i < 5; i++) {
    const info = task('fw', `t${i}`, a.info.id, 'cpus:0.1')
    const e = c.addTask(info, status(info, 'RUNNING'), 2_000)
    c.applyStatus(e, status(info, 'FINISHED'), 3_000)
    c.forgetTask(taskKey('fw', `t${i}`))
  }
  t.equal(c.tasks.size, 0)
  t.equal(a.taskKeys.size, 0)
  t.equal(f.taskKeys.size, 0)
  t.same(c.completed.map((e) => e.info.taskId), ['t2', 't3', 't4'], 'the newest completed tasks, bounded')
  t.same(a.used, [])
  t.doesNotThrow(() => c.forgetTask(taskKey('fw', 'unknown')))
  t.equal(c.completed.length, 3)
})

t.test('Checks that offers are counted on their agent and framework, and given back when removed', async (t) => {
  const c = new Cluster()
  const a = addAgent(c, 'a1', 'cpus:4;mem:4096;ports:[31000-31009]')
  const b = addAgent(c, 'a2', 'cpus:2;mem:1024')
  const f = addFramework(c, 'fw')
  const info = task('fw', 't1', 'a1', 'cpus:1;mem:1024')
  c.addTask(info, status(info, 'RUNNING'), 1_500)

  const o1 = offer('o1', 'fw', 'a1', 'cpus:3;mem:3072;ports:[31000-31004]')
  const o2 = offer('o2', 'fw', 'a2', 'cpus:2;mem:1024')
  c.addOffer(o1, 2_000)
  c.addOffer(o2, 2_000)
  t.same(norm(a.offered), norm(r('cpus:3;mem:3072;ports:[31000-31004]')))
  t.same(norm(c.available(a)), norm(r('ports:[31005-31009]')), 'available = total - used - offered')
  t.same(c.available(b), [])
  t.same([...f.offerIds].sort(), ['o1', 'o2'])
  t.same(c.offersOfAgent('a1'), ['o1'])
  t.equal(c.offers.get('o1')?.createdAt, 2_000)

  t.equal(c.removeOffer('o1'), o1, 'removeOffer returns the offer')
  t.same(a.offered, [])
  t.same(norm(c.available(a)), norm(r('cpus:3;mem:3072;ports:[31000-31009]')))
  t.same([...f.offerIds], ['o2'])
  t.same(c.offersOfAgent('a1'), [])
  t.equal(c.removeOffer('o1'), undefined, 'removing it again does nothing')
  t.same(norm(a.offered), [], 'and gives nothing back twice')
})

t.test('Checks that revocable resources the agent reports are available beside its total', async (t) => {
  const c = new Cluster()
  const a = addAgent(c, 'a1', 'cpus:1;mem:512')
  a.revocable = [{ name: 'cpus', scalar: 2, revocable: true }]
  t.same(norm(c.available(a)), norm([...r('cpus:1;mem:512'), { name: 'cpus', scalar: 2, revocable: true }]))
})

t.test('Checks that snapshot() sums allocations per framework and role, from live tasks and offers', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1', 'cpus:8;mem:8192')
  addAgent(c, 'a2', 'cpus:8;mem:8192')
  addFramework(c, 'fw1', ['ci/main', 'ci/pr'])
  addFramework(c, 'fw2', ['ci/pr'])
  const add = (fw: string, id: string, agent: string, res: string, role: string, state: TaskState = 'RUNNING'): void => {
    const info = task(fw, id, agent, res, role)
    c.addTask(info, status(info, state), 1_000)
  }
  add('fw1', 'a', 'a1', 'cpus:1;mem:100', 'ci/main')
  add('fw1', 'b', 'a2', 'cpus:2;mem:200', 'ci/main')
  add('fw1', 'c', 'a1', 'cpus:0.5;mem:50', 'ci/pr')
  add('fw1', 'd', 'a1', 'cpus:4;mem:400', 'ci/main', 'FINISHED')
  add('fw2', 'e', 'a2', 'cpus:1;mem:10', 'ci/pr')
  c.addOffer(offer('o1', 'fw1', 'a1', 'cpus:1;mem:1', 'ci/main'), 1_000)
  c.addOffer(offer('o2', 'fw2', 'a1', 'cpus:2;mem:2', 'ci/pr'), 1_000)

  const snap = c.snapshot(5_000)
  const alloc = (fw: string, role: string): Resource[] | undefined =>
    snap.allocations.find((x) => x.frameworkId === fw && x.role === role)?.resources
  t.equal(snap.allocations.length, 3, 'one entry per framework and role')
  t.same(norm(alloc('fw1', 'ci/main') ?? []), norm(r('cpus:4;mem:301')), 'tasks a, b and offer o1; not the finished d')
  t.same(norm(alloc('fw1', 'ci/pr') ?? []), norm(r('cpus:0.5;mem:50')))
  t.same(norm(alloc('fw2', 'ci/pr') ?? []), norm(r('cpus:3;mem:12')))
  t.equal(snap.now, 5_000)
  t.same(snap.agents.map((a) => a.id).sort(), ['a1', 'a2'])
  t.same(norm(snap.agents.find((a) => a.id === 'a1')!.available), norm(r('cpus:3.5;mem:8039')), 'a1: 8 - tasks a, c - offers o1, o2')
})

t.test('Checks that snapshot() drops expired filters, leaves out unreachable agents and expands a full SUPPRESS', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1')
  const lost = addAgent(c, 'a2')
  lost.state = 'unreachable'
  const draining = addAgent(c, 'a3')
  draining.draining = true
  const f = addFramework(c, 'fw', ['ci/main', 'ci/pr'])
  const g = addFramework(c, 'gw', ['x', 'y'])
  f.suppressed.add('*all*')
  g.suppressed.add('y')
  g.active = false
  c.filters = [
    { frameworkId: 'fw', agentId: 'a1', resources: r('cpus:1'), until: 4_999 },
    { frameworkId: 'fw', agentId: 'a1', resources: r('cpus:1'), until: 5_000 },
    { frameworkId: 'fw', agentId: 'a1', resources: r('cpus:1'), until: 5_001 },
  ]
  const snap = c.snapshot(5_000)
  t.same(snap.filters.map((x) => x.until), [5_001], 'filters that ended at or before now are gone')
  t.same(c.filters.map((x) => x.until), [5_001], 'and dropped from the cluster too')
  t.same(snap.agents.map((a) => a.id).sort(), ['a1', 'a3'], 'no unreachable agent')
  t.equal(snap.agents.find((a) => a.id === 'a3')?.draining, true)
  t.same(snap.frameworks.find((x) => x.id === 'fw')?.suppressedRoles, ['ci/main', 'ci/pr'])
  t.same(snap.frameworks.find((x) => x.id === 'gw')?.suppressedRoles, ['y'])
  t.equal(snap.frameworks.find((x) => x.id === 'gw')?.active, false)
})

t.test('Checks that view() totals agents, used, offered, frameworks, tasks and roles', async (t) => {
  const c = new Cluster()
  c.roles.set('ci/main', { weight: 3, quota: { cpus: 2 } })
  const a1 = addAgent(c, 'a1', 'cpus:4;mem:4096;ports:[31000-31009]', 100)
  const a2 = addAgent(c, 'a2', 'cpus:2;mem:2048', 100)
  a2.state = 'unreachable'
  const a3 = addAgent(c, 'a3', 'cpus:1;mem:1024', 100)
  a3.draining = true
  addFramework(c, 'fw', ['ci/main'])
  const i1 = task('fw', 't1', 'a1', 'cpus:1;mem:512;ports:[31000-31001]', 'ci/main')
  const i2 = task('fw', 't2', 'a2', 'cpus:0.5;mem:256', 'ci/main')
  const i3 = task('fw', 't3', 'a1', 'cpus:1;mem:1', 'ci/main')
  c.addTask(i1, status(i1, 'RUNNING'), 200)
  c.addTask(i2, status(i2, 'UNREACHABLE'), 200)
  const e3 = c.addTask(i3, status(i3, 'RUNNING'), 200)
  c.applyStatus(e3, status(i3, 'FINISHED'), 300)
  c.forgetTask(taskKey('fw', 't3'))
  c.addOffer(offer('o1', 'fw', 'a1', 'cpus:3;mem:1024', 'ci/main'), 250)

  const v = c.view('m1', { id: 'm1', epoch: 7 }, 10, 400)
  t.equal(v.masterId, 'm1')
  t.same(v.leader, { id: 'm1', epoch: 7 })
  t.same(v.total, { cpus: 7, mem: 7168, ports: 10 })
  t.same(v.used, { cpus: 1.5, mem: 768, ports: 2 })
  t.same(v.offered, { cpus: 3, mem: 1024 })
  const byId = Object.fromEntries(v.agents.map((a) => [a.id, a]))
  t.equal(byId.a1?.state, 'active')
  t.equal(byId.a2?.state, 'unreachable')
  t.equal(byId.a3?.state, 'draining')
  t.equal(byId.a1?.tasks, 1, 'only live tasks are counted')
  t.equal(byId.a1?.idleSince, undefined, 'a busy agent has no idleSince')
  t.equal(byId.a3?.idleSince, 100, 'an idle agent has one')
  t.same(byId.a1?.used, { cpus: 1, mem: 512, ports: 2 })
  t.same(byId.a1?.offered, { cpus: 3, mem: 1024 })
  t.equal(a1.taskKeys.size, 1, 'the forgotten task left the agent')

  t.equal(v.frameworks.length, 1)
  t.equal(v.frameworks[0]!.tasks, 2)
  t.equal(v.frameworks[0]!.offers, 1)
  t.same(v.frameworks[0]!.used, { cpus: 1.5, mem: 768, ports: 2 })
  t.same(v.tasks.map((x) => `${x.taskId}:${x.state}`).sort(), ['t1:RUNNING', 't2:UNREACHABLE', 't3:FINISHED'],
    'live tasks and recently completed ones')
  t.same(v.offers.map((o) => [o.id, o.agentId, o.createdAt]), [['o1', 'a1', 250]])
  const main = v.roles.find((x) => x.name === 'ci/main')
  t.same(main, { name: 'ci/main', weight: 3, quota: { cpus: 2 }, allocated: { cpus: 1.5, mem: 768, ports: 2 } })
})

t.test('Checks that view() of an empty cluster is all zeros', async (t) => {
  const v = new Cluster().view('m1', null, 0, 1)
  t.same(v.total, {})
  t.same(v.used, {})
  t.same(v.agents, [])
  t.same(v.tasks, [])
  t.equal(v.leader, null)
})
