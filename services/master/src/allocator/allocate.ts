// One allocation pass: snapshot in, planned offers out (see README.md for the pipeline).
// Pure: it reads the snapshot, mutates only what it builds, and does no I/O.
import type { Resource } from '../../../../shared/protocol/index.js'
import { add } from '../../../../shared/resources/index.js'
import type { AllocationSnapshot, PlannedOffer } from './types.js'
import {
  EPSILON, dimensionsOf, fixed, fixedDown, isAllocatable, scalarsOf, type Dimensions,
} from './dimensions.js'
import { RoleTree, type Candidate, type FrameworkRef, type RoleNode } from './drf-sorter.js'
import { AgentPools, type Group } from './agent-pool.js'
import { QuotaBook } from './quota.js'
import { FilterIndex } from './filters.js'
import { seedFromTime, visitOrder } from './agent-order.js'

/**
 * Decides which offers to make: hierarchical DRF over roles (weights, quota guarantees first),
 * reservations only to their role's subtree, revocable resources only to frameworks that opted
 * in, refuse filters and suppression honoured, draining agents skipped.
 */
export function allocate(snapshot: AllocationSnapshot): PlannedOffer[] {
  const dims = dimensionsOf(snapshot.agents)
  const tree = new RoleTree(dims, snapshot.roles)

  const frameworkIndex = new Map<string, number>()
  for (const f of snapshot.frameworks) {
    if (frameworkIndex.has(f.id)) continue
    const ref: FrameworkRef = { id: f.id, index: frameworkIndex.size, revocable: f.revocable }
    frameworkIndex.set(f.id, ref.index)
    // Inactive frameworks and suppressed roles keep their allocation (it still counts in the
    // shares) but are not candidates for offers.
    if (!f.active) continue
    const suppressed = new Set(f.suppressedRoles)
    for (const role of f.roles) if (!suppressed.has(role)) tree.addCandidate(ref, role)
  }

  const amounts = new Float64Array(dims.names.length)
  for (const a of snapshot.allocations) {
    amounts.fill(0)
    tree.addAllocation(a.frameworkId, a.role, scalarsOf(dims, a.resources, amounts))
  }

  const pools = new AgentPools(snapshot.agents, dims, tree)
  tree.finalize()

  const quota = new QuotaBook(tree, dims)
  if (quota.active) {
    for (let a = 0; a < snapshot.agents.length; a++) {
      if (pools.draining[a]) continue
      quota.addAvailable(pools.unreserved, a * dims.names.length)
      const groups = pools.groups[a]
      if (groups) for (const g of groups) if (!g.revocable && g.role) quota.addUnallocatedReservation(g.role, g.amounts)
    }
    quota.refresh()
  }

  const filters = new FilterIndex(snapshot.filters, snapshot.now, snapshot.agents, frameworkIndex)
  const order = visitOrder(snapshot.agents.length, snapshot.seed ?? seedFromTime(snapshot.now))

  return new Pass(dims, tree, pools, quota, filters).run(order)
}

/** The quota stage hands out guarantees; the fair-share stage hands out the rest. */
type Stage = 1 | 2

class Pass {
  private readonly offers: PlannedOffer[] = []
  /** Stage-1 offers by agent index, so a stage-2 offer to the same framework and role merges into it. */
  private readonly early = new Map<number, Array<{ candidate: Candidate; offer: PlannedOffer }>>()
  private stage: Stage = 1
  /** Bumped per (agent, stage) visit; a candidate stamped with it was already handled there. */
  private stamp = 0
  private agent = 0
  private readonly k: number

  // What the current agent still has, summarised for pruning the walk.
  private unreservedLeft = false
  private openToAll = false
  private revocableLeft = false
  // Reused lists with a live length (setting an array's length to 0 frees its storage).
  private readonly reservedLeft: Group[] = []
  private reservedCount = 0

  // The offer being composed.
  private readonly take: Float64Array
  private readonly delta: Float64Array
  private takeOther = false
  private readonly chosen: Group[] = []
  private chosenCount = 0
  private built: Resource[] | null = null

  constructor(
    private readonly dims: Dimensions,
    private readonly tree: RoleTree,
    private readonly pools: AgentPools,
    private readonly quota: QuotaBook,
    private readonly filters: FilterIndex,
  ) {
    this.k = dims.names.length
    this.take = new Float64Array(this.k)
    this.delta = new Float64Array(this.k)
  }

  run(order: Int32Array): PlannedOffer[] {
    const root = this.tree.root
    if (this.quota.active && root.belowGuaranteeCount > 0) {
      this.stage = 1
      for (let i = 0; i < order.length && root.belowGuaranteeCount > 0; i++) this.visit(order[i])
    }
    this.stage = 2
    if (root.candidateCount > 0) for (let i = 0; i < order.length; i++) this.visit(order[i])
    return this.offers
  }

  private visit(a: number): void {
    if (this.pools.draining[a]) return
    this.stamp++
    this.agent = a
    this.look()
    const root = this.tree.root
    if (this.stage === 1) {
      while (this.unreservedLeft && root.belowGuaranteeCount > 0) {
        const c = this.walk(root)
        if (!c) break
        this.commit(c)
      }
    } else {
      while (this.unreservedLeft || this.revocableLeft || this.reservedCount > 0) {
        const c = this.walk(root)
        if (!c) break
        this.commit(c)
      }
    }
  }

  /** Summarises what the current agent has left (after each offer). */
  private look(): void {
    const { k, dims, quota, pools } = this
    const o = this.agent * k
    let unreserved = false
    let anyCap = false
    let cpus = 0
    let mem = 0
    for (let d = 0; d < k; d++) {
      const v = pools.unreserved[o + d]
      if (v <= EPSILON) continue
      unreserved = true
      const cap = quota.active ? Math.min(v, Math.max(0, quota.surplus(d))) : v
      if (cap <= EPSILON) continue
      anyCap = true
      if (d === dims.cpus) cpus = cap
      else if (d === dims.mem) mem = cap
    }
    const other = pools.other[this.agent] !== undefined && pools.otherTaken[this.agent] === 0
    this.unreservedLeft = unreserved || other
    // Whether any candidate at all, quota or not, could be offered something from the unreserved part.
    this.openToAll = this.stage === 2 && isAllocatable(dims, cpus, mem, anyCap || other)
    this.revocableLeft = false
    this.reservedCount = 0
    const groups = pools.groups[this.agent]
    if (groups) {
      for (const g of groups) {
        if (g.taken) continue
        if (g.revocable) this.revocableLeft = true
        else this.reservedLeft[this.reservedCount++] = g
      }
    }
  }

  /**
   * The lowest-share candidate (hierarchically: lowest role at each level, then lowest framework
   * in the role) that gets a worthwhile offer from the current agent, with that offer composed.
   */
  private walk(node: RoleNode): Candidate | null {
    const entries = node.entries
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]
      const n = e.node
      if (e.isSelf) {
        if (!this.roleMayUse(n)) continue
        const cands = n.candidates
        for (let j = 0; j < cands.length; j++) {
          const c = cands[j]
          if (c.stamp === this.stamp) continue
          // Handled here either way: offers only shrink within a visit, so a candidate that gets
          // nothing worthwhile now will not later.
          c.stamp = this.stamp
          if (this.compose(c)) return c
        }
      } else if (this.subtreeMayUse(n)) {
        const c = this.walk(n)
        if (c) return c
      }
    }
    return null
  }

  /** Cheap, conservative: could some candidate in n's subtree get anything from this agent? */
  private subtreeMayUse(n: RoleNode): boolean {
    if (this.stage === 1) return n.belowGuaranteeCount > 0
    if (this.openToAll) return true
    if (this.revocableLeft && n.revocableCount > 0) return true
    if (this.unreservedLeft && n.belowGuaranteeCount > 0) return true
    for (let i = 0; i < this.reservedCount; i++) {
      const r = this.reservedLeft[i].role as RoleNode
      if (r.isAncestorOrSelfOf(n) || n.isAncestorOrSelfOf(r)) return true
    }
    return false
  }

  /** Cheap, conservative: could some candidate of exactly role n get anything from this agent? */
  private roleMayUse(n: RoleNode): boolean {
    if (this.stage === 1) {
      if (!n.belowGuarantee) return false
      const o = this.agent * this.k
      const ro = n.index * this.k
      for (let d = 0; d < this.k; d++) {
        if (this.quota.remaining[ro + d] > EPSILON && this.pools.unreserved[o + d] > EPSILON) return true
      }
      return false
    }
    if (this.openToAll) return true
    if (this.revocableLeft && n.selfRevocableCount > 0) return true
    if (this.unreservedLeft && n.belowGuarantee) return true
    for (let i = 0; i < this.reservedCount; i++) if ((this.reservedLeft[i].role as RoleNode).isAncestorOrSelfOf(n)) return true
    return false
  }

  /**
   * Composes the offer candidate c would get from the current agent into `take`, `takeOther`
   * and `chosen`; false when it is not worth making or a refuse filter covers it.
   */
  private compose(c: Candidate): boolean {
    const { k, quota, pools, stage, dims } = this
    const a = this.agent
    const o = a * k
    const ro = c.role.index * k
    const take = this.take
    let any = false
    let guaranteed = false
    for (let d = 0; d < k; d++) {
      const have = pools.unreserved[o + d]
      if (have <= EPSILON) { take[d] = 0; continue }
      let cap = have
      if (quota.active) {
        const rem = quota.remaining[ro + d] // NaN: no guarantee of this role covers d
        if (stage === 1) {
          if (rem === rem) {
            // Quota stage: only what brings the role up to its guarantee (scalars are divisible).
            cap = Math.min(cap, Math.max(0, rem))
            if (cap > EPSILON) guaranteed = true
          } else {
            // What the role has no guarantee on is offered along, but never from others' headroom.
            cap = Math.min(cap, Math.max(0, quota.surplus(d)))
          }
        } else {
          // Fair-share stage: never into the headroom of other roles' unmet guarantees (a role
          // below its own guarantee may still take up to it).
          cap = Math.min(cap, Math.max(0, quota.surplus(d) + (rem > 0 ? rem : 0)))
        }
        if (cap < have) cap = fixedDown(cap)
      }
      if (cap <= EPSILON) { take[d] = 0; continue }
      take[d] = cap
      any = true
    }
    if (stage === 1 && !guaranteed) return false
    this.takeOther = pools.other[a] !== undefined && pools.otherTaken[a] === 0
    if (this.takeOther) any = true
    let cpus = dims.cpus >= 0 ? take[dims.cpus] : 0
    let mem = dims.mem >= 0 ? take[dims.mem] : 0
    const chosen = this.chosen
    let chosenCount = 0
    const groups = pools.groups[a]
    if (groups) {
      for (const g of groups) {
        if (g.taken) continue
        // Revocable resources only to frameworks that opted in, and never toward a guarantee.
        if (g.revocable && (stage === 1 || !c.framework.revocable)) continue
        // Reserved resources only to their role and its descendants.
        if (g.role && !g.role.isAncestorOrSelfOf(c.role)) continue
        chosen[chosenCount++] = g
        any = true
        if (dims.cpus >= 0) cpus += g.amounts[dims.cpus]
        if (dims.mem >= 0) mem += g.amounts[dims.mem]
      }
    }
    this.chosenCount = chosenCount
    if (!isAllocatable(dims, cpus, mem, any)) return false
    this.built = null
    if (this.filters.has(a, c.framework.index)) {
      const rs = this.build()
      if (this.filters.refuses(a, c.framework.index, rs)) return false
      this.built = rs
    }
    return true
  }

  /** The composed offer as resources (pieces offered whole are the snapshot's own objects). */
  private build(): Resource[] {
    const { k, take } = this
    const names = this.dims.names
    const piece = this.takeOther ? this.pools.other[this.agent] : undefined
    const many = Array.isArray(piece) ? (piece as readonly Resource[]) : null
    const one = many === null ? (piece as Resource | undefined) : undefined
    let n = many !== null ? many.length : one !== undefined ? 1 : 0
    for (let d = 0; d < k; d++) if (fixed(take[d]) > 0) n++
    for (let i = 0; i < this.chosenCount; i++) n += this.chosen[i].resources.length
    // Sized up front: pushing onto an empty array reserves room for 17.
    const out = new Array<Resource>(n)
    let j = 0
    const o = this.agent * k
    for (let d = 0; d < k; d++) {
      const v = fixed(take[d])
      if (v <= 0) continue
      // All of a single untouched snapshot resource: offer that object itself.
      const src = this.pools.source[o + d]
      out[j++] = src !== undefined && src.scalar === take[d] && this.pools.unreserved[o + d] === take[d] ? src : { name: names[d], scalar: v }
    }
    if (many !== null) for (let i = 0; i < many.length; i++) out[j++] = many[i]
    else if (one !== undefined) out[j++] = one
    for (let i = 0; i < this.chosenCount; i++) {
      const rs = this.chosen[i].resources
      for (let x = 0; x < rs.length; x++) out[j++] = rs[x]
    }
    return out
  }

  /** Makes the composed offer: takes it off the agent, counts it as allocated, re-sorts. */
  private commit(c: Candidate): void {
    const { k, pools, quota } = this
    const a = this.agent
    const resources = this.built ?? this.build()
    const o = a * k
    const delta = this.delta
    for (let d = 0; d < k; d++) {
      const left = pools.unreserved[o + d] - this.take[d]
      pools.unreserved[o + d] = left > EPSILON ? left : 0
      delta[d] = this.take[d]
    }
    if (this.takeOther) pools.otherTaken[a] = 1
    for (let i = 0; i < this.chosenCount; i++) {
      const g = this.chosen[i]
      g.taken = true
      if (g.revocable) continue
      // Revocable resources are not counted in shares (the totals they would divide by are the
      // non-revocable ones); reserved ones are.
      for (let d = 0; d < k; d++) delta[d] += g.amounts[d]
      if (quota.active) quota.reservationOffered(g.role as RoleNode, g.amounts)
    }
    this.tree.charge(c, delta)
    if (quota.active) {
      quota.unreservedOffered(this.take)
      if (quota.touchesQuota[c.role.index]) quota.refresh()
    }
    this.record(c, resources)
    this.look()
  }

  private record(c: Candidate, resources: Resource[]): void {
    if (this.stage === 2 && this.early.size > 0) {
      const earlier = this.early.get(this.agent)?.find((e) => e.candidate === c)
      if (earlier) {
        earlier.offer.resources = add(earlier.offer.resources, resources)
        return
      }
    }
    const offer = { frameworkId: c.framework.id, role: c.role.name, agentId: this.pools.agents[this.agent].id, resources }
    this.offers.push(offer)
    if (this.stage === 1) {
      const list = this.early.get(this.agent)
      if (list) list.push({ candidate: c, offer })
      else this.early.set(this.agent, [{ candidate: c, offer }])
    }
  }
}
