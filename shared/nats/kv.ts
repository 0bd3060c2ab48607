// Opening KV buckets safely when several processes start at once.
import type { KV, KvOptions, NatsConnection } from 'nats'

/**
 * A KV bucket, made if it is missing. nats.js makes the bucket's stream when it finds none, so
 * two processes opening a new bucket at the same moment (two CI replicas starting) race, and the
 * loser is told "already in use" or "subjects overlap with an existing stream": it then opens
 * the bucket the other made.
 */
export async function openKv(nc: NatsConnection, bucket: string, opts: Partial<KvOptions> = {}): Promise<KV> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await nc.jetstream().views.kv(bucket, opts)
    } catch (err) {
      if (attempt >= 5 || !/already in use|overlap/i.test((err as Error).message)) throw err
      await new Promise((r) => setTimeout(r, 20 * attempt))
    }
  }
}
