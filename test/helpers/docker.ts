// Docker fixtures for tests: a local busybox image built without any registry (`docker import`
// of a rootfs made from Debian's busybox-static), an engine probe, and cleanup by label.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { mkdir, mkdtemp, rm, rmdir, symlink, copyFile, chmod, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Dockerode from 'dockerode'

export const BUSYBOX_IMAGE = 'regatta/busybox:latest'
const BUSYBOX_BINARY = '/bin/busybox'

let sharedDocker: Dockerode | undefined
/** One dockerode client for the test process (default socket, or DOCKER_HOST). */
export function testDocker(): Dockerode {
  sharedDocker ??= new Dockerode()
  return sharedDocker
}

/** True when a Docker engine answers a ping within `timeoutMs`. */
export async function dockerAvailable(docker: Dockerode = testDocker(), timeoutMs = 2000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      docker.ping().then(() => true, () => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs) }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

async function imageExists(docker: Dockerode, name: string): Promise<boolean> {
  try {
    await docker.getImage(name).inspect()
    return true
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false
    throw err
  }
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { out += d.toString() })
    child.once('error', reject)
    child.once('close', (code) => code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out}`)))
  })
}

async function buildBusyboxImage(docker: Dockerode, name: string): Promise<void> {
  try {
    await stat(BUSYBOX_BINARY)
  } catch {
    throw new Error(`${BUSYBOX_BINARY} is missing: install Debian's busybox-static (bash deploy/dev/setup.sh does)`)
  }
  const root = await mkdtemp(join(tmpdir(), 'regatta-busybox-rootfs-'))
  try {
    for (const dir of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'sandbox', 'workspace', 'root']) {
      await mkdir(join(root, dir), { recursive: true })
    }
    await mkdir(join(root, 'tmp'))
    await chmod(join(root, 'tmp'), 0o1777)
    await copyFile(BUSYBOX_BINARY, join(root, 'bin/busybox'))
    await chmod(join(root, 'bin/busybox'), 0o755)
    // Every applet as a symlink in /bin (sh, echo, sleep, cat, env, head, tail, ip, ...).
    const applets = (await run(BUSYBOX_BINARY, ['--list'])).split('\n').map((s) => s.trim()).filter((s) => s && s !== 'busybox')
    for (const applet of applets) await symlink('busybox', join(root, 'bin', applet))
    const [repo, tag] = splitTag(name)
    const tar = spawn('tar', ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let tarErr = ''
    tar.stderr.on('data', (d: Buffer) => { tarErr += d.toString() })
    const tarDone = new Promise<void>((resolve, reject) => {
      tar.once('error', reject)
      tar.once('close', (code) => code === 0 ? resolve() : reject(new Error(`tar exited ${code}: ${tarErr}`)))
    })
    const progress = await docker.importImage(tar.stdout, { repo, tag, changes: ['CMD ["/bin/sh"]'] })
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(progress, (err) => err ? reject(err) : resolve())
    })
    await tarDone
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

function splitTag(name: string): [string, string] {
  const slash = name.lastIndexOf('/')
  const colon = name.lastIndexOf(':')
  return colon > slash ? [name.slice(0, colon), name.slice(colon + 1)] : [name, 'latest']
}

let ensuring: Promise<string> | undefined

/**
 * Makes sure `regatta/busybox:latest` exists (built once, locally) and returns its name. Safe
 * when several test files call it at once: a lock directory lets one process build while the
 * others wait for the image to appear.
 */
export function ensureBusyboxImage(docker: Dockerode = testDocker()): Promise<string> {
  ensuring ??= ensureImage(docker, BUSYBOX_IMAGE).catch((err) => {
    ensuring = undefined
    throw err
  })
  return ensuring
}

async function ensureImage(docker: Dockerode, name: string): Promise<string> {
  const lock = join(tmpdir(), 'regatta-busybox-image.lock')
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (await imageExists(docker, name)) return name
    let locked = false
    try {
      await mkdir(lock)
      locked = true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      // Someone else builds; a lock older than 60 s is left over from a crashed run.
      const age = Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now()))
      if (age > 60_000) await rmdir(lock).catch(() => undefined)
      await new Promise((r) => setTimeout(r, 100))
    }
    if (locked) {
      try {
        if (!(await imageExists(docker, name))) await buildBusyboxImage(docker, name)
        return name
      } finally {
        await rmdir(lock).catch(() => undefined)
      }
    }
  }
  throw new Error(`image ${name} did not appear within 60 s (lock ${lock})`)
}

/** Containers (running or not) that carry the label `label=value`. */
export async function listContainersByLabel(label: string, value: string, docker: Dockerode = testDocker()): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${label}=${value}`] } })
}

/** Force-removes every container that carries `label=value`; returns how many it removed. */
export async function removeContainersByLabel(label: string, value: string, docker: Dockerode = testDocker()): Promise<number> {
  const found = await listContainersByLabel(label, value, docker)
  await Promise.all(found.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch((err: { statusCode?: number }) => {
    if (err.statusCode !== 404 && err.statusCode !== 409) throw err
  })))
  return found.length
}

export interface BrokenRegistry {
  /** `127.0.0.1:<port>`: prefix image names with it (`${host}/name:tag`). */
  host: string
  /** `METHOD path` of every request the engine made. */
  requests: string[]
  close(): Promise<void>
}

/**
 * A registry on loopback that serves a manifest for any image but no layer (404 "blob
 * unknown"): the engine starts pulling, then fails half-way, reporting the error inside the
 * pull's progress stream. Engines trust 127.0.0.0/8 over plain HTTP, and nothing leaves the host.
 */
export async function startBrokenRegistry(): Promise<BrokenRegistry> {
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${'a'.repeat(64)}`] },
  }))
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 100, digest: `sha256:${'b'.repeat(64)}` }],
  }))
  const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`
  const requests: string[] = []
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`)
    const url = req.url ?? ''
    if (url === '/v2/') {
      res.writeHead(200, { 'Docker-Distribution-API-Version': 'registry/2.0', 'Content-Type': 'application/json' })
      res.end('{}')
    } else if (url.includes('/manifests/')) {
      res.writeHead(200, {
        'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json',
        'Docker-Content-Digest': manifestDigest,
        'Content-Length': manifest.length,
      })
      res.end(req.method === 'HEAD' ? undefined : manifest)
    } else if (url.endsWith(configDigest)) {
      res.writeHead(200, { 'Content-Length': config.length })
      res.end(config)
    } else {
      // 404 rather than 500: the engine retries 5xx with backoff for over a minute.
      res.writeHead(404, { 'Content-Type': 'application/json' })
      res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }] }))
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  return {
    host: `127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
