// The QoS controller's decision: which revocable tasks to kill so that the agent's non-revocable
// tasks get their resources back. Pure: the agent's state in, evictions out.
//
// Revocable tasks live in the part of the non-revocable allocation that is unused. When that
// part (measured now: the latest samples, no smoothing and no margin) no longer holds what the
// revocable tasks were given, or the host itself runs short of memory (or, when asked, of CPU),
// revocable tasks go, newest first, until what is left fits.
import type { CpuMem, Usage } from './estimator.js'

/** The status reason of a task killed to give its resources back (state KILLED), from the protocol. */
export { REASON_PREEMPTED as PREEMPTED } from '../../../../shared/protocol/index.js'

export interface RevocableTask {
  key: string
  /** When it was launched (ms): the newest go first. */
  launchedAt: number
  /** Its revocable allocation. */
  allocated: CpuMem
  /** Its latest measured usage, when known (chooses how many go under host memory pressure). */
  used?: Usage
}

export interface HostState {
  /** MemAvailable of the host, MiB. */
  memAvailableMb?: number
  /** Below this the host is under memory pressure. */
  memMinFreeMb?: number
  /** Fraction (0..1) of the host's CPU time busy over the last interval. */
  cpuBusy?: number
  /** At or above this the host is under CPU pressure (absent: CPU pressure is not acted on). */
  cpuMaxBusy?: number
}

export interface QosInput {
  /** The unused part of the non-revocable tasks' allocation, from their latest samples. */
  unused: CpuMem
  /** Revocable tasks still running (those being killed already are left out). */
  revocable: readonly RevocableTask[]
  host?: HostState
}

export interface Eviction {
  key: string
  /** Why, for the task's KILLED update. */
  message: string
}

const EPS = 1e-6
const fmt = (n: number, digits = 2): string => String(Math.round(n * 10 ** digits) / 10 ** digits)

/** Whether the host is under memory pressure, and whether under CPU pressure. */
export function hostPressure(h: HostState | undefined): { mem: boolean; cpus: boolean } {
  return {
    mem: h?.memAvailableMb !== undefined && h.memMinFreeMb !== undefined && h.memAvailableMb < h.memMinFreeMb,
    cpus: h?.cpuBusy !== undefined && h.cpuMaxBusy !== undefined && h.cpuBusy >= h.cpuMaxBusy,
  }
}

/** The revocable tasks to kill now, newest first, each with the reason it goes. */
export function decideEvictions(input: QosInput): Eviction[] {
  // newest first; equal times by key so the decision does not depend on the input's order
  const remaining = [...input.revocable].sort((a, b) => b.launchedAt - a.launchedAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const out: Eviction[] = []
  const evict = (t: RevocableTask, message: string): void => {
    out.push({ key: t.key, message })
    remaining.splice(remaining.indexOf(t), 1)
  }
  const held = (): CpuMem => ({
    cpus: remaining.reduce((n, t) => n + t.allocated.cpus, 0),
    memMb: remaining.reduce((n, t) => n + t.allocated.memMb, 0),
  })

  // 1. the non-revocable tasks need their resources back
  const dims = [
    { take: (x: CpuMem) => x.memMb, what: 'memory', unit: (n: number) => `${fmt(n, 0)} MiB` },
    { take: (x: CpuMem) => x.cpus, what: 'CPU', unit: (n: number) => `${fmt(n)} cpus` },
  ]
  for (const d of dims) {
    const heldBefore = d.take(held())
    const unused = Math.max(0, d.take(input.unused))
    if (heldBefore <= unused + EPS) continue
    const message = `preempted: the agent's non-revocable tasks need their ${d.what} back ` +
      `(revocable tasks hold ${d.unit(heldBefore)}; ${d.unit(unused)} of the non-revocable allocation is unused)`
    while (remaining.length > 0 && d.take(held()) > unused + EPS) {
      // the newest task that holds some of it
      const victim = remaining.find((t) => d.take(t.allocated) > EPS)
      if (!victim) break
      evict(victim, message)
    }
  }

  // 2. the host is short of memory: free at least the deficit, by what the tasks really use
  const h = input.host
  const pressure = hostPressure(h)
  if (pressure.mem && remaining.length > 0) {
    const deficit = h!.memMinFreeMb! - h!.memAvailableMb!
    const message = `preempted: the host is low on memory (${fmt(h!.memAvailableMb!, 0)} MiB available, below ${fmt(h!.memMinFreeMb!, 0)} MiB)`
    let freed = 0
    while (remaining.length > 0 && freed < deficit) {
      const victim = remaining[0]!
      freed += victim.used?.memMb ?? victim.allocated.memMb
      evict(victim, message)
    }
  }

  // 3. the host's CPUs are saturated: one revocable task that uses CPU goes per round (CPU is
  //    shared, so how much a kill gives back is only seen at the next sample)
  if (pressure.cpus && remaining.length > 0) {
    const victim = remaining.find((t) => (t.used?.cpus ?? t.allocated.cpus) > 0.01) ?? remaining[0]!
    evict(victim, `preempted: the host's CPUs are busy (${fmt(h!.cpuBusy! * 100, 0)}%, at or above ${fmt(h!.cpuMaxBusy! * 100, 0)}%)`)
  }
  return out
}
