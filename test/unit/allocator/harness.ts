// A test harness for the allocator (in the spirit of Nomad's scheduler Harness): it holds a
// cluster state, builds snapshots from it, and plays the frameworks' part (launch, decline), so
// allocation passes run with no master and no NATS.
import { allocate, type AllocationSnapshot, type AllocatorFramework, type PlannedOffer, type RefuseFilter, type RoleConfig } from '../../../services/master/src/allocator/index.js'
import { add, contains, normalize, parseResources, scalar, subtract, type Resource } from '../../../shared/resources/index.js'

export interface HarnessAgent {
  id: string
  total: Resource[]
  /** Revocable resources the agent advertises (oversubscription), in addition to its total. */
  revocable: Resource[]
  draining: boolean
}

export interface Task {
  frameworkId: string
  role: string
  agentId: string
  resources: Resource[]
}

export class Harness {
  now = 1_000_000
  seed: number | undefined
  readonly agents = new Map<string, HarnessAgent>()
  readonly frameworks = new Map<string, AllocatorFramework>()
  readonly roles: Record<string, RoleConfig> = {}
  readonly tasks: Task[] = []
  filters: RefuseFilter[] = []

  addAgent(id: string, resources: string, opts: { revocable?: string; draining?: boolean } = {}): HarnessAgent {
    const agent = { id, total: parseResources(resources), revocable: markRevocable(parseResources(opts.revocable ?? '')), draining: opts.draining ?? false }
    this.agents.set(id, agent)
    return agent
  }

  addFramework(id: string, roles: string[], opts: Partial<Omit<AllocatorFramework, 'id' | 'roles'>> = {}): AllocatorFramework {
    const f: AllocatorFramework = { id, roles, revocable: false, suppressedRoles: [], active: true, ...opts }
    this.frameworks.set(id, f)
    return f
  }

  setRole(name: string, config: RoleConfig): void {
    this.roles[name] = config
  }

  /** What the agent has that no task holds. */
  available(agentId: string): Resource[] {
    const agent = this.agents.get(agentId)
    if (!agent) throw new Error(`no agent ${agentId}`)
    let free = add(agent.total, agent.revocable)
    for (const t of this.tasks) if (t.agentId === agentId) free = subtract(free, t.resources)
    return free
  }

  snapshot(): AllocationSnapshot {
    const alloc = new Map<string, { frameworkId: string; role: string; resources: Resource[] }>()
    for (const t of this.tasks) {
      const key = `${t.frameworkId}\u0000${t.role}`
      const cur = alloc.get(key)
      if (cur) cur.resources = add(cur.resources, t.resources)
      else alloc.set(key, { frameworkId: t.frameworkId, role: t.role, resources: t.resources })
    }
    return {
      now: this.now,
      seed: this.seed,
      agents: [...this.agents.values()].map((a) => ({
        id: a.id, hostname: `${a.id}.example`, pool: 'default', attributes: {},
        total: a.total, available: this.available(a.id), draining: a.draining,
      })),
      frameworks: [...this.frameworks.values()],
      roles: this.roles,
      allocations: [...alloc.values()],
      filters: this.filters,
    }
  }

  allocate(): PlannedOffer[] {
    return allocate(this.snapshot())
  }

  /** The framework launches a task with these resources out of the offer (which must hold them). */
  launch(offer: PlannedOffer, resources: Resource[]): void {
    if (!contains(offer.resources, resources)) throw new Error('task does not fit the offer')
    this.tasks.push({ frameworkId: offer.frameworkId, role: offer.role, agentId: offer.agentId, resources: normalize(resources) })
  }

  /** DECLINE with a refuse filter (Mesos's default is 5 s). */
  decline(offer: PlannedOffer, refuseSeconds = 5): void {
    this.filters.push({ frameworkId: offer.frameworkId, agentId: offer.agentId, resources: offer.resources, until: this.now + refuseSeconds * 1000 })
  }

  tasksOf(frameworkId: string): Task[] {
    return this.tasks.filter((t) => t.frameworkId === frameworkId)
  }

  /** The sum of one scalar over what the framework's tasks hold. */
  held(frameworkId: string, name: string): number {
    return this.tasksOf(frameworkId).reduce((n, t) => n + scalar(t.resources, name), 0)
  }
}

/**
 * Takes a task of `size` out of an unreserved-or-reserved offer if it fits: scalar by scalar,
 * reserved resources first, the way a framework would use an offer.
 */
export function fit(offer: readonly Resource[], size: Record<string, number>): Resource[] | undefined {
  const out: Resource[] = []
  for (const [name, amount] of Object.entries(size)) {
    let left = amount
    const pieces = offer.filter((r) => r.name === name && r.scalar !== undefined)
      .sort((a, b) => Number(a.role === undefined) - Number(b.role === undefined))
    for (const p of pieces) {
      if (left <= 0) break
      const take = Math.min(left, p.scalar ?? 0)
      if (take <= 0) continue
      const piece: Resource = { name, scalar: take }
      if (p.role !== undefined) piece.role = p.role
      if (p.revocable) piece.revocable = true
      out.push(piece)
      left = Math.round((left - take) * 1000) / 1000
    }
    if (left > 0) return undefined
  }
  return out
}

function markRevocable(rs: Resource[]): Resource[] {
  return rs.map((r) => ({ ...r, revocable: true }))
}

/** The sum of one scalar over some offers. */
export function offered(offers: readonly PlannedOffer[], name: string, pred: (o: PlannedOffer) => boolean = () => true): number {
  return Math.round(offers.filter(pred).reduce((n, o) => n + scalar(o.resources, name), 0) * 1000) / 1000
}
