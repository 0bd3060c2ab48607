// Quota guarantees and headroom. A role's quota is a guarantee on the resources of its whole
// subtree; what a role consumes toward it is its subtree's allocation plus its unallocated
// reservations (as Mesos counts them). The unmet part of every guarantee is headroom: unreserved
// resources held back from fair sharing so the guarantee can still be met.
import { EPSILON, type Dimensions } from './dimensions.js'
import type { RoleNode, RoleTree } from './drf-sorter.js'

export class QuotaBook {
  /** Whether any role has a quota: without one, nothing here limits an offer. */
  readonly active: boolean
  /** Unreserved, unallocated, non-revocable resources on agents that take offers. */
  readonly availableHeadroom: Float64Array
  /** What the unmet guarantees still need (summed over top-level subtrees). */
  readonly requiredHeadroom: Float64Array
  /** Per node (index * k + d): reservations for the subtree not allocated to anyone. */
  private readonly unallocatedReserved: Float64Array
  /** Per node: what the subtree's guarantees still need. */
  private readonly need: Float64Array
  /**
   * Per role (index * k + d): how much more the role may take toward guarantees, the least
   * unmet amount over the quotas of the role and its ancestors; NaN where none applies.
   */
  readonly remaining: Float64Array
  /** Nodes that have a quota or one below them, children before parents. */
  private readonly relevant: RoleNode[] = []
  /** Roles with a quota on themselves or an ancestor, with those quota nodes. */
  private readonly chains: Array<{ role: RoleNode; quotas: RoleNode[] }> = []
  /** Whether a role's allocation moves some guarantee's consumption. */
  readonly touchesQuota: Uint8Array
  /**
   * Whether some guarantee is still unmet. Within a pass consumption only grows (an offer adds
   * allocation; an offered reservation moves from unallocated to allocated), so once every
   * guarantee is met it stays met and `refresh` has nothing left to do.
   */
  unmet = false
  private readonly k: number

  constructor(private readonly tree: RoleTree, dims: Dimensions) {
    this.k = dims.names.length
    const n = tree.nodes.length
    this.availableHeadroom = new Float64Array(this.k)
    this.requiredHeadroom = new Float64Array(this.k)
    this.unallocatedReserved = new Float64Array(n * this.k)
    this.need = new Float64Array(n * this.k)
    this.remaining = new Float64Array(n * this.k).fill(NaN)
    this.touchesQuota = new Uint8Array(n)
    const hasQuotaBelow = new Uint8Array(n)
    for (let i = n - 1; i >= 0; i--) {
      const node = tree.nodes[i]
      if (node.quota) hasQuotaBelow[i] = 1
      if (hasQuotaBelow[i] && node.parent) hasQuotaBelow[node.parent.index] = 1
    }
    for (let i = n - 1; i >= 1; i--) if (hasQuotaBelow[i]) this.relevant.push(tree.nodes[i])
    // `relevant` must list children before parents: nodes are created parents first, so
    // walking indexes downward gives that.
    for (const node of tree.nodes) {
      const quotas: RoleNode[] = []
      for (let m: RoleNode | null = node; m; m = m.parent) {
        if (m.quota) quotas.push(m)
        if (hasQuotaBelow[m.index]) this.touchesQuota[node.index] = 1
      }
      if (quotas.length > 0) this.chains.push({ role: node, quotas })
    }
    this.active = this.relevant.length > 0
  }

  /** Counts unreserved free resources of an agent that takes offers (before `refresh`). */
  addAvailable(amounts: Float64Array, offset: number): void {
    for (let d = 0; d < this.k; d++) this.availableHeadroom[d] += amounts[offset + d]
  }

  /** Counts reservations for `role` that nobody holds (before `refresh`). */
  addUnallocatedReservation(role: RoleNode, amounts: ArrayLike<number>): void {
    for (let m: RoleNode | null = role; m; m = m.parent) {
      const o = m.index * this.k
      for (let d = 0; d < this.k; d++) this.unallocatedReserved[o + d] += amounts[d]
    }
  }

  /** Records offered unreserved amounts: they are no longer headroom. */
  unreservedOffered(amounts: Float64Array): void {
    for (let d = 0; d < this.k; d++) this.availableHeadroom[d] -= amounts[d]
  }

  /** Records an offered reservation: no longer unallocated (the tree now counts it as allocation). */
  reservationOffered(role: RoleNode, amounts: ArrayLike<number>): void {
    for (let m: RoleNode | null = role; m; m = m.parent) {
      const o = m.index * this.k
      for (let d = 0; d < this.k; d++) this.unallocatedReserved[o + d] -= amounts[d]
    }
  }

  /** Headroom left for fair sharing in dimension d (negative when guarantees are overcommitted). */
  surplus(d: number): number {
    return this.availableHeadroom[d] - this.requiredHeadroom[d]
  }

  /**
   * Recomputes the unmet guarantees from the tree's allocations (call after `tree.charge` for a
   * role that `touchesQuota`): required headroom, what each role may still take, and which roles
   * are below a guarantee.
   */
  refresh(): void {
    if (!this.active) return
    if (this.refreshed && !this.unmet) return
    this.refreshed = true
    const k = this.k
    this.requiredHeadroom.fill(0)
    for (const node of this.relevant) {
      const o = node.index * k
      for (let d = 0; d < k; d++) {
        let sumChildren = 0
        for (const c of node.children) sumChildren += this.need[c.index * k + d]
        const q = node.quota ? node.quota[d] : NaN
        const own = Number.isNaN(q) ? 0 : q - node.subAlloc[d] - this.unallocatedReserved[o + d]
        // A parent's guarantee covers its children's: the subtree needs the larger of the two.
        this.need[o + d] = Math.max(0, own, sumChildren)
      }
      if (node.parent === this.tree.root) for (let d = 0; d < k; d++) this.requiredHeadroom[d] += this.need[o + d]
    }
    for (const { role, quotas } of this.chains) {
      const o = role.index * k
      let below = false
      for (let d = 0; d < k; d++) {
        let rem = NaN
        for (const m of quotas) {
          const q = (m.quota as Float64Array)[d]
          if (Number.isNaN(q)) continue
          const left = q - m.subAlloc[d] - this.unallocatedReserved[m.index * k + d]
          if (Number.isNaN(rem) || left < rem) rem = left
        }
        this.remaining[o + d] = rem
        if (rem > EPSILON) below = true
      }
      role.belowGuarantee = below
    }
    let unmet = false
    for (let d = 0; d < k; d++) if (this.requiredHeadroom[d] > EPSILON) unmet = true
    for (const { role } of this.chains) if (role.belowGuarantee) unmet = true
    this.unmet = unmet
    this.tree.recountBelowGuarantee()
  }

  private refreshed = false
}
