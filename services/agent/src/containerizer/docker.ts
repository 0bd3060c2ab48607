// The Docker containerizer: runs each task in a container through the engine's API (dockerode),
// streams its output, reports its exit (with OOM), kills it with a grace period and finds it
// again by label after an agent restart.
//
// Sidecars (a task's services): started before the main container, the first one in the task's
// network mode (`none` unless asked), the others and the main container in its network
// namespace (`NetworkMode: container:<first sidecar>`), so every one reaches the others on
// 127.0.0.1 and nothing else. Same labels as the task plus `regatta.sidecar=<name>`, and each
// the same limits as the task (memory, CPUs, pids). Their output goes into the task's stderr,
// each line prefixed with `[service <name>] `. When the main container exits (or is killed)
// they are killed and removed. After an agent restart they are never reported as tasks: those
// of a task still running are removed when it exits, the others at once (their output is not
// followed again).
import { mkdir, rename, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import Dockerode from 'dockerode'
import { RegattaError } from '../../../../shared/errors/index.js'
import { silentLogger, type Logger } from '../../../../shared/log/index.js'
import { LABEL_AGENT, LABEL_FRAMEWORK, LABEL_SIDECAR, LABEL_TASK } from './labels.js'
import {
  SANDBOX_MOUNT, type Containerizer, type ContainerUsage, ExitInfo, LaunchSpec, type Leftover, type LeftoverScope, OutputSink, RecoveredContainer,
  RunningContainer, SidecarSpec,
} from './types.js'

export interface DockerContainerizerOptions {
  docker?: Dockerode
  /** Image for tasks that name none. */
  defaultImage?: string
  logger?: Logger
  /** Most processes a container may run (fork bombs in a build); default 4096. */
  pidsLimit?: number
  /** Run docker-init as PID 1 so SIGTERM reaches the command and zombies are reaped; default true. */
  init?: boolean
  /** How long `exited` waits, after the exit, for the last output to arrive; default 2000 ms. */
  outputDrainMs?: number
  /** Where to write the /etc/hosts given to network-less containers; default in the OS temp dir. */
  loopbackHostsFile?: string
}

// What the engine writes to /etc/hosts for network `none`; a disabled network gets an empty
// file, and a build that talks to `localhost` needs these lines.
const LOOPBACK_HOSTS = [
  '127.0.0.1\tlocalhost',
  '::1\tlocalhost ip6-localhost ip6-loopback',
  'fe00::0\tip6-localnet',
  'ff00::0\tip6-mcastprefix',
  'ff02::1\tip6-allnodes',
  'ff02::2\tip6-allrouters',
  '',
].join('\n')

/**
 * The capabilities a build keeps (as root in its container): owning and reading files it
 * unpacks (CHOWN, DAC_OVERRIDE, FOWNER, FSETID), switching to a build user (SETUID, SETGID),
 * signalling its own processes (KILL) and listening on a low port (NET_BIND_SERVICE). Docker's
 * default set also has MKNOD, NET_RAW, SETFCAP, SETPCAP, SYS_CHROOT and AUDIT_WRITE: dropped.
 */
export const BUILD_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'SETUID', 'SETGID', 'KILL', 'NET_BIND_SERVICE'] as const
const MIN_MEMORY_BYTES = 6 * 1024 * 1024 // the engine refuses less
const MIN_NANO_CPUS = 10_000_000 // 0.01 CPU, the engine's minimum

interface WaitBody { StatusCode?: number; Error?: { Message?: string } | null }

export class DockerContainerizer implements Containerizer {
  readonly kind = 'docker' as const
  private readonly docker: Dockerode
  private readonly defaultImage?: string
  private readonly log: Logger
  private readonly pidsLimit: number
  private readonly init: boolean
  private readonly drainMs: number
  private readonly hostsPath: string
  private hostsFile?: Promise<string>
  /** Images known to be present: inspected (or pulled) once per name, not on every launch. */
  private readonly images = new Map<string, Promise<void>>()
  /** The sidecars of each main container not yet removed. */
  private readonly sidecarsOf = new Map<string, SidecarGroup>()

  constructor(options: DockerContainerizerOptions = {}) {
    this.docker = options.docker ?? new Dockerode()
    this.defaultImage = options.defaultImage
    this.log = options.logger ?? silentLogger()
    this.pidsLimit = options.pidsLimit ?? 4096
    this.init = options.init ?? true
    this.drainMs = options.outputDrainMs ?? 2000
    this.hostsPath = options.loopbackHostsFile ?? join(tmpdir(), 'regatta-docker', 'hosts')
  }

  async launch(spec: LaunchSpec, output: OutputSink): Promise<RunningContainer> {
    const log = this.log.child({ taskId: spec.taskId, frameworkId: spec.frameworkId })
    const named = spec.image ?? this.defaultImage
    if (!named) throw new RegattaError('CONTAINER_ERROR', `task ${spec.taskId}: no image given and no default image configured`)
    const image = withTag(named)
    const sidecars = spec.sidecars ?? []
    await Promise.all([
      this.ensureImage(image, log),
      ...sidecars.map((s) => this.ensureImage(withTag(s.image), log).catch((err: unknown) => {
        const e = RegattaError.from(err, 'CONTAINER_ERROR')
        throw new RegattaError(e.code, `service "${s.name}": ${e.message}`, { cause: err })
      })),
    ])
    let hosts = spec.network === 'host' ? undefined : await this.loopbackHosts()
    // services answer on loopback (one network namespace) and by their names, as in a pipeline's `services`
    if (hosts && sidecars.length > 0) hosts = await this.taskHosts(spec.sandbox, sidecars.map((s) => s.name))
    if (sidecars.length === 0) return this.launchMain(image, spec, hosts, output, log)
    const group = await this.startSidecars(spec, sidecars, hosts, output, log)
    try {
      const task = await this.launchMain(image, spec, hosts, output, log, group)
      this.sidecarsOf.set(task.id, group)
      return task
    } catch (err) {
      const exited = await group.ownerExit()
      await group.removeAll()
      // "cannot join network of a non running container" says less than why it is not running
      if (exited) throw new RegattaError('CONTAINER_ERROR', `${exited} before the task's container started`, { cause: err })
      throw err
    }
  }

  private async launchMain(
    image: string, spec: LaunchSpec, hosts: string | undefined, output: OutputSink, log: Logger, group?: SidecarGroup,
  ): Promise<RunningContainer> {
    const joinId = group?.networkOwner
    let container: Dockerode.Container
    try {
      container = await this.docker.createContainer(this.createOptions(image, spec, hosts, joinId))
    } catch (err) {
      if (statusOf(err) !== 404) throw containerError(`cannot create container for task ${spec.taskId}`, err)
      // The image went away since we cached its presence (someone ran `docker rmi`): look again.
      this.images.delete(image)
      await this.ensureImage(image, log)
      try {
        container = await this.docker.createContainer(this.createOptions(image, spec, hosts, joinId))
      } catch (err2) {
        throw containerError(`cannot create container for task ${spec.taskId}`, err2)
      }
    }

    // Attach and register the wait before starting, so no output and no exit can be missed.
    const [attached, waiting] = await Promise.allSettled([
      container.attach({ stream: true, stdout: true, stderr: true }),
      waitNextExit(this.docker, container.id),
    ])
    if (attached.status === 'rejected' || waiting.status === 'rejected') {
      if (attached.status === 'fulfilled') destroy(attached.value)
      const reason = attached.status === 'rejected' ? attached.reason : (waiting as PromiseRejectedResult).reason
      await this.discard(container.id)
      throw containerError(`cannot attach to container of task ${spec.taskId}`, reason)
    }
    const stream = attached.value as NodeJS.ReadableStream
    const outputDone = pipeOutput(this.docker, stream, output, log)
    try {
      await container.start()
    } catch (err) {
      destroy(stream)
      await this.discard(container.id)
      throw containerError(`cannot start container of task ${spec.taskId}`, err)
    }
    log.debug({ containerId: container.id, image, sidecars: group?.ids.length ?? 0 }, 'container started')
    return new DockerTask(container, waiting.value.body, outputDone, this.drainMs, log, group)
  }

  /** Creates and starts the task's sidecars: the first one owns the network namespace, the others join it. */
  private async startSidecars(spec: LaunchSpec, sidecars: SidecarSpec[], hosts: string | undefined, output: OutputSink, log: Logger): Promise<SidecarGroup> {
    const group = new SidecarGroup(this.docker, this.drainMs, log)
    const [first, ...rest] = sidecars as [SidecarSpec, ...SidecarSpec[]]
    try {
      await this.startSidecar(first, spec, hosts, undefined, output, group)
      const joinId = group.networkOwner!
      const started = await Promise.allSettled(rest.map((s) => this.startSidecar(s, spec, hosts, joinId, output, group)))
      const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failed) throw failed.reason
    } catch (err) {
      await group.removeAll()
      throw err
    }
    log.debug({ sidecars: group.ids }, 'sidecars started')
    return group
  }

  private async startSidecar(
    s: SidecarSpec, spec: LaunchSpec, hosts: string | undefined, joinId: string | undefined, output: OutputSink, group: SidecarGroup,
  ): Promise<void> {
    let container: Dockerode.Container
    try {
      container = await this.docker.createContainer(this.sidecarOptions(s, spec, hosts, joinId))
    } catch (err) {
      throw containerError(`service "${s.name}": cannot create its container`, err)
    }
    group.add(container.id, joinId === undefined, s.name)
    try {
      const stream = await container.attach({ stream: true, stdout: true, stderr: true }) as NodeJS.ReadableStream
      group.follow(stream, s.name, output)
      await container.start()
    } catch (err) {
      throw containerError(`service "${s.name}": cannot start its container`, err)
    }
  }

  async recover(agentId: string, output: (taskId: string) => OutputSink): Promise<RecoveredContainer[]> {
    const all = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_AGENT}=${agentId}`] } })
    // sidecars are never tasks: they go with their task's main container, or now when it is gone
    const sidecarIds = new Map<string, string[]>()
    const groupKey = (i: Dockerode.ContainerInfo): string => `${i.Labels?.[LABEL_FRAMEWORK] ?? ''}\u0000${i.Labels?.[LABEL_TASK] ?? ''}`
    for (const info of all) {
      if (info.Labels?.[LABEL_SIDECAR] === undefined) continue
      const k = groupKey(info)
      sidecarIds.set(k, [...(sidecarIds.get(k) ?? []), info.Id])
    }
    const found = all.filter((i) => i.Labels?.[LABEL_SIDECAR] === undefined)
    const recovered: RecoveredContainer[] = []
    const removals: Array<Promise<void>> = []
    for (const info of found) {
      const taskId = info.Labels?.[LABEL_TASK]
      const frameworkId = info.Labels?.[LABEL_FRAMEWORK] ?? ''
      if (!taskId) {
        this.log.warn({ agentId, containerId: info.Id }, 'container of this agent has no task label; left alone')
        continue
      }
      const log = this.log.child({ agentId, taskId, frameworkId })
      const container = this.docker.getContainer(info.Id)
      const ids = sidecarIds.get(groupKey(info))
      sidecarIds.delete(groupKey(info))
      const group = ids ? SidecarGroup.recovered(this.docker, ids, this.drainMs, log) : undefined
      let task: RunningContainer
      if (info.State === 'running' || info.State === 'paused' || info.State === 'restarting') {
        task = await this.reattach(container, output(taskId), log, group)
        if (group) this.sidecarsOf.set(info.Id, group)
      } else if (info.State === 'created') {
        task = finished(container, { exitCode: null, killed: false, neverStarted: true, message: 'the container was created but never started' })
      } else {
        task = finished(container, await exitFromInspect(container))
      }
      // the task has ended already: its sidecars have no one left to serve
      if (group && !this.sidecarsOf.has(info.Id)) removals.push(group.removeAll())
      log.info({ containerId: info.Id, state: info.State, sidecars: ids?.length ?? 0 }, 'recovered container')
      recovered.push({ taskId, frameworkId, container: task, ...(info.State === 'created' ? { neverStarted: true } : {}) })
    }
    for (const ids of sidecarIds.values()) {
      this.log.info({ agentId, sidecars: ids }, 'removing the sidecars of a task whose container is gone')
      removals.push(SidecarGroup.recovered(this.docker, ids, this.drainMs, this.log).removeAll())
    }
    await Promise.all(removals)
    return recovered
  }

  /**
   * Every container labelled with this agent's id (sidecars too), but those whose sandbox (or,
   * for a sidecar, its hosts file) lies outside this agent's sandboxes: an agent id used again
   * on the same engine (two clusters, two test runs) must not cost the other agent its tasks.
   */
  async leftovers(scope: LeftoverScope): Promise<Leftover[]> {
    const all = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_AGENT}=${scope.agentId}`] } })
    const inside = (path: string): boolean => path.startsWith(`${scope.sandboxes}/`)
    return all.filter((info) => {
      const evidence = (info.Mounts ?? []).filter((m) => m.Destination === SANDBOX_MOUNT || m.Source?.endsWith('/.regatta-hosts'))
      return evidence.every((m) => inside(m.Source ?? ''))
    }).map((info) => ({
      kind: 'container' as const,
      id: info.Id,
      ...(info.Labels?.[LABEL_FRAMEWORK] !== undefined ? { frameworkId: info.Labels[LABEL_FRAMEWORK] } : {}),
      ...(info.Labels?.[LABEL_TASK] !== undefined ? { taskId: info.Labels[LABEL_TASK] } : {}),
      ...(info.Labels?.[LABEL_SIDECAR] !== undefined ? { sidecar: info.Labels[LABEL_SIDECAR] } : {}),
    }))
  }

  /** Kills and removes a leftover container (force: SIGKILL, then remove), with the sidecars it is known to have. */
  async removeLeftover(leftover: Leftover): Promise<void> {
    if (leftover.kind === 'container') await this.remove(leftover.id)
  }

  async remove(containerId: string): Promise<void> {
    const group = this.sidecarsOf.get(containerId)
    this.sidecarsOf.delete(containerId)
    await group?.removeAll()
    try {
      await this.docker.getContainer(containerId).remove({ force: true })
    } catch (err) {
      // 404: already gone; 409: the engine is removing it already.
      if (statusOf(err) === 404 || statusOf(err) === 409) return
      throw containerError(`cannot remove container ${containerId}`, err)
    }
  }

  private async reattach(container: Dockerode.Container, output: OutputSink, log: Logger, group?: SidecarGroup): Promise<RunningContainer> {
    // Output from before `since` was streamed by the agent that started the container.
    const since = Math.floor(Date.now() / 1000)
    let outputDone: Promise<void> = Promise.resolve()
    try {
      const stream = await container.logs({ follow: true, stdout: true, stderr: true, since })
      outputDone = pipeOutput(this.docker, stream, output, log)
    } catch (err) {
      log.warn({ err, containerId: container.id }, 'cannot follow the logs of a recovered container')
    }
    const waiting = container.wait({ condition: 'not-running' }) as Promise<WaitBody>
    return new DockerTask(container, waiting, outputDone, this.drainMs, log, group)
  }

  private ensureImage(image: string, log: Logger): Promise<void> {
    let present = this.images.get(image)
    if (!present) {
      present = this.inspectOrPull(image, log)
      this.images.set(image, present)
      present.catch(() => this.images.delete(image))
    }
    return present
  }

  private async inspectOrPull(image: string, log: Logger): Promise<void> {
    try {
      await this.docker.getImage(image).inspect()
      return
    } catch (err) {
      if (statusOf(err) !== 404) throw containerError(`cannot inspect image ${image}`, err)
    }
    log.info({ image }, 'pulling image')
    try {
      const progress = await this.docker.pull(image)
      // A pull that fails half-way still ends its stream normally, with an `error` event in it.
      let failed: string | undefined
      await new Promise<void>((resolve, reject) => {
        this.docker.modem.followProgress(progress, (err) => err ? reject(err) : resolve(), (event: { error?: string; errorDetail?: { message?: string } }) => {
          if (event.error || event.errorDetail) failed ??= event.errorDetail?.message ?? event.error
        })
      })
      if (failed) throw new Error(failed)
    } catch (err) {
      throw new RegattaError('IMAGE_PULL_FAILED', `image ${image}: ${reasonOf(err)}`, { cause: err })
    }
  }

  /** A task's own /etc/hosts (in its sandbox): loopback, plus its services' names as 127.0.0.1. */
  private async taskHosts(sandbox: string, names: string[]): Promise<string> {
    const file = join(sandbox, '.regatta-hosts')
    try {
      await writeFile(file, `${LOOPBACK_HOSTS}127.0.0.1\t${names.join(' ')}\n`, { mode: 0o644 })
    } catch (err) {
      throw containerError(`cannot write ${file}`, err)
    }
    return file
  }

  /** Writes the loopback /etc/hosts once (atomically: other agents on the host may share it). */
  private loopbackHosts(): Promise<string> {
    this.hostsFile ??= (async () => {
      await mkdir(join(this.hostsPath, '..'), { recursive: true })
      const tmp = `${this.hostsPath}.${process.pid}.tmp`
      await writeFile(tmp, LOOPBACK_HOSTS, { mode: 0o644 })
      await rename(tmp, this.hostsPath)
      return this.hostsPath
    })().catch((err: unknown) => {
      this.hostsFile = undefined
      throw containerError(`cannot write ${this.hostsPath}`, err)
    })
    return this.hostsFile
  }

  /**
   * The task's limits (memory, CPUs, pids) and hardening, for its main container and each of its
   * sidecars alike: never privileged, every capability dropped but BUILD_CAPABILITIES, and
   * no-new-privileges (a setuid binary gains nothing).
   */
  private limits(spec: LaunchSpec): Dockerode.HostConfig {
    const memory = spec.memMb !== undefined ? Math.max(MIN_MEMORY_BYTES, Math.round(spec.memMb * 1024 * 1024)) : undefined
    const nanoCpus = spec.cpus !== undefined
      ? Math.min(availableParallelism() * 1e9, Math.max(MIN_NANO_CPUS, Math.round(spec.cpus * 1e9)))
      : undefined
    return {
      Init: this.init,
      Privileged: false,
      CapDrop: ['ALL'],
      CapAdd: [...BUILD_CAPABILITIES],
      SecurityOpt: ['no-new-privileges'],
      PidsLimit: this.pidsLimit,
      ...(memory !== undefined ? { Memory: memory, MemorySwap: memory } : {}),
      ...(nanoCpus !== undefined ? { NanoCpus: nanoCpus } : {}),
    }
  }

  /**
   * The network of a container: the task's mode, or the namespace of `joinId` (its first
   * sidecar). A joined container must not disable its network: that would give it a namespace
   * of its own. With `none`, the loopback /etc/hosts is mounted into every one of them.
   */
  private network(spec: LaunchSpec, hostsFile: string | undefined, joinId: string | undefined, taskMounts: Array<{ target: string }>) {
    const network = spec.network ?? 'none'
    return {
      disabled: network === 'none' && joinId === undefined,
      mode: joinId !== undefined ? `container:${joinId}` : network,
      hostsMounts: hostsFile && network === 'none' && !taskMounts.some((m) => m.target === '/etc/hosts')
        ? [{ Type: 'bind' as const, Source: hostsFile, Target: '/etc/hosts', ReadOnly: true }]
        : [],
    }
  }

  private sidecarOptions(s: SidecarSpec, spec: LaunchSpec, hostsFile: string | undefined, joinId: string | undefined): Dockerode.ContainerCreateOptions {
    const net = this.network(spec, hostsFile, joinId, [])
    return {
      Image: withTag(s.image),
      ...(s.command ? { Cmd: s.command } : {}),
      Env: Object.entries(s.env).map(([k, v]) => `${k}=${v}`),
      Labels: {
        ...spec.labels,
        [LABEL_TASK]: spec.taskId,
        [LABEL_FRAMEWORK]: spec.frameworkId,
        [LABEL_AGENT]: spec.agentId,
        [LABEL_SIDECAR]: s.name,
      },
      NetworkDisabled: net.disabled,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      OpenStdin: false,
      HostConfig: {
        Mounts: net.hostsMounts,
        NetworkMode: net.mode,
        AutoRemove: false,
        ...this.limits(spec),
      },
    }
  }

  private createOptions(image: string, spec: LaunchSpec, hostsFile: string | undefined, joinId?: string): Dockerode.ContainerCreateOptions {
    const net = this.network(spec, hostsFile, joinId, spec.mounts)
    return {
      Image: image,
      Cmd: spec.command,
      Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      WorkingDir: spec.workdir ?? SANDBOX_MOUNT,
      Labels: {
        ...spec.labels,
        [LABEL_TASK]: spec.taskId,
        [LABEL_FRAMEWORK]: spec.frameworkId,
        [LABEL_AGENT]: spec.agentId,
      },
      // Network `none` through the null driver costs ~200 ms per start here; a disabled network
      // gives the same isolated namespace (loopback only) without involving libnetwork at all,
      // with our own /etc/hosts in place of the engine's.
      NetworkDisabled: net.disabled,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      OpenStdin: false,
      HostConfig: {
        Mounts: [
          { Type: 'bind', Source: spec.sandbox, Target: SANDBOX_MOUNT, ReadOnly: false },
          ...spec.mounts.map((m) => ({ Type: 'bind' as const, Source: m.source, Target: m.target, ReadOnly: m.readOnly ?? false })),
          ...net.hostsMounts,
        ],
        NetworkMode: net.mode,
        AutoRemove: false,
        ...this.limits(spec),
      },
    }
  }

  private async discard(containerId: string): Promise<void> {
    await this.remove(containerId).catch((err) => this.log.warn({ err, containerId }, 'cannot remove a container that failed to start'))
  }
}

/** A started (or recovered) container: its exit, once, and how to stop it. */
class DockerTask implements RunningContainer {
  readonly id: string
  readonly exited: Promise<ExitInfo>
  private killRequested = false
  private done = false

  constructor(
    private readonly container: Dockerode.Container,
    waiting: Promise<WaitBody>,
    outputDone: Promise<void>,
    drainMs: number,
    private readonly log: Logger,
    private readonly sidecars?: SidecarGroup,
  ) {
    this.id = container.id
    this.exited = this.watch(waiting, outputDone, drainMs)
  }

  async kill(graceMs: number): Promise<void> {
    if (this.done) return
    this.killRequested = true
    const ignoreGone = (err: unknown): void => {
      // 304: already stopped; 404: gone; 409: not running.
      const status = statusOf(err)
      if (status !== 304 && status !== 404 && status !== 409) this.log.warn({ err, containerId: this.id }, 'cannot signal container')
    }
    if (graceMs >= 1000 && graceMs % 1000 === 0) {
      // Whole seconds: the engine's own stop (SIGTERM, SIGKILL after t) survives an agent crash.
      await this.container.stop({ t: graceMs / 1000 }).catch(ignoreGone)
    } else if (graceMs <= 0) {
      await this.container.kill({ signal: 'SIGKILL' }).catch(ignoreGone)
    } else {
      await this.container.kill({ signal: 'SIGTERM' }).catch(ignoreGone)
      const timer = setTimeout(() => { void this.container.kill({ signal: 'SIGKILL' }).catch(ignoreGone) }, graceMs)
      await this.exited
      clearTimeout(timer)
    }
    await this.exited
  }

  /** Docker stats of the container and its sidecars, summed (one-shot: ~25 ms, no 1 s wait for precpu). */
  async usage(): Promise<ContainerUsage | undefined> {
    if (this.done) return undefined
    const [main, ...sidecars] = await Promise.all([containerUsage(this.container), ...(this.sidecars?.usage() ?? [])])
    if (!main) return undefined
    let cpuSeconds = 0
    let memMb = 0
    for (const r of [main, ...sidecars]) {
      cpuSeconds += r?.cpuSeconds ?? 0
      memMb += r?.memMb ?? 0
    }
    return { cpuSeconds, memMb }
  }

  private async watch(waiting: Promise<WaitBody>, outputDone: Promise<void>, drainMs: number): Promise<ExitInfo> {
    let info: ExitInfo
    try {
      const body = await waiting
      const exitCode = typeof body.StatusCode === 'number' ? body.StatusCode : null
      info = { exitCode, killed: this.killRequested }
      if (body.Error?.Message) info.message = body.Error.Message
      // the main container is the task: its sidecars go as soon as it has exited
      await Promise.all([bounded(outputDone, drainMs), this.sidecars?.removeAll()])
      // Only a failed command can have been OOM-killed; a clean exit needs no extra round trip.
      if (exitCode !== 0) {
        let state = await this.container.inspect().then((i) => i.State, () => undefined)
        // the engine may record the OOM event a moment after the exit: a SIGKILL death (137)
        // not asked for is looked at again briefly
        for (let i = 0; i < 5 && exitCode === 137 && !this.killRequested && state && !state.OOMKilled; i++) {
          await new Promise((r) => setTimeout(r, 50))
          state = await this.container.inspect().then((x) => x.State, () => undefined)
        }
        if (state?.OOMKilled) info.oomKilled = true
      }
    } catch (err) {
      info = { exitCode: null, killed: this.killRequested, message: `cannot wait for container ${this.id}: ${reasonOf(err)}` }
    }
    await this.sidecars?.removeAll()
    this.done = true
    this.log.debug({ containerId: this.id, ...info }, 'container exited')
    return info
  }
}

/** The sidecars of one task: who owns the network, their output, and how they go. */
class SidecarGroup {
  readonly ids: string[] = []
  networkOwner?: string
  private readonly names = new Map<string, string>()
  private readonly outputs: Array<Promise<void>> = []
  private readonly flushes: Array<() => void> = []
  private removing?: Promise<void>

  constructor(private readonly docker: Dockerode, private readonly drainMs: number, private readonly log: Logger) {}

  /** The sidecars of a task found after an agent restart (their output is not followed again). */
  static recovered(docker: Dockerode, ids: string[], drainMs: number, log: Logger): SidecarGroup {
    const group = new SidecarGroup(docker, drainMs, log)
    for (const id of ids) group.add(id, false)
    return group
  }

  add(id: string, ownsNetwork: boolean, name?: string): void {
    this.ids.push(id)
    if (name) this.names.set(id, name)
    if (ownsNetwork) this.networkOwner = id
  }

  /** Sends a sidecar's output (both streams) to the task's stderr, each line prefixed with `[service <name>] `. */
  follow(stream: NodeJS.ReadableStream, name: string, output: OutputSink): void {
    const prefixed = prefixedLines(output, `[service ${name}] `)
    this.flushes.push(prefixed.flush)
    this.outputs.push(pipeOutput(this.docker, stream, prefixed.sink, this.log))
  }

  /** When the sidecar that owns the network has stopped: what became of it; else undefined. */
  async ownerExit(): Promise<string | undefined> {
    if (!this.networkOwner) return undefined
    const state = await this.docker.getContainer(this.networkOwner).inspect().then((i) => i.State, () => undefined)
    if (!state || state.Running) return undefined
    const name = this.names.get(this.networkOwner) ?? this.networkOwner.slice(0, 12)
    return `service "${name}" exited with code ${state.ExitCode}${state.OOMKilled ? ' (out of memory)' : ''}`
  }

  /** The usage of each sidecar (oversubscription counts it as the task's). */
  usage(): Array<Promise<ContainerUsage | undefined>> {
    return this.ids.map((id) => containerUsage(this.docker.getContainer(id)))
  }

  /** Kills and removes every sidecar (once; never rejects), then flushes their last output. */
  removeAll(): Promise<void> {
    this.removing ??= (async () => {
      await Promise.all(this.ids.map((id) => this.docker.getContainer(id).remove({ force: true }).catch((err: unknown) => {
        // 404: gone already; 409: being removed
        if (statusOf(err) !== 404 && statusOf(err) !== 409) this.log.warn({ err: reasonOf(err), containerId: id }, 'cannot remove a sidecar')
      })))
      await bounded(Promise.all(this.outputs).then(() => undefined), this.drainMs)
      for (const flush of this.flushes) flush()
    })()
    return this.removing
  }
}

/** An output sink that writes whole lines, each with `prefix`, into the stderr of `output`. */
function prefixedLines(output: OutputSink, prefix: string): { sink: OutputSink; flush: () => void } {
  const MAX_LINE = 16_384
  const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') }
  const partial = { stdout: '', stderr: '' }
  const emit = (lines: string[]): void => {
    if (lines.length > 0) output('stderr', Buffer.from(lines.map((l) => `${prefix}${l}\n`).join('')))
  }
  return {
    sink(which, chunk) {
      const lines = (partial[which] + decoders[which].write(chunk)).split('\n')
      let rest = lines.pop() ?? ''
      if (rest.length > MAX_LINE) {
        lines.push(rest)
        rest = ''
      }
      partial[which] = rest
      emit(lines)
    },
    flush() {
      for (const which of ['stdout', 'stderr'] as const) {
        const rest = partial[which] + decoders[which].end()
        partial[which] = ''
        if (rest) emit([rest])
      }
    },
  }
}

/**
 * A container's CPU time and memory from one-shot Docker stats; memory as `docker stats` shows
 * it (usage less inactive page cache). Undefined for a container that is not running.
 */
async function containerUsage(container: Dockerode.Container): Promise<ContainerUsage | undefined> {
  try {
    const s = await container.stats({ stream: false, 'one-shot': true })
    const cpuNs = s.cpu_stats?.cpu_usage?.total_usage
    const bytes = s.memory_stats?.usage
    // a stopped container answers with empty stats
    if (typeof cpuNs !== 'number' || typeof bytes !== 'number' || (cpuNs === 0 && bytes === 0)) return undefined
    const stats = s.memory_stats.stats as Partial<Record<string, number>> | undefined
    const inactive = stats?.total_inactive_file ?? stats?.inactive_file ?? 0
    return { cpuSeconds: cpuNs / 1e9, memMb: Math.max(0, bytes - inactive) / (1024 * 1024) }
  } catch {
    return undefined
  }
}

/** A recovered container that had already exited: nothing to watch, nothing to kill. */
function finished(container: Dockerode.Container, info: ExitInfo): RunningContainer {
  return { id: container.id, exited: Promise.resolve(info), kill: async () => undefined }
}

async function exitFromInspect(container: Dockerode.Container): Promise<ExitInfo> {
  try {
    const { State } = await container.inspect()
    const info: ExitInfo = { exitCode: State.ExitCode, killed: false }
    if (State.OOMKilled) info.oomKilled = true
    if (State.Error) info.message = State.Error
    return info
  } catch (err) {
    return { exitCode: null, killed: false, message: `cannot inspect container ${container.id}: ${reasonOf(err)}` }
  }
}

/**
 * Registers a `next-exit` wait and resolves once the engine has accepted it (it sends the
 * response headers when the wait is registered), so `start()` can follow without a race.
 * The returned promise resolves with the wait's body when the container exits.
 */
function waitNextExit(docker: Dockerode, containerId: string): Promise<{ body: Promise<WaitBody> }> {
  // The body promise travels inside an object: resolving with a bare promise would adopt it
  // and wait for the exit instead of the registration.
  return new Promise((resolveRegistered, rejectRegistered) => {
    docker.modem.dial({
      path: `/containers/${containerId}/wait?`,
      method: 'POST',
      isStream: true,
      statusCodes: { 200: true, 400: 'bad parameter', 404: 'no such container', 500: 'server error' },
      options: { condition: 'next-exit' },
    }, (err, res) => {
      if (err) return rejectRegistered(err)
      const response = res as IncomingMessage
      const body = new Promise<WaitBody>((resolve, reject) => {
        const chunks: Buffer[] = []
        response.on('data', (c: Buffer) => chunks.push(c))
        response.once('error', reject)
        response.once('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString()) as WaitBody)
          } catch (parseErr) {
            reject(parseErr)
          }
        })
        response.once('close', () => { if (!response.complete) reject(new Error('the engine closed the wait')) })
      })
      body.catch(() => undefined) // observed later by DockerTask; no unhandled rejection meanwhile
      resolveRegistered({ body })
    })
  })
}

/** Demultiplexes a Docker output stream into the sink; resolves when the stream ends. */
function pipeOutput(docker: Dockerode, stream: NodeJS.ReadableStream, output: OutputSink, log: Logger): Promise<void> {
  const sinkFor = (name: 'stdout' | 'stderr'): Writable => new Writable({
    write(chunk: Buffer, _enc, cb) {
      try {
        output(name, chunk)
      } catch (err) {
        log.warn({ err }, 'output sink threw')
      }
      cb()
    },
  })
  docker.modem.demuxStream(stream, sinkFor('stdout'), sinkFor('stderr'))
  return new Promise((resolve) => {
    stream.once('end', resolve)
    stream.once('close', resolve)
    stream.once('error', (err) => {
      log.warn({ err }, 'container output stream failed')
      resolve()
    })
  })
}

function bounded(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<void>((r) => { timer = setTimeout(r, ms) })]).finally(() => clearTimeout(timer))
}

function destroy(stream: unknown): void {
  const s = stream as { destroy?: () => void }
  s.destroy?.()
}

/** `name` with `:latest` when it has neither tag nor digest (a pull without a tag fetches every tag). */
export function withTag(name: string): string {
  if (name.includes('@')) return name
  const lastSlash = name.lastIndexOf('/')
  return name.lastIndexOf(':') > lastSlash ? name : `${name}:latest`
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? (err as { statusCode?: number }).statusCode : undefined
}

function reasonOf(err: unknown): string {
  const json = typeof err === 'object' && err !== null ? (err as { json?: { message?: string } }).json : undefined
  if (json && typeof json.message === 'string') return json.message
  return err instanceof Error ? err.message : String(err)
}

function containerError(what: string, err: unknown): RegattaError {
  return new RegattaError('CONTAINER_ERROR', `${what}: ${reasonOf(err)}`, { cause: err })
}
