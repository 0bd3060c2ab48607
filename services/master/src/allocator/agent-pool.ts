// What each agent still has to offer during a pass, split the way the allocator decides on it:
// unreserved scalars as a numeric vector (they can be cut to a quota or to headroom), other
// unreserved pieces (ranges such as ports) offered whole, and reserved or revocable groups,
// each usable only by its role's subtree and offered whole.
import type { Resource } from '../../../../shared/protocol/index.js'
import { normalize } from '../../../../shared/resources/index.js'
import type { AllocatorAgent } from './types.js'
import { EPSILON, type Dimensions } from './dimensions.js'
import type { RoleNode, RoleTree } from './drf-sorter.js'

/** Reserved (non-revocable) or revocable resources of one agent for one role (null: unreserved revocable). */
export interface Group {
  readonly role: RoleNode | null
  readonly revocable: boolean
  resources: Resource[]
  readonly amounts: Float64Array
  taken: boolean
}

export class AgentPools {
  /** Unreserved non-revocable scalars not yet offered, agent a at a * k. */
  readonly unreserved: Float64Array
  /** Unreserved non-revocable pieces that are not counted scalars (ports...), per agent. */
  readonly other: Array<Resource[] | undefined>
  readonly otherTaken: Uint8Array
  readonly groups: Array<Group[] | undefined>
  readonly draining: Uint8Array
  private readonly k: number

  constructor(readonly agents: readonly AllocatorAgent[], dims: Dimensions, tree: RoleTree) {
    const k = (this.k = dims.names.length)
    const n = agents.length
    this.unreserved = new Float64Array(n * k)
    this.other = new Array<Resource[] | undefined>(n)
    this.otherTaken = new Uint8Array(n)
    this.groups = new Array<Group[] | undefined>(n)
    this.draining = new Uint8Array(n)
    for (let a = 0; a < n; a++) {
      const agent = agents[a]
      // A draining agent takes no new work: nothing of it is offered or counted as headroom.
      if (agent.draining) { this.draining[a] = 1; continue }
      const o = a * k
      for (const r of agent.available) {
        const reserved = r.role !== undefined && r.role !== '*'
        if (!r.revocable && !reserved) {
          const d = r.ranges === undefined && r.scalar !== undefined ? dims.index.get(r.name) : undefined
          if (d !== undefined) this.unreserved[o + d] += r.scalar as number
          else if (r.ranges === undefined ? (r.scalar ?? 0) > EPSILON : r.ranges.length > 0) (this.other[a] ??= []).push(r)
          continue
        }
        const role = reserved ? tree.node(r.role as string) : null
        const list = (this.groups[a] ??= [])
        let g = list.find((x) => x.role === role && x.revocable === !!r.revocable)
        if (!g) {
          g = { role, revocable: !!r.revocable, resources: [], amounts: new Float64Array(k), taken: false }
          list.push(g)
        }
        g.resources.push(r)
        if (r.ranges === undefined && r.scalar !== undefined) {
          const d2 = dims.index.get(r.name)
          if (d2 !== undefined) g.amounts[d2] += r.scalar
        }
      }
      const other = this.other[a]
      if (other && other.length > 1) this.other[a] = normalize(other)
      const groups = this.groups[a]
      if (groups) for (const g of groups) if (g.resources.length > 1) g.resources = normalize(g.resources)
    }
  }

  /** Whether agent a has any unreserved non-revocable resource left. */
  hasUnreserved(a: number): boolean {
    const o = a * this.k
    for (let d = 0; d < this.k; d++) if (this.unreserved[o + d] > EPSILON) return true
    return this.other[a] !== undefined && this.otherTaken[a] === 0
  }
}

/** A copy of a resource for an offer, so offers share nothing with the snapshot. */
export function copyResource(r: Resource): Resource {
  const out: Resource = { ...r }
  if (r.ranges) out.ranges = r.ranges.map((x) => ({ begin: x.begin, end: x.end }))
  if (out.role === '*') delete out.role
  return out
}
