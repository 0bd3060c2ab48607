// A leader lease in a NATS KV bucket with a TTL. The winner of `create` leads; it refreshes
// with compare-and-set on the revision, so a stale holder is refused. The revision at which
// it won is its epoch: commands carry it and receivers refuse older epochs (fencing).
import type { KV, NatsConnection } from 'nats'
import type { Clock, Timer } from '../clock/index.js'
import { systemClock } from '../clock/index.js'
import type { Logger } from '../log/index.js'
import { openKv } from './kv.js'

export interface LeaseHolder {
  id: string
  epoch: number
  /** What the holder publishes about itself (e.g. its HTTP URL). */
  info: Record<string, string>
}

export interface LeaseOptions {
  nc: NatsConnection
  bucket: string
  key?: string
  ttlMs: number
  holderId: string
  info?: Record<string, string>
  replicas?: number
  clock?: Clock
  logger: Logger
  onElected(epoch: number): void
  onDemoted(reason: string): void
}

export class LeaderLease {
  private kv?: KV
  private revision = 0
  private epochValue = 0
  private leading = false
  private lastRefreshOk = 0
  private timer?: Timer
  private stopped = false
  private busy = false
  private readonly clock: Clock
  private readonly key: string
  /** The last holder seen by a standby (for redirects and `regatta status`). */
  current: LeaseHolder | null = null

  constructor(private readonly o: LeaseOptions) {
    this.clock = o.clock ?? systemClock
    this.key = o.key ?? 'leader'
  }

  /**
   * Leading, and the lease was refreshed recently enough that nobody else can hold it: a
   * holder that was paused (SIGSTOP) or cut off is not a leader even before its timer runs.
   */
  get isLeader(): boolean {
    return this.leading && this.clock.now() - this.lastRefreshOk <= this.o.ttlMs * 0.8
  }

  get epoch(): number {
    return this.epochValue
  }

  async start(): Promise<void> {
    // A refresh sent while the bucket's stream has no leader (an election: a node rejoining the
    // cluster starts them) is never answered; a short request timeout lets the next one go out
    // soon after the stream is back, rather than up to 5 s later, so a stall of several seconds
    // does not cost the lease.
    const requestTimeoutMs = Math.min(5_000, Math.max(500, Math.floor(this.o.ttlMs / 4)))
    this.kv = await openKv(this.o.nc, this.o.bucket, { ttl: this.o.ttlMs, history: 1, replicas: this.o.replicas ?? 1 }, requestTimeoutMs)
    await this.tick()
    // Contend or refresh many times per TTL: expiry makes no watch event on nats-server 2.9.
    this.timer = this.clock.setInterval(() => void this.tick(), Math.max(50, Math.floor(this.o.ttlMs / 8)))
  }

  private value(): Uint8Array {
    // the epoch goes into the value from the first refresh on, so that standbys can tell it
    return new TextEncoder().encode(JSON.stringify({ id: this.o.holderId, info: this.o.info ?? {}, ...(this.leading ? { epoch: this.epochValue } : {}) }))
  }

  private async tick(): Promise<void> {
    if (this.stopped || !this.kv) return
    if (this.leading && this.clock.now() - this.lastRefreshOk > this.o.ttlMs * 0.8) {
      this.demote('could not refresh the lease in time')
      return
    }
    if (this.busy) return
    this.busy = true
    try {
      if (this.leading) await this.refresh()
      else await this.contend()
    } finally {
      this.busy = false
    }
  }

  private async contend(): Promise<void> {
    const kv = this.kv!
    try {
      const rev = await kv.create(this.key, this.value())
      this.revision = rev
      this.epochValue = rev
      this.leading = true
      this.lastRefreshOk = this.clock.now()
      this.current = { id: this.o.holderId, epoch: rev, info: this.o.info ?? {} }
      this.o.logger.info({ epoch: rev }, 'elected leader')
      this.o.onElected(rev)
      await this.refresh()
    } catch {
      // someone else holds it: remember who, for redirects
      try {
        const e = await kv.get(this.key)
        if (e && e.operation === 'PUT') {
          const v = JSON.parse(new TextDecoder().decode(e.value)) as { id: string; info?: Record<string, string>; epoch?: number }
          // before its first refresh the value has no epoch: then its revision is the epoch
          this.current = { id: v.id, epoch: typeof v.epoch === 'number' ? v.epoch : e.revision, info: v.info ?? {} }
        } else {
          this.current = null
        }
      } catch {
        // NATS unreachable: nothing to learn
      }
    }
  }

  private async refresh(again = true): Promise<void> {
    const kv = this.kv!
    try {
      this.revision = await kv.update(this.key, this.value(), this.revision)
      this.lastRefreshOk = this.clock.now()
    } catch (err) {
      const msg = (err as Error).message
      if (/wrong last sequence|key not found/i.test(msg)) {
        // a refresh that timed out may have been stored after all: then the key is still ours
        // (our id and epoch), at a newer revision, and nobody else has written it since
        if (await this.stillOurs()) {
          if (again) await this.refresh(false)
          return
        }
        this.demote(`lease lost: ${msg}`)
      }
      // else: a transient error; the deadline check above demotes if it lasts
    }
  }

  /** Whether the key holds this holder's own last write (then its revision is taken up). */
  private async stillOurs(): Promise<boolean> {
    try {
      const e = await this.kv!.get(this.key)
      if (!e || e.operation !== 'PUT' || e.revision <= this.revision) return false
      const v = JSON.parse(new TextDecoder().decode(e.value)) as { id?: string; epoch?: number }
      if (v.id !== this.o.holderId || v.epoch !== this.epochValue) return false
      this.o.logger.debug({ epoch: this.epochValue, revision: e.revision }, 'a refresh that timed out was stored: lease kept')
      this.revision = e.revision
      return true
    } catch {
      return false
    }
  }

  /** Steps down at once (e.g. the NATS connection dropped); contends again on the next tick. */
  demote(reason: string): void {
    if (!this.leading) return
    this.leading = false
    this.o.logger.warn({ epoch: this.epochValue, reason }, 'stepping down')
    this.o.onDemoted(reason)
  }

  /** Steps down now (and hands over fast by deleting the key) or, with `stop`, for good. */
  async resign(): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    if (this.leading && this.kv) {
      this.leading = false
      try {
        await this.kv.delete(this.key, { previousSeq: this.revision })
      } catch {
        // the lease expires by itself
      }
      this.o.onDemoted('resigned')
    }
  }
}
