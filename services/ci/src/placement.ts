// Which waiting jobs go on which offers: pure and greedy. Repositories take turns by dominant
// resource share (DRF, shared/drf): the next job comes from the repository whose running and
// just-placed jobs hold the least of what the framework has, divided by its weight; within a
// repository (and between equal shares) highest priority and oldest first. A job takes resources of its role (`ci/<event>`) from agents of its pool; a job marked revocable
// takes revocable capacity when the offer has enough of it, and ordinary capacity otherwise. A
// job whose cache lives in a volume (cache-volumes.ts) prefers an offer holding a free volume of
// its family, then one with disk to make a new one (RESERVE and CREATE in the same ACCEPT), and
// runs without a volume (its cache from the object store) only where neither is possible.
import type { Offer, Operation, Resource, TaskSpec } from '../../../shared/protocol/index.js'
import { cacheVolumeId, cacheVolumeResource, freeSlot, slotOf, volumeForTask } from './cache-volumes.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { dominantShare, sink, sortAll, type Sorted } from '../../../shared/drf/index.js'

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
  /** The repository (owner/name) of its run: the unit of fairness. Jobs without one share a turn. */
  repo?: string
}

/** What each repository holds already, and how much it counts: the input of the per-repository DRF. */
export interface RepoShares {
  /** cpus, mem and disk of each repository's running and starting jobs (usageByRepo). */
  running?: ReadonlyMap<string, Readonly<Record<string, number>>>
  /** A repository's weight (default 1; a non-positive one counts as 1): its share counts divided by it. */
  weights?: Readonly<Record<string, number>>
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

/** The cpus, mem and disk of jobs per repository (what usageByRepo adds up for RepoShares.running). */
export function usageByRepo(jobs: Iterable<{ repo: string; cpus: number; mem: number; disk?: number }>): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>()
  for (const j of jobs) {
    const u = out.get(j.repo) ?? { cpus: 0, mem: 0, disk: 0 }
    u.cpus += j.cpus
    u.mem += j.mem
    u.disk += j.disk ?? 0
    out.set(j.repo, u)
  }
  return out
}

/**
 * Per-repository weights from `owner/repo=2,owner/other=0.5` (REGATTA_REPO_WEIGHTS); `where`
 * names the setting in the error a bad entry gets.
 */
export function parseRepoWeights(text: string, where = 'REGATTA_REPO_WEIGHTS'): Record<string, number> {
  const out: Record<string, number> = {}
  for (const part of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const m = /^([A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+)=([0-9]+(?:\.[0-9]+)?)$/.exec(part)
    const w = m ? Number(m[2]) : NaN
    if (!m || !(w > 0)) {
      throw new RegattaError('INVALID_CONFIG', `${where}: ${JSON.stringify(part.slice(0, 80))} is not owner/repo=<weight above 0>`)
    }
    out[m[1]!] = w
  }
  return out
}

/** One repository's waiting jobs, in the order they go, and what it holds. */
class RepoQueue implements Sorted {
  share = 0
  pos = 0
  next = 0
  readonly alloc = new Float64Array(NAMES.length)
  constructor(readonly name: string, readonly jobs: WaitingJob[], readonly weight: number) {}
  get head(): WaitingJob { return this.jobs[this.next]! }
}

const byPriorityThenAge = (a: WaitingJob, b: WaitingJob): number => b.priority - a.priority || a.since - b.since || a.key.localeCompare(b.key)

/**
 * Lower weighted share first; between equal shares the better head job (priority, then age).
 * A queue only moves later: its share grows when a job is placed and its head only gets worse.
 */
function queueBefore(a: RepoQueue, b: RepoQueue): boolean {
  if (a.share !== b.share) return a.share < b.share
  const c = byPriorityThenAge(a.head, b.head)
  return c !== 0 ? c < 0 : a.name < b.name
}

/** The waiting jobs as per-repository queues sorted by DRF, the total counting what is offered and running. */
function repoQueues(waiting: readonly WaitingJob[], free: readonly Free[], fair: RepoShares): { queues: RepoQueue[]; inverse: Float64Array } {
  const total = new Float64Array(NAMES.length)
  for (const f of free) NAMES.forEach((n, k) => { total[k] += (f.plain[n] ?? 0) + (f.revocable[n] ?? 0) })
  for (const u of fair.running?.values() ?? []) NAMES.forEach((n, k) => { total[k] += u[n] ?? 0 })
  const inverse = total.map((t) => (t > 1e-9 ? 1 / t : 0))
  const byRepo = new Map<string, WaitingJob[]>()
  for (const j of waiting) {
    const list = byRepo.get(j.repo ?? '')
    if (list) list.push(j)
    else byRepo.set(j.repo ?? '', [j])
  }
  const queues = [...byRepo].map(([repo, jobs]) => {
    const w = fair.weights?.[repo]
    const q = new RepoQueue(repo, jobs.sort(byPriorityThenAge), w !== undefined && Number.isFinite(w) && w > 0 ? w : 1)
    const u = fair.running?.get(repo)
    if (u) NAMES.forEach((n, k) => { q.alloc[k] = u[n] ?? 0 })
    q.share = dominantShare(q.alloc, inverse) / q.weight
    return q
  })
  sortAll(queues, queueBefore)
  return { queues, inverse }
}

/**
 * Places as many waiting jobs as fit, repositories taking turns by dominant share (`fair`: what
 * they run already, their weights); offers that got no job are returned as `unused`.
 */
export function placeJobs(
  offers: readonly Offer[], waiting: readonly WaitingJob[], volumesOn: VolumesOn = () => new Set(), fair: RepoShares = {},
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
  /** Tries the job on the offers; whether it was placed. */
  const placeOne = (job: WaitingJob): boolean => {
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
    })) return true
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
    })) return true
    // 3. anywhere it fits, without a volume
    for (const f of mine) {
      const from = capacity(f, job, want)
      if (!from) continue
      place(f, job, takeCapacity(f, from, want))
      return true
    }
    return false
  }
  const { queues, inverse } = repoQueues(waiting, free, fair)
  // each job is tried once, from the repository with the lowest share at that moment
  while (queues.length > 0) {
    const q = queues[0]!
    const job = q.jobs[q.next++]!
    if (placeOne(job)) {
      const want = ask(job)
      NAMES.forEach((n, k) => { q.alloc[k] += want[n] ?? 0 })
      q.share = dominantShare(q.alloc, inverse) / q.weight
    }
    if (q.next < q.jobs.length) {
      sink(queues, q, queueBefore)
      continue
    }
    queues.shift()
    queues.forEach((r, i) => { r.pos = i })
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
