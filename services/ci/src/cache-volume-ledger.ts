// When each cache volume was last used, kept in NATS KV (bucket regatta-cache-volumes) so that a
// restarted or new leading CI replica still knows which volumes have been idle past their TTL.
// A volume is used when a job is launched with it and when that job's task ends; one seen free
// in an offer with no record (made before this ledger, or its record lost) counts from then.
import type { KV, NatsConnection } from 'nats'
import type { Logger } from '../../../shared/log/index.js'
import { openKv } from '../../../shared/nats/kv.js'

export const CACHE_VOLUMES_BUCKET = 'regatta-cache-volumes'

export interface VolumeUse {
  agentId: string
  role: string
  id: string
  lastUsedAt: number
  /** A task holds it (as far as this service knows). */
  inUse: boolean
}

/** A KV key of the volume: agent ids and volume ids are `[A-Za-z0-9._-]`, roles `ci/<kind>`. */
const keyOf = (agentId: string, role: string, id: string): string => `${agentId}.${role.replace(/\//g, '_')}.${id}`

export class CacheVolumeLedger {
  private readonly uses = new Map<string, VolumeUse>()

  private constructor(private readonly kv: KV, private readonly log: Logger) {}

  static async open(nc: NatsConnection, log: Logger, replicas = 1): Promise<CacheVolumeLedger> {
    return new CacheVolumeLedger(await openKv(nc, CACHE_VOLUMES_BUCKET, { history: 1, replicas }), log)
  }

  /** Reads every record (a new leader starts from what the last one wrote). */
  async load(): Promise<void> {
    this.uses.clear()
    const keys: string[] = []
    for await (const k of await this.kv.keys()) keys.push(k)
    for (const k of keys) {
      const e = await this.kv.get(k)
      if (!e || e.operation !== 'PUT') continue
      try {
        const u = e.json<VolumeUse>()
        if (typeof u.agentId === 'string' && typeof u.role === 'string' && typeof u.id === 'string' && typeof u.lastUsedAt === 'number') {
          this.uses.set(k, { agentId: u.agentId, role: u.role, id: u.id, lastUsedAt: u.lastUsedAt, inUse: u.inUse === true })
        }
      } catch {
        this.log.warn({ key: k }, 'ignoring a malformed cache volume record')
      }
    }
  }

  lastUsed(agentId: string, role: string, id: string): number | undefined {
    return this.uses.get(keyOf(agentId, role, id))?.lastUsedAt
  }

  /** A task took the volume (`inUse`) or gave it back, now. */
  used(agentId: string, role: string, id: string, inUse: boolean, now: number): void {
    this.put({ agentId, role, id, lastUsedAt: now, inUse })
  }

  /** The volume is free in an offer: a record marked in use (its end missed) ends now; none is made now. */
  sighted(agentId: string, role: string, id: string, now: number): void {
    const u = this.uses.get(keyOf(agentId, role, id))
    if (!u || u.inUse) this.put({ agentId, role, id, lastUsedAt: now, inUse: false })
  }

  forget(agentId: string, role: string, id: string): void {
    const k = keyOf(agentId, role, id)
    if (!this.uses.delete(k)) return
    this.kv.delete(k).catch((err: Error) => this.log.warn({ agentId, role, volume: id, err: err.message }, 'cannot delete a cache volume record'))
  }

  /** Drops the records, not in use, of volumes not among `existing` (destroyed elsewhere, or their agent gone). */
  keepOnly(existing: ReadonlyArray<{ agentId: string; role: string; id: string }>): void {
    const keep = new Set(existing.map((v) => keyOf(v.agentId, v.role, v.id)))
    for (const [k, u] of [...this.uses]) if (!u.inUse && !keep.has(k)) this.forget(u.agentId, u.role, u.id)
  }

  /** The roles with a volume not in use and unused for `ttlMs`: offers of them are wanted, to destroy it. */
  expiredRoles(now: number, ttlMs: number): Set<string> {
    const out = new Set<string>()
    if (ttlMs <= 0) return out
    for (const u of this.uses.values()) if (!u.inUse && now - u.lastUsedAt >= ttlMs) out.add(u.role)
    return out
  }

  private put(u: VolumeUse): void {
    const k = keyOf(u.agentId, u.role, u.id)
    this.uses.set(k, u)
    this.kv.put(k, JSON.stringify(u)).catch((err: Error) => this.log.warn({ agentId: u.agentId, role: u.role, volume: u.id, err: err.message }, 'cannot record a cache volume\'s use'))
  }
}
