// Hierarchical DRF (Mesos's HierarchicalDRFSorter): the role tree with every subtree's
// allocation kept as a numeric vector, siblings kept sorted by weighted dominant share, and the
// (framework, role) candidates of each role kept sorted by their own share in that role.
// Offers only ever add to allocations during a pass, so a share only grows and re-sorting is
// one step of insertion sort to the right instead of a sort from scratch.
import type { RoleConfig } from './types.js'
import { dominantShare, type Dimensions } from './dimensions.js'
import { sink, sortAll, type Sorted } from '../../../../shared/drf/index.js'

/** A framework as the sorter sees it. */
export interface FrameworkRef {
  readonly id: string
  readonly index: number
  readonly revocable: boolean
}

/** One entry of a role's sorted list: a child role (its subtree) or the role's own frameworks. */
export class Entry implements Sorted {
  share = 0
  pos = 0
  constructor(readonly name: string, readonly node: RoleNode, readonly isSelf: boolean) {}
}

/** A framework subscribed (active, not suppressed) in one role: what the sorter hands offers to. */
export class Candidate implements Sorted {
  share = 0
  pos = 0
  /** The id of the last (agent, stage) visit that handled this candidate; see Pass.stamp. */
  stamp = 0
  readonly alloc: Float64Array
  readonly name: string
  constructor(readonly framework: FrameworkRef, readonly role: RoleNode, dims: number) {
    this.alloc = new Float64Array(dims)
    this.name = framework.id
  }
}

export class RoleNode {
  readonly children: RoleNode[] = []
  /** Sorted children with candidates in their subtree, plus `self` when the role has candidates. */
  readonly entries: Entry[] = []
  /** Sorted candidates of exactly this role. */
  readonly candidates: Candidate[] = []
  /** Allocation of frameworks in exactly this role, and of the whole subtree. */
  readonly selfAlloc: Float64Array
  readonly subAlloc: Float64Array
  /** The ancestors' indexes by depth, ending with this node's own (anc[depth] === index). */
  readonly anc: readonly number[]
  readonly depth: number
  weight = 1
  quota: Float64Array | null = null
  /** This node's entry in its parent's list, and the entry of its own candidates. */
  entry: Entry | null = null
  selfEntry: Entry | null = null
  /** Candidates in the subtree, and those among them that take revocable resources. */
  candidateCount = 0
  revocableCount = 0
  /** Candidates of exactly this role that take revocable resources. */
  selfRevocableCount = 0
  /** The role is below a quota guarantee (of its own or an ancestor's); see QuotaBook. */
  belowGuarantee = false
  /** Candidates in the subtree whose role is below a guarantee. */
  belowGuaranteeCount = 0

  constructor(readonly index: number, readonly name: string, readonly parent: RoleNode | null, dims: number) {
    this.selfAlloc = new Float64Array(dims)
    this.subAlloc = new Float64Array(dims)
    this.anc = parent ? [...parent.anc, index] : [index]
    this.depth = this.anc.length - 1
  }

  /** Whether this node is `other` or one of its ancestors. */
  isAncestorOrSelfOf(other: RoleNode): boolean {
    return this.depth <= other.depth && other.anc[this.depth] === this.index
  }
}

export class RoleTree {
  readonly root: RoleNode
  readonly nodes: RoleNode[] = []
  private readonly byName = new Map<string, RoleNode>()
  /** Candidates by framework id (a framework has a handful of roles: scanned linearly). */
  private readonly candidatesOf = new Map<string, Candidate[]>()
  private readonly k: number

  constructor(private readonly dims: Dimensions, private readonly config: Readonly<Record<string, RoleConfig>>) {
    this.k = dims.names.length
    this.root = new RoleNode(0, '', null, this.k)
    this.nodes.push(this.root)
    for (const name of Object.keys(config)) this.node(name)
  }

  /** The node of a role, created (with its ancestors) on first use. */
  node(name: string): RoleNode {
    const found = this.byName.get(name)
    if (found) return found
    const cut = name.lastIndexOf('/')
    const parent = cut > 0 ? this.node(name.slice(0, cut)) : this.root
    const node = new RoleNode(this.nodes.length, name, parent, this.k)
    const cfg = this.config[name]
    const w = cfg?.weight
    // Mesos refuses non-positive weights; here they fall back to the default.
    if (w !== undefined && Number.isFinite(w) && w > 0) node.weight = w
    if (cfg?.quota) {
      const q = new Float64Array(this.k).fill(NaN)
      let any = false
      for (const [res, amount] of Object.entries(cfg.quota)) {
        const d = this.dims.index.get(res)
        if (d !== undefined && Number.isFinite(amount) && amount > 0) { q[d] = amount; any = true }
      }
      if (any) node.quota = q
    }
    parent.children.push(node)
    this.nodes.push(node)
    this.byName.set(name, node)
    return node
  }

  addCandidate(framework: FrameworkRef, role: string): void {
    if (this.candidate(framework.id, role)) return
    const node = this.node(role)
    const c = new Candidate(framework, node, this.k)
    node.candidates.push(c)
    const list = this.candidatesOf.get(framework.id)
    if (list) list.push(c)
    else this.candidatesOf.set(framework.id, [c])
  }

  private candidate(frameworkId: string, role: string): Candidate | undefined {
    const list = this.candidatesOf.get(frameworkId)
    if (list) for (const c of list) if (c.role.name === role) return c
    return undefined
  }

  /** Counts what a framework holds in a role (before `finalize`). */
  addAllocation(frameworkId: string, role: string, amounts: Float64Array): void {
    const node = this.node(role)
    const c = this.candidate(frameworkId, role)
    if (c) addInto(c.alloc, amounts)
    addInto(node.selfAlloc, amounts)
    for (let n: RoleNode | null = node; n; n = n.parent) addInto(n.subAlloc, amounts)
  }

  /** Computes every share and sorts every list; call once after adding candidates and allocations. */
  finalize(): void {
    const inv = this.dims.inverse
    // Children come after their parents in `nodes`, so a reverse walk counts bottom-up.
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i]
      for (const c of n.candidates) {
        c.share = dominantShare(c.alloc, inv)
        if (c.framework.revocable) n.selfRevocableCount++
      }
      sortAll(n.candidates)
      n.candidateCount += n.candidates.length
      n.revocableCount += n.selfRevocableCount
      if (n.candidates.length > 0) {
        n.selfEntry = new Entry(n.name, n, true)
        n.selfEntry.share = dominantShare(n.selfAlloc, inv) / n.weight
        n.entries.push(n.selfEntry)
      }
      sortAll(n.entries)
      const p = n.parent
      if (p && n.candidateCount > 0) {
        p.candidateCount += n.candidateCount
        p.revocableCount += n.revocableCount
        n.entry = new Entry(n.name, n, false)
        n.entry.share = dominantShare(n.subAlloc, inv) / n.weight
        p.entries.push(n.entry)
      }
    }
  }

  /** Counts an offer's non-revocable amounts as allocated to the candidate, and re-sorts. */
  charge(c: Candidate, delta: Float64Array): void {
    const inv = this.dims.inverse
    addInto(c.alloc, delta)
    c.share = dominantShare(c.alloc, inv)
    const role = c.role
    sink(role.candidates, c)
    addInto(role.selfAlloc, delta)
    const self = role.selfEntry as Entry
    self.share = dominantShare(role.selfAlloc, inv) / role.weight
    sink(role.entries, self)
    for (let n = role; n.parent; n = n.parent) {
      addInto(n.subAlloc, delta)
      const e = n.entry as Entry
      e.share = dominantShare(n.subAlloc, inv) / n.weight
      sink(n.parent.entries, e)
    }
    addInto(this.root.subAlloc, delta)
  }

  /** Recounts candidates below a guarantee after QuotaBook changed the roles' flags. */
  recountBelowGuarantee(): void {
    for (const n of this.nodes) n.belowGuaranteeCount = 0
    for (const n of this.nodes) {
      if (!n.belowGuarantee || n.candidates.length === 0) continue
      for (let m: RoleNode | null = n; m; m = m.parent) m.belowGuaranteeCount += n.candidates.length
    }
  }
}

export function addInto(into: Float64Array, v: Float64Array): void {
  for (let k = 0; k < into.length; k++) into[k] += v[k]
}
