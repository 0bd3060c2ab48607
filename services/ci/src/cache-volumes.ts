// Job caches kept in persistent volumes on the agents (`cache: { volume: true }`): the volume a
// job's cache lives in, what the service knows of the volumes on each agent, and the shell
// lines that link the cache's paths into the volume before the first step. Pure: data in, data
// (and script text) out; placement.ts picks the volume for a job, service.ts sends the ACCEPT.
//
// One family of volumes per repository and pipeline, per role (a volume is offered to the role
// it was made for: pushes, pull requests, tags, schedules and manual runs each keep their own),
// per agent. A family has slots (`<base>.0`, `<base>.1`, ...), each a volume, because a volume
// is used by one task at a time: jobs of the pipeline running together on one agent take one
// slot each. Inside a volume, each cache key has its own directory (`k-<hash of the key>`), the
// last KEPT_CACHE_KEYS keys used are kept, and each cache path is a directory below it.
import { createHash } from 'node:crypto'
import type { ClusterState, Offer, Operation, Resource } from '../../../shared/protocol/index.js'

/**
 * Where a task sees its cache volume. At the root, beside the workspace: in Docker the volume is
 * bind-mounted at /cache and the checkout at /workspace; the process containerizer links it at
 * `<sandbox>/cache` beside `<sandbox>/workspace`. Either way, `../cache` from the checkout.
 */
export const CACHE_VOLUME_PATH = '/cache'
/** How the steps script finds the volume from the checkout (its working directory). */
const FROM_WORKSPACE = `..${CACHE_VOLUME_PATH}`
/** At most this many volumes (slots) of one family on one agent; more jobs at once run with the object-store cache. */
export const MAX_CACHE_VOLUME_SLOTS = 4
/** The cache keys whose directories a volume keeps (the most recently used). */
export const KEPT_CACHE_KEYS = 3
/** A cache volume unused this long is destroyed and its disk unreserved (REGATTA_CACHE_VOLUME_TTL). */
export const DEFAULT_CACHE_VOLUME_TTL_MS = 7 * 24 * 3600_000

const hash = (s: string, n: number): string => createHash('sha256').update(s).digest('hex').slice(0, n)
/** Letters, digits, `_` and `-`, starting with a letter or digit (a volume id's first character must be). */
const slug = (s: string, max: number): string =>
  s.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, max).replace(/-+$/, '') || 'x'

/**
 * The family of a repository's pipeline: readable, within a volume id's characters and length,
 * and distinct for distinct (repository, pipeline) pairs (a hash of both).
 */
export function cacheVolumeBase(repo: string, pipeline: string): string {
  return `${slug(repo, 48)}.${slug(pipeline, 40)}.${hash(`${repo}\u0000${pipeline}`, 10)}`
}

export function cacheVolumeId(base: string, slot: number): string {
  return `${base}.${slot}`
}

/** The slot of a volume id of the family, or undefined for any other id. */
export function slotOf(id: string, base: string): number | undefined {
  if (!id.startsWith(`${base}.`)) return undefined
  const rest = id.slice(base.length + 1)
  return /^(0|[1-9][0-9]{0,3})$/.test(rest) ? Number(rest) : undefined
}

/**
 * The lowest slot of the family with no volume among `existing` (the ids on the agent for the
 * role), or undefined when all MAX_CACHE_VOLUME_SLOTS exist.
 */
export function freeSlot(base: string, existing: ReadonlySet<string>): number | undefined {
  for (let n = 0; n < MAX_CACHE_VOLUME_SLOTS; n++) if (!existing.has(cacheVolumeId(base, n))) return n
  return undefined
}

/** The volume resource of a new cache volume, as CREATE makes it. */
export function cacheVolumeResource(id: string, size: number, role: string): Resource {
  return { name: 'disk', scalar: size, role, disk: { persistence: { id }, containerPath: CACHE_VOLUME_PATH } }
}

/**
 * A volume as a task lists it: by id and path, without role or principal (the master finds it
 * among the offers' volumes and gives the agent the whole volume with its reservation).
 */
export function volumeForTask(volume: Resource): Resource {
  return { name: 'disk', scalar: volume.scalar ?? 0, disk: volume.disk! }
}

/**
 * The volumes that exist on each agent, per role, as far as the service has seen them (in offers,
 * in the master's state, or made by itself). A volume held by a running task is in no offer: the
 * service must not make another volume with its id there.
 */
export class KnownVolumes {
  private readonly byAgent = new Map<string, Set<string>>()

  note(agentId: string, role: string, id: string): void {
    let ids = this.byAgent.get(agentId)
    if (!ids) this.byAgent.set(agentId, (ids = new Set()))
    ids.add(`${role}\u0000${id}`)
  }

  noteOffer(offer: Offer): void {
    for (const r of offer.resources) if (r.disk && r.role) this.note(offer.agentId, r.role, r.disk.persistence.id)
  }

  /** Every volume of `roles` on every agent the master knows. */
  noteState(state: Pick<ClusterState, 'agents'>, roles: readonly string[]): void {
    for (const a of state.agents) {
      for (const r of a.resources) if (r.disk && r.role && roles.includes(r.role)) this.note(a.id, r.role, r.disk.persistence.id)
    }
  }

  /** The volume is gone (destroyed). */
  forget(agentId: string, role: string, id: string): void {
    this.byAgent.get(agentId)?.delete(`${role}\u0000${id}`)
  }

  /** The volume ids of `role` on the agent. */
  ids(agentId: string, role: string): Set<string> {
    const out = new Set<string>()
    const prefix = `${role}\u0000`
    for (const k of this.byAgent.get(agentId) ?? []) if (k.startsWith(prefix)) out.add(k.slice(prefix.length))
    return out
  }
}

/** A waiting job whose cache lives in a volume of family `base` (made `size` MiB when missing). */
export interface VolumeWant {
  role: string
  pool: string
  cpus: number
  mem: number
  disk?: number
  revocable: boolean
  base: string
  size: number
}

/** Free volumes of an offer to destroy (and their disk to unreserve), and why. */
export interface VolumeReclaim {
  offer: Offer
  volumes: Resource[]
  why: 'expired' | 'evicted'
}

export interface ReclaimContext {
  now: number
  /** Volumes unused this long are destroyed; 0: never. */
  ttlMs: number
  /** When a volume was last used (a task took it, or gave it back), if known. */
  lastUsed(agentId: string, role: string, id: string): number | undefined
  /** Volume ids of the role known on the agent (held by tasks or not). */
  existing(agentId: string, role: string): ReadonlySet<string>
}

/**
 * Which offers' free cache volumes go (pure). A volume in an offer is held by no task: a volume
 * in use is in no offer, so it is never chosen. Per offer: its volumes unused for the TTL; else,
 * when a waiting job of the offer's role and pool fits it but finds no volume of its family and
 * not the disk to make one, the least recently used free volumes of other families, as few as
 * make room (none when even all would not). An offer listed here is taken by the reclaim's ACCEPT:
 * what it frees comes back in the next offer, where the job makes its volume.
 */
export function reclaimVolumes(offers: readonly Offer[], wants: readonly VolumeWant[], c: ReclaimContext): VolumeReclaim[] {
  const out: VolumeReclaim[] = []
  const byAge = (agentId: string) => (a: Resource, b: Resource): number => {
    const at = (r: Resource): number => c.lastUsed(agentId, r.role!, r.disk!.persistence.id) ?? c.now
    return at(a) - at(b) || (a.disk!.persistence.id < b.disk!.persistence.id ? -1 : 1)
  }
  for (const offer of offers) {
    const free = offer.resources.filter((r) => r.disk && r.role === offer.role && !r.revocable)
    if (free.length === 0) continue
    const expired = c.ttlMs > 0 ? free.filter((v) => c.now - (c.lastUsed(offer.agentId, offer.role, v.disk!.persistence.id) ?? c.now) >= c.ttlMs) : []
    if (expired.length > 0) {
      out.push({ offer, volumes: expired.sort(byAge(offer.agentId)), why: 'expired' })
      continue
    }
    const sum = (pick: (r: Resource) => boolean, name: string): number =>
      offer.resources.reduce((n, r) => (r.name === name && !r.disk && r.scalar !== undefined && pick(r) ? n + r.scalar : n), 0)
    const plain = (name: string): number => sum((r) => !r.revocable, name)
    const revocable = (name: string): number => sum((r) => r.revocable === true, name)
    const unreservedDisk = sum((r) => !r.revocable && (r.role === undefined || r.role === '*'), 'disk')
    const roleDisk = sum((r) => !r.revocable && r.role === offer.role, 'disk')
    const ids = new Set([...c.existing(offer.agentId, offer.role), ...free.map((v) => v.disk!.persistence.id)])
    const mine = wants.filter((w) => w.role === offer.role && w.pool === offer.pool)
    const want = mine.find((w) => {
      if (free.some((v) => slotOf(v.disk!.persistence.id, w.base) !== undefined)) return false
      if (freeSlot(w.base, ids) === undefined) return false
      const fitsIn = (get: (n: string) => number): boolean => w.cpus <= get('cpus') + 1e-9 && w.mem <= get('mem') + 1e-9 && (w.disk ?? 0) <= get('disk') + 1e-9
      const from = w.revocable && fitsIn(revocable) ? 'revocable' : fitsIn(plain) ? 'plain' : undefined
      if (!from) return false
      const left = plain('disk') - (from === 'plain' ? w.disk ?? 0 : 0)
      // room for a new volume already: placement makes it, nothing goes
      return !(left >= w.size - 1e-9 && (roleDisk >= w.size - 1e-9 || unreservedDisk >= w.size - 1e-9))
    })
    if (!want) continue
    const jobDisk = want.revocable ? 0 : want.disk ?? 0
    const candidates = free.filter((v) => !mine.some((w) => slotOf(v.disk!.persistence.id, w.base) !== undefined)).sort(byAge(offer.agentId))
    const chosen: Resource[] = []
    let freed = 0
    const enough = (): boolean => unreservedDisk + freed >= want.size - 1e-9 && plain('disk') + freed - jobDisk >= want.size - 1e-9
    for (const v of candidates) {
      if (enough()) break
      chosen.push(v)
      freed += v.scalar ?? 0
    }
    if (chosen.length > 0 && enough()) out.push({ offer, volumes: chosen, why: 'evicted' })
  }
  return out
}

/** The ACCEPT of a reclaim: the volumes destroyed, then the disk they were made of unreserved. */
export function reclaimOperations(r: VolumeReclaim): Operation[] {
  return [
    { type: 'DESTROY', volumes: r.volumes },
    { type: 'UNRESERVE', resources: r.volumes.map(({ disk: _disk, ...reserved }) => reserved) },
  ]
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** The directory of a cache key in the volume. */
export function keyDir(key: string): string {
  return `k-${hash(key, 16)}`
}

/** The directory of a cache path below its key's directory. */
export function pathDir(path: string): string {
  return `${slug(path, 40)}-${hash(path, 8)}`
}

export interface CacheVolumeScript {
  volumeId: string
  key: string
  paths: string[]
  runId: string
  jobId: string
}

/**
 * Shell lines run before the first step: find the volume, say whether it holds something for
 * the key (and which run left it), keep the last KEPT_CACHE_KEYS keys, and link each cache path
 * of the checkout to its directory in the volume, so what the steps write there stays. A job
 * whose volume is missing runs without its cache and says so; it never fails for it.
 */
export function cacheVolumeScript(c: CacheVolumeScript): string[] {
  const say = (text: string): string => `printf '%s\\n' ${text}`
  const what = `cache volume ${c.volumeId}`
  const lines = [
    `if REGATTA_CACHE_VOLUME=$(cd ${quote(FROM_WORKSPACE)} 2>/dev/null && pwd) && [ -d "$REGATTA_CACHE_VOLUME" ]; then`,
    '  export REGATTA_CACHE_VOLUME',
    `  _regatta_k="$REGATTA_CACHE_VOLUME"/${quote(keyDir(c.key))}`,
    `  if [ -f "$_regatta_k/.last-run" ]; then ${say(`${quote(`::regatta ${what}: key ${c.key} warm, last used by `)}"$(cat "$_regatta_k/.last-run")"`)};`,
    `  else ${say(quote(`::regatta ${what}: nothing kept for key ${c.key} yet`))}; fi`,
    `  mkdir -p "$_regatta_k" && printf '%s\\n' ${quote(c.key)} > "$_regatta_k/.key" && printf '%s\\n' ${quote(`run ${c.runId} (${c.jobId})`)} > "$_regatta_k/.last-run" && touch "$_regatta_k"`,
    // the least recently used keys go (names are k-<hex>: no spaces to split on)
    `  (cd "$REGATTA_CACHE_VOLUME" && ls -1dt k-* 2>/dev/null | tail -n +${KEPT_CACHE_KEYS + 1} | while read -r _old; do rm -rf "./$_old"; done)`,
  ]
  for (const p of c.paths) {
    const path = quote(p)
    lines.push(
      `  if [ -e ${path} ] || [ -L ${path} ]; then ${say(quote(`::regatta warning cache path ${p} is in the checkout already: it is not linked to the ${what}`))} >&2;`,
      `  else mkdir -p "$_regatta_k"/${quote(pathDir(p))} && mkdir -p "$(dirname -- ${path})" && ln -s "$_regatta_k"/${quote(pathDir(p))} ${path}; fi`,
    )
  }
  lines.push(
    `else ${say(quote(`::regatta warning the ${what} is not at ${CACHE_VOLUME_PATH}: the job runs without its cache`))} >&2; fi`,
  )
  return lines
}
