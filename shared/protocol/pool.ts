// Pool policies: how the scaler sizes each pool of agents. Kept in the KV bucket
// `Buckets.pools` under `idToken(pool)`; written by `regatta pool set`, read by the scaler.
import { Type, type Static } from '@sinclair/typebox'
import { RegattaError } from '../errors/index.js'

/** The providers the scaler ships with; a cloud provider adds its name here (see deploy/README.md). */
export const PROVIDERS = ['process', 'docker'] as const

/** A pool name as agents carry it (`regatta agent --pool NAME`). */
export const PoolName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' })

/** The most agents one pool may have (a guard against typos such as `--max 1000000`). */
export const MAX_POOL_SIZE = 10_000

export const PoolPolicy = Type.Object({
  pool: PoolName,
  /** Agents kept even when idle. */
  min: Type.Integer({ minimum: 0, maximum: MAX_POOL_SIZE }),
  /** Agents never exceeded, whatever the demand. */
  max: Type.Integer({ minimum: 0, maximum: MAX_POOL_SIZE }),
  /** An agent idle this long (and above `min`) is drained and stopped. */
  idleMs: Type.Integer({ minimum: 0 }),
  /** Which provider starts and stops the pool's agents (`process`, `docker`, ...). */
  provider: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9-]*$' }),
})
export type PoolPolicy = Static<typeof PoolPolicy>

/** What the schema cannot say: `min <= max`. Throws INVALID_MESSAGE naming the pool. */
export function checkPoolPolicy(p: PoolPolicy): PoolPolicy {
  if (p.min > p.max) throw new RegattaError('INVALID_MESSAGE', `pool ${p.pool}: min (${p.min}) is above max (${p.max})`)
  return p
}
