// The resource estimator: how much of the CPU and memory allocated to an agent's non-revocable
// tasks they leave unused, from samples of their real usage. That slack, less a safety margin,
// is what the agent offers as revocable. Pure: samples in, an estimate out.
//
// Smoothing: a task's usage is the peak of its last `window` samples, so a rise counts at the
// next sample (the estimate shrinks at once) and a fall only once the window has forgotten the
// peak (it grows back slowly). A task counts as fully used until it has a full window of samples.
import type { Resource } from '../../../../shared/protocol/index.js'
import { scalar } from '../../../../shared/resources/index.js'

/** The two amounts oversubscription deals in. */
export interface CpuMem {
  cpus: number
  /** MiB */
  memMb: number
}

export const ZERO: Readonly<CpuMem> = Object.freeze({ cpus: 0, memMb: 0 })

/** One reading of a task's usage: CPU as a rate (cores busy), memory in MiB. */
export interface Usage {
  /** Cores busy over the last interval; absent until two readings give a rate. */
  cpus?: number
  memMb?: number
}

/** A cumulative reading as the containerizers give it (Docker stats, cgroup, /proc). */
export interface UsageReading {
  /** CPU time used since the task started, seconds. */
  cpuSeconds?: number
  memMb?: number
}

/** What the estimator needs of one non-revocable task. */
export interface TaskUsage {
  allocated: CpuMem
  /** Usage to count: the peak of its window; absent (or a missing field) counts as all of the allocation. */
  used?: Usage
}

export interface EstimateOptions {
  /**
   * Fraction (0..1) of the non-revocable allocation kept back as a safety margin: the estimate
   * is the unused part less `margin` times the allocation.
   */
  margin: number
  /** Dimensions under host pressure: estimated as zero while it lasts. */
  pressure?: { cpus?: boolean; mem?: boolean }
}

/** The part of one task's allocation its usage leaves unused (never negative, never more than allocated). */
export function unusedOf(t: TaskUsage): CpuMem {
  const cpus = t.used?.cpus
  const mem = t.used?.memMb
  return {
    cpus: cpus === undefined ? 0 : Math.max(0, t.allocated.cpus - Math.max(0, cpus)),
    memMb: mem === undefined ? 0 : Math.max(0, t.allocated.memMb - Math.max(0, mem)),
  }
}

export function sum(xs: Iterable<CpuMem>): CpuMem {
  let cpus = 0
  let memMb = 0
  for (const x of xs) {
    cpus += x.cpus
    memMb += x.memMb
  }
  return { cpus, memMb }
}

/**
 * Revocable capacity: the sum over non-revocable tasks of allocated-but-unused, less `margin`
 * times their allocation; never negative, never more than allocated. CPUs are rounded down to
 * 0.01, memory to whole MiB.
 */
export function estimateRevocable(tasks: readonly TaskUsage[], o: EstimateOptions): CpuMem {
  const margin = Math.min(1, Math.max(0, o.margin))
  const allocated = sum(tasks.map((t) => t.allocated))
  const unused = sum(tasks.map(unusedOf))
  const est = (unusedAmount: number, allocatedAmount: number): number =>
    Math.min(allocatedAmount, Math.max(0, unusedAmount - margin * allocatedAmount))
  return {
    cpus: o.pressure?.cpus ? 0 : Math.floor(est(unused.cpus, allocated.cpus) * 100 + 1e-6) / 100,
    memMb: o.pressure?.mem ? 0 : Math.floor(est(unused.memMb, allocated.memMb) + 1e-6),
  }
}

/** The estimate as the heartbeat's `revocable` resources (empty when there is none). */
export function toRevocableResources(e: CpuMem): Resource[] {
  const out: Resource[] = []
  if (e.cpus > 0) out.push({ name: 'cpus', scalar: e.cpus, revocable: true })
  if (e.memMb > 0) out.push({ name: 'mem', scalar: e.memMb, revocable: true })
  return out
}

/**
 * A task's allocation as oversubscription sees it: its revocable amounts when it holds any
 * revocable resource (it is then a revocable task), otherwise its plain ones.
 */
export function allocationOf(resources: readonly Resource[]): { revocable: boolean; allocated: CpuMem } {
  const revocable = resources.some((r) => r.revocable === true)
  const pick = resources.filter((r) => (r.revocable === true) === revocable)
  return { revocable, allocated: { cpus: scalar(pick, 'cpus'), memMb: scalar(pick, 'mem') } }
}

/** Whether `a` is below `b` in either dimension (the estimate shrank). */
export function shrank(a: CpuMem, b: CpuMem): boolean {
  return a.cpus < b.cpus - 1e-9 || a.memMb < b.memMb - 1e-9
}

/**
 * The recent usage of each task: turns cumulative readings into rates and keeps the last
 * `window` of them. Keyed by whatever names a task (framework and task id).
 */
export class UsageHistory {
  private readonly tasks = new Map<string, { last?: { at: number; cpuSeconds?: number }; samples: Usage[] }>()

  constructor(readonly window: number) {
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`window must be a whole number >= 1, not ${window}`)
  }

  /** Records a reading taken at `at` (ms); returns the usage it gives. */
  record(key: string, at: number, r: UsageReading): Usage {
    let h = this.tasks.get(key)
    if (!h) {
      h = { samples: [] }
      this.tasks.set(key, h)
    }
    const u: Usage = {}
    if (r.memMb !== undefined && Number.isFinite(r.memMb)) u.memMb = Math.max(0, r.memMb)
    const prev = h.last
    if (r.cpuSeconds !== undefined && prev?.cpuSeconds !== undefined && at > prev.at) {
      u.cpus = Math.max(0, (r.cpuSeconds - prev.cpuSeconds) / ((at - prev.at) / 1000))
    }
    h.last = { at, ...(r.cpuSeconds !== undefined ? { cpuSeconds: r.cpuSeconds } : {}) }
    // the very first reading has no CPU rate yet: it waits for the second one
    if (prev !== undefined || r.cpuSeconds === undefined) {
      h.samples.push(u)
      if (h.samples.length > this.window) h.samples.shift()
    }
    return u
  }

  /** The latest usage of a task (for the QoS controller: no smoothing). */
  latest(key: string): Usage | undefined {
    const s = this.tasks.get(key)?.samples
    return s && s.length > 0 ? s[s.length - 1] : undefined
  }

  /**
   * The peak usage over the window, per dimension; a dimension is known only once the window
   * is full of readings of it (a task that has just started is not yet taken to be idle).
   */
  peak(key: string): Usage | undefined {
    const s = this.tasks.get(key)?.samples
    if (!s || s.length < this.window) return undefined
    const out: Usage = {}
    if (s.every((x) => x.cpus !== undefined)) out.cpus = Math.max(...s.map((x) => x.cpus!))
    if (s.every((x) => x.memMb !== undefined)) out.memMb = Math.max(...s.map((x) => x.memMb!))
    return out
  }

  /** Forgets the tasks not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const k of this.tasks.keys()) if (!keep.has(k)) this.tasks.delete(k)
  }

  get size(): number {
    return this.tasks.size
  }
}
