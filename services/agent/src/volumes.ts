// Persistent volumes on the agent: one directory per volume under the work dir
// (`<workDir>/volumes/<role>/<id>`, both URL-encoded), kept across tasks and agent restarts. The
// master's CREATE_VOLUMES makes it empty, DESTROY_VOLUMES deletes it; a task that takes the
// volume (a `disk` resource with `disk.persistence`) gets it at its container path: a Docker
// bind mount there (a relative path is below /sandbox), or, with the process containerizer, a
// symlink at that path inside the sandbox (`/sandbox/x` and `x` as `<sandbox>/x`, `/cache` as
// `<sandbox>/cache`). Operations on one volume run in the order they came.
import { lstat, mkdir, rm, symlink } from 'node:fs/promises'
import { dirname, join, posix } from 'node:path'
import type { Resource, VolumeRef } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { volumePathProblem } from '../../../shared/resources/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { WORKSPACE_MOUNT } from '../../../shared/git/checkout.js'
import { SANDBOX_MOUNT, type Containerizer, type LaunchSpec } from './containerizer/types.js'

/** A volume a task takes: its directory on the agent and where the task sees it. */
export interface TaskVolume extends VolumeRef {
  dir: string
  containerPath: string
}

/** The volumes among a task's resources. */
function volumesOf(resources: readonly Resource[]): Array<VolumeRef & { containerPath: string }> {
  return resources.filter((r) => r.disk && r.role).map((r) => ({ role: r.role!, id: r.disk!.persistence.id, containerPath: r.disk!.containerPath }))
}

/** Where a volume appears in a Docker container. */
export function dockerTarget(containerPath: string): string {
  const path = posix.normalize(posix.isAbsolute(containerPath) ? containerPath : posix.join(SANDBOX_MOUNT, containerPath))
  return path.length > 1 ? path.replace(/\/+$/, '') : path
}

/** Where a volume appears for the process containerizer, relative to the sandbox. */
export function sandboxPath(containerPath: string): string {
  const abs = dockerTarget(containerPath)
  const rel = abs === SANDBOX_MOUNT || abs.startsWith(`${SANDBOX_MOUNT}/`) ? abs.slice(SANDBOX_MOUNT.length) : abs
  return rel.replace(/^\/+/, '')
}

/**
 * What the schema cannot say about a task's volumes: a container path inside what the task may
 * use (not the sandbox or workspace itself), one volume per path, one use per volume. Throws
 * INVALID_TASK before anything is done.
 */
export function checkVolumes(resources: readonly Resource[]): void {
  const paths = new Set<string>()
  const ids = new Set<string>()
  for (const r of resources) {
    if (!r.disk) continue
    const what = `volume "${r.disk.persistence.id}"`
    if (!r.role || r.role === '*') throw new RegattaError('INVALID_TASK', `${what} is not reserved for a role`)
    const problem = volumePathProblem(r.disk.containerPath)
    if (problem) throw new RegattaError('INVALID_TASK', `${what}: container path "${r.disk.containerPath}" ${problem}`)
    const target = dockerTarget(r.disk.containerPath)
    if (target === SANDBOX_MOUNT || target === WORKSPACE_MOUNT || target === '/') {
      throw new RegattaError('INVALID_TASK', `${what}: container path "${r.disk.containerPath}" would hide the task's ${target === WORKSPACE_MOUNT ? 'workspace' : 'sandbox'}`)
    }
    if (paths.has(target)) throw new RegattaError('INVALID_TASK', `${what}: two volumes at "${target}"`)
    const ref = `${r.role}\u0000${r.disk.persistence.id}`
    if (ids.has(ref)) throw new RegattaError('INVALID_TASK', `${what} is taken twice`)
    paths.add(target)
    ids.add(ref)
  }
}

export class Volumes {
  /** The last operation queued per volume directory. */
  private readonly chains = new Map<string, Promise<void>>()

  constructor(private readonly workDir: string, private readonly log: Logger) {}

  dirOf(ref: VolumeRef): string {
    return join(this.workDir, 'volumes', encodeURIComponent(ref.role), encodeURIComponent(ref.id))
  }

  /** Runs `op` on the volume's directory after the operations queued before it (a failure does not stop the next). */
  private queue(dir: string, op: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(dir) ?? Promise.resolve()).then(op)
    const settled = next.catch(() => undefined)
    this.chains.set(dir, settled)
    void settled.then(() => { if (this.chains.get(dir) === settled) this.chains.delete(dir) })
    return next
  }

  /** CREATE_VOLUMES: each directory made empty (whatever a lost DESTROY left there goes). */
  create(refs: readonly VolumeRef[]): Promise<void[]> {
    return Promise.all(refs.map((ref) => {
      const dir = this.dirOf(ref)
      return this.queue(dir, async () => {
        await rm(dir, { recursive: true, force: true })
        await mkdir(dir, { recursive: true })
        this.log.info({ role: ref.role, volume: ref.id }, 'volume created')
      }).catch((err: Error) => this.log.warn({ role: ref.role, volume: ref.id, err: err.message }, 'volume not created'))
    }))
  }

  /** DESTROY_VOLUMES: each directory deleted with what it holds. */
  destroy(refs: readonly VolumeRef[]): Promise<void[]> {
    return Promise.all(refs.map((ref) => {
      const dir = this.dirOf(ref)
      return this.queue(dir, async () => {
        await rm(dir, { recursive: true, force: true })
        this.log.info({ role: ref.role, volume: ref.id }, 'volume destroyed')
      }).catch((err: Error) => this.log.warn({ role: ref.role, volume: ref.id, err: err.message }, 'volume not destroyed'))
    }))
  }

  /** The task's volumes, each directory made when missing (after any create or destroy queued before). */
  async prepare(resources: readonly Resource[]): Promise<TaskVolume[]> {
    const out: TaskVolume[] = []
    for (const v of volumesOf(resources)) {
      const dir = this.dirOf(v)
      await this.queue(dir, async () => { await mkdir(dir, { recursive: true }) })
      out.push({ ...v, dir })
    }
    return out
  }

  /**
   * Gives a task its volumes: bind mounts added to `mounts` (Docker), or symlinks made in the
   * sandbox (process). Throws CONTAINER_ERROR when a path in the sandbox is taken already.
   */
  async attach(resources: readonly Resource[], kind: Containerizer['kind'], sandbox: string, mounts: LaunchSpec['mounts']): Promise<void> {
    const volumes = await this.prepare(resources)
    for (const v of volumes) {
      if (kind === 'docker') {
        mounts.push({ source: v.dir, target: dockerTarget(v.containerPath) })
        continue
      }
      const at = join(sandbox, sandboxPath(v.containerPath))
      const taken = await lstat(at).then(() => true, () => false)
      if (taken) throw new RegattaError('CONTAINER_ERROR', `volume "${v.id}": ${v.containerPath} exists in the task's sandbox already`)
      await mkdir(dirname(at), { recursive: true })
      await symlink(v.dir, at, 'dir')
    }
  }
}
