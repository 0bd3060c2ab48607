// The agent's base image, `regatta/busybox:latest`: built locally from Debian's busybox-static
// (`docker import` of a rootfs), because no image registry may be reachable. `regatta dev`,
// `regatta agent` (when it is the default image) and the tests make sure it exists.
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, rmdir, symlink, copyFile, chmod, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type Dockerode from 'dockerode'

export const BASE_IMAGE = 'regatta/busybox:latest'
const BUSYBOX_BINARY = '/bin/busybox'

/** True when the engine has the image; false on 404, other failures thrown. */
export async function imageExists(docker: Dockerode, name: string): Promise<boolean> {
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

/**
 * Makes sure the base image exists (built once, locally) and returns its name. Safe when several
 * processes call it at once: a lock directory lets one build while the others wait for it.
 */
export async function ensureBaseImage(docker: Dockerode, name: string = BASE_IMAGE): Promise<string> {
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

