// Dynamic reservations, persistent volumes and role settings: what frameworks (ACCEPT with
// RESERVE, UNRESERVE, CREATE, DESTROY) and operators (RESERVE, UNRESERVE, SET_QUOTA,
// SET_WEIGHT) change about how resources are offered, kept in the registry KV so that a new
// leader starts from them.
//
// An agent reports its resources as configured. The master keeps, per agent, the dynamic
// reservations (each made of unreserved resources) and the volumes (each made of disk reserved
// for its role and principal) and applies them on top: the result is the agent's total as the
// allocator and the state view see it (`AgentEntry.info.resources`). Reserved resources are then
// offered only to their role's subtree (the allocator does that), volumes with their id.
import type {
  AgentCommand, AgentInfo, Offer, Operation, ReservationOperation, Resource, TaskSpec, VolumeRef,
} from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import {
  add, contains, convert, formatResources, normalize, parseResources, subtract, unreserved, volumePathProblem, withoutVolumes,
} from '../../../shared/resources/index.js'
import type { Logger } from '../../../shared/log/index.js'
import type { RoleConfig } from './allocator/types.js'
import type { AgentEntry, Cluster, FrameworkEntry } from './cluster.js'
import type { Registry } from './registry.js'
import { takeFromPool } from './launch.js'

/** What the master adds on top of an agent's own resources. */
export interface AgentReservations {
  /** Dynamic reservations, as reserved: each was made of the same amount of unreserved resources. */
  reserved: Resource[]
  /** Persistent volumes: each was made of the same amount of disk reserved for its role and principal. */
  volumes: Resource[]
}

const EMPTY: AgentReservations = { reserved: [], volumes: [] }

/** A role a reservation or a setting may name: not `*`, segments of letters, digits, `_.-` joined by `/`. */
const ROLE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/

/** Most a weight may be: weights divide shares, and beyond this they only hide typos. */
export const MAX_WEIGHT = 1_000_000

function invalid(message: string): never {
  throw new RegattaError('INVALID_OPERATION', message)
}

/**
 * Applies dynamic reservations, then volumes, to what an agent reports. What no longer fits (the
 * agent came back smaller) is left out and listed in `unfit`; it stays in the registry.
 */
export function applyReservations(base: readonly Resource[], book: AgentReservations): { resources: Resource[]; unfit: Resource[] } {
  let total = normalize(base)
  const unfit: Resource[] = []
  for (const r of normalize(book.reserved)) {
    const next = convert(total, unreserved([r]), [r])
    if (next) total = next
    else unfit.push(r)
  }
  for (const v of normalize(book.volumes)) {
    const next = convert(total, withoutVolumes([v]), [v])
    if (next) total = next
    else unfit.push(v)
  }
  return { resources: total, unfit }
}

/** Who asks for a framework's operation, and on which offers. */
export interface OperationContext {
  /** The roles the accepted offers were allocated to: what RESERVE may reserve for (as in Mesos). */
  offerRoles: readonly string[]
  /** The framework's roles: whose reservations it may give back, and volumes it may make or destroy. */
  frameworkRoles: readonly string[]
  principal?: string
}

/** One operation as a conversion of resources, with the agent's reservations after it. */
export interface ReservationStep {
  consumed: Resource[]
  converted: Resource[]
  book: AgentReservations
  /** Volume directories to make (empty) and to delete on the agent. */
  created: VolumeRef[]
  destroyed: VolumeRef[]
}

const refOf = (v: Resource): VolumeRef => ({ role: v.role!, id: v.disk!.persistence.id })

/** The principal of a reservation as the identity counts it ('' is none). */
const principalOf = (r: Resource): string | undefined => (r.principal === undefined || r.principal === '' ? undefined : r.principal)

function withPrincipal(r: Resource, principal: string | undefined): Resource {
  const { principal: _drop, ...rest } = r
  return principal === undefined ? rest : { ...rest, principal }
}

/**
 * A framework's reservation operation on the resources of its offers (`pool`), checked the way
 * Mesos checks it; pure. Throws INVALID_OPERATION naming the operation (`where`) and the field.
 */
export function stepOf(
  op: ReservationOperation, where: string, pool: readonly Resource[], book: AgentReservations, ctx: OperationContext,
): ReservationStep {
  const fwPrincipal = ctx.principal === '' ? undefined : ctx.principal
  switch (op.type) {
    case 'RESERVE': {
      const converted = normalize(op.resources.map((r, j) => {
        const at = `${where}: resources[${j}]`
        if (r.role === undefined || r.role === '*') invalid(`${at}: names no role to reserve for`)
        if (!ctx.offerRoles.includes(r.role)) invalid(`${at}: role "${r.role}" is not the role the offers were made to (${ctx.offerRoles.join(', ')})`)
        if (r.revocable) invalid(`${at}: revocable resources cannot be reserved`)
        if (r.disk) invalid(`${at}: a volume is made with CREATE, on reserved disk`)
        const p = principalOf(r)
        if (p !== undefined && p !== fwPrincipal) invalid(`${at}: principal "${p}" is not the framework's (${fwPrincipal ?? 'none'})`)
        return withPrincipal(r, fwPrincipal)
      }))
      const consumed = unreserved(converted)
      if (!contains(pool, consumed)) invalid(`${where}: the offers do not hold ${formatResources(consumed)} unreserved`)
      return { consumed, converted, book: { reserved: add(book.reserved, converted), volumes: book.volumes }, created: [], destroyed: [] }
    }
    case 'UNRESERVE': {
      const consumed = normalize(op.resources.map((r, j) => {
        const at = `${where}: resources[${j}]`
        if (r.role === undefined || r.role === '*') invalid(`${at}: names no reservation (no role)`)
        if (!ctx.frameworkRoles.includes(r.role)) invalid(`${at}: role "${r.role}" is not one of the framework's roles`)
        if (r.disk) invalid(`${at}: is a volume: DESTROY it first`)
        if (r.revocable) invalid(`${at}: revocable resources are not reserved`)
        // a reservation as the offer showed it; without a principal, the framework's own is meant
        return principalOf(r) === undefined && fwPrincipal !== undefined && !contains(book.reserved, [r]) ? withPrincipal(r, fwPrincipal) : r
      }))
      if (!contains(book.reserved, consumed)) invalid(`${where}: ${formatResources(consumed)} is not a dynamic reservation on this agent (static reservations cannot be given back)`)
      if (!contains(pool, consumed)) invalid(`${where}: the offers do not hold ${formatResources(consumed)}`)
      return { consumed, converted: unreserved(consumed), book: { reserved: subtract(book.reserved, consumed), volumes: book.volumes }, created: [], destroyed: [] }
    }
    case 'CREATE': {
      const seen = new Set<string>()
      let left = normalize(pool)
      const volumes = op.volumes.map((v, j) => {
        const at = `${where}: volumes[${j}]`
        if (v.name !== 'disk' || v.scalar === undefined || v.ranges !== undefined) invalid(`${at}: a volume is a "disk" resource with a size (scalar)`)
        if (!(v.scalar > 0)) invalid(`${at}: a volume's size must be more than 0`)
        if (!v.disk) invalid(`${at}: names no volume (disk.persistence.id and disk.containerPath)`)
        if (v.role === undefined || v.role === '*') invalid(`${at}: a volume lives on reserved disk: name its role`)
        if (!ctx.frameworkRoles.includes(v.role)) invalid(`${at}: role "${v.role}" is not one of the framework's roles`)
        if (v.revocable) invalid(`${at}: a volume cannot be revocable`)
        const problem = volumePathProblem(v.disk.containerPath)
        if (problem) invalid(`${at}: disk.containerPath "${v.disk.containerPath}" ${problem}`)
        const id = v.disk.persistence.id
        const ref = `${v.role}\u0000${id}`
        if (seen.has(ref) || book.volumes.some((x) => x.role === v.role && x.disk?.persistence.id === id)) {
          invalid(`${at}: role "${v.role}" has a volume "${id}" on this agent already`)
        }
        seen.add(ref)
        // without a principal, the volume takes that of the reserved disk it is made of
        let volume = v
        if (principalOf(v) === undefined) {
          const source = left.find((r) => r.name === 'disk' && r.role === v.role && !r.disk && !r.revocable && (r.scalar ?? 0) >= v.scalar!)
          if (source) volume = withPrincipal(v, principalOf(source))
        }
        const need = withoutVolumes([volume])
        if (!contains(left, need)) invalid(`${at}: the offers do not hold ${formatResources(need)} (reserved disk) to make it of`)
        left = subtract(left, need)
        return volume
      })
      const converted = normalize(volumes)
      return {
        consumed: withoutVolumes(converted), converted,
        book: { reserved: book.reserved, volumes: add(book.volumes, converted) },
        created: volumes.map(refOf), destroyed: [],
      }
    }
    case 'DESTROY': {
      let left = normalize(pool)
      const volumes = op.volumes.map((v, j) => {
        const at = `${where}: volumes[${j}]`
        if (!v.disk) invalid(`${at}: names no volume (disk.persistence.id)`)
        if (v.role === undefined || v.role === '*') invalid(`${at}: names no role`)
        if (!ctx.frameworkRoles.includes(v.role)) invalid(`${at}: role "${v.role}" is not one of the framework's roles`)
        // a volume is named by its role and id
        const id = v.disk.persistence.id
        const found = left.find((r) => r.role === v.role && r.disk?.persistence.id === id)
        if (!found) {
          const known = book.volumes.some((x) => x.role === v.role && x.disk?.persistence.id === id)
          invalid(`${at}: ${known ? `volume "${id}" of role "${v.role}" is in use (not in the offers)` : `role "${v.role}" has no volume "${id}" on this agent`}`)
        }
        left = subtract(left, [found])
        return found
      })
      const consumed = normalize(volumes)
      return {
        consumed, converted: withoutVolumes(consumed),
        book: { reserved: book.reserved, volumes: subtract(book.volumes, consumed) },
        created: [], destroyed: volumes.map(refOf),
      }
    }
  }
}

/** How a LAUNCH takes a task's resources from what is left of the offers. */
export type TakeForTask = (pool: readonly Resource[], spec: TaskSpec) => Resource[] | undefined

/** The master's rule (Master.accept): under the first offer's role the task fits, else the first offer's. */
export function takeForTask(offers: readonly Offer[]): TakeForTask {
  return (pool, spec) => {
    const role = offers.find((o) => takeFromPool(pool, spec.resources, o.role))?.role ?? offers[0]!.role
    return takeFromPool(pool, spec.resources, role)
  }
}

/**
 * Runs an ACCEPT's operations on a copy of its offers' resources, so that a bad reservation
 * operation is refused before anything changes. Launches are followed only for what they take.
 */
export function checkOperations(
  pool: readonly Resource[], operations: readonly Operation[], book: AgentReservations, ctx: OperationContext, take: TakeForTask,
): void {
  let p = normalize(pool)
  let b = book
  operations.forEach((op, i) => {
    if (op.type === 'LAUNCH') {
      for (const spec of op.tasks) {
        const taken = take(p, spec)
        if (taken) p = subtract(p, taken)
      }
      return
    }
    const step = stepOf(op, `ACCEPT operations[${i}] (${op.type})`, p, b, ctx)
    p = convert(p, step.consumed, step.converted) ?? p
    b = step.book
  })
}

/** An operator's reservation call (RESERVE/UNRESERVE): resources as a list or in the `--resources` syntax. */
export interface OperatorReservation {
  agentId: string
  role: string
  resources: Resource[] | string
  principal?: string
}

/** What the master lends the reservations: its state and its effects. */
export interface ReservationsHost {
  cluster(): Cluster
  registry: Registry
  log: Logger
  epoch(): number
  rescind(offerId: string): void
  scheduleAllocation(): void
  /** Sends a command to an agent (fire and forget; a failure is logged). */
  command(agentId: string, cmd: AgentCommand): void
}

export class Reservations {
  private books = new Map<string, AgentReservations>()

  constructor(private readonly host: ReservationsHost) {}

  /** After a failover: the reservations as the registry holds them. */
  reset(books: ReadonlyMap<string, AgentReservations>): void {
    this.books = new Map(books)
  }

  book(agentId: string): AgentReservations {
    return this.books.get(agentId) ?? EMPTY
  }

  /** The agent as the master keeps it: what it reports, with its reservations and volumes applied. */
  effective(info: AgentInfo): AgentInfo {
    const book = this.books.get(info.id)
    if (!book) return info
    const { resources, unfit } = applyReservations(info.resources, book)
    if (unfit.length > 0) {
      this.host.log.warn({ agentId: info.id, unfit: formatResources(unfit) }, 'reservations that no longer fit the agent are left out')
    }
    return { ...info, resources }
  }

  // ---- frameworks (ACCEPT) ----------------------------------------------------------------

  private context(f: FrameworkEntry, offers: readonly Offer[]): OperationContext {
    return {
      offerRoles: [...new Set(offers.map((o) => o.role))],
      frameworkRoles: f.info.roles,
      ...(f.info.principal ? { principal: f.info.principal } : {}),
    }
  }

  /** Refuses (INVALID_OPERATION) an ACCEPT whose reservation operations do not fit its offers, before anything is done. */
  check(f: FrameworkEntry, offers: readonly Offer[], operations: readonly Operation[]): void {
    if (!operations.some((op) => op.type !== 'LAUNCH')) return
    const agentId = offers[0]?.agentId
    if (agentId === undefined || !this.host.cluster().agents.has(agentId)) invalid(`ACCEPT: agent ${agentId ?? '?'} is gone`)
    const pool = offers.reduce<Resource[]>((acc, o) => add(acc, o.resources), [])
    checkOperations(pool, operations, this.book(agentId), this.context(f, offers), takeForTask(offers))
  }

  /**
   * Applies one (checked) operation of an ACCEPT to its offers' resources and to the agent;
   * returns what is left, and whether the change was stored in the registry (the ACCEPT is
   * answered once it is, as an operator's call is).
   */
  apply(f: FrameworkEntry, offers: readonly Offer[], op: ReservationOperation, index: number, pool: Resource[]): { pool: Resource[]; stored: Promise<boolean> } {
    const agentId = offers[0]!.agentId
    try {
      const step = stepOf(op, `ACCEPT operations[${index}] (${op.type})`, pool, this.book(agentId), this.context(f, offers))
      const stored = this.commit(agentId, step)
      this.host.log.info({ frameworkId: f.info.id, agentId, op: op.type, resources: formatResources(step.converted) }, 'reservation operation applied')
      return { pool: convert(pool, step.consumed, step.converted) ?? pool, stored }
    } catch (err) {
      // checked before: only a launch that took more than foreseen gets here (Mesos drops the operation)
      this.host.log.warn({ frameworkId: f.info.id, agentId, op: op.type, err: (err as Error).message }, 'reservation operation dropped')
      return { pool, stored: Promise.resolve(true) }
    }
  }

  /** Answers an ACCEPT once its reservation operations are stored (a new leader would not know them otherwise). */
  async acceptStored(stores: ReadonlyArray<Promise<boolean>>, agentId: string): Promise<void> {
    if (!(await Promise.all(stores)).every(Boolean)) {
      throw new RegattaError('NOT_LEADER', `ACCEPT: the reservation operations on agent ${agentId} could not be stored in the registry (this master stopped leading, or the registry refused the write); offers show what the leader knows`)
    }
  }

  /** Applies a step to the agent; the promise says whether it was stored in the registry. */
  private commit(agentId: string, step: ReservationStep): Promise<boolean> {
    this.books.set(agentId, step.book)
    const stored = this.host.registry.putReservations(agentId, step.book)
    const agent = this.host.cluster().agents.get(agentId)
    if (agent) {
      const next = convert(agent.info.resources, step.consumed, step.converted)
      if (next) agent.info = { ...agent.info, resources: next }
      else this.host.log.error({ agentId, consumed: formatResources(step.consumed) }, 'a reservation does not fit the agent\'s resources')
    }
    const epoch = this.host.epoch()
    if (step.created.length > 0) this.host.command(agentId, { type: 'CREATE_VOLUMES', epoch, volumes: step.created })
    if (step.destroyed.length > 0) this.host.command(agentId, { type: 'DESTROY_VOLUMES', epoch, volumes: step.destroyed })
    this.host.scheduleAllocation()
    return stored
  }

  /** An operator call is answered once its change is stored: a new leader would not know it otherwise. */
  private async stored(done: Promise<boolean>, what: string): Promise<{ ok: true }> {
    if (!await done) throw new RegattaError('NOT_LEADER', `${what} could not be stored in the registry; try again`)
    return { ok: true }
  }

  // ---- operators ----------------------------------------------------------------------------

  private operatorTarget(what: 'RESERVE' | 'UNRESERVE', c: OperatorReservation): { agent: AgentEntry; wanted: Resource[] } {
    if (!ROLE.test(c.role)) throw new RegattaError('INVALID_MESSAGE', `${what}: role "${c.role}" is not a role name (segments of letters, digits, "_.-" joined by "/")`)
    const agent = this.host.cluster().agents.get(c.agentId)
    if (!agent) throw new RegattaError('UNKNOWN_AGENT', `${what}: agent ${c.agentId} is not registered`)
    if (agent.state === 'recovering') invalid(`${what}: agent ${c.agentId} has not re-registered since the failover; try again shortly`)
    let wanted: Resource[]
    try {
      wanted = typeof c.resources === 'string' ? parseResources(c.resources) : normalize(c.resources)
    } catch (err) {
      throw new RegattaError('INVALID_RESOURCES', `${what}: resources: ${(err as Error).message}`)
    }
    if (wanted.length === 0) throw new RegattaError('INVALID_RESOURCES', `${what}: resources: nothing to ${what.toLowerCase()}`)
    wanted.forEach((r, j) => {
      const at = `${what}: resources[${j}] (${formatResources([r])})`
      if (r.role !== undefined && r.role !== '*' && r.role !== c.role) throw new RegattaError('INVALID_RESOURCES', `${at}: reserved for "${r.role}", not "${c.role}"`)
      if (r.disk) throw new RegattaError('INVALID_RESOURCES', `${at}: volumes are made and destroyed by frameworks`)
      if (r.revocable) throw new RegattaError('INVALID_RESOURCES', `${at}: revocable resources cannot be reserved`)
    })
    return { agent, wanted }
  }

  /** Makes sure the agent has `need` free (rescinding its offers when they hold it); throws otherwise. */
  private makeFree(agent: AgentEntry, need: readonly Resource[], what: string): void {
    const free = (): Resource[] => subtract(subtract(agent.info.resources, agent.used), agent.offered)
    if (contains(free(), need)) return
    for (const offerId of this.host.cluster().offersOfAgent(agent.info.id)) this.host.rescind(offerId)
    const now = free()
    if (!contains(now, need)) invalid(`${what}: agent ${agent.info.id} does not have ${formatResources(need)} free (free: ${formatResources(now) || 'nothing'})`)
  }

  /** Operator RESERVE: unreserved resources of the agent, free now, become reserved for the role. */
  reserve(c: OperatorReservation): Promise<{ ok: true }> {
    const { agent, wanted } = this.operatorTarget('RESERVE', c)
    const principal = c.principal === '' ? undefined : c.principal
    const converted = normalize(wanted.map((r) => withPrincipal({ ...r, role: c.role }, principal)))
    const consumed = unreserved(converted)
    this.makeFree(agent, consumed, 'RESERVE')
    const book = this.book(agent.info.id)
    const done = this.commit(agent.info.id, { consumed, converted, book: { reserved: add(book.reserved, converted), volumes: book.volumes }, created: [], destroyed: [] })
    this.host.log.info({ agentId: agent.info.id, role: c.role, resources: formatResources(converted) }, 'operator reserved resources')
    return this.stored(done, `the reservation on agent ${agent.info.id}`)
  }

  /** Operator UNRESERVE: the role's dynamic reservations on the agent (any principal, unless named), free now, become unreserved. */
  unreserve(c: OperatorReservation): Promise<{ ok: true }> {
    const { agent, wanted } = this.operatorTarget('UNRESERVE', c)
    const book = this.book(agent.info.id)
    const ofRole = book.reserved.filter((r) => r.role === c.role)
    const principal = c.principal === '' ? undefined : c.principal
    const consumed = takeFromPool(ofRole, unreserved(wanted).map((r) => withPrincipal(r, principal)), c.role)
    if (!consumed) {
      invalid(`UNRESERVE: role "${c.role}" has no dynamic reservation of ${formatResources(unreserved(wanted))} on agent ${agent.info.id}` +
        ` (it has: ${formatResources(ofRole) || 'none'})`)
    }
    this.makeFree(agent, consumed, 'UNRESERVE')
    const done = this.commit(agent.info.id, {
      consumed, converted: unreserved(consumed), book: { reserved: subtract(book.reserved, consumed), volumes: book.volumes }, created: [], destroyed: [],
    })
    this.host.log.info({ agentId: agent.info.id, role: c.role, resources: formatResources(consumed) }, 'operator unreserved resources')
    return this.stored(done, `the unreservation on agent ${agent.info.id}`)
  }

  private setRole(role: string, change: (cfg: RoleConfig) => RoleConfig, what: string): Promise<{ ok: true }> {
    if (!ROLE.test(role)) throw new RegattaError('INVALID_MESSAGE', `${what}: role "${role}" is not a role name (segments of letters, digits, "_.-" joined by "/")`)
    const cluster = this.host.cluster()
    const cfg = change({ ...(cluster.roles.get(role) ?? {}) })
    cluster.roles.set(role, cfg)
    const done = this.host.registry.putRole(role, cfg)
    this.host.log.info({ role, weight: cfg.weight ?? 1, quota: cfg.quota }, 'role settings changed')
    this.host.scheduleAllocation()
    return this.stored(done, `${what} of role ${role}`)
  }

  /** A role's quota guarantee (per scalar name), or none. */
  setQuota(role: string, quota: Record<string, number> | null): Promise<{ ok: true }> {
    if (quota) {
      for (const [name, value] of Object.entries(quota)) {
        if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(name)) throw new RegattaError('INVALID_MESSAGE', `SET_QUOTA: quota: "${name}" is not a resource name`)
        if (!Number.isFinite(value) || value < 0) throw new RegattaError('INVALID_MESSAGE', `SET_QUOTA: quota.${name}: ${value} is not a non-negative number`)
      }
    }
    return this.setRole(role, (cfg) => {
      const { quota: _old, ...rest } = cfg
      return quota && Object.keys(quota).length > 0 ? { ...rest, quota: { ...quota } } : rest
    }, 'SET_QUOTA')
  }

  /** A role's weight: its share of the cluster is divided by it (default 1). */
  setWeight(role: string, weight: number): Promise<{ ok: true }> {
    if (!Number.isFinite(weight) || weight <= 0 || weight > MAX_WEIGHT) {
      throw new RegattaError('INVALID_MESSAGE', `SET_WEIGHT: weight: ${weight} is not a number above 0 and at most ${MAX_WEIGHT}`)
    }
    return this.setRole(role, (cfg) => ({ ...cfg, weight }), 'SET_WEIGHT')
  }
}
