// The disk an agent's sandboxes take, and its bound. A task's sandbox is kept for the retention
// after the task ended (its stdout/stderr and workspace, for a look after a failure), then
// removed; and the sandboxes together (of running tasks and of ended ones kept) stay under the
// disk budget: when over it, kept sandboxes are evicted least recently used first (the one
// whose task ended longest ago goes first). Sandboxes of running tasks are never evicted, and
// persistent volumes (`<work dir>/volumes`) and the agent's own files are not counted: only
// `<work dir>/sandboxes`. Caches live in the NATS object store, not on the agent.
//
//   const disk = new SandboxDisk({ retentionMs: 600_000, budgetMb: 20_000, live: () => sandboxesOfRunningTasks, logger })
//   disk.retain(sandbox)                 // a task ended: kept for the retention, or evicted
//   await disk.enforce({ measureLive: true })  // the reaper's interval: measure, evict if over
import { lstat, readdir, rm, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { AgentDisk } from '../../../shared/protocol/index.js'
import { systemClock, type Clock, type Timer } from '../../../shared/clock/index.js'
import type { Logger } from '../../../shared/log/index.js'

const MIB = 1024 * 1024

export interface KeptSandbox {
  path: string
  /** When its task ended (or, for a sandbox found without a task, when it was last written). */
  lastUsedAt: number
  bytes: number
}

/**
 * The kept sandboxes to evict, in order, so that `liveBytes` plus what is kept fits in
 * `budgetBytes`: least recently used first (ties: by path). Live sandboxes are never chosen;
 * when they alone exceed the budget every kept one goes. Pure.
 */
export function chooseEvictions(liveBytes: number, kept: readonly KeptSandbox[], budgetBytes: number): string[] {
  let used = liveBytes + kept.reduce((sum, k) => sum + k.bytes, 0)
  const out: string[] = []
  for (const k of [...kept].sort((a, b) => a.lastUsedAt - b.lastUsedAt || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    if (used <= budgetBytes) break
    out.push(k.path)
    used -= k.bytes
  }
  return out
}

/**
 * Bytes a directory tree takes on disk (allocated blocks, as `du` counts them), symlinks not
 * followed. What vanishes or cannot be read while walking counts as 0: never throws.
 */
export async function diskUsage(path: string): Promise<number> {
  let st
  try {
    st = await lstat(path)
  } catch {
    return 0
  }
  let bytes = st.blocks * 512
  if (!st.isDirectory()) return bytes
  const names = await readdir(path).catch(() => [] as string[])
  // a few at a time: a checkout holds tens of thousands of files
  for (let i = 0; i < names.length; i += 32) {
    const sizes = await Promise.all(names.slice(i, i + 32).map((n) => diskUsage(join(path, n))))
    for (const s of sizes) bytes += s
  }
  return bytes
}

/** Removes a sandbox: an empty one with one rmdir, others recursively. Never throws. */
export async function removeSandbox(path: string): Promise<boolean> {
  try {
    await rmdir(path)
    return true
  } catch {
    try {
      await rm(path, { recursive: true, force: true, maxRetries: 2 })
      return true
    } catch {
      return false
    }
  }
}

export interface SandboxDiskOptions {
  /** How long a sandbox is kept after its task ended (0: removed at once). */
  retentionMs: number
  /** Most MiB all sandboxes may take together; absent: no bound (kept for the retention only). */
  budgetMb?: number
  /** The sandboxes of running tasks (counted, never evicted). */
  live(): Iterable<string>
  clock?: Clock
  logger: Logger
}

interface Kept {
  path: string
  lastUsedAt: number
  bytes?: number
  timer?: Timer
  /** Told when the sandbox goes (expired or evicted), and whether it is gone: the reaper counts an orphan it adopted. */
  onRemoved?: (removed: boolean) => void
}

export class SandboxDisk {
  private readonly kept = new Map<string, Kept>()
  private readonly clock: Clock
  /** Bytes of each running task's sandbox, as last measured. */
  private liveBytes = new Map<string, number>()
  private evicted = 0
  private running?: Promise<string[]>
  private again = false
  private measureLiveNext = false
  private stopped = false

  constructor(private readonly o: SandboxDiskOptions) {
    this.clock = o.clock ?? systemClock
  }

  get budgetMb(): number | undefined {
    return this.o.budgetMb
  }

  /** True while `path` is kept (its retention has not passed and it was not evicted). */
  has(path: string): boolean {
    return this.kept.has(path)
  }

  /**
   * Keeps a sandbox whose task ended (at `lastUsedAt`, default now) until its retention has
   * passed, then removes it; with no retention left, removes it now. Then checks the budget.
   */
  retain(path: string, lastUsedAt = this.clock.now(), onRemoved?: (removed: boolean) => void): void {
    if (this.stopped || this.kept.has(path)) return
    const left = lastUsedAt + this.o.retentionMs - this.clock.now()
    if (left <= 0) {
      void removeSandbox(path).then((removed) => onRemoved?.(removed))
      return
    }
    const k: Kept = { path, lastUsedAt, ...(onRemoved ? { onRemoved } : {}) }
    k.timer = this.clock.setTimeout(() => void this.drop(k, 'retention'), left)
    this.kept.set(path, k)
    if (this.o.budgetMb !== undefined) void this.enforce()
  }

  /**
   * Measures what is not measured yet (and, with `measureLive`, the running tasks' sandboxes
   * again) and evicts kept sandboxes, least recently used first, while over the budget.
   * Resolves with the paths evicted. One at a time: a call during a run runs once more after it.
   */
  enforce(o: { measureLive?: boolean } = {}): Promise<string[]> {
    if (o.measureLive) this.measureLiveNext = true
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = (async () => {
      const evicted: string[] = []
      do {
        this.again = false
        const measureLive = this.measureLiveNext
        this.measureLiveNext = false
        evicted.push(...await this.enforceOnce(measureLive))
      } while (this.again && !this.stopped)
      return evicted
    })().finally(() => { this.running = undefined })
    return this.running
  }

  private async enforceOnce(measureLive: boolean): Promise<string[]> {
    // a task that ended since the last measure is counted as kept now, not also as running
    const live = new Set(this.o.live())
    for (const path of this.liveBytes.keys()) if (!live.has(path)) this.liveBytes.delete(path)
    if (measureLive) for (const path of live) this.liveBytes.set(path, await diskUsage(path))
    for (const k of [...this.kept.values()]) if (k.bytes === undefined) k.bytes = await diskUsage(k.path)
    if (this.o.budgetMb === undefined) return []
    const kept = [...this.kept.values()].map((k) => ({ path: k.path, lastUsedAt: k.lastUsedAt, bytes: k.bytes ?? 0 }))
    const chosen = chooseEvictions(this.liveTotal(), kept, this.o.budgetMb * MIB)
    for (const path of chosen) {
      const k = this.kept.get(path)
      if (k) await this.drop(k, 'budget')
    }
    if (chosen.length > 0) {
      this.o.logger.info({ evicted: chosen.length, budgetMb: this.o.budgetMb, usedMb: Math.round(this.usedBytes() / MIB) }, 'sandboxes evicted to stay within the disk budget')
    }
    return chosen
  }

  private async drop(k: Kept, why: 'retention' | 'budget'): Promise<void> {
    if (this.kept.get(k.path) !== k) return
    this.kept.delete(k.path)
    k.timer?.cancel()
    if (why === 'budget') this.evicted++
    const removed = await removeSandbox(k.path)
    if (!removed) this.o.logger.warn({ sandbox: k.path, why }, 'cannot remove a sandbox')
    k.onRemoved?.(removed)
  }

  private liveTotal(): number {
    let bytes = 0
    for (const [path, b] of this.liveBytes) if (!this.kept.has(path)) bytes += b
    return bytes
  }

  private usedBytes(): number {
    let bytes = this.liveTotal()
    for (const k of this.kept.values()) bytes += k.bytes ?? 0
    return bytes
  }

  /** For heartbeats: MiB used (as last measured), the budget, sandboxes kept, evictions so far. */
  stats(): AgentDisk {
    return {
      usedMb: Math.round((this.usedBytes() / MIB) * 100) / 100,
      ...(this.o.budgetMb !== undefined ? { budgetMb: this.o.budgetMb } : {}),
      retained: this.kept.size,
      evicted: this.evicted,
    }
  }

  /** Stops the retention timers (kept sandboxes stay on disk: the next agent's reaper finds them). */
  stop(): void {
    this.stopped = true
    for (const k of this.kept.values()) k.timer?.cancel()
  }
}
