// The agent's reaper: at start (after recovery) and every interval, it removes what this agent
// left behind that no task of its owns any more (after a restart, a crash, a removal that
// failed): Docker containers carrying its labels (sidecars too), processes of its tasks still
// running (process containerizer), and sandboxes under its work dir. A task owns what carries
// its framework and task id while it runs and while it is reported as recently ended; a
// sandbox is also owned while it is kept for its retention (SandboxDisk). An unowned sandbox
// written to within the retention is adopted (kept until the retention has passed, evicted
// first when over the disk budget) rather than removed at once. Counters (found, reaped) go on
// heartbeats. Containers of another agent id, or unlabelled ones, are never looked at.
import { readdir, rmdir, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Orphans, OrphanCount } from '../../../shared/protocol/index.js'
import { systemClock, type Clock, type Timer } from '../../../shared/clock/index.js'
import type { Logger } from '../../../shared/log/index.js'
import type { Containerizer, Leftover, LeftoverScope } from './containerizer/types.js'
import { removeSandbox, type SandboxDisk } from './disk-budget.js'

/** Default time between two passes. */
export const DEFAULT_REAP_INTERVAL_MS = 30_000

export interface ReaperOptions {
  agentId: string
  workDir: string
  containerizer: Containerizer
  /** True while a task of the agent (running, or recently ended) has this framework and task id. */
  ownsTask(frameworkId: string, taskId: string): boolean
  /** The sandboxes of the agent's running tasks. */
  liveSandboxes(): ReadonlySet<string>
  /** The agent's sandboxes kept after their task ended, and its disk budget. */
  disk: SandboxDisk
  /** How long a sandbox is kept after its task ended (an unowned one younger than this is adopted). */
  retentionMs: number
  intervalMs?: number
  clock?: Clock
  logger: Logger
}

/** What one pass did. */
export interface ReapResult {
  containers: string[]
  processes: string[]
  sandboxes: string[]
  /** Unowned sandboxes adopted: kept until their retention has passed. */
  adopted: string[]
  evicted: string[]
}

type Kind = 'containers' | 'processes' | 'sandboxes'

export class Reaper {
  private readonly clock: Clock
  private readonly scope: LeftoverScope
  private readonly counts: Record<Kind, OrphanCount> = {
    containers: { found: 0, reaped: 0 }, processes: { found: 0, reaped: 0 }, sandboxes: { found: 0, reaped: 0 },
  }
  /** Orphans counted as found and not removed yet (a removal that failed is tried again, not counted again). */
  private readonly pending = new Set<string>()
  private timer?: Timer
  private running?: Promise<ReapResult>
  private stopped = false

  constructor(private readonly o: ReaperOptions) {
    this.clock = o.clock ?? systemClock
    this.scope = { agentId: o.agentId, sandboxes: resolve(o.workDir, 'sandboxes') }
  }

  /** A pass now, then one every interval. */
  start(): void {
    void this.pass()
    this.timer = this.clock.setInterval(() => void this.pass(), this.o.intervalMs ?? DEFAULT_REAP_INTERVAL_MS)
  }

  /** Stops the interval; resolves when a pass in progress has ended. */
  async stop(): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    await this.running?.catch(() => undefined)
  }

  /** Found and reaped so far, by kind and in all. */
  orphans(): Orphans {
    const { containers, processes, sandboxes } = this.counts
    return {
      found: containers.found + processes.found + sandboxes.found,
      reaped: containers.reaped + processes.reaped + sandboxes.reaped,
      containers: { ...containers }, processes: { ...processes }, sandboxes: { ...sandboxes },
    }
  }

  /** One pass (one at a time: a call during a pass gets that pass's result). Never rejects. */
  pass(): Promise<ReapResult> {
    this.running ??= this.reap().finally(() => { this.running = undefined })
    return this.running
  }

  private async reap(): Promise<ReapResult> {
    const result: ReapResult = { containers: [], processes: [], sandboxes: [], adopted: [], evicted: [] }
    if (this.stopped) return result
    // what runs first: a leftover container may still be writing into its sandbox
    await this.reapLeftovers(result)
    await this.reapSandboxes(result)
    result.evicted = await this.o.disk.enforce({ measureLive: true }).catch((err: unknown) => {
      this.o.logger.warn({ err: errorText(err) }, 'cannot check the disk budget')
      return []
    })
    const removed = result.containers.length + result.processes.length + result.sandboxes.length
    if (removed + result.adopted.length > 0) {
      this.o.logger.info({ containers: result.containers.length, processes: result.processes.length, sandboxes: result.sandboxes.length, adopted: result.adopted.length }, 'orphans reaped')
    }
    return result
  }

  private owns(l: { frameworkId?: string | undefined; taskId?: string | undefined }): boolean {
    return l.frameworkId !== undefined && l.taskId !== undefined && this.o.ownsTask(l.frameworkId, l.taskId)
  }

  private async reapLeftovers(result: ReapResult): Promise<void> {
    const cz = this.o.containerizer
    if (!cz.leftovers || !cz.removeLeftover) return
    let found: Leftover[]
    try {
      found = await cz.leftovers(this.scope)
    } catch (err) {
      this.o.logger.warn({ err: errorText(err) }, 'cannot list what the containerizer left behind')
      return
    }
    // a task launched after the listing is not in it (its id is taken before its container exists)
    const orphans = found.filter((l) => !this.owns(l))
    await Promise.all(orphans.map(async (l) => {
      const kind: Kind = l.kind === 'container' ? 'containers' : 'processes'
      this.found(kind, l.id)
      try {
        await cz.removeLeftover!(l, this.scope)
      } catch (err) {
        this.o.logger.warn({ err: errorText(err), leftover: l.id, taskId: l.taskId, frameworkId: l.frameworkId }, 'cannot remove an orphan')
        return
      }
      this.reaped(kind, l.id)
      result[kind].push(l.id)
      this.o.logger.info({ kind: l.kind, id: l.id, taskId: l.taskId, frameworkId: l.frameworkId, sidecar: l.sidecar }, 'removed an orphan no task owns')
    }))
  }

  /** `<work dir>/sandboxes/<framework>/<task>` that no task owns: removed, or adopted while within the retention. */
  private async reapSandboxes(result: ReapResult): Promise<void> {
    const root = this.scope.sandboxes
    for (const fw of await dirs(root)) {
      const fwDir = join(root, fw)
      const tasks = await dirs(fwDir)
      for (const task of tasks) {
        const path = join(fwDir, task)
        if (this.sandboxOwned(path, fw, task)) continue
        const lastUsedAt = await lastWritten(path)
        if (lastUsedAt === undefined || this.sandboxOwned(path, fw, task)) continue
        this.found('sandboxes', path)
        if (this.clock.now() - lastUsedAt < this.o.retentionMs) {
          this.o.disk.retain(path, lastUsedAt, (removed) => { if (removed) this.reaped('sandboxes', path) })
          result.adopted.push(path)
          continue
        }
        if (await removeSandbox(path)) {
          this.reaped('sandboxes', path)
          result.sandboxes.push(path)
        } else {
          this.o.logger.warn({ sandbox: path }, 'cannot remove an orphan sandbox')
        }
      }
    }
    // framework directories left empty (a new task makes its own again)
    for (const fw of await dirs(root)) {
      if ((await dirs(join(root, fw))).length === 0) await rmdir(join(root, fw)).catch(() => undefined)
    }
  }

  private sandboxOwned(path: string, fw: string, task: string): boolean {
    if (this.o.liveSandboxes().has(path) || this.o.disk.has(path)) return true
    const frameworkId = decode(fw)
    const taskId = decode(task)
    return frameworkId !== undefined && taskId !== undefined && this.o.ownsTask(frameworkId, taskId)
  }

  private found(kind: Kind, id: string): void {
    const k = `${kind}\u0000${id}`
    if (this.pending.has(k)) return
    this.pending.add(k)
    this.counts[kind].found++
  }

  private reaped(kind: Kind, id: string): void {
    if (this.pending.delete(`${kind}\u0000${id}`)) this.counts[kind].reaped++
  }
}

/** Names of the directories in `dir` (none when it does not exist). */
async function dirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isDirectory()).map((e) => e.name)
}

/** When a sandbox was last written: the newest of its directory and its output files. */
async function lastWritten(path: string): Promise<number | undefined> {
  const times = await Promise.all([path, join(path, 'stdout'), join(path, 'stderr')].map((p) => stat(p).then((s) => s.mtimeMs, () => undefined)))
  if (times[0] === undefined) return undefined
  return Math.max(...times.filter((t): t is number => t !== undefined))
}

function decode(component: string): string | undefined {
  try {
    return decodeURIComponent(component)
  } catch {
    return undefined
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
