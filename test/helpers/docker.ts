// Docker fixtures for tests: a local busybox image built without any registry (`docker import`
// of a rootfs made from Debian's busybox-static), an engine probe, and cleanup by label.
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import Dockerode from 'dockerode'
import { BASE_IMAGE, ensureBaseImage } from '../../services/agent/src/containerizer/base-image.js'

export const BUSYBOX_IMAGE = BASE_IMAGE

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

let ensuring: Promise<string> | undefined

/**
 * Makes sure `regatta/busybox:latest` exists (built once, locally) and returns its name. Safe
 * when several test files call it at once: a lock directory lets one process build while the
 * others wait for the image to appear.
 */
export function ensureBusyboxImage(docker: Dockerode = testDocker()): Promise<string> {
  ensuring ??= ensureBaseImage(docker, BUSYBOX_IMAGE).catch((err) => {
    ensuring = undefined
    throw err
  })
  return ensuring
}

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
