// What each agent still has to offer during a pass, split the way the allocator decides on it:
// unreserved scalars as a numeric vector (they can be cut to a quota or to headroom), other
// unreserved pieces (ranges such as ports) offered whole, and reserved or revocable groups,
// each usable only by its role's subtree and offered whole.
//
// Resources are values: nothing here mutates the snapshot, and pieces offered whole are put in
// offers as they are (shared with the snapshot) rather than copied; a pass over 10,000 agents
// makes a lot of garbage otherwise.
import type { Resource } from '../../../../shared/protocol/index.js'
import { normalize } from '../../../../shared/resources/index.js'
import type { AllocatorAgent } from './types.js'
import { EPSILON, type Dimensions } from './dimensions.js'
import type { RoleNode, RoleTree } from './drf-sorter.js'

/** Reserved (non-revocable) or revocable resources of one agent for one role (null: unreserved revocable). */
export interface Group {
  readonly role: RoleNode | null
  readonly revocable: boolean
  readonly resources: readonly Resource[]
  /** The group's scalars by dimension. */
  readonly amounts: readonly number[]
  taken: boolean
}

export class AgentPools {
  /** Unreserved non-revocable scalars not yet offered, agent a at a * k. */
  readonly unreserved: Float64Array
  /**
   * The snapshot's resource behind unreserved[a * k + d] when a single one is (else undefined),
   * so an offer of all of it can reuse that object instead of making a new one.
   */
  readonly source: Array<Resource | undefined>
  /**
   * Unreserved non-revocable pieces that are not counted scalars (ports...), per agent: the
   * resource itself when there is one (the usual case, no list to allocate), else a list.
   */
  readonly other: Array<Resource | readonly Resource[] | undefined>
  readonly otherTaken: Uint8Array
  readonly groups: Array<readonly Group[] | undefined>
  readonly draining: Uint8Array

  constructor(readonly agents: readonly AllocatorAgent[], dims: Dimensions, tree: RoleTree) {
    const k = dims.names.length
    const names = dims.names
    const n = agents.length
    this.unreserved = new Float64Array(n * k)
    this.source = new Array<Resource | undefined>(n * k).fill(undefined)
    const seen = new Uint8Array(k)
    this.other = new Array<Resource | readonly Resource[] | undefined>(n).fill(undefined)
    this.otherTaken = new Uint8Array(n)
    this.groups = new Array<readonly Group[] | undefined>(n).fill(undefined)
    this.draining = new Uint8Array(n)
    // Scratch lists reused across agents; each agent keeps exact-size copies.
    const other: Resource[] = []
    const special: Resource[] = []
    for (let a = 0; a < n; a++) {
      const agent = agents[a]
      // A draining agent takes no new work: nothing of it is offered or counted as headroom.
      if (agent.draining) { this.draining[a] = 1; continue }
      const o = a * k
      let otherCount = 0
      let specialCount = 0
      seen.fill(0)
      const available = agent.available
      for (let i = 0; i < available.length; i++) {
        const r = available[i]
        if (r.revocable || (r.role !== undefined && r.role !== '*')) { special[specialCount++] = r; continue }
        if (r.ranges === undefined) {
          const d = dimensionOf(names, r.name)
          if (d >= 0) {
            this.unreserved[o + d] += r.scalar ?? 0
            this.source[o + d] = seen[d] === 0 && r.role === undefined && r.principal === undefined ? r : undefined
            seen[d] = 1
            continue
          }
          if ((r.scalar ?? 0) <= EPSILON) continue
        } else if (r.ranges.length === 0) continue
        other[otherCount++] = r
      }
      if (otherCount === 1) this.other[a] = other[0]
      else if (otherCount > 1) {
        const list = other.slice(0, otherCount)
        this.other[a] = hasRepeatedName(list) ? normalize(list) : list
      }
      if (specialCount > 0) this.groups[a] = groupsOf(special, specialCount, names, tree)
    }
  }
}

/** The index of a dimension by name: a short linear scan beats a Map lookup for 3-5 names. */
function dimensionOf(names: readonly string[], name: string): number {
  for (let d = 0; d < names.length; d++) if (names[d] === name) return d
  return -1
}

/** Splits an agent's reserved and revocable resources into groups by (role, revocable). */
function groupsOf(special: readonly Resource[], count: number, names: readonly string[], tree: RoleTree): Group[] {
  const groups: Group[] = []
  for (let i = 0; i < count; i++) {
    const r = special[i]
    const roleName = r.role !== undefined && r.role !== '*' ? r.role : null
    const revocable = r.revocable === true
    let seen = false
    for (const g of groups) if ((g.role?.name ?? null) === roleName && g.revocable === revocable) seen = true
    if (seen) continue
    let size = 0
    for (let j = i; j < count; j++) if (sameGroup(special[j], roleName, revocable)) size++
    // Sized up front: pushing onto an empty array reserves room for 17.
    const resources = new Array<Resource>(size)
    const amounts = new Array<number>(names.length).fill(0)
    let at = 0
    for (let j = i; j < count; j++) {
      const s = special[j]
      if (!sameGroup(s, roleName, revocable)) continue
      resources[at++] = s
      if (s.ranges === undefined && s.scalar !== undefined) {
        const d = dimensionOf(names, s.name)
        if (d >= 0) amounts[d] += s.scalar
      }
    }
    groups.push({
      role: roleName === null ? null : tree.node(roleName),
      revocable,
      resources: hasRepeatedName(resources) ? normalize(resources) : resources,
      amounts,
      taken: false,
    })
  }
  return groups
}

function sameGroup(r: Resource, role: string | null, revocable: boolean): boolean {
  return (r.role !== undefined && r.role !== '*' ? r.role : null) === role && (r.revocable === true) === revocable
}

/** Whether two resources share a name (then they may need merging); lists here are short. */
function hasRepeatedName(rs: readonly Resource[]): boolean {
  for (let i = 1; i < rs.length; i++) for (let j = 0; j < i; j++) if (rs[i].name === rs[j].name) return true
  return false
}
