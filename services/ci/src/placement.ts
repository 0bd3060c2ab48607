// Which waiting jobs go on which offers: pure, greedy, highest priority and oldest first. A job
// takes resources of its role (`ci/<event>`) from agents of its pool; a job marked revocable
// takes revocable capacity when the offer has enough of it, and ordinary capacity otherwise.
import type { Offer, Resource } from '../../../shared/protocol/index.js'

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
}

export interface Placement {
  offer: Offer
  jobs: Array<{ job: WaitingJob; resources: Resource[] }>
}

interface Free {
  offer: Offer
  plain: Record<string, number>
  revocable: Record<string, number>
}

function freeOf(offer: Offer): Free {
  const plain: Record<string, number> = {}
  const revocable: Record<string, number> = {}
  for (const r of offer.resources) {
    if (r.scalar === undefined) continue
    const into = r.revocable ? revocable : plain
    into[r.name] = (into[r.name] ?? 0) + r.scalar
  }
  return { offer, plain, revocable }
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

/** Places as many waiting jobs as fit; offers that got no job are returned as `unused`. */
export function placeJobs(offers: readonly Offer[], waiting: readonly WaitingJob[]): { placements: Placement[]; unused: Offer[] } {
  const free = offers.map(freeOf)
  const byOffer = new Map<string, Placement>()
  const order = [...waiting].sort((a, b) => b.priority - a.priority || a.since - b.since || a.key.localeCompare(b.key))
  for (const job of order) {
    const want = ask(job)
    for (const f of free) {
      if (f.offer.role !== job.role || f.offer.pool !== job.pool) continue
      let resources: Resource[] | undefined
      if (job.revocable && fits(f.revocable, want)) {
        take(f.revocable, want)
        resources = Object.entries(want).map(([name, scalar]) => ({ name, scalar, revocable: true }))
      } else if (fits(f.plain, want)) {
        take(f.plain, want)
        resources = Object.entries(want).map(([name, scalar]) => ({ name, scalar }))
      }
      if (!resources) continue
      const p = byOffer.get(f.offer.id) ?? { offer: f.offer, jobs: [] }
      p.jobs.push({ job, resources })
      byOffer.set(f.offer.id, p)
      break
    }
  }
  return { placements: [...byOffer.values()], unused: offers.filter((o) => !byOffer.has(o.id)) }
}
