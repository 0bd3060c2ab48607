// The master's in-memory cluster state: agents, frameworks, tasks, offers, roles and filters,
// with the bookkeeping of what is used and offered on each agent. No I/O here.
import type {
  AgentDisk, AgentInfo, Amounts, ClusterState, Orphans, FrameworkInfo, Offer, Resource, ResourceRequest, TaskInfo, TaskState, TaskStatus,
} from '../../../shared/protocol/index.js'
import { isTerminal } from '../../../shared/protocol/index.js'
import { add, normalize, subtract, totals } from '../../../shared/resources/index.js'
import type { AllocationSnapshot, RefuseFilter, RoleConfig } from './allocator/types.js'
import { poolDemand, type DemandRequest } from './demand.js'
import { holdFilters, type AgentHold } from './task-deadlines.js'

export interface AgentEntry {
  info: AgentInfo
  /** `recovering`: known from the registry after a failover, not re-registered yet. */
  state: 'active' | 'unreachable' | 'recovering'
  /** Maintenance: no new offers from it (persisted in the registry). */
  draining: boolean
  /** When the drain began (the start of its unavailability in inverse offers). */
  drainingSince?: number
  registeredAt: number
  lastHeartbeatAt: number
  /** Revocable resources the agent's estimator reports (oversubscription). */
  revocable: Resource[]
  used: Resource[]
  offered: Resource[]
  taskKeys: Set<string>
  unreachableSince?: number
  idleSince: number
  /** The agent's reaper counters and sandbox disk, as its last heartbeat said. */
  orphans?: Orphans
  disk?: AgentDisk
}

export interface FrameworkEntry {
  info: FrameworkInfo & { id: string }
  active: boolean
  registeredAt: number
  lastSeenAt: number
  /** Roles the framework suppressed; `*all*` holds when it suppressed every role. */
  suppressed: Set<string>
  offerIds: Set<string>
  taskKeys: Set<string>
  disconnectedAt?: number
  /** What the framework waits for (its last REQUEST); kept while it is inactive, dropped with it. */
  demand?: ResourceRequest[]
}

export interface TaskEntry {
  info: TaskInfo
  state: TaskState
  latest: TaskStatus
  updatedAt: number
  /** When this master launched the task, or first heard of it (after a failover): its start deadline counts from here. */
  launchedAt: number
  /** Whether the resources are still counted as used on the agent. */
  holdsResources: boolean
}

export interface OfferEntry {
  offer: Offer
  createdAt: number
}

export const taskKey = (frameworkId: string, taskId: string): string => `${frameworkId}\u0000${taskId}`

export class Cluster {
  readonly agents = new Map<string, AgentEntry>()
  readonly frameworks = new Map<string, FrameworkEntry>()
  readonly tasks = new Map<string, TaskEntry>()
  readonly offers = new Map<string, OfferEntry>()
  readonly roles = new Map<string, RoleConfig>()
  filters: RefuseFilter[] = []
  /** Agents not offered to a framework for a while: a task of it timed out starting there (task-deadlines.ts). */
  holds: AgentHold[] = []
  /** What each framework holds per role (tasks plus offers), kept up to date for the allocator. */
  private readonly allocated = new Map<string, { frameworkId: string; role: string; resources: Resource[] }>()
  /** Terminal, acknowledged tasks kept for the state view (bounded). */
  readonly completed: TaskEntry[] = []
  completedLimit = 1000

  private allocate(frameworkId: string, role: string, rs: Resource[]): void {
    const k = `${frameworkId}\u0000${role}`
    const cur = this.allocated.get(k)
    if (cur) cur.resources = add(cur.resources, rs)
    else this.allocated.set(k, { frameworkId, role, resources: normalize(rs) })
  }

  private unallocate(frameworkId: string, role: string, rs: Resource[]): void {
    const k = `${frameworkId}\u0000${role}`
    const cur = this.allocated.get(k)
    if (!cur) return
    cur.resources = subtract(cur.resources, rs)
    if (cur.resources.length === 0) this.allocated.delete(k)
  }

  addTask(info: TaskInfo, status: TaskStatus, now: number): TaskEntry {
    const key = taskKey(info.frameworkId, info.taskId)
    const entry: TaskEntry = { info, state: status.state, latest: status, updatedAt: now, launchedAt: now, holdsResources: !isTerminal(status.state) }
    this.tasks.set(key, entry)
    const agent = this.agents.get(info.agentId)
    if (agent) {
      agent.taskKeys.add(key)
      if (entry.holdsResources) agent.used = add(agent.used, info.resources)
    }
    if (entry.holdsResources) this.allocate(info.frameworkId, info.role, info.resources)
    this.frameworks.get(info.frameworkId)?.taskKeys.add(key)
    return entry
  }

  /** Applies a status to a known task; returns false when it is stale (the task ended already). */
  applyStatus(entry: TaskEntry, status: TaskStatus, now: number): boolean {
    if (isTerminal(entry.state) && entry.state !== status.state) return false
    entry.state = status.state
    entry.latest = status
    entry.updatedAt = now
    if (isTerminal(status.state)) this.releaseTask(entry, now)
    return true
  }

  /** Gives a task's resources back to its agent (once). */
  releaseTask(entry: TaskEntry, now: number): void {
    if (!entry.holdsResources) return
    entry.holdsResources = false
    this.unallocate(entry.info.frameworkId, entry.info.role, entry.info.resources)
    const agent = this.agents.get(entry.info.agentId)
    if (!agent) return
    agent.used = subtract(agent.used, entry.info.resources)
    if (![...agent.taskKeys].some((k) => this.tasks.get(k)?.holdsResources)) agent.idleSince = now
  }

  /** Forgets a task (terminal and acknowledged), keeping it in the completed list. */
  forgetTask(key: string): void {
    const entry = this.tasks.get(key)
    if (!entry) return
    this.tasks.delete(key)
    this.agents.get(entry.info.agentId)?.taskKeys.delete(key)
    this.frameworks.get(entry.info.frameworkId)?.taskKeys.delete(key)
    this.completed.push(entry)
    if (this.completed.length > this.completedLimit) this.completed.splice(0, this.completed.length - this.completedLimit)
  }

  /**
   * Whether the task is known to have ended (terminal here, or forgotten once its end was
   * acknowledged): an agent that comes back still running it (removed as gone meanwhile, or
   * with a launch that came after the start deadline) must kill it, since its framework has
   * launched it again elsewhere.
   */
  hasEnded(key: string): boolean {
    const t = this.tasks.get(key)
    if (t) return isTerminal(t.state)
    return this.completed.some((c) => taskKey(c.info.frameworkId, c.info.taskId) === key)
  }

  available(agent: AgentEntry): Resource[] {
    return subtract(subtract(add(agent.info.resources, agent.revocable), agent.used), agent.offered)
  }

  addOffer(offer: Offer, now: number): void {
    this.offers.set(offer.id, { offer, createdAt: now })
    this.allocate(offer.frameworkId, offer.role, offer.resources)
    const agent = this.agents.get(offer.agentId)
    if (agent) agent.offered = add(agent.offered, offer.resources)
    this.frameworks.get(offer.frameworkId)?.offerIds.add(offer.id)
  }

  /** Removes an offer, giving its resources back to the agent; returns it. */
  removeOffer(offerId: string): Offer | undefined {
    const entry = this.offers.get(offerId)
    if (!entry) return undefined
    this.offers.delete(offerId)
    this.unallocate(entry.offer.frameworkId, entry.offer.role, entry.offer.resources)
    const agent = this.agents.get(entry.offer.agentId)
    if (agent) agent.offered = subtract(agent.offered, entry.offer.resources)
    this.frameworks.get(entry.offer.frameworkId)?.offerIds.delete(offerId)
    return entry.offer
  }

  /** Demand per pool: the frameworks' requests against the free resources of active, non-draining agents. */
  demand(): ClusterState['demand'] {
    const requests: DemandRequest[] = []
    for (const f of this.frameworks.values()) {
      for (const r of f.demand ?? []) {
        requests.push({ pool: r.pool, roles: r.role ? [r.role] : f.info.roles, resources: r.resources, count: r.count })
      }
    }
    if (requests.length === 0) return []
    const agents = [...this.agents.values()].filter((a) => a.state === 'active' && !a.draining)
      .map((a) => ({ pool: a.info.pool, free: subtract(a.info.resources, a.used) }))
    return poolDemand(requests, agents)
  }

  offersOfAgent(agentId: string): string[] {
    return [...this.offers.values()].filter((o) => o.offer.agentId === agentId).map((o) => o.offer.id)
  }

  /** The allocator's input: what each agent has free and what each framework holds, per role. */
  snapshot(now: number): AllocationSnapshot {
    this.filters = this.filters.filter((f) => f.until > now)
    if (this.holds.length > 0) this.holds = this.holds.filter((h) => h.until > now)
    return {
      now,
      agents: [...this.agents.values()].filter((a) => a.state === 'active').map((a) => ({
        id: a.info.id,
        hostname: a.info.hostname,
        pool: a.info.pool,
        attributes: a.info.attributes,
        total: a.info.resources,
        available: this.available(a),
        draining: a.draining,
      })),
      frameworks: [...this.frameworks.values()].map((f) => ({
        id: f.info.id,
        roles: f.info.roles,
        revocable: f.info.revocable === true,
        suppressedRoles: f.suppressed.has('*all*') ? f.info.roles : [...f.suppressed],
        active: f.active,
      })),
      roles: Object.fromEntries(this.roles),
      allocations: [...this.allocated.values()],
      filters: this.holds.length > 0 ? [...this.filters, ...holdFilters(this.holds, this, now)] : this.filters,
    }
  }

  view(masterId: string, leader: ClusterState['leader'], startedAt: number, now: number): ClusterState {
    const amounts = (rs: Resource[]): Amounts => totals(rs)
    let total: Resource[] = []
    let used: Resource[] = []
    let offered: Resource[] = []
    const roleAlloc = new Map<string, Resource[]>()
    const orphans = { found: 0, reaped: 0 }
    const agents = [...this.agents.values()].map((a) => {
      orphans.found += a.orphans?.found ?? 0
      orphans.reaped += a.orphans?.reaped ?? 0
      total = add(total, a.info.resources)
      used = add(used, a.used)
      offered = add(offered, a.offered)
      const running = [...a.taskKeys].filter((k) => this.tasks.get(k)?.holdsResources).length
      return {
        id: a.info.id,
        hostname: a.info.hostname,
        pool: a.info.pool,
        attributes: a.info.attributes,
        containerizer: a.info.containerizer,
        state: a.state !== 'active' ? a.state : a.draining ? 'draining' as const : 'active' as const,
        registeredAt: a.registeredAt,
        lastHeartbeatAt: a.lastHeartbeatAt,
        resources: a.info.resources,
        total: amounts(a.info.resources),
        used: amounts(a.used),
        offered: amounts(a.offered),
        tasks: running,
        ...(running === 0 ? { idleSince: a.idleSince } : {}),
        ...(a.orphans ? { orphans: a.orphans } : {}),
        ...(a.disk ? { disk: a.disk } : {}),
      }
    })
    const tasks = [...this.tasks.values(), ...this.completed.slice(-200)].map((t) => {
      if (t.holdsResources) roleAlloc.set(t.info.role, add(roleAlloc.get(t.info.role) ?? [], t.info.resources))
      return {
        taskId: t.info.taskId,
        ...(t.info.name ? { name: t.info.name } : {}),
        frameworkId: t.info.frameworkId,
        agentId: t.info.agentId,
        role: t.info.role,
        state: t.state,
        resources: amounts(t.info.resources),
        updatedAt: t.updatedAt,
      }
    })
    const roleNames = new Set<string>([...this.roles.keys(), ...roleAlloc.keys()])
    for (const f of this.frameworks.values()) for (const r of f.info.roles) roleNames.add(r)
    return {
      masterId,
      leader,
      startedAt,
      now,
      total: amounts(total),
      used: amounts(used),
      offered: amounts(offered),
      agents,
      frameworks: [...this.frameworks.values()].map((f) => {
        let fused: Resource[] = []
        for (const k of f.taskKeys) {
          const t = this.tasks.get(k)
          if (t?.holdsResources) fused = add(fused, t.info.resources)
        }
        return {
          id: f.info.id,
          name: f.info.name,
          roles: f.info.roles,
          active: f.active,
          revocable: f.info.revocable === true,
          registeredAt: f.registeredAt,
          tasks: [...f.taskKeys].filter((k) => this.tasks.get(k)?.holdsResources).length,
          offers: f.offerIds.size,
          used: amounts(fused),
        }
      }),
      tasks,
      offers: [...this.offers.values()].map((o) => ({
        id: o.offer.id,
        frameworkId: o.offer.frameworkId,
        agentId: o.offer.agentId,
        role: o.offer.role,
        resources: amounts(o.offer.resources),
        createdAt: o.createdAt,
      })),
      roles: [...roleNames].sort().map((name) => {
        const cfg = this.roles.get(name)
        return {
          name,
          weight: cfg?.weight ?? 1,
          ...(cfg?.quota ? { quota: cfg.quota } : {}),
          allocated: amounts(roleAlloc.get(name) ?? []),
        }
      }),
      demand: this.demand(),
      orphans,
    }
  }
}
