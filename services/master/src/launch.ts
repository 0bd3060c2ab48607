// Resolves what a task asks for against the resources of the offers it is launched on.
// A task may name resources plainly (`cpus: 1`); they are taken from the role's reservation
// first, then from unreserved resources; revocable resources only when the task marks them so.
import type { Resource } from '../../../shared/protocol/index.js'
import { contains, normalize, subtract } from '../../../shared/resources/index.js'

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
      (r.role === undefined || r.role === role || role.startsWith(`${r.role}/`)))
    // reserved first, then unreserved
    candidates.sort((a, b) => (a.role === undefined ? 1 : 0) - (b.role === undefined ? 1 : 0))
    if (want.ranges !== undefined) {
      const piece = candidates.find((c) => contains([c], [{ ...want, ...(c.role ? { role: c.role } : {}) }]))
      if (!piece) return undefined
      const take: Resource = { ...want, ...(piece.role ? { role: piece.role } : {}) }
      taken.push(take)
      left = subtract(left, [take])
      continue
    }
    let need = want.scalar ?? 0
    for (const c of candidates) {
      if (need <= 1e-9) break
      const amount = Math.min(need, c.scalar ?? 0)
      if (amount <= 0) continue
      const take: Resource = { name: want.name, scalar: amount }
      if (c.role !== undefined) take.role = c.role
      if (c.revocable) take.revocable = true
      taken.push(take)
      left = subtract(left, [take])
      need = Math.round((need - amount) * 1000) / 1000
    }
    if (need > 1e-9) return undefined
  }
  return normalize(taken)
}
