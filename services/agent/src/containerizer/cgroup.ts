// Best-effort resource limits for the process containerizer: one cgroup (v1) per task under
// `<root>/<controller>/regatta/`, for memory, CPU (CFS quota) and pids, where the host lets us
// write there. Nothing here may fail a launch: a limit that cannot be set is logged and skipped.
// The same cgroups (and one under cpuacct) account the task's usage, for oversubscription.
import { constants } from 'node:fs'
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../../../shared/log/index.js'

export type Controller = 'memory' | 'cpu' | 'pids' | 'cpuacct'

export interface CgroupLimits {
  memMb?: number
  cpus?: number
  pids?: number
}

const CFS_PERIOD_US = 100_000

/** The controllers this host lets us create cgroups in (cgroup v1, writable), probed once. */
export async function writableControllers(root: string, parent: string, which: readonly Controller[] = ['memory', 'cpu', 'pids']): Promise<Controller[]> {
  const usable: Controller[] = []
  for (const controller of which) {
    const dir = join(root, controller, parent)
    try {
      // A v1 hierarchy has its controller's files at the top; cgroup v2 has none of these.
      await access(join(root, controller, 'cgroup.procs'), constants.W_OK)
      await mkdir(dir, { recursive: true })
      await access(join(dir, 'cgroup.procs'), constants.W_OK)
      usable.push(controller)
    } catch {
      // not mounted, cgroup v2 only, or read-only (not root, or a container): no limits there
    }
  }
  return usable
}

/** A task's cgroups: where to put its first process, what happened to it, and cleanup. */
export class TaskCgroup {
  private constructor(
    private readonly dirs: Map<Controller, string>,
    private readonly log: Logger,
  ) {}

  /**
   * Creates the task's cgroups and writes its limits; controllers that fail are left out.
   * `accounting` controllers (memory, cpuacct) get a cgroup even with no limit to write, so that
   * the task's usage can be read.
   */
  static async create(
    root: string, parent: string, name: string, controllers: Controller[], limits: CgroupLimits, log: Logger, accounting: readonly Controller[] = [],
  ): Promise<TaskCgroup> {
    const dirs = new Map<Controller, string>()
    const settings: Array<[Controller, Array<[string, string]>]> = []
    if (limits.memMb !== undefined && controllers.includes('memory')) {
      const bytes = String(Math.max(1, Math.round(limits.memMb * 1024 * 1024)))
      // memsw (memory + swap) after the memory limit: it may never be below it.
      settings.push(['memory', [['memory.limit_in_bytes', bytes], ['memory.memsw.limit_in_bytes', bytes]]])
    }
    if (limits.cpus !== undefined && controllers.includes('cpu')) {
      const quota = String(Math.max(1000, Math.round(limits.cpus * CFS_PERIOD_US)))
      settings.push(['cpu', [['cpu.cfs_period_us', String(CFS_PERIOD_US)], ['cpu.cfs_quota_us', quota]]])
    }
    if (limits.pids !== undefined && controllers.includes('pids')) {
      settings.push(['pids', [['pids.max', String(limits.pids)]]])
    }
    for (const [controller, files] of settings) {
      const dir = join(root, controller, parent, name)
      try {
        await mkdir(dir)
      } catch (err) {
        log.warn({ err, controller }, 'cannot create the task cgroup; this limit is not enforced')
        continue
      }
      dirs.set(controller, dir)
      for (const [file, value] of files) {
        await writeFile(join(dir, file), value).catch((err: NodeJS.ErrnoException) => {
          // memsw exists only with swap accounting; the plain limit still holds without it.
          if (file !== 'memory.memsw.limit_in_bytes') log.warn({ err, controller, file, value }, 'cannot set a cgroup limit; not enforced')
        })
      }
    }
    for (const controller of accounting) {
      if (dirs.has(controller) || !controllers.includes(controller)) continue
      const dir = join(root, controller, parent, name)
      try {
        await mkdir(dir)
      } catch (err) {
        // EEXIST: cpu and cpuacct mounted together (cpu,cpuacct), the cpu cgroup made above is
        // this one (task cgroup names carry a random suffix: nobody else's)
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          log.debug({ err, controller }, 'cannot create the task cgroup; its usage is read from /proc')
          continue
        }
      }
      dirs.set(controller, dir)
    }
    return new TaskCgroup(dirs, log)
  }

  /**
   * The task's usage from its cgroups: CPU time (cpuacct.usage) and memory in use (usage less
   * inactive page cache, as `docker stats` counts it). A field is absent without its cgroup.
   */
  async usage(): Promise<{ cpuSeconds?: number; memMb?: number }> {
    const out: { cpuSeconds?: number; memMb?: number } = {}
    const acct = this.dirs.get('cpuacct')
    const mem = this.dirs.get('memory')
    const [ns, bytes, stat] = await Promise.all([
      acct ? readFile(join(acct, 'cpuacct.usage'), 'utf8').catch(() => undefined) : undefined,
      mem ? readFile(join(mem, 'memory.usage_in_bytes'), 'utf8').catch(() => undefined) : undefined,
      mem ? readFile(join(mem, 'memory.stat'), 'utf8').catch(() => undefined) : undefined,
    ])
    if (ns !== undefined && Number.isFinite(Number(ns))) out.cpuSeconds = Number(ns) / 1e9
    if (bytes !== undefined && Number.isFinite(Number(bytes))) {
      const inactive = Number(/^total_inactive_file (\d+)$/m.exec(stat ?? '')?.[1] ?? 0)
      out.memMb = Math.max(0, Number(bytes) - inactive) / (1024 * 1024)
    }
    return out
  }

  /** `cgroup.procs` files the first process must write its pid into before it execs. */
  procsFiles(): string[] {
    return [...this.dirs.values()].map((dir) => join(dir, 'cgroup.procs'))
  }

  /** True when the kernel OOM-killed a process of the task (memory.oom_control's oom_kill). */
  async oomKilled(): Promise<boolean> {
    const dir = this.dirs.get('memory')
    if (!dir) return false
    try {
      const text = await readFile(join(dir, 'memory.oom_control'), 'utf8')
      const m = /^oom_kill (\d+)$/m.exec(text)
      return m !== null && Number(m[1]) > 0
    } catch {
      return false
    }
  }

  /** SIGKILLs whatever is still in the task's cgroups (daemons that left its process group). */
  async killAll(): Promise<void> {
    for (const dir of this.dirs.values()) {
      const pids = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')
      for (const pid of pids.split('\n').filter(Boolean).map(Number)) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone already
        }
      }
    }
  }

  /** Removes the cgroups, retrying while killed processes finish dying (up to ~1 s). */
  async remove(): Promise<void> {
    for (const [controller, dir] of this.dirs) {
      const err = await removeCgroupDir(dir, () => this.killAll())
      if (err) this.log.warn({ err, controller, dir }, 'cannot remove the task cgroup')
    }
    this.dirs.clear()
  }
}

/**
 * Removes a cgroup directory, retrying while it is busy (its processes still dying: `beforeRetry`
 * may kill them again) for up to ~1 s; a directory already gone is fine. Returns the error
 * when it could not be removed.
 */
export async function removeCgroupDir(dir: string, beforeRetry?: () => Promise<void>): Promise<unknown> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir)
      return undefined
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return undefined
      if (code !== 'EBUSY' || attempt >= 20) return err
      await beforeRetry?.()
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}
