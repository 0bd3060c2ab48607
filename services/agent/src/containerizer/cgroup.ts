// Best-effort resource limits for the process containerizer: one cgroup (v1) per task under
// `<root>/<controller>/regatta/`, for memory, CPU (CFS quota) and pids, where the host lets us
// write there. Nothing here may fail a launch: a limit that cannot be set is logged and skipped.
import { constants } from 'node:fs'
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../../../../shared/log/index.js'

export type Controller = 'memory' | 'cpu' | 'pids'

export interface CgroupLimits {
  memMb?: number
  cpus?: number
  pids?: number
}

const CFS_PERIOD_US = 100_000

/** The controllers this host lets us create cgroups in (cgroup v1, writable), probed once. */
export async function writableControllers(root: string, parent: string): Promise<Controller[]> {
  const usable: Controller[] = []
  for (const controller of ['memory', 'cpu', 'pids'] as const) {
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

  /** Creates the task's cgroups and writes its limits; controllers that fail are left out. */
  static async create(root: string, parent: string, name: string, controllers: Controller[], limits: CgroupLimits, log: Logger): Promise<TaskCgroup> {
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
    return new TaskCgroup(dirs, log)
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
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir)
          break
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code
          if (code === 'ENOENT') break
          if (code !== 'EBUSY' || attempt >= 20) {
            this.log.warn({ err, controller, dir }, 'cannot remove the task cgroup')
            break
          }
          await this.killAll()
          await new Promise((r) => setTimeout(r, 50))
        }
      }
    }
    this.dirs.clear()
  }
}
