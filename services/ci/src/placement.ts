// Which waiting jobs go on which offers: pure, greedy, highest priority and oldest first. A job
// takes resources of its role (`ci/<event>`) from agents of its pool; a job marked revocable
// takes revocable capacity when the offer has enough of it, and ordinary capacity otherwise. A
// job whose cache lives in a volume (cache-volumes.ts) prefers an offer holding a free volume of
// its family, then one with disk to make a new one (RESERVE and CREATE in the same ACCEPT), and
// runs without a volume (its cache from the object store) only where neither is possible.
import type { Offer, Operation, Resource, TaskSpec } from '../../../shared/protocol/index.js'
import { cacheVolumeId, cacheVolumeResource, freeSlot, slotOf, volumeForTask } from './cache-volumes.js'

export interface WaitingJob {
  key: string
  role: string
  /** The agents' pool it runs on. */
  pool: string
  cpus: number
  mem: number
  disk?: number
  revocable: boolean
  priority: number
  /** When it started waiting (older first among equals). */
  since: number
  /** Its cache lives in a volume of this family (cacheVolumeBase), made `size` MiB when missing. */
  volume?: { base: string; size: number }
}

/** The cache volume a placed job takes; `create` when the ACCEPT makes it first. */
export interface PlacedVolume {
  id: string
  /** The volume as CREATE makes it (with its role), and whether unreserved disk is reserved for it first. */
  create?: { volume: Resource; reserve: boolean }
}

export interface Placement {
  offer: Offer
  jobs: Array<{ job: WaitingJob; resources: Resource[]; volume?: PlacedVolume }>
}

/** The volume ids of `role` known to exist on an agent (held by tasks or not). */
export type VolumesOn = (agentId: string, role: string) => ReadonlySet<string>

interface Free {
  offer: Offer
  plain: Record<string, number>
  revocable: Record<string, number>
  /** Unreserved disk: what a RESERVE may take (RESERVEs run before the launches of an ACCEPT). */
  unreservedDisk: number
  /** Disk reserved for the offer's role, not a volume: what a CREATE may take without a RESERVE. */
  roleDisk: number
  /** Free volumes of the offer's role, each taken whole by one job. */
  volumes: Resource[]
}

function freeOf(offer: Offer): Free {
  const plain: Record<string, number> = {}
  const revocable: Record<string, number> = {}
  let unreservedDisk = 0
  let roleDisk = 0
  const volumes: Resource[] = []
  for (const r of offer.resources) {
    if (r.scalar === undefined) continue
    // a volume is no disk for other tasks: it is taken whole by the task that names it
    if (r.disk) {
      if (r.role === offer.role && !r.revocable) volumes.push(r)
      continue
    }
    const into = r.revocable ? revocable : plain
    into[r.name] = (into[r.name] ?? 0) + r.scalar
    if (r.name !== 'disk' || r.revocable) continue
    if (r.role === undefined || r.role === '*') unreservedDisk += r.scalar
    else if (r.role === offer.role) roleDisk += r.scalar
  }
  return { offer, plain, revocable, unreservedDisk, roleDisk, volumes }
}

const NAMES = ['cpus', 'mem', 'disk'] as const

function ask(job: WaitingJob): Record<string, number> {
  return { cpus: job.cpus, mem: job.mem, ...(job.disk ? { disk: job.disk } : {}) }
}

function fits(pool: Record<string, number>, want: Record<string, number>): boolean {
  return NAMES.every((n) => (want[n] ?? 0) <= (pool[n] ?? 0) + 1e-9)
}

function take(pool: Record<string, number>, want: Record<string, number>): void {
  for (const n of NAMES) if (want[n]) pool[n] = Math.round(((pool[n] ?? 0) - want[n]!) * 1000) / 1000
}

/** Which capacity of the offer the job's cpus/mem/disk would come from, if any. */
function capacity(f: Free, job: WaitingJob, want: Record<string, number>): 'revocable' | 'plain' | undefined {
  if (job.revocable && fits(f.revocable, want)) return 'revocable'
  return fits(f.plain, want) ? 'plain' : undefined
}

function takeCapacity(f: Free, from: 'revocable' | 'plain', want: Record<string, number>): Resource[] {
  take(from === 'revocable' ? f.revocable : f.plain, want)
  return Object.entries(want).map(([name, scalar]) => (from === 'revocable' ? { name, scalar, revocable: true } : { name, scalar }))
}

/** Places as many waiting jobs as fit; offers that got no job are returned as `unused`. */
export function placeJobs(
  offers: readonly Offer[], waiting: readonly WaitingJob[], volumesOn: VolumesOn = () => new Set(),
): { placements: Placement[]; unused: Offer[] } {
  const free = offers.map(freeOf)
  const byOffer = new Map<string, Placement>()
  /** Volume ids made in this pass, per agent and role. */
  const made = new Map<string, Set<string>>()
  const madeOn = (f: Free): Set<string> => {
    const k = `${f.offer.agentId}\u0000${f.offer.role}`
    let s = made.get(k)
    if (!s) made.set(k, (s = new Set()))
    return s
  }
  const place = (f: Free, job: WaitingJob, resources: Resource[], volume?: PlacedVolume): void => {
    const p = byOffer.get(f.offer.id) ?? { offer: f.offer, jobs: [] }
    p.jobs.push({ job, resources, ...(volume ? { volume } : {}) })
    byOffer.set(f.offer.id, p)
  }
  const order = [...waiting].sort((a, b) => b.priority - a.priority || a.since - b.since || a.key.localeCompare(b.key))
  for (const job of order) {
    const want = ask(job)
    const mine = free.filter((f) => f.offer.role === job.role && f.offer.pool === job.pool)
    const v = job.volume
    // 1. an offer holding a free volume of the job's family
    if (v && mine.some((f) => {
      const i = f.volumes.findIndex((r) => slotOf(r.disk!.persistence.id, v.base) !== undefined)
      const from = i < 0 ? undefined : capacity(f, job, want)
      if (!from) return false
      const [volume] = f.volumes.splice(i, 1)
      place(f, job, [...takeCapacity(f, from, want), volumeForTask(volume!)], { id: volume!.disk!.persistence.id })
      return true
    })) continue
    // 2. an offer with disk for a new volume in a free slot
    if (v && mine.some((f) => {
      const from = capacity(f, job, want)
      if (!from) return false
      // the volume is made before the launches take disk: their disk and it must fit together
      const left = (f.plain.disk ?? 0) - (from === 'plain' ? want.disk ?? 0 : 0)
      const fromRole = f.roleDisk >= v.size - 1e-9
      if (left < v.size - 1e-9 || (!fromRole && f.unreservedDisk < v.size - 1e-9)) return false
      const existing = new Set([...volumesOn(f.offer.agentId, f.offer.role), ...f.offer.resources.flatMap((r) => (r.disk && r.role === f.offer.role ? [r.disk.persistence.id] : [])), ...madeOn(f)])
      const slot = freeSlot(v.base, existing)
      if (slot === undefined) return false
      const id = cacheVolumeId(v.base, slot)
      madeOn(f).add(id)
      if (fromRole) f.roleDisk -= v.size
      else f.unreservedDisk -= v.size
      f.plain.disk = Math.round((f.plain.disk! - v.size) * 1000) / 1000
      const volume = cacheVolumeResource(id, v.size, f.offer.role)
      place(f, job, [...takeCapacity(f, from, want), volumeForTask(volume)], { id, create: { volume, reserve: !fromRole } })
      return true
    })) continue
    // 3. anywhere it fits, without a volume
    for (const f of mine) {
      const from = capacity(f, job, want)
      if (!from) continue
      place(f, job, takeCapacity(f, from, want))
      break
    }
  }
  return { placements: [...byOffer.values()], unused: offers.filter((o) => !byOffer.has(o.id)) }
}

/**
 * The operations of a placement's ACCEPT, in the order the master applies them: the disk its
 * new cache volumes need reserved for the offer's role, the volumes made of it, then the tasks.
 */
export function operationsFor(p: Placement, tasks: TaskSpec[]): Operation[] {
  const creates = p.jobs.flatMap((j) => (j.volume?.create ? [j.volume.create] : []))
  const reserve = creates.filter((c) => c.reserve).map((c) => ({ name: 'disk', scalar: c.volume.scalar!, role: p.offer.role }))
  return [
    ...(reserve.length > 0 ? [{ type: 'RESERVE' as const, resources: reserve }] : []),
    ...(creates.length > 0 ? [{ type: 'CREATE' as const, volumes: creates.map((c) => c.volume) }] : []),
    ...(tasks.length > 0 ? [{ type: 'LAUNCH' as const, tasks }] : []),
  ]
}
