// KV buckets: opening them safely when several processes start at once, and listing their keys.
import type { KV, KvOptions, NatsConnection } from 'nats'

/**
 * A KV bucket, made if it is missing. nats.js makes the bucket's stream when it finds none, so
 * two processes opening a new bucket at the same moment (two CI replicas starting) race, and the
 * loser is told "already in use" or "subjects overlap with an existing stream": it then opens
 * the bucket the other made.
 *
 * Reads go to the stream's leader (`allow_direct: false`), even on buckets made with direct
 * gets: nats-server lets any replica answer a direct get, and a replica that lags (a node just
 * back from a partition) answers with an old value or none. A new master loading the registry,
 * or a CI replica resuming runs, must read what the last leader wrote.
 */
export async function openKv(nc: NatsConnection, bucket: string, opts: Partial<KvOptions> = {}, requestTimeoutMs?: number): Promise<KV> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await nc.jetstream(requestTimeoutMs ? { timeout: requestTimeoutMs } : undefined).views.kv(bucket, { allow_direct: false, ...opts })
    } catch (err) {
      if (attempt >= 5 || !/already in use|overlap/i.test((err as Error).message)) throw err
      await new Promise((r) => setTimeout(r, 20 * attempt))
    }
  }
}

/**
 * The keys of a KV bucket under `filter` (e.g. `run.>`), from one stream info request. nats.js's
 * `kv.keys()` follows an ordered consumer until nothing is pending, which can go on for as long
 * as the bucket is being written (runs stored while a list is asked for); this answers at once.
 * A deleted key is still listed (its delete marker is a message): callers read each key and skip
 * what is not a value.
 */
export async function kvKeys(nc: NatsConnection, bucket: string, filter = '>'): Promise<string[]> {
  const prefix = `$KV.${bucket}.`
  const info = await (await nc.jetstreamManager()).streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}${filter}` })
  return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length))
}
