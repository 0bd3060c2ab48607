// Resolves what a task asks for against the resources of the offers it is launched on.
// A task may name resources plainly (`cpus: 1`); they are taken from the role's reservation
// first, then from unreserved resources; revocable resources only when the task marks them so.
// A persistent volume is taken whole, named by its id (and container path), from the role's
// reserved disk; plain `disk` never takes a volume.
import type { Range, Resource } from '../../../shared/protocol/index.js'
import { contains, normalize, subtract, volumeKey } from '../../../shared/resources/index.js'

/** Whether a reservation for `reservedFor` may be used by a task in `role` (the role itself or an ancestor). */
function usable(reservedFor: string | undefined, role: string): boolean {
  return reservedFor === undefined || reservedFor === '*' || reservedFor === role || role.startsWith(`${reservedFor}/`)
}

/** The piece of `c` a task takes: its identity (reservation, principal, volume, revocable mark) with `amount`. */
function pieceOf(c: Resource, amount: number | Range[]): Resource {
  const take: Resource = typeof amount === 'number' ? { name: c.name, scalar: amount } : { name: c.name, ranges: amount }
  if (c.role !== undefined) take.role = c.role
  if (c.principal !== undefined && c.principal !== '') take.principal = c.principal
  if (c.revocable) take.revocable = true
  if (c.disk) take.disk = c.disk
  return take
}

/** Returns the concrete resources the task takes from `pool`, or undefined when it does not fit. */
export function takeFromPool(pool: readonly Resource[], wanted: readonly Resource[], role: string): Resource[] | undefined {
  // as asked, when the pool holds it and holds nothing reserved that should be taken first
  if (!pool.some((r) => r.role !== undefined) && contains(pool, wanted)) return normalize(wanted)
  let left = normalize(pool)
  const taken: Resource[] = []
  for (const want of normalize(wanted)) {
    if (want.role !== undefined) {
      // an explicit reservation must be there as it is
      if (!contains(left, [want])) return undefined
      taken.push(want)
      left = subtract(left, [want])
      continue
    }
    const candidates = left.filter((r) => r.name === want.name && !!r.revocable === !!want.revocable &&
      volumeKey(r) === volumeKey(want) && usable(r.role, role) &&
      (want.principal === undefined || want.principal === '' || r.principal === want.principal))
    // reserved first, then unreserved
    candidates.sort((a, b) => (a.role === undefined ? 1 : 0) - (b.role === undefined ? 1 : 0))
    if (want.disk) {
      // a volume is used whole, never split between tasks
      const volume = candidates.find((c) => c.scalar !== undefined && c.scalar >= (want.scalar ?? 0))
      if (!volume) return undefined
      taken.push(volume)
      left = subtract(left, [volume])
      continue
    }
    if (want.ranges !== undefined) {
      const ranges = want.ranges
      const piece = candidates.find((c) => c.ranges !== undefined && contains([c], [pieceOf(c, ranges)]))
      if (!piece) return undefined
      const take = pieceOf(piece, ranges)
      taken.push(take)
      left = subtract(left, [take])
      continue
    }
    let need = want.scalar ?? 0
    for (const c of candidates) {
      if (need <= 1e-9) break
      if (c.ranges !== undefined) continue
      const amount = Math.min(need, c.scalar ?? 0)
      if (amount <= 0) continue
      const take = pieceOf(c, amount)
      taken.push(take)
      left = subtract(left, [take])
      need = Math.round((need - amount) * 1000) / 1000
    }
    if (need > 1e-9) return undefined
  }
  return normalize(taken)
}
