// The scalar dimensions the allocator counts in (cpus, mem, disk, any other scalar agents have),
// so that shares, quotas and headroom are plain numeric vectors instead of Resource lists.
import type { Resource } from '../../../../shared/protocol/index.js'
import type { AllocatorAgent } from './types.js'

/** Half the fixed-point step of shared/resources: amounts below it are zero. */
export const EPSILON = 0.0005

/** Mesos's default --min_allocatable_resources: an offer carries at least this much cpus or mem. */
export const MIN_ALLOCATABLE_CPUS = 0.01
export const MIN_ALLOCATABLE_MEM = 32

export interface Dimensions {
  readonly names: readonly string[]
  readonly index: ReadonlyMap<string, number>
  /** Cluster total per dimension (sum of the agents' non-revocable totals). */
  readonly total: Float64Array
  /** 1 / total (0 where the total is 0), for dominant shares. */
  readonly inverse: Float64Array
  /** Index of cpus and mem, or -1 when the cluster has none. */
  readonly cpus: number
  readonly mem: number
}

export function dimensionsOf(agents: readonly AllocatorAgent[]): Dimensions {
  const names: string[] = []
  const index = new Map<string, number>()
  const sums: number[] = []
  for (let a = 0; a < agents.length; a++) {
    const total = agents[a].total
    for (let i = 0; i < total.length; i++) {
      const r = total[i]
      if (r.revocable || r.ranges !== undefined || r.scalar === undefined) continue
      // A linear scan over the few names seen so far is cheaper than a Map lookup.
      let k = 0
      while (k < names.length && names[k] !== r.name) k++
      if (k === names.length) {
        index.set(r.name, k)
        names.push(r.name)
        sums.push(0)
      }
      sums[k] += r.scalar
    }
  }
  const total = Float64Array.from(sums)
  const inverse = total.map((t) => (t > EPSILON ? 1 / t : 0))
  return { names, index, total, inverse, cpus: index.get('cpus') ?? -1, mem: index.get('mem') ?? -1 }
}

/** The non-revocable scalars of rs as a vector (other names are not counted). */
export function scalarsOf(dims: Dimensions, rs: readonly Resource[], into = new Float64Array(dims.names.length)): Float64Array {
  for (const r of rs) {
    if (r.revocable || r.ranges !== undefined || r.scalar === undefined) continue
    const k = dims.index.get(r.name)
    if (k !== undefined) into[k] += r.scalar
  }
  return into
}

/** Max over dimensions of allocation / total: the DRF dominant share (shared with the CI's per-repository order). */
export { dominantShare } from '../../../../shared/drf/index.js'

/** Whether an offer with these cpus and mem is worth making (Mesos's min allocatable resources). */
export function isAllocatable(dims: Dimensions, cpus: number, mem: number, anything: boolean): boolean {
  // A cluster that counts in neither cpus nor mem: anything non-empty is allocatable.
  if (dims.cpus < 0 && dims.mem < 0) return anything
  return cpus >= MIN_ALLOCATABLE_CPUS - EPSILON || mem >= MIN_ALLOCATABLE_MEM - EPSILON
}

/** Rounds to the 0.001 fixed point of shared/resources. */
export const fixed = (x: number): number => Math.round(x * 1000) / 1000

/** Rounds down to the fixed point, for amounts cut to a limit (never more than the limit). */
export const fixedDown = (x: number): number => Math.floor(x * 1000 + 1e-6) / 1000
