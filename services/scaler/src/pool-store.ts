// Pool policies in the KV bucket `regatta-pools` (key idToken(pool), value a PoolPolicy):
// `regatta pool ls|set` read and write them here, the scaler watches them.
import type { KV, NatsConnection } from 'nats'
import { Buckets, decode, encode, idToken, validate } from '../../../shared/protocol/index.js'
import { PoolPolicy, checkPoolPolicy } from '../../../shared/protocol/pool.js'
import { RegattaError } from '../../../shared/errors/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { openKv } from '../../../shared/nats/kv.js'

export class PoolStore {
  private constructor(private readonly kv: KV) {}

  /** Opens the bucket (creating it, with `replicas` copies, when it does not exist). */
  static async open(nc: NatsConnection, replicas = 1): Promise<PoolStore> {
    return new PoolStore(await openKv(nc, Buckets.pools, { history: 5, replicas }))
  }

  async get(pool: string): Promise<PoolPolicy | undefined> {
    const e = await this.kv.get(idToken(pool))
    if (!e || e.operation !== 'PUT') return undefined
    return checkPoolPolicy(decode(PoolPolicy, e.value, `pool policy ${pool} (bucket ${Buckets.pools})`))
  }

  /** Writes a policy (validated first: a bad one never reaches the bucket). */
  async put(policy: PoolPolicy): Promise<void> {
    checkPoolPolicy(validate(PoolPolicy, policy, `pool policy ${policy.pool}`))
    await this.kv.put(idToken(policy.pool), encode(policy))
  }

  async delete(pool: string): Promise<void> {
    await this.kv.delete(idToken(pool))
  }

  /** Every policy, by pool name; a value that does not decode is reported through `onBad` and skipped. */
  async list(onBad: (key: string, err: RegattaError) => void = () => undefined): Promise<PoolPolicy[]> {
    const out: PoolPolicy[] = []
    const keys: string[] = []
    for await (const k of await this.kv.keys()) keys.push(k)
    for (const key of keys.sort()) {
      const e = await this.kv.get(key)
      if (!e || e.operation !== 'PUT') continue
      try {
        out.push(checkPoolPolicy(decode(PoolPolicy, e.value, `pool policy at key ${key} (bucket ${Buckets.pools})`)))
      } catch (err) {
        onBad(key, RegattaError.from(err))
      }
    }
    return out.sort((a, b) => a.pool.localeCompare(b.pool))
  }

  /**
   * Keeps `policies` up to date with the bucket until `stop()`; resolves once the current values
   * are in. A bad value is logged and its pool left without a policy (the scaler leaves it alone).
   */
  async watch(logger: Logger): Promise<{ policies: Map<string, PoolPolicy>; stop(): void }> {
    const policies = new Map<string, PoolPolicy>()
    const byKey = new Map<string, string>()
    let ready!: () => void
    const initialized = new Promise<void>((r) => { ready = r })
    const watcher = await this.kv.watch({ initializedFn: () => ready() })
    void (async () => {
      for await (const e of watcher) {
        const old = byKey.get(e.key)
        if (old !== undefined) {
          policies.delete(old)
          byKey.delete(e.key)
        }
        if (e.operation === 'PUT') {
          try {
            const p = checkPoolPolicy(decode(PoolPolicy, e.value, `pool policy at key ${e.key} (bucket ${Buckets.pools})`))
            if (idToken(p.pool) !== e.key) throw new RegattaError('INVALID_MESSAGE', `pool policy at key ${e.key}: names pool ${p.pool}, whose key is ${idToken(p.pool)}`)
            policies.set(p.pool, p)
            byKey.set(e.key, p.pool)
            logger.info({ pool: p.pool, min: p.min, max: p.max, idleMs: p.idleMs, provider: p.provider }, 'pool policy')
          } catch (err) {
            logger.warn({ key: e.key }, `ignoring a bad pool policy: ${(err as Error).message}`)
          }
        } else if (old !== undefined) {
          logger.info({ pool: old }, 'pool policy removed: the scaler leaves the pool as it is')
        }
      }
    })()
    await initialized
    return { policies, stop: () => watcher.stop() }
  }
}
