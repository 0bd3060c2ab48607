// `regatta pool ls|set`: the scaler's pool policies, read and written directly in KV
// (`regatta-pools`), beside what the leading master says about each pool (agents, demand).
// `pool set --wait` follows the pool with a progress bar until it has reached its new size.
import type { NatsConnection } from 'nats'
import { ClusterState, Subjects, type AgentView } from '../../../shared/protocol/index.js'
import { MAX_POOL_SIZE, PoolName, PROVIDERS, type PoolPolicy } from '../../../shared/protocol/pool.js'
import { validate } from '../../../shared/protocol/codec.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { requestWithRetry } from '../../../shared/nats/index.js'
import { parseDuration, parseIntArg } from '../../../shared/config/index.js'
import { PoolStore } from '../../scaler/src/pool-store.js'
import { humanDuration, table } from './format.js'

export type Write = (text: string) => void

/** Defaults of a new pool's policy. */
export const POOL_DEFAULTS = { min: 0, idleMs: 5 * 60_000, provider: 'process' } as const

export interface PoolSetFlags {
  min?: string
  max?: string
  idle?: string
  provider?: string
}

/** The flags of `pool set`, checked: throws INVALID_CONFIG naming the flag (exit 2), before anything connects. */
export interface PoolChanges {
  min?: number
  max?: number
  idleMs?: number
  provider?: string
}

export function parsePoolSet(name: string, flags: PoolSetFlags): PoolChanges {
  try {
    validate(PoolName, name, 'pool name')
  } catch {
    throw new RegattaError('INVALID_CONFIG', `pool name: "${name}" is not a pool name (letters, digits, '.', '_', '-'; up to 128, starting with a letter or digit)`)
  }
  const c: PoolChanges = {}
  if (flags.min !== undefined) c.min = parseIntArg(flags.min, '--min', 0, MAX_POOL_SIZE)
  if (flags.max !== undefined) c.max = parseIntArg(flags.max, '--max', 0, MAX_POOL_SIZE)
  if (flags.idle !== undefined) c.idleMs = parseDuration(flags.idle, '--idle')
  if (flags.provider !== undefined) {
    if (!(PROVIDERS as readonly string[]).includes(flags.provider)) {
      throw new RegattaError('INVALID_CONFIG', `--provider: "${flags.provider}" is not a provider (one of ${PROVIDERS.join(', ')})`)
    }
    c.provider = flags.provider
  }
  if (c.min !== undefined && c.max !== undefined && c.min > c.max) throw new RegattaError('INVALID_CONFIG', `--min ${c.min} is above --max ${c.max}`)
  return c
}

/**
 * The policy `pool set NAME` writes: the changes over the existing policy, or over the defaults
 * for a new pool (which needs --max). Throws INVALID_CONFIG naming the flag.
 */
export function policyFromFlags(name: string, flags: PoolSetFlags, existing: PoolPolicy | undefined): PoolPolicy {
  const c = parsePoolSet(name, flags)
  if (!existing && c.max === undefined) throw new RegattaError('INVALID_CONFIG', `--max: pool ${name} has no policy yet: give at least --max N`)
  const policy: PoolPolicy = {
    pool: name,
    min: c.min ?? existing?.min ?? POOL_DEFAULTS.min,
    max: c.max ?? existing!.max,
    idleMs: c.idleMs ?? existing?.idleMs ?? POOL_DEFAULTS.idleMs,
    provider: c.provider ?? existing?.provider ?? POOL_DEFAULTS.provider,
  }
  if (policy.min > policy.max) {
    throw new RegattaError('INVALID_CONFIG', c.min !== undefined ? `--min ${c.min} is above the pool's max ${policy.max}` : `--max ${c.max} is below the pool's min ${policy.min}`)
  }
  return policy
}

/** What the master says about one pool. */
export interface PoolNow {
  /** Agents taking work (active or recovering, not draining). */
  serving: number
  draining: number
  /** Silent agents (not counted as the pool's). */
  unreachable: number
  jobs: number
  unmetJobs: number
}

export function poolNow(state: ClusterState, pool: string): PoolNow {
  const agents = state.agents.filter((a: AgentView) => a.pool === pool)
  const d = state.demand.find((x) => x.pool === pool)
  return {
    serving: agents.filter((a) => a.state === 'active' || a.state === 'recovering').length,
    draining: agents.filter((a) => a.state === 'draining').length,
    unreachable: agents.filter((a) => a.state === 'unreachable').length,
    jobs: d?.jobs ?? 0,
    unmetJobs: d?.unmetJobs ?? 0,
  }
}

/** `regatta pool ls`: one row per policy; without a master, agents and demand show as `?`. */
export function formatPools(policies: readonly PoolPolicy[], state: ClusterState | undefined): string {
  if (policies.length === 0) return 'No pool policies (set one with regatta pool set NAME --max N).'
  return table(['POOL', 'MIN', 'MAX', 'IDLE', 'PROVIDER', 'AGENTS', 'DEMAND'], policies.map((p) => {
    const now = state ? poolNow(state, p.pool) : undefined
    return [
      p.pool, p.min, p.max, humanDuration(p.idleMs), p.provider,
      now ? `${now.serving}${now.draining ? ` (+${now.draining} draining)` : ''}` : '?',
      now ? (now.jobs === 0 ? '-' : `${now.jobs} tasks${now.unmetJobs ? `, ${now.unmetJobs} unmet` : ''}`) : '?',
    ]
  }))
}

async function stateOrUndefined(nc: NatsConnection, deadlineMs: number): Promise<ClusterState | undefined> {
  try {
    return await requestWithRetry(nc, Subjects.masterState, {}, ClusterState, { deadlineMs, timeoutMs: 2_000 })
  } catch {
    return undefined
  }
}

export async function poolLs(nc: NatsConnection, o: { json?: boolean }, out: Write, err: Write): Promise<void> {
  const store = await PoolStore.open(nc)
  const policies = await store.list((key, e) => err(`regatta: skipping pool policy ${key}: ${e.message}\n`))
  const state = await stateOrUndefined(nc, 3_000)
  if (!state) err('regatta: no leading master answered: agents and demand unknown\n')
  if (o.json) {
    out(`${JSON.stringify(policies.map((p) => ({ ...p, now: state ? poolNow(state, p.pool) : null })))}\n`)
  } else {
    out(`${formatPools(policies, state)}\n`)
  }
}

/** A text progress bar: `[#######-------------]`. */
export function progressBar(done: number, total: number, width = 24): string {
  const frac = total <= 0 ? 1 : Math.max(0, Math.min(1, done / total))
  const full = Math.round(frac * width)
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`
}

/** Whether the pool is within its policy: at least `min` agents taking work, at most `max` agents at all. */
export function reached(policy: PoolPolicy, now: PoolNow): boolean {
  return now.serving >= policy.min && now.serving + now.draining <= policy.max
}

/** One line of `--wait` progress: towards min when below it, towards max when above it. */
export function progressLine(policy: PoolPolicy, now: PoolNow): string {
  const total = now.serving + now.draining
  if (total > policy.max) {
    return `pool ${policy.pool} ${progressBar(policy.max, total)} ${total} agents, down to ${policy.max}${now.draining ? ` (${now.draining} draining)` : ''}`
  }
  const target = Math.max(policy.min, 1)
  return `pool ${policy.pool} ${progressBar(Math.min(now.serving, target), target)} ${now.serving}/${policy.min} agents${now.unmetJobs ? `, ${now.unmetJobs} tasks waiting` : ''}`
}

export interface PoolSetOptions extends PoolSetFlags {
  json?: boolean
  wait?: boolean
  /** How long --wait waits (default 5 min). */
  timeoutMs?: number
  /** Redraw the progress line in place (a terminal). */
  tty?: boolean
  pollMs?: number
}

export async function poolSet(nc: NatsConnection, name: string, o: PoolSetOptions, out: Write): Promise<PoolPolicy> {
  const store = await PoolStore.open(nc)
  // a stored value that does not decode is replaced, as if the pool had none
  const existing = await store.get(name).catch((err: RegattaError) => {
    if (err.code === 'INVALID_MESSAGE') return undefined
    throw err
  })
  const policy = policyFromFlags(name, o, existing)
  await store.put(policy)
  if (!o.wait) {
    out(o.json ? `${JSON.stringify(policy)}\n` : `pool ${policy.pool}: min ${policy.min}, max ${policy.max}, idle ${humanDuration(policy.idleMs)}, provider ${policy.provider}\n`)
    return policy
  }
  const deadline = Date.now() + (o.timeoutMs ?? 5 * 60_000)
  let last = ''
  let now: PoolNow | undefined
  for (;;) {
    const state = await stateOrUndefined(nc, 2_000)
    if (state) {
      now = poolNow(state, policy.pool)
      const line = progressLine(policy, now)
      if (!o.json && line !== last) out(o.tty ? `\r\u001b[2K${line}` : `${line}\n`)
      last = line
      if (reached(policy, now)) break
    }
    if (Date.now() > deadline) {
      if (o.tty && !o.json) out('\n')
      const where = now ? `${now.serving} agents taking work${now.draining ? `, ${now.draining} draining` : ''}` : 'no leading master answered'
      throw new RegattaError('TIMEOUT', `pool ${policy.pool} did not reach min ${policy.min} / max ${policy.max} within ${humanDuration(o.timeoutMs ?? 5 * 60_000)} (${where}); is \`regatta scaler\` running?`)
    }
    await new Promise((r) => setTimeout(r, o.pollMs ?? 250))
  }
  if (o.json) out(`${JSON.stringify({ ...policy, now })}\n`)
  else out(`${o.tty ? '\n' : ''}pool ${policy.pool} has ${now!.serving} agents (min ${policy.min}, max ${policy.max})\n`)
  return policy
}
