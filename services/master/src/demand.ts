// Demand per pool: what frameworks wait for (REQUEST) and the part of it the free resources of
// the pool's active, non-draining agents cannot fit. Pure: the scaler reads the result from the
// cluster state to decide how many agents to start.
import type { PoolDemand, Resource } from '../../../shared/protocol/index.js'
import { ANY_ROLE } from '../../../shared/resources/index.js'

/** One request of one framework, with the roles its tasks may take resources under. */
export interface DemandRequest {
  pool: string
  /** Roles whose reserved resources the tasks may use (besides unreserved ones). */
  roles: readonly string[]
  /** Scalars of one task, by name. */
  resources: Readonly<Record<string, number>>
  count: number
}

/** An agent that can take new work: its pool and its free, non-revocable resources. */
export interface DemandAgent {
  pool: string
  /** What is not used by tasks (resources out in offers count as free: they can take this work). */
  free: readonly Resource[]
}

/** A scalar piece of an agent's free resources: unreserved (`role` undefined) or reserved for a role. */
interface Piece {
  name: string
  role: string | undefined
  amount: number
}

const EPSILON = 1e-9
const round = (x: number): number => Math.round(x * 1000) / 1000

function piecesOf(free: readonly Resource[]): Piece[] {
  const out: Piece[] = []
  for (const r of free) {
    if (r.revocable || r.scalar === undefined || r.scalar <= 0) continue
    out.push({ name: r.name, role: r.role === undefined || r.role === ANY_ROLE ? undefined : r.role, amount: r.scalar })
  }
  // reserved pieces first: a task takes what is set aside for its role before the shared rest
  return out.sort((a, b) => (a.role === undefined ? 1 : 0) - (b.role === undefined ? 1 : 0))
}

const usable = (p: Piece, roles: readonly string[]): boolean =>
  p.role === undefined || roles.some((r) => r === p.role || r.startsWith(`${p.role}/`))

/** How many tasks of this shape the pieces hold (at most `max`); a shape that asks for nothing fits `max` times. */
function fitCount(pieces: readonly Piece[], shape: Readonly<Record<string, number>>, roles: readonly string[], max: number): number {
  let n = max
  for (const [name, need] of Object.entries(shape)) {
    if (!(need > 0)) continue
    let have = 0
    for (const p of pieces) if (p.name === name && usable(p, roles)) have += p.amount
    n = Math.min(n, Math.floor((have + EPSILON) / need))
  }
  return n
}

/** Takes `times` tasks of this shape from the pieces (they fit: see fitCount), reserved pieces first. */
function take(pieces: Piece[], shape: Readonly<Record<string, number>>, roles: readonly string[], times: number): void {
  for (const [name, each] of Object.entries(shape)) {
    if (!(each > 0)) continue
    let need = round(each * times)
    for (const p of pieces) {
      if (need <= EPSILON) break
      if (p.name !== name || !usable(p, roles)) continue
      const t = Math.min(p.amount, need)
      p.amount = round(p.amount - t)
      need = round(need - t)
    }
  }
}

function addTo(acc: Record<string, number>, shape: Readonly<Record<string, number>>, times: number): void {
  for (const [name, v] of Object.entries(shape)) if (v > 0) acc[name] = round((acc[name] ?? 0) + v * times)
}

/**
 * Sums the requests per pool and places them, first fit and greedily in the order given, on the
 * free resources of the pool's agents; what fits nowhere is unmet. One entry per pool that has
 * any demand, sorted by pool name.
 */
export function poolDemand(requests: readonly DemandRequest[], agents: readonly DemandAgent[]): PoolDemand[] {
  const byPool = new Map<string, Piece[][]>()
  for (const a of agents) {
    const list = byPool.get(a.pool) ?? []
    list.push(piecesOf(a.free))
    byPool.set(a.pool, list)
  }
  const out = new Map<string, PoolDemand>()
  for (const req of requests) {
    if (req.count <= 0) continue
    let d = out.get(req.pool)
    if (!d) {
      d = { pool: req.pool, requested: {}, unmet: {}, jobs: 0, unmetJobs: 0 }
      out.set(req.pool, d)
    }
    d.jobs += req.count
    addTo(d.requested, req.resources, req.count)
    const pool = byPool.get(req.pool) ?? []
    // first fit, task by task, is the same as filling each agent in turn with as many as it holds
    let placed = 0
    for (const pieces of pool) {
      if (placed >= req.count) break
      const n = fitCount(pieces, req.resources, req.roles, req.count - placed)
      if (n > 0) take(pieces, req.resources, req.roles, n)
      placed += n
    }
    const unmet = req.count - placed
    if (unmet > 0) {
      d.unmetJobs += unmet
      addTo(d.unmet, req.resources, unmet)
    }
  }
  return [...out.values()].sort((x, y) => (x.pool < y.pool ? -1 : x.pool > y.pool ? 1 : 0))
}
