// What the CI service knows of GitHub's heads, in NATS KV (shared by its replicas, kept across
// restarts): the repositories its webhooks came from, the last commit built per branch and pull
// request of each, and one claim per (repository, ref, commit) so that a head starts one run,
// whether its webhook or the head poller (poller.ts) gets there first, on any replica.
//
//   regatta-github-heads   repo.<hash of owner/name>            RepoHeads (no expiry)
//   regatta-github-claims  <repo hash>.<ref hash>.<commit sha>   Claim (expire after claimTtlMs)
//
// A claim is made with KV create() (one winner), marked `started` once the run exists. A claim
// still `claimed` after staleClaimMs (the replica died while planning) is taken over with update()
// on its revision, so a crash between claim and run loses nothing.
import { createHash } from 'node:crypto'
import type { KV, KvEntry, NatsConnection } from 'nats'
import type { Logger } from '../../../../shared/log/index.js'
import { systemClock, type Clock } from '../../../../shared/clock/index.js'
import type { Repository, Trigger } from '../trigger.js'
import { openKv } from '../../../../shared/nats/kv.js'

export const HEADS_BUCKET = 'regatta-github-heads'
export const CLAIMS_BUCKET = 'regatta-github-claims'

/** One repository the service has had webhooks from. */
export interface RepoHeads {
  repo: Repository
  /** When a webhook of it last arrived (written at most hourly). */
  seenAt: number
  /**
   * When the first poll of it took what existed then as built (the baseline): only heads that
   * move after that are built by polling, not every old branch at once.
   */
  baselinedAt?: number
  /** The last commit built (or taken as the baseline) per ref: `refs/heads/x`, `refs/pull/7/head`. */
  heads: Record<string, string>
}

export interface Claim {
  state: 'claimed' | 'started'
  /** Who claimed it: the webhook path or the head poller. */
  by: 'webhook' | 'poll'
  at: number
  runId?: string
}

/**
 * What the CI service asks before planning a submitted trigger (a webhook's), and tells once its
 * run exists. `claim` false: that head started already (by the poller, or another replica).
 */
export interface HeadClaims {
  claim(trigger: Trigger): Promise<boolean>
  started(trigger: Trigger, runId: string): void
}

export interface HeadLedgerOptions {
  nc: NatsConnection
  logger: Logger
  clock?: Clock
  /** JetStream replicas of the buckets (3 on a NATS cluster). */
  replicas?: number
  /** How long a claim is kept (default 30 days): a webhook later than that builds again. */
  claimTtlMs?: number
  /** A claim never marked started is taken over after this (default 10 min: planning is bounded by 2 min of checkout). */
  staleClaimMs?: number
}

/** The kinds of trigger a head is claimed for (tags and the rest are never polled). */
const CLAIMED_KINDS: ReadonlySet<string> = new Set(['push', 'pull_request'])
const SEEN_EVERY_MS = 3_600_000
const CAS_ATTEMPTS = 8

const hash = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 32)
export const repoKey = (fullName: string): string => `repo.${hash(fullName.toLowerCase())}`
const claimKey = (t: Trigger): string => `${hash(t.repo.fullName.toLowerCase())}.${hash(t.ref)}.${t.sha}`
const isCasConflict = (err: unknown): boolean => /wrong last sequence|exists/i.test((err as Error)?.message ?? '')

export class HeadLedger implements HeadClaims {
  private readonly log: Logger
  private readonly clock: Clock
  private readonly staleClaimMs: number
  /** What this process last wrote of each repository, to write only what changed. */
  private readonly remembered = new Map<string, { repo: string; seenAt: number }>()

  private constructor(private readonly heads: KV, private readonly claims: KV, o: HeadLedgerOptions) {
    this.log = o.logger.child({ component: 'github-heads' })
    this.clock = o.clock ?? systemClock
    this.staleClaimMs = o.staleClaimMs ?? 600_000
  }

  static async open(o: HeadLedgerOptions): Promise<HeadLedger> {
    const replicas = o.replicas ?? 1
    const heads = await openKv(o.nc, HEADS_BUCKET, { history: 1, replicas })
    const claims = await openKv(o.nc, CLAIMS_BUCKET, { history: 1, replicas, ttl: o.claimTtlMs ?? 30 * 24 * 3600_000 })
    return new HeadLedger(heads, claims, o)
  }

  // ---- the webhook path (CiService's HeadClaims) ---------------------------------------------

  /**
   * Claims a webhook's head. When the ledger cannot be read the webhook still builds: a second
   * run is visible and harmless, a lost push is neither.
   */
  async claim(trigger: Trigger): Promise<boolean> {
    if (!CLAIMED_KINDS.has(trigger.kind)) return true
    try {
      await this.remember(trigger.repo)
      const won = await this.tryClaim(trigger, 'webhook')
      if (!won) this.log.info({ repo: trigger.repo.fullName, ref: trigger.ref, sha: trigger.sha }, 'webhook of a head started already (by polling or another replica): no second run')
      return won
    } catch (err) {
      this.log.warn({ repo: trigger.repo.fullName, ref: trigger.ref, sha: trigger.sha, err: (err as Error).message }, 'cannot claim the head in KV; building it anyway')
      return true
    }
  }

  /** The claimed head's run exists: the claim says so and the ref's last built commit is this one. */
  started(trigger: Trigger, runId: string): void {
    if (!CLAIMED_KINDS.has(trigger.kind)) return
    this.markStarted(trigger, runId, 'webhook').catch((err: Error) =>
      this.log.warn({ runId, repo: trigger.repo.fullName, ref: trigger.ref, err: err.message }, 'cannot record the head as built (the next poll finds its claim)'))
  }

  // ---- claims ---------------------------------------------------------------------------------

  /** True when this caller won the head (created its claim, or took over a stale one). Throws on KV errors. */
  async tryClaim(trigger: Trigger, by: Claim['by']): Promise<boolean> {
    const key = claimKey(trigger)
    const mine: Claim = { state: 'claimed', by, at: this.clock.now() }
    try {
      await this.claims.create(key, JSON.stringify(mine))
      return true
    } catch (err) {
      if (!isCasConflict(err)) throw err
    }
    const entry = await this.claims.get(key)
    if (!entry || entry.operation !== 'PUT') {
      // deleted or expired in between: try once more
      try {
        await this.claims.create(key, JSON.stringify(mine))
        return true
      } catch (err) {
        if (isCasConflict(err)) return false
        throw err
      }
    }
    const held = parseClaim(entry)
    if (held?.state === 'started') return false
    if (held && this.clock.now() - held.at < this.staleClaimMs) return false
    try {
      await this.claims.update(key, JSON.stringify(mine), entry.revision)
      this.log.warn({ repo: trigger.repo.fullName, ref: trigger.ref, sha: trigger.sha, heldBy: held?.by, since: held?.at }, 'took over a claim never started (its replica stopped while planning)')
      return true
    } catch (err) {
      if (isCasConflict(err)) return false
      throw err
    }
  }

  /** The claim's state, for a head the poller finds unbuilt. */
  async claimOf(trigger: Trigger): Promise<Claim | undefined> {
    const entry = await this.claims.get(claimKey(trigger))
    return entry && entry.operation === 'PUT' ? parseClaim(entry) : undefined
  }

  async markStarted(trigger: Trigger, runId: string, by: Claim['by']): Promise<void> {
    const done: Claim = { state: 'started', by, at: this.clock.now(), runId }
    await this.claims.put(claimKey(trigger), JSON.stringify(done))
    await this.updateRepo(trigger.repo.fullName, (r) => {
      if (r.heads[trigger.ref] === trigger.sha) return undefined
      return { ...r, heads: { ...r.heads, [trigger.ref]: trigger.sha } }
    })
  }

  // ---- repositories ----------------------------------------------------------------------------

  /** Records a repository a webhook came from (its settings kept fresh, its seenAt hourly). */
  async remember(repo: Repository): Promise<void> {
    const key = repoKey(repo.fullName)
    const now = this.clock.now()
    const text = JSON.stringify(repo)
    const last = this.remembered.get(key)
    if (last && last.repo === text && now - last.seenAt < SEEN_EVERY_MS) return
    const fresh: RepoHeads = { repo, seenAt: now, heads: {} }
    try {
      await this.heads.create(key, JSON.stringify(fresh))
      this.log.info({ repo: repo.fullName }, 'a new repository: its branches and pull requests are polled')
    } catch (err) {
      if (!isCasConflict(err)) throw err
      await this.updateRepo(repo.fullName, (r) => ({ ...r, repo, seenAt: now }))
    }
    this.remembered.set(key, { repo: text, seenAt: now })
  }

  /** Every repository recorded, with the revision each was read at. */
  async repos(): Promise<Array<{ key: string; record: RepoHeads }>> {
    const keys: string[] = []
    for await (const k of await this.heads.keys('repo.>')) keys.push(k)
    const out: Array<{ key: string; record: RepoHeads }> = []
    for (const key of keys) {
      const entry = await this.heads.get(key)
      if (!entry || entry.operation !== 'PUT') continue
      const record = parseRepo(entry)
      if (record) out.push({ key, record })
      else this.log.warn({ key }, `${HEADS_BUCKET}/${key}: not a repository record; skipped`)
    }
    return out
  }

  /**
   * Changes a repository's record with compare-and-set (retried on a conflict with another
   * writer); `change` returns undefined to leave it as it is. Nothing happens for an unknown one.
   */
  async updateRepo(fullName: string, change: (r: RepoHeads) => RepoHeads | undefined): Promise<void> {
    const key = repoKey(fullName)
    for (let i = 0; i < CAS_ATTEMPTS; i++) {
      const entry = await this.heads.get(key)
      if (!entry || entry.operation !== 'PUT') return
      const current = parseRepo(entry)
      if (!current) return
      const next = change(current)
      if (!next) return
      try {
        await this.heads.update(key, JSON.stringify(next), entry.revision)
        return
      } catch (err) {
        if (!isCasConflict(err)) throw err
      }
    }
    throw new Error(`${HEADS_BUCKET}/${key}: still changing after ${CAS_ATTEMPTS} attempts`)
  }

  /** Forgets a repository (no more polling until its next webhook). */
  async forget(fullName: string): Promise<void> {
    this.remembered.delete(repoKey(fullName))
    await this.heads.delete(repoKey(fullName))
  }
}

function parseClaim(entry: KvEntry): Claim | undefined {
  try {
    const c = entry.json<Claim>()
    return c && (c.state === 'claimed' || c.state === 'started') && typeof c.at === 'number' ? c : undefined
  } catch {
    return undefined
  }
}

function parseRepo(entry: KvEntry): RepoHeads | undefined {
  try {
    const r = entry.json<RepoHeads>()
    const ok = r && typeof r.repo?.fullName === 'string' && typeof r.repo.cloneUrl === 'string' && typeof r.seenAt === 'number' &&
      typeof r.heads === 'object' && r.heads !== null
    return ok ? r : undefined
  } catch {
    return undefined
  }
}
