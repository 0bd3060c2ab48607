// The Docker containerizer: runs each task in a container through the engine's API (dockerode),
// streams its output, reports its exit (with OOM), kills it with a grace period and finds it
// again by label after an agent restart.
import { mkdir, rename, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Dockerode from 'dockerode'
import { RegattaError } from '../../../../shared/errors/index.js'
import { silentLogger, type Logger } from '../../../../shared/log/index.js'
import { LABEL_AGENT, LABEL_FRAMEWORK, LABEL_TASK } from './labels.js'
import {
  SANDBOX_MOUNT, type Containerizer, ExitInfo, LaunchSpec, OutputSink, RecoveredContainer, RunningContainer,
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
    await this.ensureImage(image, log)
    const hosts = spec.network === 'host' ? undefined : await this.loopbackHosts()

    let container: Dockerode.Container
    try {
      container = await this.docker.createContainer(this.createOptions(image, spec, hosts))
    } catch (err) {
      if (statusOf(err) !== 404) throw containerError(`cannot create container for task ${spec.taskId}`, err)
      // The image went away since we cached its presence (someone ran `docker rmi`): look again.
      this.images.delete(image)
      await this.ensureImage(image, log)
      try {
        container = await this.docker.createContainer(this.createOptions(image, spec, hosts))
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
    log.debug({ containerId: container.id, image }, 'container started')
    return new DockerTask(container, waiting.value.body, outputDone, this.drainMs, log)
  }

  async recover(agentId: string, output: (taskId: string) => OutputSink): Promise<RecoveredContainer[]> {
    const found = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_AGENT}=${agentId}`] } })
    const recovered: RecoveredContainer[] = []
    for (const info of found) {
      const taskId = info.Labels?.[LABEL_TASK]
      const frameworkId = info.Labels?.[LABEL_FRAMEWORK] ?? ''
      if (!taskId) {
        this.log.warn({ agentId, containerId: info.Id }, 'container of this agent has no task label; left alone')
        continue
      }
      const log = this.log.child({ agentId, taskId, frameworkId })
      const container = this.docker.getContainer(info.Id)
      let task: RunningContainer
      if (info.State === 'running' || info.State === 'paused' || info.State === 'restarting') {
        task = await this.reattach(container, output(taskId), log)
      } else if (info.State === 'created') {
        task = finished(container, { exitCode: null, killed: false, message: 'the container was created but never started' })
      } else {
        task = finished(container, await exitFromInspect(container))
      }
      log.info({ containerId: info.Id, state: info.State }, 'recovered container')
      recovered.push({ taskId, frameworkId, container: task })
    }
    return recovered
  }

  async remove(containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({ force: true })
    } catch (err) {
      // 404: already gone; 409: the engine is removing it already.
      if (statusOf(err) === 404 || statusOf(err) === 409) return
      throw containerError(`cannot remove container ${containerId}`, err)
    }
  }

  private async reattach(container: Dockerode.Container, output: OutputSink, log: Logger): Promise<RunningContainer> {
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
    return new DockerTask(container, waiting, outputDone, this.drainMs, log)
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

  private createOptions(image: string, spec: LaunchSpec, hostsFile: string | undefined): Dockerode.ContainerCreateOptions {
    const memory = spec.memMb !== undefined ? Math.max(MIN_MEMORY_BYTES, Math.round(spec.memMb * 1024 * 1024)) : undefined
    const nanoCpus = spec.cpus !== undefined
      ? Math.min(availableParallelism() * 1e9, Math.max(MIN_NANO_CPUS, Math.round(spec.cpus * 1e9)))
      : undefined
    const network = spec.network ?? 'none'
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
      NetworkDisabled: network === 'none',
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      OpenStdin: false,
      HostConfig: {
        Mounts: [
          { Type: 'bind', Source: spec.sandbox, Target: SANDBOX_MOUNT, ReadOnly: false },
          ...spec.mounts.map((m) => ({ Type: 'bind' as const, Source: m.source, Target: m.target, ReadOnly: m.readOnly ?? false })),
          ...(hostsFile && network === 'none' && !spec.mounts.some((m) => m.target === '/etc/hosts')
            ? [{ Type: 'bind' as const, Source: hostsFile, Target: '/etc/hosts', ReadOnly: true }]
            : []),
        ],
        NetworkMode: network,
        AutoRemove: false,
        Init: this.init,
        PidsLimit: this.pidsLimit,
        ...(memory !== undefined ? { Memory: memory, MemorySwap: memory } : {}),
        ...(nanoCpus !== undefined ? { NanoCpus: nanoCpus } : {}),
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

  private async watch(waiting: Promise<WaitBody>, outputDone: Promise<void>, drainMs: number): Promise<ExitInfo> {
    let info: ExitInfo
    try {
      const body = await waiting
      const exitCode = typeof body.StatusCode === 'number' ? body.StatusCode : null
      info = { exitCode, killed: this.killRequested }
      if (body.Error?.Message) info.message = body.Error.Message
      await bounded(outputDone, drainMs)
      // Only a failed command can have been OOM-killed; a clean exit needs no extra round trip.
      if (exitCode !== 0) {
        const state = await this.container.inspect().then((i) => i.State, () => undefined)
        if (state?.OOMKilled) info.oomKilled = true
      }
    } catch (err) {
      info = { exitCode: null, killed: this.killRequested, message: `cannot wait for container ${this.id}: ${reasonOf(err)}` }
    }
    this.done = true
    this.log.debug({ containerId: this.id, ...info }, 'container exited')
    return info
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
