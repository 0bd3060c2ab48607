// Caches and artifacts of tasks, kept in the NATS object store as tar.gz objects made by the
// system `tar`. Everything streams: tar's stdout goes into the object store's put through a
// ReadableStream (paced by NATS flushes, so a large archive is never held in memory), and a
// ReadableStream that reads the object chunk by chunk, as tar takes them, goes into tar's stdin.
//
//   bucket `regatta-cache`      object = cache key      entries expire 7 days after they were saved
//   bucket `regatta-artifacts`  object = artifact name  entries expire 30 days after they were saved
//
// Buckets are created on first use (one replica unless told otherwise). Paths are relative to
// the task's workspace; `checkWorkspacePath` refuses absolute ones and `..`, and a path whose
// directories resolve outside the workspace (a symlink the task made) is skipped, never followed.
// A cache is restored into a fresh staging directory first and then moved into the workspace
// without following any symlink there (a checkout may hold one that points anywhere).
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { lstat, mkdir, readdir, realpath, rename, rm } from 'node:fs/promises'
import { isAbsolute, join, posix, sep } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { nanos, type NatsConnection, type ObjectInfo, type ObjectStore, type StoredMsg } from 'nats'
import { Buckets } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'

const DAY_MS = 24 * 3600_000
/** How long a saved cache is kept (the bucket's max age). */
export const CACHE_MAX_AGE_MS = 7 * DAY_MS
/** How long a saved artifact is kept (the bucket's max age). */
export const ARTIFACT_MAX_AGE_MS = 30 * DAY_MS
/** Bytes handed to the object store between two NATS flushes (bounds what waits in the client). */
const FLUSH_EVERY_BYTES = 4 * 1024 * 1024

export interface StoreOptions {
  /** Aborts the transfer (tar is killed, a partial upload is purged). */
  signal?: AbortSignal
  /** Replicas of a bucket created here; default 1. */
  replicas?: number
}

export interface SaveResult {
  /** True when an object was written. */
  saved: boolean
  /** Bytes of the tar.gz written (0 when nothing was). */
  size: number
  /** Paths that were not saved: missing, or leaving the workspace through a symlink. */
  skipped: string[]
  /** Why nothing was saved: no path exists, or (caches) the key exists already. */
  reason?: 'empty' | 'exists'
}

/**
 * A cache or artifact path as given by the task, normalized (`a/b/`, `./a//b` -> `a/b`; `.` is
 * the whole workspace). Absolute paths and any `..` segment are refused with INVALID_TASK.
 */
export function checkWorkspacePath(path: string): string {
  if (path.length === 0 || path.includes('\0')) throw new RegattaError('INVALID_TASK', `path ${JSON.stringify(path)} is empty or has a NUL character`)
  if (isAbsolute(path) || posix.isAbsolute(path)) {
    throw new RegattaError('INVALID_TASK', `path "${path}" is absolute: cache and artifact paths are relative to the workspace`)
  }
  if (path.split(/[\\/]/).includes('..')) throw new RegattaError('INVALID_TASK', `path "${path}" climbs out of the workspace with ".."`)
  return posix.normalize(path).replace(/\/+$/, '') || '.'
}

function bucket(nc: NatsConnection, name: string, maxAgeMs: number, description: string, o: StoreOptions): Promise<ObjectStore> {
  return nc.jetstream().views.os(name, { ttl: nanos(maxAgeMs), description, replicas: o.replicas ?? 1 })
}

const cacheBucket = (nc: NatsConnection, o: StoreOptions): Promise<ObjectStore> =>
  bucket(nc, Buckets.cache, CACHE_MAX_AGE_MS, 'Regatta task caches (tar.gz by cache key)', o)
const artifactBucket = (nc: NatsConnection, o: StoreOptions): Promise<ObjectStore> =>
  bucket(nc, Buckets.artifacts, ARTIFACT_MAX_AGE_MS, 'Regatta task artifacts (tar.gz by name)', o)

/**
 * Restores the cache saved under `key` into `dir`. Resolves false on a miss (no such key);
 * throws WORKSPACE_STORE_FAILED when the store or tar fails (the caller may treat it as a miss).
 */
export async function restoreCache(nc: NatsConnection, dir: string, key: string, o: StoreOptions = {}): Promise<boolean> {
  try {
    const os = await cacheBucket(nc, o)
    const info = await os.info(key)
    if (!info || info.deleted) return false
    const staging = join(dir, `.regatta-restore-${randomBytes(4).toString('hex')}`)
    await mkdir(staging)
    try {
      const tar = spawnTar(['-x', '-z', '-f', '-', '-C', staging], 'extract', o.signal)
      const source = Readable.fromWeb(await objectStream(nc, Buckets.cache, os, info) as WebReadableStream<Uint8Array>)
      const [piped, tarErr] = await Promise.all([
        pipeline(source, tar.child.stdin!, o.signal ? { signal: o.signal } : {}).then(() => null, (err: unknown) => err),
        tar.exited,
      ])
      // a broken object (the stream checks its digest) says more than tar's complaint about it,
      // and tar's own complaint more than the EPIPE its early exit causes
      if (piped && !isPipeError(piped)) throw piped
      if (tarErr) throw tarErr
      if (piped) throw piped
      await moveInto(staging, dir)
    } finally {
      await rm(staging, { recursive: true, force: true })
    }
    return true
  } catch (err) {
    throw storeError(`cannot restore cache "${key}"`, o.signal?.aborted ? o.signal.reason : err)
  }
}

/**
 * Saves `paths` of `dir` under `key` unless the key exists already (caches are immutable: the
 * first task to save a key wins). Paths that do not exist are skipped; none at all saves nothing.
 */
export async function saveCache(nc: NatsConnection, dir: string, key: string, paths: string[], o: StoreOptions = {}): Promise<SaveResult> {
  try {
    const { found, skipped } = await existingPaths(dir, paths)
    if (found.length === 0) return { saved: false, size: 0, skipped, reason: 'empty' }
    const os = await cacheBucket(nc, o)
    const existing = await os.info(key)
    if (existing && !existing.deleted) return { saved: false, size: 0, skipped, reason: 'exists' }
    const size = await putTar(nc, os, dir, key, found, o)
    return { saved: true, size, skipped }
  } catch (err) {
    throw storeError(`cannot save cache "${key}"`, o.signal?.aborted ? o.signal.reason : err)
  }
}

/**
 * Saves `paths` of `dir` as the artifact `name` (replacing an artifact of that name). Paths that
 * do not exist are skipped; none at all saves nothing (`saved: false, reason: 'empty'`).
 */
export async function saveArtifacts(nc: NatsConnection, dir: string, name: string, paths: string[], o: StoreOptions = {}): Promise<SaveResult> {
  try {
    const { found, skipped } = await existingPaths(dir, paths)
    if (found.length === 0) return { saved: false, size: 0, skipped, reason: 'empty' }
    const os = await artifactBucket(nc, o)
    const size = await putTar(nc, os, dir, name, found, o)
    return { saved: true, size, skipped }
  } catch (err) {
    throw storeError(`cannot save artifact "${name}"`, o.signal?.aborted ? o.signal.reason : err)
  }
}

/** The paths that exist under `dir` without leaving it through a symlink (the last component is not followed). */
async function existingPaths(dir: string, paths: string[]): Promise<{ found: string[]; skipped: string[] }> {
  const root = await realpath(dir)
  const found: string[] = []
  const skipped: string[] = []
  for (const p of new Set(paths.map(checkWorkspacePath))) {
    let parent: string
    try {
      parent = await realpath(join(root, posix.dirname(p)))
    } catch {
      skipped.push(p)
      continue
    }
    if (parent !== root && !parent.startsWith(`${root}${sep}`)) {
      skipped.push(`${p} (leaves the workspace through a symlink)`)
      continue
    }
    const exists = await lstat(join(root, p)).then(() => true, () => false)
    if (exists) found.push(p)
    else skipped.push(p)
  }
  return { found, skipped }
}

/** Streams `tar -cz` of `paths` into the object `name`; resolves with the object's size. */
async function putTar(nc: NatsConnection, os: ObjectStore, dir: string, name: string, paths: string[], o: StoreOptions): Promise<number> {
  const tar = spawnTar(['-c', '-z', '-f', '-', '-C', dir, '--', ...paths], 'archive', o.signal)
  const out = tar.child.stdout!
  let unflushed = 0
  let open = true
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      out.on('data', (chunk: Buffer) => {
        if (!open) return
        unflushed += chunk.length
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length))
        if ((controller.desiredSize ?? 0) <= 0) out.pause()
      })
      // tar has exited and its stdout is drained: the archive is complete only if tar says so
      void tar.exited.then((err) => {
        if (!open) return
        open = false
        if (err) controller.error(err)
        else controller.close()
      })
    },
    async pull() {
      if (unflushed >= FLUSH_EVERY_BYTES) {
        // what was handed over has reached the server: the client's buffer stays small
        unflushed = 0
        await nc.flush()
      }
      out.resume()
    },
    cancel() {
      open = false
      tar.child.kill('SIGKILL')
    },
  }, { highWaterMark: 8 })
  try {
    const info = await abortable(os.put({ name }, stream), o.signal)
    const err = await tar.exited
    if (err) throw err
    return info.size
  } finally {
    if (tar.child.exitCode === null && tar.child.signalCode === null) tar.child.kill('SIGKILL')
  }
}

/**
 * The object's content as a stream that reads a chunk from the server only when the one before
 * has been taken (direct gets, one at a time), so a slow reader holds at most a few chunks in
 * memory. (`ObjectStore.get` pushes every chunk as fast as the server sends it: measured here,
 * restoring 300 MB through it held ~350 MB.) The digest and size are checked at the end.
 */
async function objectStream(nc: NatsConnection, bucketName: string, os: ObjectStore, info: ObjectInfo): Promise<ReadableStream<Uint8Array>> {
  if (info.options?.link) {
    // never made by Regatta; the client's own reader follows links
    const found = await os.get(info.name)
    if (!found) throw new Error(`object "${info.name}" is a dangling link`)
    return found.data
  }
  // the client has direct gets (servers >= 2.9, buckets allow them) but does not declare them
  const { direct } = await nc.jetstreamManager() as unknown as Partial<DirectGets>
  if (!direct) throw new Error('this NATS client has no direct gets')
  const stream = `OBJ_${bucketName}`
  const subject = `$O.${bucketName}.C.${info.nuid}`
  const hash = createHash('sha256')
  let seq = 0
  let chunks = 0
  let size = 0
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (chunks >= info.chunks) {
        if (size !== info.size) throw new Error(`object "${info.name}" is ${size} bytes, not ${info.size}`)
        if (!sameDigest(info.digest, hash.digest())) throw new Error(`object "${info.name}" is corrupt: its digest does not match`)
        controller.close()
        return
      }
      const m = await direct.getMessage(stream, { next_by_subj: subject, seq: seq + 1 })
      seq = m.seq
      chunks++
      size += m.data.length
      hash.update(m.data)
      controller.enqueue(m.data)
    },
  }, { highWaterMark: 2 })
}

interface DirectGets {
  direct: { getMessage(stream: string, query: { seq: number; next_by_subj: string }): Promise<StoredMsg> }
}

/** `SHA-256=<base64url>` (or hex) as the object store writes it, against a computed digest. */
function sameDigest(stored: string, computed: Buffer): boolean {
  if (!stored.startsWith('SHA-256=')) return false
  const text = stored.slice('SHA-256='.length)
  const bytes = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
  return bytes.equals(computed)
}

function isPipeError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED'
}

/** Moves every entry of `from` into `to`, merging into directories and never following a symlink in `to`. */
async function moveInto(from: string, to: string): Promise<void> {
  for (const name of await readdir(from)) {
    const src = join(from, name)
    const dst = join(to, name)
    const target = await lstat(dst).catch(() => undefined)
    if (target?.isDirectory() && (await lstat(src)).isDirectory()) {
      await moveInto(src, dst)
      continue
    }
    // a file, or a symlink (removed as a link, not followed), gives way to the cached entry
    if (target) await rm(dst, { recursive: true, force: true })
    await rename(src, dst)
  }
}

interface Tar {
  child: ChildProcess
  /** Resolves when tar has exited: null on success, else the error. */
  exited: Promise<Error | null>
}

function spawnTar(args: string[], what: string, signal?: AbortSignal): Tar {
  const child = spawn('tar', args, {
    stdio: [what === 'extract' ? 'pipe' : 'ignore', what === 'extract' ? 'ignore' : 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
    ...(signal ? { signal, killSignal: 'SIGKILL' as const } : {}),
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString() })
  // a tar that dies early makes our end of its stdin fail with EPIPE: the exit says why
  child.stdin?.on('error', () => undefined)
  const exited = new Promise<Error | null>((resolve) => {
    child.once('error', (err) => resolve(err))
    child.once('close', (code, sig) => {
      if (code === 0) return resolve(null)
      const text = stderr.trim().split('\n').slice(-3).join(' | ')
      resolve(new Error(`tar (${what}) ${sig ? `was killed by ${sig}` : `exited with code ${code}`}${text ? `: ${text}` : ''}`))
    })
  })
  return { child, exited }
}

function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p
  if (signal.aborted) return Promise.reject(abortReason(signal))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted')
}

function storeError(what: string, err: unknown): RegattaError {
  if (err instanceof RegattaError && err.code === 'INVALID_TASK') return err
  const message = err instanceof Error ? (err.name === 'TimeoutError' ? 'timed out' : err.message) : String(err)
  return new RegattaError('WORKSPACE_STORE_FAILED', `${what}: ${message}`, { cause: err })
}
