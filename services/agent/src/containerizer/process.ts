// The process containerizer: runs a task's command as a plain child process in its own process
// group (no shell), for hosts without a Docker engine. Limits come from cgroup v1 where the host
// lets us write there; isolation (network, mounts, image) is not provided.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { access, readFile, readdir, stat } from 'node:fs/promises'
import { delimiter, isAbsolute, join, relative, resolve } from 'node:path'
import { RegattaError } from '../../../../shared/errors/index.js'
import { silentLogger, type Logger } from '../../../../shared/log/index.js'
import { TaskCgroup, removeCgroupDir, writableControllers, type Controller } from './cgroup.js'
import { processGroupUsage } from '../oversubscription/procfs.js'
import {
  SANDBOX_MOUNT, type Containerizer, type ContainerUsage, ExitInfo, LaunchSpec, type Leftover, type LeftoverScope, OutputSink, RecoveredContainer,
  RunningContainer,
} from './types.js'

export interface ProcessContainerizerOptions {
  logger?: Logger
  /** Where the cgroup v1 controllers are mounted; default `/sys/fs/cgroup`. */
  cgroupRoot?: string
  /** The cgroup (under each controller) that holds the tasks' cgroups; default `regatta`. */
  cgroupParent?: string
  /** Set false to never touch cgroups. Default true (best effort). */
  limits?: boolean
  /** Most processes a task may run, where the pids controller is usable; default 4096. */
  pidsLimit?: number
  /** How long `exited` waits, after the exit, for the last output to arrive; default 2000 ms. */
  outputDrainMs?: number
}

/** Why a task with sidecars cannot run here. */
export const SIDECARS_NEED_DOCKER = 'sidecars need the Docker containerizer'

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

// Moves the shell into the task's cgroups, then execs the command: everything the command
// does is accounted from its first instruction (moving it after spawn would race its forks).
const ENTER_CGROUPS = 'while [ "$1" != -- ]; do { echo $$ > "$1"; } 2>/dev/null; shift; done; shift; exec "$@"'

export class ProcessContainerizer implements Containerizer {
  readonly kind = 'process' as const
  private readonly log: Logger
  private readonly cgroupRoot: string
  private readonly cgroupParent: string
  private readonly pidsLimit: number
  private readonly drainMs: number
  private controllers?: Promise<Controller[]>
  /** cpuacct, where writable: a task's CPU time for oversubscription (no limit is set there). */
  private accounting?: Promise<Controller[]>

  constructor(options: ProcessContainerizerOptions = {}) {
    this.log = options.logger ?? silentLogger()
    this.cgroupRoot = options.cgroupRoot ?? '/sys/fs/cgroup'
    this.cgroupParent = options.cgroupParent ?? 'regatta'
    this.pidsLimit = options.pidsLimit ?? 4096
    this.drainMs = options.outputDrainMs ?? 2000
    if (options.limits === false) {
      this.controllers = Promise.resolve([])
      this.accounting = Promise.resolve([])
    }
  }

  /** The cgroup controllers limits are enforced with on this host (probed once). */
  enforcedControllers(): Promise<Controller[]> {
    this.controllers ??= writableControllers(this.cgroupRoot, this.cgroupParent).then((found) => {
      if (found.length === 0) this.log.warn('cgroup v1 is not writable here: task memory, CPU and pids limits are not enforced')
      else if (found.length < 3) this.log.warn({ enforced: found }, 'only some cgroup controllers are writable; other limits are not enforced')
      return found
    })
    return this.controllers
  }

  async launch(spec: LaunchSpec, output: OutputSink): Promise<RunningContainer> {
    const log = this.log.child({ taskId: spec.taskId, frameworkId: spec.frameworkId })
    if (spec.sidecars?.length) throw new RegattaError('CONTAINER_ERROR', SIDECARS_NEED_DOCKER)
    const [file, ...args] = spec.command
    if (!file) throw new RegattaError('CONTAINER_ERROR', `task ${spec.taskId}: empty command`)
    const cwd = hostWorkdir(spec)
    const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: spec.sandbox, ...spec.env }
    const cwdOk = await stat(cwd).then((s) => s.isDirectory(), () => false)
    if (!cwdOk) throw new RegattaError('CONTAINER_ERROR', `cannot start ${file}: working directory ${cwd} does not exist`)
    if (spec.network !== 'host' || spec.mounts.length > 0) {
      log.debug({ network: spec.network, mounts: spec.mounts.length }, 'the process containerizer provides no network isolation or mounts')
    }

    const controllers = await this.enforcedControllers()
    this.accounting ??= writableControllers(this.cgroupRoot, this.cgroupParent, ['cpuacct'])
    const accounting = await this.accounting
    let cgroup: TaskCgroup | undefined
    if (controllers.length > 0) {
      const name = `${spec.taskId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64)}-${randomBytes(3).toString('hex')}`
      cgroup = await TaskCgroup.create(this.cgroupRoot, this.cgroupParent, name, [...controllers, ...accounting],
        { memMb: spec.memMb, cpus: spec.cpus, pids: this.pidsLimit }, log, ['memory', 'cpuacct'])
      if (cgroup.procsFiles().length === 0) cgroup = undefined
    }

    let child: ChildProcess
    try {
      if (cgroup) {
        // The shell execs by name, so check the command exists first: a missing one must fail
        // the launch (as spawn's ENOENT does), not become exit 127.
        await findExecutable(file, cwd, env.PATH)
        child = spawn('/bin/sh', ['-c', ENTER_CGROUPS, 'regatta-enter', ...cgroup.procsFiles(), '--', file, ...args], {
          cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
        })
      } else {
        child = spawn(file, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
      }
      await spawned(child)
    } catch (err) {
      await cgroup?.remove()
      const code = (err as NodeJS.ErrnoException).code
      const reason = code === 'ENOENT' ? `ENOENT: no such command (PATH=${env.PATH})` : code ?? (err instanceof Error ? err.message : String(err))
      throw new RegattaError('CONTAINER_ERROR', `cannot start ${file}: ${reason}`, { cause: err })
    }
    child.on('error', (err) => log.warn({ err, pid: child.pid }, 'task process error'))
    child.stdout!.on('data', (chunk: Buffer) => deliver(output, 'stdout', chunk, log))
    child.stderr!.on('data', (chunk: Buffer) => deliver(output, 'stderr', chunk, log))
    log.debug({ pid: child.pid, cgroup: cgroup !== undefined }, 'process started')
    return new ProcessTask(child, cgroup, this.drainMs, log)
  }

  /** A process does not survive as something we can re-attach to: the agent reports its tasks LOST. */
  /**
   * A task's process group may outlive the agent that started it: kill it, but only when the
   * pid still runs that task (its environment names the task), never a recycled pid.
   */
  async destroyLeftover(containerId: string, taskId: string): Promise<void> {
    const m = /^pid:(\d+)$/.exec(containerId)
    if (!m) return
    const pid = Number(m[1])
    let environ: string
    try {
      environ = await readFile(`/proc/${pid}/environ`, 'latin1')
    } catch {
      return // gone already
    }
    if (!environ.split('\0').includes(`REGATTA_TASK_ID=${taskId}`)) return
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // exited meanwhile
      }
    }
  }

  async recover(): Promise<RecoveredContainer[]> {
    return []
  }

  /**
   * The processes of this agent's tasks still running on the host, one leftover per task: found
   * in /proc by their environment (REGATTA_AGENT_ID and REGATTA_TASK_ID, set by the agent, and a
   * HOME inside this agent's sandboxes, set here), never this process or its ancestors. Empty
   * where /proc cannot be read.
   */
  async leftovers(scope: LeftoverScope): Promise<Leftover[]> {
    const byTask = new Map<string, Leftover>()
    for (const p of await taskProcesses(scope)) {
      const id = `task:${p.frameworkId}/${p.taskId}`
      if (!byTask.has(id)) byTask.set(id, { kind: 'process', id, frameworkId: p.frameworkId, taskId: p.taskId })
    }
    return [...byTask.values()]
  }

  /**
   * SIGKILLs a task's leftover processes (their groups too) after checking each one's environment
   * again (a pid may have been reused), then removes the cgroups under `<root>/<controller>/regatta/`
   * they were in.
   */
  async removeLeftover(leftover: Leftover, scope: LeftoverScope): Promise<void> {
    if (leftover.kind !== 'process') return
    const procs = (await taskProcesses(scope)).filter((p) => p.frameworkId === leftover.frameworkId && p.taskId === leftover.taskId)
    const cgroups = new Set<string>()
    for (const p of procs) for (const dir of await this.cgroupsOf(p.pid)) cgroups.add(dir)
    for (const p of procs) {
      for (const target of p.pid === p.pgid ? [-p.pgid, p.pid] : [p.pid]) {
        try {
          process.kill(target, 'SIGKILL')
        } catch {
          // gone already
        }
      }
    }
    for (const dir of cgroups) {
      const err = await removeCgroupDir(dir)
      if (err) this.log.warn({ err, dir }, 'cannot remove the cgroup of a leftover task')
    }
  }

  /** The task cgroups (v1, under our parent) a process is in. */
  private async cgroupsOf(pid: number): Promise<string[]> {
    const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '')
    const dirs: string[] = []
    for (const line of text.split('\n')) {
      const [, controllers, path] = line.split(':')
      if (!controllers || !path || controllers.startsWith('name=')) continue
      const parts = path.split('/')
      // `/regatta/<task cgroup>`, nothing else: never the parent, never another hierarchy
      if (parts.length === 3 && parts[0] === '' && parts[1] === this.cgroupParent && parts[2]) dirs.push(join(this.cgroupRoot, controllers, path))
    }
    return dirs
  }

  /** Nothing to remove: the sandbox belongs to the agent and the cgroups go when the task exits. */
  async remove(): Promise<void> {}
}

/** A running task process (the leader of its own process group). */
class ProcessTask implements RunningContainer {
  readonly id: string
  readonly exited: Promise<ExitInfo>
  private readonly pid: number
  private killRequested = false
  private done = false

  constructor(private readonly child: ChildProcess, private readonly cgroup: TaskCgroup | undefined, drainMs: number, private readonly log: Logger) {
    this.pid = child.pid!
    this.id = `pid:${this.pid}`
    this.exited = this.watch(drainMs)
  }

  async kill(graceMs: number): Promise<void> {
    if (this.done) return
    this.killRequested = true
    if (graceMs <= 0) {
      this.signalGroup('SIGKILL')
    } else {
      this.signalGroup('SIGTERM')
      const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs)
      await this.exited
      clearTimeout(timer)
    }
    await this.exited
  }

  /**
   * CPU time and memory from the task's cgroups; what they cannot say (no cgroup, cgroup v2)
   * from the processes of its group in /proc.
   */
  async usage(): Promise<ContainerUsage | undefined> {
    if (this.done) return undefined
    const fromCgroup = (await this.cgroup?.usage()) ?? {}
    if (fromCgroup.cpuSeconds !== undefined && fromCgroup.memMb !== undefined) return fromCgroup
    const fromProc = await processGroupUsage(this.pid)
    if (!fromProc && fromCgroup.cpuSeconds === undefined && fromCgroup.memMb === undefined) return undefined
    return { ...fromProc, ...fromCgroup }
  }

  private signalGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') this.log.warn({ err, pid: this.pid, signal }, 'cannot signal the task process group')
    }
  }

  private async watch(drainMs: number): Promise<ExitInfo> {
    const child = this.child
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve([child.exitCode, child.signalCode])
      else child.once('exit', (c, s) => resolve([c, s]))
    })
    // The task is over when its first process is: like a container, take the rest with it.
    this.signalGroup('SIGKILL')
    await this.cgroup?.killAll()
    let timer: NodeJS.Timeout | undefined
    const drained = await Promise.race([
      closed.then(() => true),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(false), drainMs) }),
    ])
    clearTimeout(timer)
    if (!drained) {
      // Something outside the group (setsid) still holds the pipes: stop reading them.
      child.stdout?.destroy()
      child.stderr?.destroy()
    }
    const info: ExitInfo = { exitCode: code, killed: this.killRequested }
    if (signal) info.signal = signal
    if (this.cgroup) {
      if (await this.cgroup.oomKilled()) info.oomKilled = true
      await this.cgroup.remove()
    }
    this.done = true
    this.log.debug({ pid: this.pid, ...info }, 'process exited')
    return info
  }
}

interface TaskProcess { pid: number; pgid: number; frameworkId: string; taskId: string }

/** Processes of this agent's tasks, from /proc (see ProcessContainerizer.leftovers). */
async function taskProcesses(scope: LeftoverScope): Promise<TaskProcess[]> {
  const names = await readdir('/proc').catch(() => [] as string[])
  const mine = `REGATTA_AGENT_ID=${scope.agentId}`
  const ancestors = await ancestorsOfSelf()
  const found: TaskProcess[] = []
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    if (ancestors.has(pid)) continue
    const environ = await readFile(`/proc/${pid}/environ`, 'latin1').catch(() => '')
    if (!environ.includes(mine)) continue
    const env = new Map<string, string>()
    for (const entry of environ.split('\0')) {
      const eq = entry.indexOf('=')
      if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1))
    }
    const taskId = env.get('REGATTA_TASK_ID')
    const frameworkId = env.get('REGATTA_FRAMEWORK_ID')
    const home = env.get('HOME') ?? ''
    if (env.get('REGATTA_AGENT_ID') !== scope.agentId || !taskId || frameworkId === undefined || !home.startsWith(`${scope.sandboxes}/`)) continue
    const pgid = await statField(pid, 4)
    if (pgid === undefined) continue
    found.push({ pid, pgid, frameworkId, taskId })
  }
  return found
}

/** This process and the processes above it: never leftovers, whatever their environment says. */
async function ancestorsOfSelf(): Promise<Set<number>> {
  const out = new Set<number>()
  let pid: number | undefined = process.pid
  while (pid !== undefined && pid > 0 && !out.has(pid) && out.size < 256) {
    out.add(pid)
    pid = await statField(pid, 3)
  }
  return out
}

/** A numeric field of /proc/<pid>/stat, counted from 0 (3: ppid, 4: pgrp); undefined when unreadable. */
async function statField(pid: number, index: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  // the command name (field 1) is in parentheses and may hold spaces or parentheses itself
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const n = Number(rest[index - 2])
  return Number.isInteger(n) ? n : undefined
}

/**
 * The host directory the command runs in: the sandbox by default; a container-style workdir
 * (`/sandbox/...`, or relative) is mapped into the sandbox so one LaunchSpec suits both
 * containerizers; any other absolute path is used as it is.
 */
function hostWorkdir(spec: LaunchSpec): string {
  const wd = spec.workdir
  if (!wd) return spec.sandbox
  if (!isAbsolute(wd)) return resolve(spec.sandbox, wd)
  const rel = relative(SANDBOX_MOUNT, wd)
  if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) return join(spec.sandbox, rel)
  return wd
}

/** Resolves a command like execvp does (a name with a slash is a path); throws an ENOENT error. */
async function findExecutable(file: string, cwd: string, path: string): Promise<string> {
  const candidates = file.includes('/')
    ? [resolve(cwd, file)]
    : path.split(delimiter).filter(Boolean).map((dir) => resolve(cwd, dir, file))
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK)
      if ((await stat(candidate)).isFile()) return candidate
    } catch {
      // next
    }
  }
  throw Object.assign(new Error(`${file}: not found`), { code: 'ENOENT' })
}

function spawned(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', reject)
  })
}

function deliver(output: OutputSink, stream: 'stdout' | 'stderr', chunk: Buffer, log: Logger): void {
  try {
    output(stream, chunk)
  } catch (err) {
    log.warn({ err }, 'output sink threw')
  }
}
