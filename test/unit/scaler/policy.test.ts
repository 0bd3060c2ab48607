// The scaling policy (services/scaler/src/policy.ts) driven tick by tick against a small world
// of instances and agents that the test moves by hand: pure decisions, no NATS, no processes.
import t from 'tap'
import type { AgentView, Amounts, PoolDemand } from '../../../shared/protocol/index.js'
import type { PoolPolicy } from '../../../shared/protocol/pool.js'
import { agentsFor, decide, emptyMemory, type Action, type PolicyConfig, type PoolMemory } from '../../../services/scaler/src/policy.js'
import type { Instance } from '../../../services/scaler/src/providers/types.js'

const config: PolicyConfig = { registerDeadlineMs: 10_000, agentLostMs: 5_000, cooldownMs: 2_000 }
const SHAPE: Amounts = { cpus: 1, mem: 1024 }

/** A pool as the scaler sees it: the provider's instances, the master's agents, the demand. */
class World {
  now = 1_000_000
  instances: Instance[] = []
  agents: AgentView[] = []
  demand: PoolDemand | undefined
  memory: PoolMemory = emptyMemory()
  private seq = 0

  constructor(public policy: PoolPolicy, public instanceResources: Amounts | null = SHAPE) {}

  tick(): Action[] {
    const d = decide({
      now: this.now, policy: this.policy, instances: this.instances, agents: this.agents, memory: this.memory, config,
      ...(this.demand ? { demand: this.demand } : {}), ...(this.instanceResources ? { instanceResources: this.instanceResources } : {}),
    })
    this.memory = d.memory
    for (const a of d.actions) this.apply(a)
    return d.actions
  }

  apply(a: Action): void {
    if (a.type === 'START') {
      for (let i = 0; i < a.count; i++) this.instances.push({ id: `i${++this.seq}`, pool: a.pool, startedAt: this.now, state: 'running' })
    } else if (a.type === 'STOP') {
      this.instances = this.instances.filter((i) => i.id !== a.instanceId)
      this.agents = this.agents.filter((g) => g.attributes.instance !== a.instanceId)
    } else {
      this.agent(a.agentId).state = a.type === 'DRAIN' ? 'draining' : 'active'
    }
  }

  /** The instance's agent registers. */
  register(instanceId: string, extra: Partial<AgentView> = {}): AgentView {
    const a: AgentView = {
      id: `agent-${instanceId}`, hostname: 'h', pool: this.policy.pool, attributes: { instance: instanceId }, containerizer: 'process',
      state: 'active', registeredAt: this.now, lastHeartbeatAt: this.now, resources: [], total: SHAPE, used: {}, offered: {},
      tasks: 0, idleSince: this.now, ...extra,
    }
    this.agents.push(a)
    return a
  }

  agent(id: string): AgentView {
    const a = this.agents.find((g) => g.id === id)
    if (!a) throw new Error(`no agent ${id}`)
    return a
  }

  setTasks(agentId: string, n: number): void {
    const a = this.agent(agentId)
    if (n === 0 && a.tasks > 0) a.idleSince = this.now
    a.tasks = n
    if (n > 0) delete a.idleSince
  }

  want(jobs: number, unmetJobs: number, shape: Amounts = { cpus: 1, mem: 512 }): void {
    const times = (n: number): Amounts => Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, v * n]))
    this.demand = jobs === 0 ? undefined : { pool: this.policy.pool, requested: times(jobs), unmet: times(unmetJobs), jobs, unmetJobs }
  }

  advance(ms: number): void {
    this.now += ms
  }
}

const policy = (p: Partial<PoolPolicy> = {}): PoolPolicy => ({ pool: 'ci', min: 0, max: 3, idleMs: 5_000, provider: 'process', ...p })
const types = (as: Action[]): string[] => as.map((a) => `${a.type}${a.type === 'START' ? ` ${a.count}` : ''} ${a.reason}`)

t.test('Checks that agentsFor packs unmet jobs by the agent shape, and counts one agent a job without a shape', async (t) => {
  t.equal(agentsFor({}, 0), 0)
  t.equal(agentsFor({ cpus: 3 }, 3), 3, 'no shape: one agent a job')
  t.equal(agentsFor({ cpus: 3, mem: 1536 }, 3, { cpus: 4, mem: 4096 }), 1, 'three 1-cpu jobs fit one 4-cpu agent')
  t.equal(agentsFor({ cpus: 3, mem: 3 * 3000 }, 3, { cpus: 4, mem: 4096 }), 3, 'memory decides: one 3000 MiB job an agent')
  t.equal(agentsFor({ cpus: 1.8 }, 3, { cpus: 1 }), 3, 'jobs of 0.6 cpu: one a 1-cpu agent, not ceil(1.8)')
  t.equal(agentsFor({ cpus: 8 }, 1, { cpus: 4 }), 1, 'a job larger than an agent still asks for one')
  t.equal(agentsFor({ gpus: 2 }, 2, { cpus: 4 }), 2, 'a resource the shape lacks: one agent a job')
})

t.test('Checks that a pool at zero starts one agent for one unmet job, not again while it starts, and drains then stops it after the idle timeout', async (t) => {
  const w = new World(policy({ idleMs: 5_000 }))
  t.same(w.tick(), [], 'no demand, min 0: nothing')
  w.want(1, 1)
  t.same(types(w.tick()), ['START 1 demand'])
  w.advance(300)
  t.same(w.tick(), [], 'the starting instance is capacity already coming')
  const a = w.register('i1')
  w.want(1, 0) // the master fits the job on the new agent
  t.same(w.tick(), [])
  w.setTasks(a.id, 1)
  w.want(0, 0)
  w.advance(20_000)
  t.same(w.tick(), [], 'a busy agent is never drained, however long it runs')
  w.setTasks(a.id, 0)
  w.advance(4_999)
  t.same(w.tick(), [], 'idle, but not for idleMs yet')
  w.advance(1)
  const drain = w.tick()
  t.same(types(drain), ['DRAIN idle'])
  t.match(drain[0], { agentId: a.id, instanceId: 'i1' })
  t.same(w.agent(a.id).state, 'draining')
  w.advance(250)
  const stop = w.tick()
  t.same(types(stop), ['STOP drained'], 'drained and empty: stopped')
  t.equal(w.instances.length, 0)
  t.same(w.tick(), [], 'at min 0 with no demand it stays at zero')
})

t.test('Checks that a burst larger than max starts max agents once, and nothing more while they start or run', async (t) => {
  const w = new World(policy({ max: 3 }))
  w.want(30, 30)
  t.same(types(w.tick()), ['START 3 demand'])
  for (let i = 0; i < 5; i++) {
    w.advance(200)
    t.same(w.tick(), [], `tick ${i}: max reached`)
  }
  for (const i of w.instances) w.setTasks(w.register(i.id).id, 1)
  w.want(27, 27)
  t.same(w.tick(), [], 'max reached with agents busy')
  t.equal(w.instances.length, 3)
})

t.test('Checks that demand is reckoned in agents of the provider\'s shape', async (t) => {
  const w = new World(policy({ max: 10 }), { cpus: 2, mem: 2048 })
  w.want(5, 5, { cpus: 1, mem: 512 })
  t.same(types(w.tick()), ['START 3 demand'], 'five 1-cpu jobs need three 2-cpu agents')
})

t.test('Checks that without a provider shape the pool learns one from its agents', async (t) => {
  const w = new World(policy({ max: 10, min: 1 }), null)
  t.same(types(w.tick()), ['START 1 min'])
  w.register('i1', { total: { cpus: 4, mem: 4096 }, tasks: 4 })
  delete w.agents[0]!.idleSince
  w.want(8, 8, { cpus: 1, mem: 512 })
  t.same(types(w.tick()), ['START 2 demand'], 'eight 1-cpu jobs on 4-cpu agents: two')
  t.same(w.memory.agentShape, { cpus: 4, mem: 4096 })
})

t.test('Checks that min is kept without demand, and idle agents are never drained below it', async (t) => {
  const w = new World(policy({ min: 2, idleMs: 1_000 }))
  t.same(types(w.tick()), ['START 2 min'])
  w.advance(100)
  t.same(w.tick(), [], 'two starting count towards min')
  for (const i of w.instances) w.register(i.id)
  w.advance(60_000)
  t.same(w.tick(), [], 'idle for long, but at min')
  w.want(3, 1)
  t.same(types(w.tick()), ['START 1 demand'])
  const third = w.register(w.instances[2]!.id)
  w.want(0, 0)
  w.advance(2_000)
  const down = w.tick()
  t.same(types(down), ['DRAIN idle'], 'one above min goes')
  t.equal((down[0] as { agentId: string }).agentId, w.agents[0]!.id, 'the longest idle goes first')
  t.not(w.agent(third.id).state, 'draining')
})

t.test('Checks that an agent that got a task while picked as idle is undrained and kept', async (t) => {
  const w = new World(policy({ idleMs: 1_000 }))
  w.want(1, 1)
  w.tick()
  const a = w.register('i1')
  w.want(0, 0)
  w.advance(1_000 + config.cooldownMs)
  t.same(types(w.tick()), ['DRAIN idle'])
  // a launch landed just before the drain
  w.setTasks(a.id, 1)
  t.same(types(w.tick()), ['UNDRAIN busy'])
  t.equal(w.agent(a.id).state, 'active')
  w.advance(10_000)
  t.same(w.tick(), [], 'kept while busy')
  w.setTasks(a.id, 0)
  w.advance(999)
  t.same(w.tick(), [], 'its idle time starts again when the task ends')
})

t.test('Checks that a pool above max drains its least busy agents, keeps them draining while busy and stops each once empty', async (t) => {
  const w = new World(policy({ max: 3 }))
  w.want(3, 3)
  w.tick()
  for (const [n, i] of w.instances.entries()) w.setTasks(w.register(i.id).id, n + 1)
  w.want(0, 0)
  w.policy = policy({ max: 1 })
  const drains = w.tick()
  t.same(types(drains), ['DRAIN over-max', 'DRAIN over-max'])
  t.same(drains.map((d) => (d as { agentId: string }).agentId), ['agent-i1', 'agent-i2'], 'fewest tasks first')
  t.same(w.tick(), [], 'busy draining agents are not undrained nor stopped')
  w.setTasks('agent-i1', 0)
  t.same(types(w.tick()), ['STOP drained'])
  t.equal(w.instances.length, 2)
  w.setTasks('agent-i2', 0)
  t.same(types(w.tick()), ['STOP drained'])
  t.same(w.instances.map((i) => i.id), ['i3'], 'the busiest stays')
})

t.test('Checks that no idle agent is drained while the pool has unmet demand or within the cooldown after a scale-up', async (t) => {
  const w = new World(policy({ idleMs: 0, max: 5 }))
  w.want(2, 2, { cpus: 1, mem: 512 })
  t.same(types(w.tick()), ['START 2 demand'])
  w.register('i1')
  w.register('i2')
  w.want(0, 0)
  w.advance(config.cooldownMs - 1)
  t.same(w.tick(), [], 'idle (idleMs 0) but cooling down after the scale-up')
  w.advance(1)
  w.want(1, 1, { cpus: 8, mem: 512 }) // a job no agent of this shape fits: unmet
  const acts = w.tick()
  t.notOk(acts.some((a) => a.type === 'DRAIN'), 'unmet demand: no drain')
})

t.test('Checks that met demand waiting to be placed keeps an idle agent per job', async (t) => {
  const w = new World(policy({ idleMs: 0, max: 5 }))
  w.want(3, 3)
  w.tick()
  for (const i of w.instances) w.register(i.id)
  w.advance(config.cooldownMs)
  w.want(2, 0)
  t.same(types(w.tick()), ['DRAIN idle'], 'two jobs about to land: two of three idle agents stay')
})

t.test('Checks that unmet demand undrains an agent the scaler drained before starting a new one', async (t) => {
  const w = new World(policy({ idleMs: 0, max: 5 }))
  w.want(2, 2)
  w.tick()
  for (const i of w.instances) w.register(i.id)
  w.want(0, 0)
  w.advance(config.cooldownMs)
  w.setTasks('agent-i2', 1)
  t.same(types(w.tick()), ['DRAIN idle'])
  w.setTasks('agent-i2', 1)
  w.want(1, 1)
  t.same(types(w.tick()), ['UNDRAIN demand'], 'no START: the drained agent takes the job')
  t.equal(w.instances.length, 2)
})

t.test('Checks that an agent an operator drained is neither undrained nor counted as capacity, and is stopped once empty', async (t) => {
  const w = new World(policy({ max: 2 }))
  w.want(1, 1)
  w.tick()
  const a = w.register('i1', { state: 'draining', tasks: 1 })
  delete a.idleSince
  w.want(1, 1)
  t.same(types(w.tick()), ['START 1 demand'], 'the drained agent takes no work: a new one is started')
  w.setTasks(a.id, 0)
  t.same(types(w.tick()), ['STOP drained'])
})

t.test('Checks that instances whose agent never registers, is lost, or that exited are stopped', async (t) => {
  const w = new World(policy({ max: 5, min: 3 }))
  t.same(types(w.tick()), ['START 3 min'])
  w.register('i1')
  w.register('i2')
  w.advance(config.registerDeadlineMs - 1)
  t.same(w.tick(), [], 'within the register deadline')
  w.advance(1)
  t.same(types(w.tick()), ['STOP never-registered', 'START 1 min'], 'i3 never registered: replaced')
  w.agent('agent-i1').state = 'unreachable'
  w.agents = w.agents.filter((a) => a.id !== 'agent-i2') // i2's agent left the state (gone)
  t.same(w.tick(), [], 'lost agents get agentLostMs to come back')
  w.advance(config.agentLostMs)
  t.same(types(w.tick()), ['STOP agent-lost', 'STOP agent-lost', 'START 2 min'])
  w.instances[0]!.state = 'exited'
  t.same(types(w.tick()), ['STOP exited', 'START 1 min'], 'an exited instance is cleaned up and replaced')
})

t.test('Checks that an unreachable agent that comes back is kept', async (t) => {
  const w = new World(policy({ min: 1 }))
  w.tick()
  const a = w.register('i1')
  a.state = 'unreachable'
  w.advance(config.agentLostMs - 1)
  t.same(w.tick(), [])
  a.state = 'active'
  w.advance(10)
  t.same(w.tick(), [])
  a.state = 'unreachable'
  w.advance(config.agentLostMs - 1)
  t.same(w.tick(), [], 'its lost time starts again')
})

t.test('Checks that stopping instances and agents the scaler does not manage count towards max', async (t) => {
  const w = new World(policy({ max: 2 }))
  w.instances.push({ id: 'old', pool: 'ci', startedAt: w.now, state: 'stopping' })
  w.register('static', { attributes: {} })
  w.want(5, 5)
  t.same(types(w.tick()), [], 'one stopping and one unmanaged: max 2 reached')
  w.instances = []
  t.same(types(w.tick()), ['START 1 demand'])
})

t.test('Checks that min above max is read as max', async (t) => {
  const w = new World(policy({ min: 5, max: 2 }))
  t.same(types(w.tick()), ['START 2 min'])
})
