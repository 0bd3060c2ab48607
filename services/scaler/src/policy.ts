// The scaling policy: for one pool, from its policy, the provider's instances, the pool's agents
// and demand (as the master reports them) and what the scaler did before, the actions to take
// now. Pure: data in, decisions out; time is the `now` it is given.
//
//   instances + agents --match by attribute instance:<id>--> starting | serving | retiring | lost
//        |  lost too long, never registered, exited, drained and empty  -> STOP
//        |  unmet demand  -> UNDRAIN our drained agents, then START (capacity still starting counts)
//        |  below min     -> START;  above max -> DRAIN (idle first)
//        '  idle > idleMs, no unmet demand, no scale-up within cooldown -> DRAIN (down to min)
//
// Scale-down never stops a busy agent: it drains first (the master makes no new offers from it)
// and stops the instance only once the drained agent runs no task. An agent drained for being
// idle that got a task in the meantime is undrained and kept. An agent drained by anyone else
// (an operator) is stopped once empty too: draining is how an agent is retired.
import type { AgentView, Amounts, PoolDemand } from '../../../shared/protocol/index.js'
import type { PoolPolicy } from '../../../shared/protocol/pool.js'
import { INSTANCE_ATTRIBUTE, type Instance } from './providers/types.js'

export interface PolicyConfig {
  /** An instance whose agent has not registered this long after its start is stopped. */
  registerDeadlineMs: number
  /** An instance whose agent has been unreachable (or left the cluster state) this long is stopped. */
  agentLostMs: number
  /** After a pool scaled up, none of its agents is drained for being idle for this long. */
  cooldownMs: number
}

export const defaultPolicyConfig: PolicyConfig = {
  registerDeadlineMs: 60_000,
  agentLostMs: 30_000,
  cooldownMs: 10_000,
}

export type DrainReason = 'idle' | 'over-max'

/** What the scaler remembers about a pool between decisions (returned updated by `decide`). */
export interface PoolMemory {
  lastScaleUpAt: number | null
  /** Agents this scaler drained, by instance id. */
  draining: Record<string, { agentId: string; since: number; reason: DrainReason }>
  /** Instances whose agent has registered: instance id -> agent id. */
  registered: Record<string, string>
  /** When an instance's registered agent was first seen unreachable or missing. */
  lostSince: Record<string, number>
  /** The scalars one agent of the pool has (to size a scale-up), as last seen. */
  agentShape?: Amounts
}

export function emptyMemory(): PoolMemory {
  return { lastScaleUpAt: null, draining: {}, registered: {}, lostSince: {} }
}

export interface PoolInput {
  /** The scaler's clock (instances' start times). */
  now: number
  /** The master's clock when it made the state (agents' idle times); default `now`. */
  masterNow?: number
  policy: PoolPolicy
  /** The provider's instances of this pool. */
  instances: readonly Instance[]
  /** The cluster state's agents of this pool. */
  agents: readonly AgentView[]
  /** The pool's demand, when it has any. */
  demand?: PoolDemand
  /** The scalars one instance's agent offers, when the provider fixes them. */
  instanceResources?: Amounts
  memory: PoolMemory
  config: PolicyConfig
}

export type StopReason = 'drained' | 'never-registered' | 'agent-lost' | 'exited'

export type Action =
  | { type: 'START'; pool: string; count: number; reason: 'demand' | 'min' }
  | { type: 'STOP'; pool: string; instanceId: string; agentId?: string; reason: StopReason }
  | { type: 'DRAIN'; pool: string; instanceId: string; agentId: string; reason: DrainReason }
  | { type: 'UNDRAIN'; pool: string; instanceId: string; agentId: string; reason: 'busy' | 'demand' | 'min' }

/** Counts after the decision's actions, for logs and `regatta pool ls`. */
export interface PoolSummary {
  /** Everything that holds a machine: instances not yet gone (stopping ones too) and agents the scaler does not manage. */
  size: number
  /** Instances whose agent has not registered yet. */
  starting: number
  /** Registered agents taking work (not draining). */
  serving: number
  /** Agents draining, and instances stopping: on their way out. */
  leaving: number
  /** Agents of the pool no instance of the provider accounts for (started by hand, or by another provider). */
  unmanaged: number
  /** Agents the unmet demand needs, by the policy's reckoning. */
  neededForDemand: number
}

export interface PoolDecision {
  actions: Action[]
  memory: PoolMemory
  summary: PoolSummary
}

const EPSILON = 1e-9

/**
 * How many agents of `shape` the unmet demand needs: the unmet jobs, packed as many to an
 * agent as their average shape allows. Without a known shape, one agent a job.
 */
export function agentsFor(unmet: Amounts, unmetJobs: number, shape?: Amounts): number {
  if (unmetJobs <= 0) return 0
  if (!shape) return unmetJobs
  let perAgent = Infinity
  for (const [name, amount] of Object.entries(unmet)) {
    const capacity = shape[name] ?? 0
    if (!(amount > 0) || !(capacity > 0)) continue
    perAgent = Math.min(perAgent, Math.floor(capacity / (amount / unmetJobs) + EPSILON))
  }
  if (!Number.isFinite(perAgent) || perAgent < 1) perAgent = 1
  return Math.ceil(unmetJobs / perAgent)
}

/** The instance id an agent carries (`instance:<id>`), if any. */
export function instanceOf(agent: AgentView): string | undefined {
  const id = agent.attributes[INSTANCE_ATTRIBUTE]
  return typeof id === 'string' && id.length > 0 ? id : undefined
}

function cloneMemory(m: PoolMemory): PoolMemory {
  return {
    lastScaleUpAt: m.lastScaleUpAt,
    draining: { ...m.draining },
    registered: { ...m.registered },
    lostSince: { ...m.lostSince },
    ...(m.agentShape ? { agentShape: { ...m.agentShape } } : {}),
  }
}

interface Placed {
  instance: Instance
  agent: AgentView
}

export function decide(input: PoolInput): PoolDecision {
  const { now, policy, config } = input
  const pool = policy.pool
  const max = policy.max
  const min = Math.min(policy.min, max)
  const memory = cloneMemory(input.memory)
  const actions: Action[] = []

  // ---- match instances and agents ------------------------------------------------------------
  const agentOf = new Map<string, AgentView>()
  for (const a of input.agents) {
    const id = instanceOf(a)
    if (!id) continue
    const seen = agentOf.get(id)
    // an instance whose agent re-registered under a new id: the live one wins
    if (!seen || (seen.state === 'unreachable' && a.state !== 'unreachable') || (seen.state === a.state && a.registeredAt > seen.registeredAt)) agentOf.set(id, a)
  }
  const listed = new Set(input.instances.map((i) => i.id))
  for (const table of [memory.draining, memory.registered, memory.lostSince]) {
    for (const id of Object.keys(table)) if (!listed.has(id)) delete table[id]
  }
  const unmanaged = input.agents.filter((a) => a.state !== 'unreachable' && !listed.has(instanceOf(a) ?? ''))
  const shape = input.instanceResources ?? input.agents.find((a) => a.state === 'active')?.total ?? memory.agentShape
  if (shape) memory.agentShape = { ...shape }

  const starting: Instance[] = []
  const serving: Placed[] = []
  /** Draining and still running tasks. */
  const retiring: Placed[] = []
  /** Drained and running nothing: stopped below, unless unmet demand takes one of ours back first. */
  const drained: Placed[] = []
  /** Registered once, now unreachable or missing: not capacity, still a machine. */
  let lost = 0
  /** Instances on their way out: stopping already, or stopped now. */
  let stopping = 0
  const stop = (instance: Instance, reason: StopReason, agentId?: string): void => {
    actions.push({ type: 'STOP', pool, instanceId: instance.id, reason, ...(agentId ? { agentId } : {}) })
    delete memory.draining[instance.id]
    delete memory.lostSince[instance.id]
    // an exited instance holds nothing any more; the others do until they are gone
    if (reason !== 'exited') stopping++
  }

  for (const instance of input.instances) {
    if (instance.state === 'stopping') {
      stopping++
      continue
    }
    if (instance.state === 'exited') {
      stop(instance, 'exited', agentOf.get(instance.id)?.id)
      continue
    }
    const agent = agentOf.get(instance.id)
    if (!agent || agent.state === 'unreachable') {
      if (agent || memory.registered[instance.id]) {
        const since = memory.lostSince[instance.id] ??= now
        if (now - since >= config.agentLostMs) stop(instance, 'agent-lost', agent?.id ?? memory.registered[instance.id])
        else lost++
      } else if (now - instance.startedAt >= config.registerDeadlineMs) {
        stop(instance, 'never-registered')
      } else {
        starting.push(instance)
      }
      continue
    }
    memory.registered[instance.id] = agent.id
    delete memory.lostSince[instance.id]
    if (agent.state === 'draining') {
      const ours = memory.draining[instance.id]
      if (agent.tasks === 0) {
        drained.push({ instance, agent })
      } else if (ours?.reason === 'idle') {
        // it got a task between being picked as idle and the drain: it is busy, keep it
        actions.push({ type: 'UNDRAIN', pool, instanceId: instance.id, agentId: agent.id, reason: 'busy' })
        delete memory.draining[instance.id]
        serving.push({ instance, agent })
      } else {
        retiring.push({ instance, agent })
      }
      continue
    }
    // active (or recovering after a master failover): a drain we asked for did not take
    delete memory.draining[instance.id]
    serving.push({ instance, agent })
  }

  // what will hold a machine once this tick's actions are done
  const unmanagedServing = unmanaged.filter((a) => a.state !== 'draining').length
  let size = starting.length + serving.length + retiring.length + drained.length + lost + stopping + unmanaged.length
  /** What counts towards `min`: agents taking work, or about to. */
  let staying = starting.length + serving.length + lost + unmanagedServing
  let scaledUp = false

  /** Takes back agents this scaler drained (the empty ones first), rather than starting new ones; never above max. */
  const undrainOurs = (want: number, reason: 'demand' | 'min'): number => {
    let done = 0
    for (const list of [drained, retiring]) {
      for (const r of [...list]) {
        if (done >= want || staying >= max) return done
        if (!memory.draining[r.instance.id]) continue // drained by an operator: leave it
        actions.push({ type: 'UNDRAIN', pool, instanceId: r.instance.id, agentId: r.agent.id, reason })
        delete memory.draining[r.instance.id]
        list.splice(list.indexOf(r), 1)
        serving.push(r)
        staying++
        done++
      }
    }
    return done
  }
  const start = (want: number, reason: 'demand' | 'min'): void => {
    const count = Math.min(want, max - size)
    if (count <= 0) return
    actions.push({ type: 'START', pool, count, reason })
    size += count
    staying += count
    scaledUp = true
  }

  // ---- scale up: unmet demand, then min ------------------------------------------------------
  const unmetJobs = input.demand?.unmetJobs ?? 0
  const needed = agentsFor(input.demand?.unmet ?? {}, unmetJobs, shape)
  // agents still starting are capacity already coming: never start twice for the same demand
  let extra = needed - starting.length
  if (extra > 0) {
    const undrained = undrainOurs(extra, 'demand')
    if (undrained > 0) scaledUp = true
    extra -= undrained
    start(extra, 'demand')
  }
  if (staying < min) {
    undrainOurs(min - staying, 'min')
    if (staying < min) start(min - staying, 'min')
  }

  // drained, empty and not taken back: stop them
  for (const d of drained) stop(d.instance, 'drained', d.agent.id)

  // ---- scale down: above max (busy agents too, drained so their tasks finish) -----------------
  let excess = size - stopping - retiring.length - max
  if (excess > 0) {
    const victims = [...serving]
      .filter((s) => s.agent.state === 'active')
      .sort((a, b) => a.agent.tasks - b.agent.tasks || (a.agent.idleSince ?? now) - (b.agent.idleSince ?? now))
    for (const v of victims) {
      if (excess <= 0) break
      actions.push({ type: 'DRAIN', pool, instanceId: v.instance.id, agentId: v.agent.id, reason: 'over-max' })
      memory.draining[v.instance.id] = { agentId: v.agent.id, since: now, reason: 'over-max' }
      serving.splice(serving.indexOf(v), 1)
      retiring.push(v)
      staying--
      excess--
    }
  }

  // ---- scale down: idle agents, down to min ---------------------------------------------------
  if (scaledUp) memory.lastScaleUpAt = now
  const coolingDown = memory.lastScaleUpAt !== null && now - memory.lastScaleUpAt < config.cooldownMs
  if (unmetJobs === 0 && !coolingDown) {
    const masterNow = input.masterNow ?? now
    const idle = serving
      .filter((s) => s.agent.state === 'active' && s.agent.tasks === 0 && s.agent.idleSince !== undefined && masterNow - s.agent.idleSince >= policy.idleMs)
      .sort((a, b) => a.agent.idleSince! - b.agent.idleSince!)
    // demand that fits on the pool right now is about to be placed: keep an idle agent for each such job
    const reserve = Math.max(0, (input.demand?.jobs ?? 0) - unmetJobs)
    const drainable = Math.min(idle.length - reserve, staying - min)
    for (const v of idle.slice(0, Math.max(0, drainable))) {
      actions.push({ type: 'DRAIN', pool, instanceId: v.instance.id, agentId: v.agent.id, reason: 'idle' })
      memory.draining[v.instance.id] = { agentId: v.agent.id, since: now, reason: 'idle' }
      serving.splice(serving.indexOf(v), 1)
      retiring.push(v)
      staying--
    }
  }

  return {
    actions,
    memory,
    summary: {
      size,
      starting: starting.length + actions.filter((a) => a.type === 'START').reduce((n, a) => n + (a as { count: number }).count, 0),
      serving: serving.length + unmanagedServing,
      leaving: retiring.length + stopping + (unmanaged.length - unmanagedServing),
      unmanaged: unmanaged.length,
      neededForDemand: needed,
    },
  }
}
