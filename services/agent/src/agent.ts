// The agent: registers with the leading master, heartbeats, runs tasks through a containerizer,
// checkpoints them, and sends their status updates into JetStream until they are stored.
//
// Around the command: the checkout, then the cache restored into the workspace (a failure to
// restore is logged and is a miss); after the main container exits and before the terminal
// update, within `saveTimeoutMs`: the artifacts saved (also after a failure: test reports), and
// the cache saved (after a success only, unless its key was restored). A cache that cannot be
// saved is said in the terminal message and changes nothing else; artifacts that cannot be
// saved turn a success into FAILED with reason ARTIFACTS_FAILED (exit code 0 kept). A killed
// task saves nothing, and a kill during the saving aborts it (KILLED).
import { randomUUID } from 'node:crypto'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { hostname as osHostname } from 'node:os'
import { join, resolve, sep } from 'node:path'
import type { NatsConnection, Subscription } from 'nats'
import {
  AgentCommand, AgentRegistered, Buckets, CommandReply, HeartbeatReply, LeaderElected, Subjects, decode, encode, isTerminal,
  type AgentInfo, type Attributes, type Resource, type TaskInfo, type TaskState, type TaskStatus,
} from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { JetStreamPublisher, StatusUpdateSender, request, requestWithRetry, serve } from '../../../shared/nats/index.js'
import { systemClock, type Clock, type Timer } from '../../../shared/clock/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { scalar } from '../../../shared/resources/index.js'
import { CheckpointStore, type Checkpoint } from './checkpoint.js'
import { CheckoutAborted, WORKSPACE_DIR, WORKSPACE_MOUNT, checkoutCommit } from '../../../shared/git/checkout.js'
import { LABEL_AGENT, LABEL_FRAMEWORK, LABEL_TASK } from './containerizer/labels.js'
import { SIDECARS_NEED_DOCKER } from './containerizer/process.js'
import type { Containerizer, ExitInfo, OutputSink, RunningContainer } from './containerizer/types.js'
import { OutputPublisher, TaskText } from './task-output.js'
import { checkWorkspacePath, restoreCache, saveArtifacts, saveCache, type SaveResult } from './workspace-store.js'
import { Volumes, checkVolumes } from './volumes.js'
import { OversubscriptionController, PREEMPTED, type ObservedTask, type OversubscriptionOptions } from './oversubscription/index.js'
import { SandboxDisk, removeSandbox } from './disk-budget.js'
import { Reaper } from './reaper.js'

export interface AgentOptions {
  nc: NatsConnection
  workDir: string
  pool: string
  resources: Resource[]
  attributes: Attributes
  containerizer: Containerizer
  logger: Logger
  clock?: Clock
  /** Image for tasks that name none (Docker). */
  defaultImage?: string
  hostname?: string
  /** Fixed id (tests, simulated fleets); otherwise kept in the work dir. */
  id?: string
  /** How long a finished task's sandbox is kept (default 10 min; 0 removes it at once). */
  sandboxRetentionMs?: number
  /**
   * Most MiB the sandboxes (of running tasks and kept ones) may take together; kept sandboxes are
   * evicted least recently used first to stay under it. Default: the agent's `disk` resource.
   */
  diskBudgetMb?: number
  /** How often the reaper looks for orphans (containers, processes, sandboxes no task owns); default 30 s. */
  reapIntervalMs?: number
  /** Default SIGTERM→SIGKILL grace for kills. */
  killGracePeriodMs?: number
  /** How long restoring a task's cache may take before the task runs without it (default 5 min). */
  cacheRestoreTimeoutMs?: number
  /** How long saving a task's cache and artifacts may take, together (default 10 min). */
  saveTimeoutMs?: number
  /** Replicas of the cache and artifact buckets when the agent creates them (default 1). */
  objectStoreReplicas?: number
  /**
   * How long a task's end waits for its output to be stored (default 30 s), and how long the
   * rest is still tried after that, in the background (default 10 min): output of a host cut
   * off from the NATS cluster reaches the job's log once the host is back.
   */
  outputFlushMs?: number
  outputLateMs?: number
  /**
   * Oversubscription: estimate what the non-revocable tasks leave unused and send it as
   * revocable on heartbeats; preempt revocable tasks when it is needed back. Absent: off.
   */
  oversubscription?: OversubscriptionOptions
}

interface LiveTask {
  info: TaskInfo
  status: TaskStatus
  sandbox: string
  container?: RunningContainer
  /** A kill was asked for; `reason` and `message` go on its KILLED update (default: KILLED, on request). */
  killRequested?: { graceMs: number; reason?: string; message?: string }
  /** When the agent got the task (ms): the newest revocable tasks are preempted first. */
  launchedAt: number
  logs?: { stdout: WriteStream; stderr: WriteStream }
  outputSeq: number
  /** Writes out what the output's decoder and masker still hold (set by outputSink). */
  endOutput?: () => void
  /** Stores the task's output in JetStream (streamOutput), in order, retried until stored. */
  output?: OutputPublisher
  /** The task's cache key was found and restored (its cache is then not saved again). */
  cacheRestored?: boolean
  /** Aborts a cache restore or a save in progress (a kill). */
  transfer?: AbortController
  /** Aborts the checkout in progress (a kill, or the agent stopping): git and its helpers are killed. */
  checkout?: AbortController
  /** Settles when launch() is done with the task (started it, or reported why not). */
  launching?: Promise<void>
  finishing?: boolean
  /** Resolves when the latest checkpoint of the task is written (or failed to be). */
  checkpointed?: Promise<void>
  /** Resolves once the task's latest update has been handed to the sender (updates go in order). */
  sendQueued?: Promise<void>
}

/** Most sidecars a task may have. */
const MAX_SIDECARS = 8
const MAX_MESSAGE = 8192

/** How long, and how many, ended tasks an agent keeps reporting after their end was stored. */
const ENDED_RETENTION_MS = 120_000
const ENDED_MAX = 10_000
/** How long a task's end waits for its output to be stored in JetStream (a stall of the stream). */
const OUTPUT_FLUSH_MS = 30_000
/** How long output not stored by then is still tried, after the end was reported. */
const OUTPUT_LATE_MS = 10 * 60_000

const key = (frameworkId: string, taskId: string): string => `${frameworkId}\u0000${taskId}`

/** A mount source relative to the sandbox; one that climbs out of it is refused. */
function insideSandbox(sandbox: string, rel: string): string {
  const abs = resolve(sandbox, rel)
  if (abs !== sandbox && !abs.startsWith(`${sandbox}${sep}`)) {
    throw new RegattaError('INVALID_TASK', `mount source "${rel}" is outside the task's sandbox`)
  }
  return abs
}

/**
 * What the schema cannot say about a task: sidecar names unique (and at most 8), sidecars only
 * with Docker, cache and artifact paths inside the workspace. Throws before anything is done.
 */
function checkTask(info: TaskInfo, containerizer: Containerizer['kind']): void {
  const sidecars = info.sidecars ?? []
  if (sidecars.length > MAX_SIDECARS) throw new RegattaError('INVALID_TASK', `${sidecars.length} sidecars: at most ${MAX_SIDECARS}`)
  const names = new Set<string>()
  for (const s of sidecars) {
    if (names.has(s.name)) throw new RegattaError('INVALID_TASK', `two sidecars are named "${s.name}"`)
    names.add(s.name)
  }
  if (sidecars.length > 0 && containerizer !== 'docker') throw new RegattaError('CONTAINER_ERROR', SIDECARS_NEED_DOCKER)
  for (const p of info.cache?.paths ?? []) checkWorkspacePath(p)
  for (const p of info.artifacts?.paths ?? []) checkWorkspacePath(p)
}

/** Where a task's caches and artifacts live: its checkout, or its sandbox without one. */
function workspaceOf(info: TaskInfo, sandbox: string): string {
  return info.checkout ? join(sandbox, WORKSPACE_DIR) : sandbox
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export class Agent {
  id = ''
  private readonly nc: NatsConnection
  private readonly publisher: JetStreamPublisher
  private log: Logger
  private readonly clock: Clock
  private readonly checkpoints: CheckpointStore
  /** Persistent volumes: directories kept across tasks, mounted into the tasks that take them. */
  private readonly volumes: Volumes
  private readonly tasks = new Map<string, LiveTask>()
  /** Tasks that ended recently (their end stored in JetStream), in the order they ended. */
  private readonly ended = new Map<string, { task: TaskInfo; status: TaskStatus; at: number }>()
  /** Sends status updates into JetStream, in order, batched per framework. */
  private readonly updates: StatusUpdateSender
  private sub?: Subscription
  private leaderSub?: Subscription
  private heartbeatTimer?: Timer
  private masterEpoch = 0
  private heartbeatIntervalMs = 1_000
  private registered = false
  private registering?: Promise<void>
  private stopped = false
  private readonly oversubscription?: OversubscriptionController
  /** Sandboxes of ended tasks kept for their retention, within the disk budget. */
  private readonly disk: SandboxDisk
  private reaper?: Reaper

  constructor(private readonly o: AgentOptions) {
    this.nc = o.nc
    this.publisher = new JetStreamPublisher(o.nc)
    this.updates = new StatusUpdateSender(this.publisher, o.logger)
    this.clock = o.clock ?? systemClock
    this.log = o.logger
    this.checkpoints = new CheckpointStore(o.workDir)
    this.volumes = new Volumes(o.workDir, o.logger)
    const diskMb = scalar(o.resources, 'disk')
    const budgetMb = o.diskBudgetMb ?? (diskMb > 0 ? diskMb : undefined)
    this.disk = new SandboxDisk({
      retentionMs: this.retentionMs, clock: this.clock, logger: o.logger,
      ...(budgetMb !== undefined ? { budgetMb } : {}),
      live: () => [...this.tasks.values()].map((t) => t.sandbox),
    })
    if (o.oversubscription) {
      this.oversubscription = new OversubscriptionController({
        tasks: () => this.observedTasks(),
        preempt: (k, message) => this.preempt(k, message),
        estimateShrank: () => void this.heartbeat(),
      }, o.oversubscription, { clock: this.clock, logger: o.logger })
    }
  }

  get epoch(): number {
    return this.masterEpoch
  }

  get info(): AgentInfo {
    return {
      id: this.id,
      hostname: this.o.hostname ?? osHostname(),
      pool: this.o.pool,
      attributes: this.o.attributes,
      resources: this.o.resources,
      containerizer: this.o.containerizer.kind,
    }
  }

  runningTasks(): TaskInfo[] {
    return [...this.tasks.values()].map((t) => t.info)
  }

  async start(): Promise<void> {
    await mkdir(this.o.workDir, { recursive: true })
    this.id = this.o.id ?? await this.loadOrCreateId()
    this.log = this.o.logger.child({ agentId: this.id })
    await this.checkCommandSubject()
    await this.checkpoints.init()
    await this.recover()
    // after recovery: what the recovered tasks do not own is left over from before the restart
    this.reaper = new Reaper({
      agentId: this.id, workDir: this.o.workDir, containerizer: this.o.containerizer, disk: this.disk,
      retentionMs: this.retentionMs, clock: this.clock, logger: this.log,
      ...(this.o.reapIntervalMs !== undefined ? { intervalMs: this.o.reapIntervalMs } : {}),
      ownsTask: (frameworkId, taskId) => this.tasks.has(key(frameworkId, taskId)) || this.ended.has(key(frameworkId, taskId)),
      liveSandboxes: () => new Set([...this.tasks.values()].map((t) => t.sandbox)),
    })
    this.reaper.start()
    this.sub = serve(this.nc, Subjects.agentCommand(this.id), AgentCommand, (c) => this.command(c), { logger: this.log })
    // a new leader announces itself: re-register at once rather than at the next heartbeat
    this.leaderSub = this.nc.subscribe(Subjects.leaderElected, {
      callback: (err, m) => {
        if (err) return
        try {
          const { epoch } = decode(LeaderElected, m.data, 'leader announcement')
          if (epoch > this.masterEpoch && this.registered) void this.register()
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, 'ignoring a bad leader announcement')
        }
      },
    })
    await this.register()
    this.scheduleHeartbeat()
    this.oversubscription?.start()
  }

  /**
   * Fails at start, with what to do, when the NATS server refuses this agent its command
   * subject: its NATS user was made for another agent id, and the agent would register and
   * then never hear a command. The server answers a refused subscription before the PONG
   * of the flush that follows it.
   */
  private async checkCommandSubject(): Promise<void> {
    const subject = Subjects.agentCommand(this.id)
    const probe = this.nc.subscribe(subject, { callback: () => undefined })
    await this.nc.flush()
    if (!probe.isClosed()) {
      probe.unsubscribe()
      return
    }
    throw new RegattaError('INVALID_CONFIG', `the NATS server refuses agent ${this.id} its command subject ${subject}: its NATS user was made for another agent id; run the agent with the id its user was made for (--id / REGATTA_AGENT_ID)`)
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.heartbeatTimer?.cancel()
    // a checkout in progress is not recovered by a restart (no container to find): it is
    // aborted, and its task reported KILLED before the updates are closed
    const checkingOut = [...this.tasks.values()].filter((t) => t.checkout)
    for (const t of checkingOut) void this.killTask(t, 0, { reason: 'AGENT_STOPPED', message: 'the agent stopped during the task\'s checkout' })
    await Promise.all(checkingOut.map((t) => t.launching))
    // with no task left, the master is told to forget this agent now rather than after
    // --agent-gone (a scaled-in agent); with tasks, it stays known so that a restart recovers them
    if (this.id && ![...this.tasks.values()].some((t) => !isTerminal(t.status.state))) {
      await request(this.nc, Subjects.agentUnregister, { agentId: this.id }, CommandReply, 2_000)
        .catch((err: unknown) => this.log.debug({ err: errorText(err) }, 'could not unregister'))
    }
    await this.oversubscription?.stop()
    await this.reaper?.stop()
    this.disk.stop()
    this.sub?.unsubscribe()
    this.leaderSub?.unsubscribe()
    // output not stored yet stays in the sandbox files (a restarted agent does not publish it again)
    for (const t of this.tasks.values()) t.output?.close()
    for (const out of this.lateOutput) out.close()
    // let updates in flight be stored, for a bounded time: those still being checkpointed are
    // handed to the sender first
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.all([...this.tasks.values()].map((t) => t.sendQueued)),
      new Promise((r) => { timer = setTimeout(r, 2_000) }),
    ])
    clearTimeout(timer)
    await this.updates.close()
    this.publisher.close()
  }

  private async loadOrCreateId(): Promise<string> {
    const file = join(this.o.workDir, 'agent-id')
    try {
      const id = (await readFile(file, 'utf8')).trim()
      if (/^[A-Za-z0-9._-]+$/.test(id)) return id
    } catch {
      // first start
    }
    const host = (this.o.hostname ?? osHostname()).replace(/[^A-Za-z0-9-]/g, '-').slice(0, 40)
    const id = `${host}-${randomUUID().slice(0, 8)}`
    await writeFile(file, `${id}\n`)
    return id
  }

  // ---- registration and heartbeats ---------------------------------------------------------

  private register(): Promise<void> {
    if (this.registering) return this.registering
    this.registering = (async () => {
      let delay = 100
      while (!this.stopped) {
        try {
          const reply = await requestWithRetry(this.nc, Subjects.agentRegister, {
            agent: this.info,
            tasks: [
              ...[...this.tasks.values()].map((t) => ({ task: t.info, status: t.status })),
              ...(this.pruneEnded(), [...this.ended.values()].map((e) => ({ task: e.task, status: e.status }))),
            ],
          }, AgentRegistered, { deadlineMs: 60_000 })
          this.acceptEpoch(reply.epoch)
          this.heartbeatIntervalMs = reply.heartbeatIntervalMs
          this.registered = true
          for (const taskId of reply.killTaskIds ?? []) {
            for (const t of this.tasks.values()) if (t.info.taskId === taskId) void this.killTask(t, 0)
          }
          this.log.info({ epoch: reply.epoch, tasks: this.tasks.size }, 'registered with the master')
          return
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'registration failed; retrying')
          await new Promise((r) => setTimeout(r, delay))
          delay = Math.min(delay * 2, 2_000)
        }
      }
    })().finally(() => { this.registering = undefined })
    return this.registering
  }

  private scheduleHeartbeat(): void {
    if (this.stopped) return
    this.heartbeatTimer = this.clock.setTimeout(() => void this.heartbeat().finally(() => this.scheduleHeartbeat()), this.heartbeatIntervalMs)
  }

  private async heartbeat(): Promise<void> {
    if (!this.registered) return
    try {
      const revocable = this.oversubscription?.revocable()
      const heartbeat = {
        agentId: this.id, ...(revocable ? { revocable } : {}), disk: this.disk.stats(),
        ...(this.reaper ? { orphans: this.reaper.orphans() } : {}),
      }
      const reply = await request(this.nc, Subjects.agentHeartbeat, heartbeat, HeartbeatReply, Math.max(1_000, this.heartbeatIntervalMs))
      if (reply.epoch > this.masterEpoch) {
        // a new leader that knows us (from its registry): re-register so it learns our tasks
        this.acceptEpoch(reply.epoch)
        await this.register()
      }
    } catch (err) {
      const e = RegattaError.from(err)
      if (e.code === 'UNKNOWN_AGENT') {
        this.log.info('the master does not know this agent; re-registering')
        await this.register()
      } else {
        this.log.debug({ err: e.message }, 'heartbeat failed')
      }
    }
  }

  private acceptEpoch(epoch: number): void {
    if (epoch > this.masterEpoch) this.masterEpoch = epoch
  }

  // ---- commands ----------------------------------------------------------------------------

  private command(c: AgentCommand): { ok: true } {
    if (c.epoch < this.masterEpoch) {
      throw new RegattaError('STALE_EPOCH', `command from epoch ${c.epoch} refused: the leader's epoch is ${this.masterEpoch}`)
    }
    this.acceptEpoch(c.epoch)
    switch (c.type) {
      case 'LAUNCH':
        for (const info of c.tasks) {
          if (info.agentId !== this.id) continue
          if (this.tasks.has(key(info.frameworkId, info.taskId))) continue
          const launching = this.launch(info)
          const t = this.tasks.get(key(info.frameworkId, info.taskId))
          if (t) t.launching = launching
        }
        break
      case 'KILL': {
        const t = this.tasks.get(key(c.frameworkId, c.taskId))
        if (t) void this.killTask(t, c.gracePeriodMs)
        else this.log.info({ taskId: c.taskId, frameworkId: c.frameworkId }, 'kill of a task this agent does not run')
        break
      }
      case 'SHUTDOWN_FRAMEWORK':
        for (const t of this.tasks.values()) if (t.info.frameworkId === c.frameworkId) void this.killTask(t, 0)
        break
      case 'CREATE_VOLUMES':
        void this.volumes.create(c.volumes)
        break
      case 'DESTROY_VOLUMES':
        void this.volumes.destroy(c.volumes)
        break
    }
    return { ok: true }
  }

  private readonly frameworkDirs = new Set<string>()

  /** The task's sandbox; its framework's directory is made once. Async: a disk may be slow. */
  private async makeSandbox(sandbox: string, frameworkId: string): Promise<void> {
    if (!this.frameworkDirs.has(frameworkId)) {
      await mkdir(join(sandbox, '..'), { recursive: true })
      this.frameworkDirs.add(frameworkId)
    }
    try {
      await mkdir(sandbox)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      await mkdir(sandbox, { recursive: true }) // the framework's directory was removed meanwhile
    }
  }

  private sandboxOf(info: TaskInfo): string {
    return join(this.o.workDir, 'sandboxes', encodeURIComponent(info.frameworkId), encodeURIComponent(info.taskId))
  }

  private async launch(info: TaskInfo): Promise<void> {
    const sandbox = this.sandboxOf(info)
    const t: LiveTask = {
      info, sandbox, outputSeq: 0, launchedAt: this.clock.now(),
      status: { taskId: info.taskId, frameworkId: info.frameworkId, agentId: this.id, state: 'STAGING', source: 'agent', timestamp: this.clock.now() },
    }
    this.tasks.set(key(info.frameworkId, info.taskId), t)
    const log = this.log.child({ taskId: info.taskId, frameworkId: info.frameworkId })
    try {
      checkTask(info, this.o.containerizer.kind)
      checkVolumes(info.resources)
      const mounts = (info.container.mounts ?? []).map((m) => ({ ...m, source: insideSandbox(sandbox, m.source) }))
      await this.makeSandbox(sandbox, info.frameworkId)
      this.update(t, 'STARTING')
      const image = info.container.image ?? this.o.defaultImage
      if (this.o.containerizer.kind === 'docker' && !image) {
        throw new RegattaError('CONTAINER_ERROR', 'the task names no image and the agent has no default image')
      }
      let workdir = info.container.workdir
      if (info.checkout) {
        const workspace = join(sandbox, WORKSPACE_DIR)
        if (t.killRequested) throw new RegattaError('CONTAINER_ERROR', 'killed before it started')
        t.checkout = new AbortController()
        try {
          await checkoutCommit(workspace, info.checkout, undefined, t.checkout.signal)
        } finally {
          t.checkout = undefined
        }
        if (this.o.containerizer.kind === 'docker') {
          mounts.push({ source: workspace, target: WORKSPACE_MOUNT })
          workdir ??= WORKSPACE_MOUNT
        } else {
          workdir ??= workspace
        }
      }
      if (info.cache && !t.killRequested) t.cacheRestored = await this.restoreCache(t, log)
      if (t.killRequested) throw new RegattaError('CONTAINER_ERROR', 'killed before it started')
      await this.volumes.attach(info.resources, this.o.containerizer.kind, sandbox, mounts)
      const output = this.outputSink(t)
      t.container = await this.o.containerizer.launch({
        taskId: info.taskId,
        frameworkId: info.frameworkId,
        agentId: this.id,
        ...(image ? { image } : {}),
        command: info.container.command,
        env: {
          REGATTA_TASK_ID: info.taskId,
          REGATTA_FRAMEWORK_ID: info.frameworkId,
          REGATTA_AGENT_ID: this.id,
          ...info.container.env,
          ...info.container.secretEnv,
        },
        ...(workdir ? { workdir } : {}),
        sandbox,
        network: info.container.network ?? 'none',
        mounts,
        cpus: scalar(info.resources, 'cpus') || undefined,
        memMb: scalar(info.resources, 'mem') || undefined,
        labels: { [LABEL_AGENT]: this.id, [LABEL_FRAMEWORK]: info.frameworkId, [LABEL_TASK]: info.taskId },
        ...(info.sidecars?.length ? {
          sidecars: info.sidecars.map((s) => ({
            name: s.name,
            image: s.image,
            ...(s.command ? { command: s.command } : {}),
            // the task's own environment (its secrets) is not passed on to its services
            env: { REGATTA_TASK_ID: info.taskId, REGATTA_FRAMEWORK_ID: info.frameworkId, REGATTA_SERVICE: s.name, ...s.env, ...s.secretEnv },
          })),
        } : {}),
      }, output)
      this.update(t, 'RUNNING')
      log.debug({ containerId: t.container.id }, 'task running')
      // a kill may have come while the container was starting (the narrowing above is stale)
      const pendingKill = t.killRequested as LiveTask['killRequested']
      if (pendingKill) void t.container.kill(pendingKill.graceMs)
      void t.container.exited.then((exit) => this.finish(t, exit))
    } catch (err) {
      const e = RegattaError.from(err, 'CONTAINER_ERROR')
      log.warn({ code: e.code, err: e.message }, 'task could not start')
      const reason = e.code === 'IMAGE_PULL_FAILED' || e.code === 'CHECKOUT_FAILED' ? e.code : 'CONTAINER_LAUNCH_FAILED'
      if (t.killRequested) this.update(t, 'KILLED', { reason: t.killRequested.reason ?? 'KILLED', message: t.killRequested.message ?? (err instanceof CheckoutAborted ? 'killed during its checkout' : 'killed before it started') })
      // as the master does with a task it refuses: ERROR, the task as described cannot run
      else if (e.code === 'INVALID_TASK') this.update(t, 'ERROR', { reason: 'TASK_INVALID', message: e.message })
      else this.update(t, 'FAILED', { reason, message: e.message })
      if (t.killRequested && !t.container) this.discard(t)
      else this.cleanup(t)
    }
  }

  /**
   * Where a task's output goes: its sandbox files and (streamOutput) JetStream, with the values
   * of its secret env vars masked before either sees them. `t.endOutput` passes on what the
   * masker still holds; it runs before the task's end is reported.
   */
  private outputSink(t: LiveTask): OutputSink {
    const { info, sandbox } = t
    const stream = info.streamOutput ? Subjects.taskOutput(info.frameworkId, this.id, info.taskId) : undefined
    const secrets = [info.container.secretEnv, ...(info.sidecars ?? []).map((s) => s.secretEnv)].flatMap((e) => Object.values(e ?? {}))
    const text = { stdout: new TaskText(secrets), stderr: new TaskText(secrets) }
    let files: LiveTask['logs']
    const write = (which: 'stdout' | 'stderr', data: string): void => {
      if (data.length === 0) return
      if (!files) {
        files = { stdout: createWriteStream(join(sandbox, 'stdout'), { flags: 'a' }), stderr: createWriteStream(join(sandbox, 'stderr'), { flags: 'a' }) }
        files.stdout.on('error', () => undefined)
        files.stderr.on('error', () => undefined)
        t.logs = files
      }
      files[which].write(data)
      t.output?.push(which, data)
    }
    if (stream) t.output = new OutputPublisher(this.publisher, stream, info.taskId, () => t.outputSeq++, this.log)
    t.endOutput = () => {
      write('stdout', text.stdout.end())
      write('stderr', text.stderr.end())
    }
    return (which, chunk) => write(which, text[which].push(chunk))
  }

  private async finish(t: LiveTask, exit: ExitInfo): Promise<void> {
    if (isTerminal(t.status.state) || t.finishing) return
    t.finishing = true
    const code = exit.exitCode
    // a function: a kill (and its reason) may come while the outputs are being saved
    const killed = (): { state: TaskState; extra: Partial<TaskStatus> } => ({ state: 'KILLED', extra: {
      reason: t.killRequested?.reason ?? 'KILLED', message: t.killRequested?.message ?? 'killed on request', ...(code !== null ? { exitCode: code } : {}),
    } })
    let end: { state: TaskState; extra: Partial<TaskStatus> }
    if (t.killRequested || exit.killed) {
      end = killed()
    } else if (exit.neverStarted) {
      // the agent died between creating the container and starting it: the command never ran,
      // so the framework may launch the task again (LOST) without running it twice
      end = { state: 'LOST', extra: { reason: 'CONTAINER_NEVER_STARTED', message: exit.message ?? 'the container was created but never started' } }
    } else if (code === 0) {
      end = { state: 'FINISHED', extra: { exitCode: 0 } }
    } else if (exit.oomKilled) {
      end = { state: 'FAILED', extra: { reason: 'MEMORY_LIMIT', message: 'the task ran out of memory (OOM killed)', ...(code !== null ? { exitCode: code } : {}) } }
    } else if (code === null) {
      end = { state: 'FAILED', extra: { reason: 'COMMAND_SIGNALED', message: exit.message ?? `the command was killed by ${exit.signal ?? 'a signal'}` } }
    } else {
      end = { state: 'FAILED', extra: { reason: 'COMMAND_FAILED', message: exit.message ?? `the command exited with code ${code}`, exitCode: code } }
    }
    if ((end.state === 'FINISHED' || end.state === 'FAILED') && (t.info.cache || t.info.artifacts)) {
      const saved = await this.saveOutputs(t, end.state === 'FINISHED').catch((err: unknown) => ({
        fields: {}, notes: [`saving the cache and artifacts failed: ${errorText(err)}`], artifactsFailed: t.info.artifacts !== undefined,
      }))
      if (t.killRequested) {
        end = killed()
      } else {
        Object.assign(end.extra, saved.fields)
        if (saved.notes.length > 0) {
          const text = [end.extra.message, ...saved.notes].filter(Boolean).join('; ')
          end.extra.message = text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 3)}...` : text
        }
        if (saved.artifactsFailed && end.state === 'FINISHED') {
          end = { state: 'FAILED', extra: { ...end.extra, reason: 'ARTIFACTS_FAILED' } }
        }
      }
    }
    t.endOutput?.()
    // the end is reported once the output is stored (the log then has all of it), or after a
    // while: the rest is then still tried in the background (a host cut off from the NATS
    // cluster stores it once it is back) and stays in the sandbox files in any case
    const flushMs = this.o.outputFlushMs ?? OUTPUT_FLUSH_MS
    if (t.output && !(await t.output.flush(flushMs))) {
      this.log.warn({ taskId: t.info.taskId }, `task output not all stored after ${flushMs / 1000} s: its end is reported now, the rest is still tried`)
      this.storeLate(t.info.taskId, t.output)
    } else {
      t.output?.close()
    }
    this.update(t, end.state, end.extra)
    this.cleanup(t)
  }

  /** Output of ended tasks still being stored after their end was reported (closed at stop). */
  private readonly lateOutput = new Set<OutputPublisher>()

  /** Keeps storing an ended task's output for a while, then gives up on the rest. */
  private storeLate(taskId: string, out: OutputPublisher): void {
    // a stopped agent stores nothing more (and keeps no retry loop alive)
    if (this.stopped) {
      out.close()
      return
    }
    this.lateOutput.add(out)
    const lateMs = this.o.outputLateMs ?? OUTPUT_LATE_MS
    void out.flush(lateMs).then((stored) => {
      this.lateOutput.delete(out)
      out.close()
      if (stored) this.log.info({ taskId }, 'the rest of the task\'s output was stored after its end')
      else if (!this.stopped) this.log.warn({ taskId }, `task output not all stored ${lateMs / 60_000} min after its end: the rest is only in its sandbox files`)
    })
  }

  /** Before the container starts: the task's cache, restored into its workspace. Never throws. */
  private async restoreCache(t: LiveTask, log: Logger): Promise<boolean> {
    const key = t.info.cache!.key
    const transfer = new AbortController()
    t.transfer = transfer
    const started = Date.now()
    try {
      const restored = await restoreCache(this.nc, workspaceOf(t.info, t.sandbox), key, {
        signal: AbortSignal.any([transfer.signal, AbortSignal.timeout(this.o.cacheRestoreTimeoutMs ?? 300_000)]),
        replicas: this.o.objectStoreReplicas ?? 1,
      })
      log.debug({ key, restored, ms: Date.now() - started }, restored ? 'cache restored' : 'cache miss')
      return restored
    } catch (err) {
      log.warn({ key, err: errorText(err) }, 'cache not restored: the task runs without it')
      return false
    } finally {
      t.transfer = undefined
    }
  }

  /** After the command: its artifacts (always) and its cache (after a success), in parallel. Never throws. */
  private async saveOutputs(t: LiveTask, succeeded: boolean): Promise<{ fields: Partial<TaskStatus>; notes: string[]; artifactsFailed: boolean }> {
    const { cache, artifacts } = t.info
    const dir = workspaceOf(t.info, t.sandbox)
    const transfer = new AbortController()
    t.transfer = transfer
    const o = {
      signal: AbortSignal.any([transfer.signal, AbortSignal.timeout(this.o.saveTimeoutMs ?? 600_000)]),
      replicas: this.o.objectStoreReplicas ?? 1,
    }
    const settle = (p: Promise<SaveResult>): Promise<SaveResult | Error> => p.catch((err: unknown) => RegattaError.from(err, 'WORKSPACE_STORE_FAILED'))
    const [c, a] = await Promise.all([
      cache && succeeded && !t.cacheRestored ? settle(saveCache(this.nc, dir, cache.key, cache.paths, o)) : undefined,
      artifacts ? settle(saveArtifacts(this.nc, dir, artifacts.name, artifacts.paths, o)) : undefined,
    ])
    t.transfer = undefined
    const fields: Partial<TaskStatus> = {}
    const notes: string[] = []
    let artifactsFailed = false
    if (cache) {
      fields.cache = { key: cache.key, restored: t.cacheRestored ?? false, saved: c !== undefined && !(c instanceof Error) && c.saved }
      if (c instanceof Error) notes.push(`the cache was not saved: ${c.message}`)
      else if (c?.reason === 'empty') notes.push(`the cache "${cache.key}" was not saved: none of its paths exist (${c.skipped.join(', ')})`)
    }
    if (artifacts) {
      if (a instanceof Error) {
        artifactsFailed = true
        notes.push(`the artifacts were not saved: ${a.message}`)
      } else if (a?.saved) {
        fields.artifact = { bucket: Buckets.artifacts, name: artifacts.name, size: a.size }
        if (a.skipped.length > 0) notes.push(`artifact "${artifacts.name}" saved without ${a.skipped.join(', ')}`)
      } else if (a) {
        notes.push(`no artifact "${artifacts.name}" saved: none of its paths exist (${a.skipped.join(', ')})`)
      }
    }
    return { fields, notes, artifactsFailed }
  }

  private cleanup(t: LiveTask): void {
    t.logs?.stdout.end()
    t.logs?.stderr.end()
    // the container goes once the terminal state is on disk: an agent that dies in between finds
    // the end in its checkpoint after a restart, rather than a task whose container is gone (LOST)
    const container = t.container
    if (container) void (t.checkpointed ?? Promise.resolve()).then(() => this.o.containerizer.remove(container.id)).catch(() => undefined)
    // kept for the retention (for a look after a failure), within the disk budget
    this.disk.retain(t.sandbox)
  }

  /** A task killed before it started: nothing in its sandbox is worth a look (a half-made checkout), so it goes now. */
  private discard(t: LiveTask): void {
    t.logs?.stdout.end()
    t.logs?.stderr.end()
    void removeSandbox(t.sandbox).then((removed) => {
      if (!removed) this.log.warn({ taskId: t.info.taskId, sandbox: t.sandbox }, 'cannot remove the sandbox of a task killed before it started')
    })
  }

  private get retentionMs(): number {
    return this.o.sandboxRetentionMs ?? 10 * 60_000
  }

  private async killTask(t: LiveTask, graceMs?: number, why?: { reason: string; message: string }): Promise<void> {
    const grace = graceMs ?? t.info.killGracePeriodMs ?? this.o.killGracePeriodMs ?? 3_000
    // the first reason stays: a task preempted and then killed on request was preempted
    const prior = t.killRequested?.reason !== undefined ? { reason: t.killRequested.reason, message: t.killRequested.message ?? '' } : undefined
    t.killRequested = { graceMs: grace, ...(prior ?? why ?? {}) }
    t.transfer?.abort(new Error('the task was killed'))
    t.checkout?.abort(new Error(t.killRequested.message ?? 'the task was killed'))
    if (t.container) await t.container.kill(grace).catch((err) => this.log.warn({ err, taskId: t.info.taskId }, 'kill failed'))
  }

  // ---- oversubscription -------------------------------------------------------------------

  /** The tasks as the oversubscription controller sees them. */
  private observedTasks(): ObservedTask[] {
    const out: ObservedTask[] = []
    for (const [k, t] of this.tasks) {
      if (isTerminal(t.status.state)) continue
      out.push({
        key: k, resources: t.info.resources, launchedAt: t.launchedAt,
        ...(t.container ? { container: t.container } : {}),
        ending: t.killRequested !== undefined || t.finishing === true,
      })
    }
    return out
  }

  /** Kills a revocable task whose resources the non-revocable tasks need back: KILLED, PREEMPTED. */
  private preempt(k: string, message: string): void {
    const t = this.tasks.get(k)
    if (!t || t.killRequested || isTerminal(t.status.state)) return
    this.log.warn({ taskId: t.info.taskId, frameworkId: t.info.frameworkId, why: message }, 'preempting a revocable task')
    void this.killTask(t, undefined, { reason: PREEMPTED, message })
  }

  // ---- status updates ---------------------------------------------------------------------

  private update(t: LiveTask, state: TaskState, extra: Partial<TaskStatus> = {}): void {
    t.status = {
      taskId: t.info.taskId, frameworkId: t.info.frameworkId, agentId: this.id, state,
      uuid: randomUUID(), source: 'agent', timestamp: this.clock.now(), ...extra,
    }
    const status = t.status
    const cp: Checkpoint = {
      task: t.info, status, sandbox: t.sandbox,
      ...(t.container ? { containerId: t.container.id } : {}),
      ...(t.cacheRestored !== undefined ? { cacheRestored: t.cacheRestored } : {}),
    }
    const k = key(t.info.frameworkId, t.info.taskId)
    const saved = this.checkpoints.save(cp).catch((err) => this.log.warn({ err, taskId: t.info.taskId }, 'checkpoint failed'))
    t.checkpointed = saved
    // Sent once checkpointed (and after the task's previous update): an agent that dies after
    // sending sends this same update again when it restarts (same uuid, which the framework
    // knows), never a second one with a new uuid for an end the framework already heard.
    t.sendQueued = Promise.all([t.sendQueued, saved]).then(() => this.sendUpdate(t, k, status))
  }

  private sendUpdate(t: LiveTask, k: string, status: TaskStatus): void {
    this.updates.send(status).then(() => {
      if (isTerminal(status.state) && t.status === status) {
        // stored in JetStream: JetStream now owns delivery to the framework. The agent still
        // reports it for a while (re-registration), so that a new leader answers a
        // reconciliation with how it ended rather than "unknown" while the update is in flight.
        this.tasks.delete(k)
        this.ended.set(k, { task: t.info, status, at: this.clock.now() })
        this.pruneEnded()
        this.checkpoints.remove(t.info.frameworkId, t.info.taskId).catch((err) => this.log.warn({ err, taskId: t.info.taskId }, "checkpoint failed"))
      }
    }, () => {
      // the agent is stopping: the checkpoint keeps the update for the restarted agent
    })
  }

  private pruneEnded(): void {
    const cutoff = this.clock.now() - ENDED_RETENTION_MS
    for (const [k, e] of this.ended) {
      if (e.at >= cutoff && this.ended.size <= ENDED_MAX) break
      this.ended.delete(k)
    }
  }

  // ---- recovery ---------------------------------------------------------------------------

  /** After a restart: find checkpointed tasks, re-attach to their containers, report the rest lost. */
  private async recover(): Promise<void> {
    const { checkpoints, broken } = await this.checkpoints.load()
    for (const name of broken) this.log.warn({ checkpoint: name }, 'unreadable checkpoint ignored')
    if (checkpoints.length === 0 && this.o.containerizer.kind === 'process') return
    const sinks = new Map<string, OutputSink>()
    let recovered: Awaited<ReturnType<Containerizer['recover']>> = []
    try {
      recovered = await this.o.containerizer.recover(this.id, (taskId) => {
        return (which, chunk) => sinks.get(taskId)?.(which, chunk)
      })
    } catch (err) {
      this.log.error({ err }, 'container recovery failed')
    }
    const byTask = new Map(recovered.map((r) => [key(r.frameworkId, r.taskId), r]))
    for (const cp of checkpoints) {
      const k = key(cp.task.frameworkId, cp.task.taskId)
      const t: LiveTask = { info: cp.task, status: cp.status, sandbox: cp.sandbox, outputSeq: 0, launchedAt: cp.status.timestamp, ...(cp.cacheRestored !== undefined ? { cacheRestored: cp.cacheRestored } : {}) }
      this.tasks.set(k, t)
      const found = byTask.get(k)
      byTask.delete(k)
      if (isTerminal(cp.status.state)) {
        // ended before the restart but maybe not stored: send it again (same uuid, de-duplicated)
        this.update(t, cp.status.state, { ...cp.status })
        // the agent died before removing its container, and its sandbox's retention timer is gone
        if (found) void this.o.containerizer.remove(found.container.id).catch(() => undefined)
        this.disk.retain(t.sandbox, cp.status.timestamp)
        continue
      }
      if (!found) {
        if (cp.containerId) await this.o.containerizer.destroyLeftover?.(cp.containerId, cp.task.taskId).catch(() => undefined)
        this.update(t, 'LOST', { reason: 'CONTAINER_NOT_FOUND', message: this.o.containerizer.kind === 'process'
          ? 'a process cannot be re-attached after an agent restart: it was stopped'
          : 'the task\'s container did not survive the agent restart' })
        this.cleanup(t)
        continue
      }
      t.container = found.container
      sinks.set(cp.task.taskId, this.outputSink(t))
      // the checkpointed update may not have been stored before the restart: send it again
      // (same uuid; the framework drops what it acknowledged already), then RUNNING if it was not
      this.update(t, cp.status.state, { ...cp.status })
      if (cp.status.state !== 'RUNNING' && !found.neverStarted) this.update(t, 'RUNNING')
      void found.container.exited.then((exit) => this.finish(t, exit))
      this.log.info({ taskId: cp.task.taskId }, 'recovered a running task')
    }
    // containers of no checkpointed task: the reaper's first pass (right after this) removes them
    for (const orphan of byTask.values()) this.log.warn({ taskId: orphan.taskId, containerId: orphan.container.id }, 'a container no task owns: left to the reaper')
  }
}
