// The `docker` provider: agents in containers on a Docker engine (dockerode), network `host`
// so that they reach NATS on the host's loopback. Containers carry labels (instance, pool,
// namespace), so `list()` asks the engine and a restarted scaler finds them again.
//
// Image: by default `regatta/node:<node version>`, built here without any registry (`docker
// import` of a rootfs holding this host's node binary with its shared libraries and
// busybox-static), with this checkout mounted read-only at the same path: the agent runs the
// same `regatta` as the scaler. Or any image whose entrypoint is `regatta` (deploy/Dockerfile's
// `regatta:0.1.0`) with `image` and `imageRunsRegatta: true`. Agents get the engine's socket and
// their work dir at the same path as on the host, so that their Docker containerizer can mount
// task sandboxes.
import { spawn } from 'node:child_process'
import { chmod, copyFile, mkdir, mkdtemp, realpath, rm, rmdir, stat, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import Dockerode from 'dockerode'
import type { Amounts } from '../../../../shared/protocol/index.js'
import { RegattaError } from '../../../../shared/errors/index.js'
import { parseResources, totals } from '../../../../shared/resources/index.js'
import type { Logger } from '../../../../shared/log/index.js'
import { imageExists } from '../../../agent/src/containerizer/base-image.js'
import { instanceId, REGATTA_BIN } from './process.js'
import { INSTANCE_ATTRIBUTE, type Instance, type Provider } from './types.js'

export const LABEL_INSTANCE = 'regatta.scaler.instance'
export const LABEL_POOL = 'regatta.scaler.pool'
export const LABEL_NAMESPACE = 'regatta.scaler.namespace'
export const LABEL_STARTED = 'regatta.scaler.started-at'

/** The checkout this code runs from (mounted into the default image). */
const REPO_DIR = resolve(dirname(REGATTA_BIN), '../../..')

export interface DockerProviderOptions {
  natsUrl: string
  /** Host directory for the agents' work dirs (mounted at the same path). */
  baseDir: string
  logger: Logger
  docker?: Dockerode
  /** Default: `regatta/node:<version>`, built locally when missing. */
  image?: string
  /** The image's entrypoint is `regatta` (deploy/Dockerfile): no checkout is mounted. */
  imageRunsRegatta?: boolean
  /** Containers of one scaler carry this label value; another namespace's are not its own. */
  namespace?: string
  containerizer?: 'docker' | 'process'
  resources?: string
  logLevel?: string
  stopGraceMs?: number
  /** Docker socket mounted into agents (default /var/run/docker.sock). */
  dockerSocket?: string
}

export class DockerProvider implements Provider {
  readonly name = 'docker'
  readonly instanceResources?: Amounts
  private readonly docker: Dockerode
  private readonly namespace: string
  private readonly baseDir: string
  private imageReady?: Promise<string>
  /** Stops in progress: listed as `stopping` until the container is removed. */
  private readonly stopping = new Set<string>()

  constructor(private readonly o: DockerProviderOptions) {
    this.docker = o.docker ?? new Dockerode()
    this.namespace = o.namespace ?? 'default'
    this.baseDir = resolve(o.baseDir)
    if (o.resources) {
      const scalars = totals(parseResources(o.resources))
      delete scalars.ports
      this.instanceResources = scalars
    }
  }

  /** The image agents run in, built when it is the default one and missing. */
  image(): Promise<string> {
    this.imageReady ??= (async () => {
      if (this.o.image) return this.o.image
      const name = `regatta/node:${process.version.replace(/^v/, '')}`
      await ensureNodeImage(this.docker, name)
      // the checkout is mounted read-only: its CLI bundle must exist before an agent runs it
      await run(process.execPath, [REGATTA_BIN, '--help'])
      return name
    })().catch((err: unknown) => {
      this.imageReady = undefined
      throw err instanceof RegattaError ? err : new RegattaError('PROVIDER_FAILED', `docker provider: no agent image: ${(err as Error).message}`, { cause: err })
    })
    return this.imageReady
  }

  async start(pool: string, count: number): Promise<Instance[]> {
    const image = await this.image()
    return Promise.all(Array.from({ length: count }, () => this.startOne(pool, image)))
  }

  private async startOne(pool: string, image: string): Promise<Instance> {
    const id = instanceId(pool)
    const workDir = join(this.baseDir, id)
    await mkdir(join(workDir, 'tmp'), { recursive: true })
    const agentArgs = [
      'agent', '--nats', this.o.natsUrl, '--pool', pool, '--attributes', `${INSTANCE_ATTRIBUTE}:${id}`, '--work-dir', join(workDir, 'agent'),
      ...(this.o.containerizer ? ['--containerizer', this.o.containerizer] : []),
      ...(this.o.resources ? ['--resources', this.o.resources] : []),
    ]
    const socket = this.o.dockerSocket ?? '/var/run/docker.sock'
    const startedAt = Date.now()
    const binds = [`${workDir}:${workDir}`, `${socket}:/var/run/docker.sock`]
    if (!this.o.imageRunsRegatta) binds.push(`${REPO_DIR}:${REPO_DIR}:ro`)
    const fail = (err: unknown): RegattaError =>
      new RegattaError('PROVIDER_FAILED', `docker provider: could not start an agent container for pool ${pool}: ${(err as Error).message}`, { cause: err })
    const container = await this.docker.createContainer({
      name: `regatta-agent-${id}`,
      Image: image,
      ...(this.o.imageRunsRegatta ? { Cmd: agentArgs } : { Entrypoint: ['node', REGATTA_BIN], Cmd: agentArgs, WorkingDir: REPO_DIR }),
      Env: [`REGATTA_LOG_LEVEL=${this.o.logLevel ?? process.env.REGATTA_LOG_LEVEL ?? 'info'}`, `TMPDIR=${join(workDir, 'tmp')}`, `HOME=${workDir}`],
      Labels: { [LABEL_INSTANCE]: id, [LABEL_POOL]: pool, [LABEL_NAMESPACE]: this.namespace, [LABEL_STARTED]: String(startedAt) },
      // host network: NATS on the host's loopback; the agent itself opens no port
      HostConfig: { NetworkMode: 'host', Binds: binds, Init: true, LogConfig: { Type: 'json-file', Config: { 'max-size': '10m' } } },
    }).catch((err: unknown) => { throw fail(err) })
    try {
      await container.start()
    } catch (err) {
      await container.remove({ force: true }).catch(() => undefined)
      throw fail(err)
    }
    this.o.logger.info({ instanceId: id, pool, container: container.id.slice(0, 12) }, 'agent container started')
    return { id, pool, startedAt, state: 'running' }
  }

  private async containers(): Promise<Dockerode.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: { label: [`${LABEL_NAMESPACE}=${this.namespace}`, LABEL_INSTANCE] } })
  }

  async stop(id: string): Promise<void> {
    this.stopping.add(id)
    try {
      const found = (await this.containers()).filter((c) => c.Labels[LABEL_INSTANCE] === id)
      for (const c of found) {
        const container = this.docker.getContainer(c.Id)
        if (c.State === 'running') {
          await container.stop({ t: Math.ceil((this.o.stopGraceMs ?? 10_000) / 1000) }).catch((err: { statusCode?: number }) => {
            if (err.statusCode !== 304 && err.statusCode !== 404) throw err
          })
        }
        if (c.State !== 'running' && c.State !== 'created') {
          this.o.logger.warn({ instanceId: id, state: c.State, status: c.Status }, 'an agent container ended by itself')
        }
        await container.remove({ force: true }).catch((err: { statusCode?: number }) => {
          if (err.statusCode !== 404 && err.statusCode !== 409) throw err
        })
      }
      await rm(join(this.baseDir, id), { recursive: true, force: true }).catch(() => undefined)
      if (found.length) this.o.logger.info({ instanceId: id }, 'agent container stopped')
    } finally {
      this.stopping.delete(id)
    }
  }

  async list(): Promise<Instance[]> {
    return (await this.containers()).map((c) => {
      const id = c.Labels[LABEL_INSTANCE]!
      const state: Instance['state'] = this.stopping.has(id) ? 'stopping' : c.State === 'running' || c.State === 'created' || c.State === 'restarting' ? 'running' : 'exited'
      return { id, pool: c.Labels[LABEL_POOL] ?? '', startedAt: Number(c.Labels[LABEL_STARTED] ?? c.Created * 1000), state }
    })
  }
}

// ---- the default image: this host's node, without a registry --------------------------------

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { out += d.toString() })
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out}`))))
  })
}

/** Copies a file into the rootfs at the same path. */
async function copyIn(root: string, file: string): Promise<void> {
  const target = join(root, file)
  await mkdir(dirname(target), { recursive: true })
  await copyFile(file, target)
  await chmod(target, (await stat(file)).mode & 0o7777)
}

/**
 * Builds `name` from this host's node binary (at /usr/local/bin/node and its real path), the
 * shared libraries `ldd` names, and busybox-static (sh, tar and the rest, for the agent's
 * process containerizer and for building the busybox task image). Several scalers may call it
 * at once: a lock directory lets one build.
 */
export async function ensureNodeImage(docker: Dockerode, name: string): Promise<string> {
  const lock = join(tmpdir(), 'regatta-node-image.lock')
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline) {
    if (await imageExists(docker, name)) return name
    try {
      await mkdir(lock)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const age = Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now()))
      if (age > 120_000) await rmdir(lock).catch(() => undefined)
      await new Promise((r) => setTimeout(r, 200))
      continue
    }
    try {
      if (!(await imageExists(docker, name))) await buildNodeImage(docker, name)
      return name
    } finally {
      await rmdir(lock).catch(() => undefined)
    }
  }
  throw new RegattaError('PROVIDER_FAILED', `docker provider: image ${name} did not appear within 120 s (lock ${lock})`)
}

async function buildNodeImage(docker: Dockerode, name: string): Promise<void> {
  const node = await realpath(process.execPath)
  const busybox = '/bin/busybox'
  await stat(busybox).catch(() => {
    throw new RegattaError('PROVIDER_FAILED', `docker provider: ${busybox} is missing, so the agent image cannot be built: install Debian's busybox-static (bash deploy/dev/setup.sh does)`)
  })
  const root = await mkdtemp(join(tmpdir(), 'regatta-node-rootfs-'))
  try {
    for (const dir of ['bin', 'usr/local/bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'var/run']) await mkdir(join(root, dir), { recursive: true })
    await chmod(join(root, 'tmp'), 0o1777)
    await copyIn(root, node)
    if (node !== '/usr/local/bin/node') await symlink(node, join(root, 'usr/local/bin/node'))
    // the loader and every library node links against, at their paths
    const libs = [...(await run('ldd', [node])).matchAll(/(\/\S+\.so[^\s]*)/g)].map((m) => m[1]!)
    for (const lib of new Set(libs)) {
      await copyIn(root, lib)
      const real = await realpath(lib)
      if (real !== lib) await copyIn(root, real)
    }
    await copyFile(busybox, join(root, 'bin/busybox'))
    await chmod(join(root, 'bin/busybox'), 0o755)
    const applets = (await run(busybox, ['--list'])).split('\n').map((s) => s.trim()).filter((s) => s && s !== 'busybox')
    for (const applet of applets) await symlink('busybox', join(root, 'bin', applet)).catch(() => undefined)
    // /etc/passwd and /etc/hosts: os.userInfo() and `localhost` work
    for (const f of ['/etc/passwd', '/etc/group', '/etc/nsswitch.conf']) await copyIn(root, f).catch(() => undefined)
    const [repo, tag] = name.includes(':') ? [name.slice(0, name.lastIndexOf(':')), name.slice(name.lastIndexOf(':') + 1)] : [name, 'latest']
    const tar = spawn('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let tarErr = ''
    tar.stderr.on('data', (d: Buffer) => { tarErr += d.toString() })
    const tarDone = new Promise<void>((ok, fail) => {
      tar.once('error', fail)
      tar.once('close', (code) => (code === 0 ? ok() : fail(new Error(`tar exited ${code}: ${tarErr}`))))
    })
    const progress = await docker.importImage(tar.stdout, { repo, tag, changes: ['ENV PATH=/usr/local/bin:/usr/bin:/bin', 'CMD ["/bin/sh"]'] })
    await new Promise<void>((ok, fail) => docker.modem.followProgress(progress, (err) => (err ? fail(err) : ok())))
    await tarDone
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

/** Whether this host has what the default image is built from (ldd for node's libraries, busybox-static). */
export async function canBuildNodeImage(): Promise<boolean> {
  try {
    await stat('/bin/busybox')
    await run('ldd', [process.execPath])
    return true
  } catch {
    return false
  }
}
