// Resource arithmetic (Mesos semantics): scalars and ranges, each possibly reserved for a role
// and possibly revocable, reserved disk possibly a persistent volume. Resources with the same
// identity (name, role, principal, revocable, volume) merge; others stay apart. Scalars are kept in fixed point (0.001) as Mesos does, so that
// repeated add/subtract never drifts.
import type { Range, Resource } from '../protocol/resources.js'
import { RegattaError } from '../errors/index.js'

export type { Range, Resource }

/** The unreserved role, as in Mesos. */
export const ANY_ROLE = '*'

const round = (x: number): number => Math.round(x * 1000) / 1000

/** The reservation role, with `*` (and no role) meaning unreserved. */
function roleOf(r: Resource): string | undefined {
  return r.role === undefined || r.role === ANY_ROLE ? undefined : r.role
}

/** The reservation principal, with an empty one meaning none. */
function principalOf(r: Resource): string | undefined {
  return r.principal === undefined || r.principal === '' ? undefined : r.principal
}

/** A persistent volume's identity (its id and where tasks see it); '' for anything else. */
export function volumeKey(r: Resource): string {
  return r.disk ? `${r.disk.persistence.id}\u0000${r.disk.containerPath}` : ''
}

export function isVolume(r: Resource): boolean {
  return r.disk !== undefined
}

// A scalar and ranges of the same name are different kinds and never merge (merging them lost
// the scalar); `*` is no reservation and an empty principal is no principal, everywhere.
function sameIdentity(a: Resource, b: Resource): boolean {
  return a.name === b.name && roleOf(a) === roleOf(b) && principalOf(a) === principalOf(b) &&
    !!a.revocable === !!b.revocable && (a.ranges !== undefined) === (b.ranges !== undefined) &&
    volumeKey(a) === volumeKey(b)
}

function isEmpty(r: Resource): boolean {
  if (r.ranges !== undefined) return r.ranges.length === 0
  return (r.scalar ?? 0) <= 0
}

function cloneShape(r: Resource): Resource {
  const out: Resource = { name: r.name }
  const role = roleOf(r)
  const principal = principalOf(r)
  if (role !== undefined) out.role = role
  if (principal !== undefined) out.principal = principal
  if (r.revocable) out.revocable = true
  if (r.disk) out.disk = { persistence: { id: r.disk.persistence.id }, containerPath: r.disk.containerPath }
  return out
}

/** Sorted, merged, non-overlapping ranges. */
export function normalizeRanges(ranges: readonly Range[]): Range[] {
  const sorted = ranges.filter((r) => r.end >= r.begin).map((r) => ({ begin: r.begin, end: r.end }))
  sorted.sort((a, b) => a.begin - b.begin)
  const out: Range[] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last && r.begin <= last.end + 1) last.end = Math.max(last.end, r.end)
    else out.push(r)
  }
  return out
}

function rangesSubtract(a: readonly Range[], b: readonly Range[]): Range[] {
  let out = normalizeRanges(a)
  for (const cut of normalizeRanges(b)) {
    const next: Range[] = []
    for (const r of out) {
      if (cut.end < r.begin || cut.begin > r.end) { next.push(r); continue }
      if (cut.begin > r.begin) next.push({ begin: r.begin, end: cut.begin - 1 })
      if (cut.end < r.end) next.push({ begin: cut.end + 1, end: r.end })
    }
    out = next
  }
  return out
}

function rangesContain(a: readonly Range[], b: readonly Range[]): boolean {
  const have = normalizeRanges(a)
  return normalizeRanges(b).every((need) => have.some((r) => r.begin <= need.begin && need.end <= r.end))
}

export function rangesSize(ranges: readonly Range[]): number {
  return ranges.reduce((n, r) => n + (r.end - r.begin + 1), 0)
}

/** Merges resources of the same identity and drops empty ones. */
export function normalize(rs: readonly Resource[]): Resource[] {
  // Resource lists are short (a handful of names): a linear scan beats building keys.
  const out: Resource[] = []
  for (const r of rs) {
    let cur: Resource | undefined
    for (const o of out) if (sameIdentity(o, r)) { cur = o; break }
    if (!cur) {
      const copy = cloneShape(r)
      if (r.ranges !== undefined) copy.ranges = normalizeRanges(r.ranges)
      else copy.scalar = round(r.scalar ?? 0)
      out.push(copy)
    } else if (cur.ranges !== undefined) {
      cur.ranges = normalizeRanges([...cur.ranges, ...(r.ranges ?? [])])
    } else {
      // Each value goes to the fixed point before it is added, so the sum does not depend on
      // the order of the values (rounding only the running sum did).
      cur.scalar = round((cur.scalar ?? 0) + round(r.scalar ?? 0))
    }
  }
  return out.filter((r) => !isEmpty(r))
}

export function add(a: readonly Resource[], b: readonly Resource[]): Resource[] {
  return normalize([...a, ...b])
}

/** a - b; what b takes beyond a is ignored (callers check `contains` first when that matters). */
export function subtract(a: readonly Resource[], b: readonly Resource[]): Resource[] {
  const out = normalize(a)
  for (const take of normalize(b)) {
    const have = out.find((r) => sameIdentity(r, take))
    if (!have) continue
    if (have.ranges !== undefined) have.ranges = rangesSubtract(have.ranges, take.ranges ?? [])
    else have.scalar = Math.max(0, round((have.scalar ?? 0) - (take.scalar ?? 0)))
  }
  return out.filter((r) => !isEmpty(r))
}

/** Whether a holds all of b, identity by identity. */
export function contains(a: readonly Resource[], b: readonly Resource[]): boolean {
  const have = normalize(a)
  return normalize(b).every((need) => {
    const h = have.find((r) => sameIdentity(r, need))
    if (!h) return false
    if (need.ranges !== undefined) return rangesContain(h.ranges ?? [], need.ranges)
    return round((h.scalar ?? 0) - (need.scalar ?? 0)) >= 0
  })
}

/** Drops reservations, volumes and the revocable mark (optionally re-marking everything for one role). */
export function flatten(rs: readonly Resource[], role?: string): Resource[] {
  return normalize(rs.map((r) => {
    const out: Resource = { name: r.name }
    if (r.ranges !== undefined) out.ranges = r.ranges
    else out.scalar = r.scalar ?? 0
    if (role !== undefined && role !== ANY_ROLE) out.role = role
    return out
  }))
}

/** The sum of one scalar over all identities. */
export function scalar(rs: readonly Resource[], name: string): number {
  let n = 0
  for (const r of rs) if (r.name === name && r.scalar !== undefined) n += r.scalar
  return round(n)
}

/** Totals of every scalar by name (ranges counted by size). */
export function totals(rs: readonly Resource[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of rs) {
    const v = r.ranges !== undefined ? rangesSize(r.ranges) : (r.scalar ?? 0)
    out[r.name] = round((out[r.name] ?? 0) + v)
  }
  return out
}

/** Resources a framework in `role` may be offered: unreserved ones and those reserved for the role or an ancestor. */
export function usableBy(rs: readonly Resource[], role: string): Resource[] {
  return rs.filter((r) => r.role === undefined || r.role === ANY_ROLE || r.role === role || role.startsWith(`${r.role}/`))
}

export function isRevocable(r: Resource): boolean {
  return r.revocable === true
}

/** The same resources unreserved: what a RESERVE takes and an UNRESERVE gives back. */
export function unreserved(rs: readonly Resource[]): Resource[] {
  return normalize(rs.map((r) => {
    const { role: _role, principal: _principal, disk: _disk, ...rest } = r
    return rest
  }))
}

/** The same resources without their volume: the reserved disk a CREATE takes and a DESTROY gives back. */
export function withoutVolumes(rs: readonly Resource[]): Resource[] {
  return normalize(rs.map((r) => {
    const { disk: _disk, ...rest } = r
    return rest
  }))
}

/**
 * What is wrong with a volume's container path, or undefined when nothing is: it must name a
 * directory below the sandbox (relative) or below `/` (absolute), with no `..` segment.
 */
export function volumePathProblem(path: string): string | undefined {
  if (path.includes('\u0000')) return 'has a NUL character'
  const segments = path.split('/').filter((s) => s !== '' && s !== '.')
  if (segments.includes('..')) return 'has a ".." segment'
  if (segments.length === 0) return 'names no directory'
  return undefined
}

/**
 * A conversion (Mesos's `ResourceConversion`): `consumed` is taken out of `rs` and `converted`
 * put in its place, as a RESERVE (unreserved -> reserved), an UNRESERVE, a CREATE (reserved disk
 * -> volume) or a DESTROY does. Undefined when `rs` does not hold all of `consumed`.
 */
export function convert(rs: readonly Resource[], consumed: readonly Resource[], converted: readonly Resource[]): Resource[] | undefined {
  if (!contains(rs, consumed)) return undefined
  return add(subtract(rs, consumed), converted)
}

/**
 * Parses the agent's `--resources` syntax: `cpus:2;mem:4096;disk:20000;ports:[31000-32000]`,
 * with an optional reservation `cpus(ci/main):1`. Errors name the bad part.
 */
const DECIMAL = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/

export function parseResources(text: string): Resource[] {
  const out: Resource[] = []
  for (const rawPart of text.split(';')) {
    const part = rawPart.trim()
    if (part === '') continue
    const m = /^([A-Za-z][A-Za-z0-9_-]*)(?:\(([^()]+)\))?(?:\[([^\][]*)\])?\s*:\s*(.+)$/.exec(part)
    if (!m) throw new RegattaError('INVALID_RESOURCES', `bad resource "${part}": expected name:value or name(role):value`)
    const [, name, rawRole, rawVolume, value] = m as unknown as [string, string, string | undefined, string | undefined, string]
    const r: Resource = { name }
    const role = rawRole?.trim()
    if (role === '') throw new RegattaError('INVALID_RESOURCES', `bad resource "${part}": empty role`)
    if (role !== undefined && role !== ANY_ROLE) r.role = role
    if (rawVolume !== undefined) {
      // a persistent volume, as Mesos writes it: disk(role)[id:container_path]:size
      const vm = /^([A-Za-z0-9][A-Za-z0-9._-]*):(.+)$/.exec(rawVolume.trim())
      if (!vm || name !== 'disk' || r.role === undefined) {
        throw new RegattaError('INVALID_RESOURCES', `bad volume "${part}": expected disk(role)[id:container_path]:size`)
      }
      r.disk = { persistence: { id: vm[1]! }, containerPath: vm[2]!.trim() }
    }
    const v = value.trim()
    if (v === '') throw new RegattaError('INVALID_RESOURCES', `bad resource "${part}": no value`)
    if (v.startsWith('[')) {
      if (!v.endsWith(']')) throw new RegattaError('INVALID_RESOURCES', `bad ranges for "${name}": ${v}`)
      const ranges: Range[] = []
      for (const piece of v.slice(1, -1).split(',')) {
        const p = piece.trim()
        if (p === '') continue
        const rm = /^(\d+)\s*-\s*(\d+)$/.exec(p) ?? /^(\d+)$/.exec(p)
        if (!rm) throw new RegattaError('INVALID_RESOURCES', `bad range "${p}" for "${name}"`)
        const begin = Number(rm[1])
        const end = Number(rm[2] ?? rm[1])
        if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end)) {
          throw new RegattaError('INVALID_RESOURCES', `bad range "${p}" for "${name}": too large`)
        }
        if (end < begin) throw new RegattaError('INVALID_RESOURCES', `bad range "${p}" for "${name}": end before begin`)
        ranges.push({ begin, end })
      }
      r.ranges = normalizeRanges(ranges)
    } else {
      // Decimal only: Number() alone also took "0x10", "0b1" and "" (as 0).
      const n = DECIMAL.test(v) ? Number(v) : NaN
      if (!Number.isFinite(n) || n < 0) throw new RegattaError('INVALID_RESOURCES', `bad value "${v}" for "${name}": expected a non-negative number`)
      r.scalar = round(n)
    }
    if (r.disk && r.ranges) throw new RegattaError('INVALID_RESOURCES', `bad volume "${part}": a volume's size is a number`)
    out.push(r)
  }
  return normalize(out)
}

/** The inverse of parseResources, for humans (revocable ones are marked with `~`). */
export function formatResources(rs: readonly Resource[]): string {
  return normalize(rs).map((r) => {
    const name = `${r.role ? `${r.name}(${r.role})` : r.name}${r.disk ? `[${r.disk.persistence.id}:${r.disk.containerPath}]` : ''}`
    const value = r.ranges !== undefined
      ? `[${r.ranges.map((x) => (x.begin === x.end ? `${x.begin}` : `${x.begin}-${x.end}`)).join(',')}]`
      : `${r.scalar}`
    return `${r.revocable ? '~' : ''}${name}:${value}`
  }).join(';')
}

/** Takes `count` ports from the ranges named `ports` in rs, for a task that asks for ports by count. */
export function pickPorts(rs: readonly Resource[], count: number): Range[] | undefined {
  // Ports of every identity are merged first: the same port listed twice (say reserved and
  // unreserved, or overlapping ranges) was picked twice and the task got fewer than `count`.
  if (!Number.isSafeInteger(count) || count < 0) return undefined
  const all: Range[] = []
  for (const r of rs) if (r.name === 'ports' && r.ranges) all.push(...r.ranges)
  const out: Range[] = []
  let left = count
  for (const range of normalizeRanges(all)) {
    if (left <= 0) break
    const take = Math.min(left, range.end - range.begin + 1)
    out.push({ begin: range.begin, end: range.begin + take - 1 })
    left -= take
  }
  return left === 0 ? out : undefined
}
