// `regatta roles ls|set`: each role's weight, quota guarantee, what it holds and what is reserved
// for it, from the leading master; `set` through its operator subject (the same calls as
// `PUT /api/v1/roles/:role`).
import { ClusterState, OperatorReply, Subjects, type Amounts, type OperatorCall, type RoleView } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { requestWithRetry, type NatsConnection } from '../../../shared/nats/index.js'
import { parseNumberArg } from '../../../shared/config/index.js'
import { parseResources, totals } from '../../../shared/resources/index.js'
import { humanMem, table } from './format.js'

export type Write = (text: string) => void

/** A failover takes seconds: requests retry while no master leads, up to this long. */
const DEADLINE_MS = 10_000
const ROLE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/
const MAX_WEIGHT = 1_000_000

/** A role as `roles ls` shows it: the master's RoleView, plus what agents have reserved for it. */
export interface RoleRow extends RoleView {
  /** Reserved for exactly this role (statically or dynamically, volumes included) on every agent. */
  reserved: Amounts
}

/** Rows by role name: the master's roles and every role something is reserved for. */
export function roleRows(state: ClusterState): RoleRow[] {
  const reserved = new Map<string, Amounts>()
  for (const a of state.agents) {
    for (const r of a.resources) {
      if (r.role === undefined || r.role === '*' || r.revocable) continue
      const sum = reserved.get(r.role) ?? {}
      for (const [k, v] of Object.entries(totals([r]))) sum[k] = Math.round(((sum[k] ?? 0) + v) * 1000) / 1000
      reserved.set(r.role, sum)
    }
  }
  const rows = new Map<string, RoleRow>(state.roles.map((r) => [r.name, { ...r, reserved: reserved.get(r.name) ?? {} }]))
  for (const [name, amounts] of reserved) if (!rows.has(name)) rows.set(name, { name, weight: 1, allocated: {}, reserved: amounts })
  return [...rows.values()].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
}

/** `cpus 2, mem 4 GiB`: the scalars by name, zeros left out; `-` when none. */
export function amountsText(a: Amounts | undefined): string {
  if (!a) return '-'
  const text = Object.keys(a).sort().filter((k) => a[k]).map((k) => {
    const v = a[k]!
    return `${k} ${k === 'mem' || k === 'disk' ? humanMem(v) : String(Math.round(v * 100) / 100)}`
  }).join(', ')
  return text || '-'
}

export function formatRoles(rows: readonly RoleRow[]): string {
  if (rows.length === 0) return 'No roles: no framework, setting or reservation names one.'
  return table(['ROLE', 'WEIGHT', 'QUOTA', 'ALLOCATED', 'RESERVED'], rows.map((r) => [
    r.name, String(r.weight), amountsText(r.quota), amountsText(r.allocated), amountsText(r.reserved),
  ]))
}

export function clusterState(nc: NatsConnection): Promise<ClusterState> {
  return requestWithRetry(nc, Subjects.masterState, {}, ClusterState, { deadlineMs: DEADLINE_MS, timeoutMs: 3_000 })
}

export async function rolesLs(nc: NatsConnection, o: { json?: boolean }, out: Write): Promise<void> {
  const rows = roleRows(await clusterState(nc))
  out(o.json ? `${JSON.stringify(rows)}\n` : `${formatRoles(rows)}\n`)
}

export interface RoleSettings {
  weight?: number
  /** null removes the quota. */
  quota?: Record<string, number> | null
}

/** Checks `roles set` arguments; a bad one is a one-line INVALID_CONFIG (exit 2). */
export function parseRolesSet(role: string, opts: { weight?: string; quota?: string }): RoleSettings {
  if (role === '*') throw new RegattaError('INVALID_CONFIG', 'ROLE: "*" (unreserved) takes no weight or quota; name a role such as ci or ci/main')
  if (!ROLE.test(role) || role.length > 128) {
    throw new RegattaError('INVALID_CONFIG', `ROLE: "${role}" is not a role name (letters, digits, "_.-", nested with "/", e.g. ci/main)`)
  }
  if (opts.weight === undefined && opts.quota === undefined) {
    throw new RegattaError('INVALID_CONFIG', 'roles set: give --weight N and/or --quota "cpus:4;mem:8192" (--quota none removes it)')
  }
  const out: RoleSettings = {}
  if (opts.weight !== undefined) {
    const w = parseNumberArg(opts.weight, '--weight', 0)
    if (w <= 0 || w > MAX_WEIGHT) throw new RegattaError('INVALID_CONFIG', `--weight: "${opts.weight}" is not a number above 0 and at most ${MAX_WEIGHT}`)
    out.weight = w
  }
  if (opts.quota !== undefined) {
    const text = opts.quota.trim()
    if (text === 'none') out.quota = null
    else {
      let rs
      try {
        rs = parseResources(text)
      } catch (err) {
        throw new RegattaError('INVALID_CONFIG', `--quota: ${(err as Error).message}`)
      }
      if (rs.length === 0) throw new RegattaError('INVALID_CONFIG', '--quota: empty; give "cpus:4;mem:8192", or "none" to remove the quota')
      const quota: Record<string, number> = {}
      for (const r of rs) {
        if (r.ranges !== undefined || r.role !== undefined || r.disk) {
          throw new RegattaError('INVALID_CONFIG', `--quota: "${r.name}" must be a plain amount such as cpus:4 (no role, ranges or volume)`)
        }
        quota[r.name] = r.scalar ?? 0
      }
      out.quota = quota
    }
  }
  return out
}

/** `regatta roles set ROLE`: the operator calls, then the role as the master sees it now. */
export async function rolesSet(nc: NatsConnection, role: string, settings: RoleSettings, o: { json?: boolean }, out: Write): Promise<void> {
  const calls: OperatorCall[] = []
  if (settings.weight !== undefined) calls.push({ type: 'SET_WEIGHT', role, weight: settings.weight })
  if (settings.quota !== undefined) calls.push({ type: 'SET_QUOTA', role, quota: settings.quota })
  for (const call of calls) await requestWithRetry(nc, Subjects.masterOperator, call, OperatorReply, { deadlineMs: DEADLINE_MS, timeoutMs: 5_000 })
  const row = roleRows(await clusterState(nc)).find((r) => r.name === role) ?? { name: role, weight: settings.weight ?? 1, allocated: {}, reserved: {} }
  out(o.json ? `${JSON.stringify(row)}\n` : `Role ${role}: weight ${row.weight}, quota ${row.quota ? amountsText(row.quota) : 'none'}.\n`)
}
