// Builds what a lost webhook would have built. GitHub does not redeliver a failed delivery by
// itself, so at start and every `intervalMs` the head poller asks GitHub's REST API for the
// branches and open pull requests of every repository the webhooks came from (heads.ts keeps
// them), and starts the run of any head with none: the same Trigger the webhook would have given
// (events.ts builds it from the listed fields), claimed in KV so that it starts once, whether the
// late webhook or another replica's poller comes next. Usage:
//
//   const poller = new HeadPoller({ ledger, client, start: (t) => service.trigger(t), logger })
//   poller.start()   ...   await poller.stop()
//
//   pass:  repositories (KV, most recently seen first, at most maxRepos)
//            -> branches and open pull requests (GitHub, ETag-conditional: unchanged pages are free)
//            -> decideHeads(record, listing)   pure: start / take as baseline / forget
//            -> claim each head to start (KV create) -> CiService.trigger -> claim marked started
//
// The first poll of a repository takes its heads as they are (baseline): only heads that move
// after Regatta first heard of it are built, not every old branch at once. Failures never stop
// the service nor delay a webhook's build: a failing API is retried with exponential backoff,
// a rate limit (or fewer than `rateLimitReserve` requests left, kept for commit statuses) pauses
// polling until GitHub's reset, a repository that answers 404/401/403 is backed off alone.
import type { Octokit } from '@octokit/rest'
import { RegattaError } from '../../../../shared/errors/index.js'
import type { Logger } from '../../../../shared/log/index.js'
import { systemClock, type Clock, type Timer } from '../../../../shared/clock/index.js'
import type { Trigger } from '../trigger.js'
import { triggerFromEvent } from './events.js'
import { classifyGitHubError } from './client.js'
import type { HeadLedger, RepoHeads } from './heads.js'

export const DEFAULT_POLL_INTERVAL_MS = 60_000
export const DEFAULT_MAX_REPOS = 100
export const DEFAULT_MAX_BRANCHES = 300
export const DEFAULT_MAX_PULLS = 100
const PER_PAGE = 100

export interface BranchHead {
  name: string
  sha: string
}

export interface PullHead {
  number: number
  headRef: string
  headSha: string
  /** `owner/name` of the head's repository; null when that fork was deleted. */
  headRepo: string | null
  baseRef: string
  /** `owner/name` of the base repository. */
  baseRepo: string
  author: string
}

/** What GitHub listed of one repository. */
export interface RepoListing {
  branches: BranchHead[]
  pulls: PullHead[]
  /** False when cut at maxBranches / maxPulls: what is not listed is not known to be gone. */
  branchesComplete: boolean
  pullsComplete: boolean
  /** Items GitHub listed that lack a field Regatta reads, each with where and why. */
  invalid: string[]
}

export interface HeadPlan {
  /** Runs to start: heads with none, each the Trigger its webhook would have given. */
  start: Trigger[]
  /** Heads taken as built without a run: the first poll of a repository. */
  baseline: Record<string, string>
  /** Refs recorded that GitHub no longer lists (deleted branches, closed pull requests). */
  gone: string[]
  /** Listed heads that make no valid Trigger, each with where and why. */
  invalid: string[]
}

const branchRef = (name: string): string => `refs/heads/${name}`
const pullRef = (n: number): string => `refs/pull/${n}/head`

/** What to do about a repository's listed heads, given what was built. Pure. */
export function decideHeads(record: RepoHeads, listing: RepoListing): HeadPlan {
  const plan: HeadPlan = { start: [], baseline: {}, gone: [], invalid: [...listing.invalid] }
  const baselining = record.baselinedAt === undefined
  const repository = {
    full_name: record.repo.fullName, clone_url: record.repo.cloneUrl, default_branch: record.repo.defaultBranch, private: record.repo.private,
  }
  const listed = new Set<string>()
  const consider = (ref: string, sha: string, where: string, make: () => unknown, event: string): void => {
    listed.add(ref)
    const known = record.heads[ref]
    if (known === sha) return
    if (known === undefined && baselining) {
      plan.baseline[ref] = sha
      return
    }
    try {
      const outcome = triggerFromEvent(event, make())
      if ('trigger' in outcome) plan.start.push(outcome.trigger)
      else plan.invalid.push(`${where}: ${outcome.ignored}`)
    } catch (err) {
      plan.invalid.push(`${where}: ${(err as Error).message}`)
    }
  }
  for (const b of listing.branches) {
    consider(branchRef(b.name), b.sha, `branch ${JSON.stringify(b.name)} of ${record.repo.fullName}`, () => ({
      ref: branchRef(b.name), after: b.sha, repository,
    }), 'push')
  }
  for (const p of listing.pulls) {
    const ref = pullRef(p.number)
    consider(ref, p.headSha, `pull request #${p.number} of ${record.repo.fullName}`, () => ({
      // a head never built is new to Regatta: "opened"; one that moved: "synchronize"
      action: record.heads[ref] === undefined ? 'opened' : 'synchronize',
      number: p.number,
      pull_request: {
        head: { ref: p.headRef, sha: p.headSha, repo: p.headRepo === null ? null : { full_name: p.headRepo } },
        base: { ref: p.baseRef, repo: { full_name: p.baseRepo } },
      },
      repository,
      sender: { login: p.author },
    }), 'pull_request')
  }
  for (const ref of Object.keys(record.heads)) {
    if (listed.has(ref)) continue
    if ((ref.startsWith('refs/heads/') && listing.branchesComplete) || (ref.startsWith('refs/pull/') && listing.pullsComplete)) plan.gone.push(ref)
  }
  return plan
}

export interface HeadPollerOptions {
  ledger: HeadLedger
  /** The service's GitHub client (client.ts), with REGATTA_GITHUB_TOKEN. */
  client: Octokit
  /** Starts the run of a claimed head: CiService.trigger. */
  start(trigger: Trigger): Promise<{ meta: { runId: string } }>
  logger: Logger
  clock?: Clock
  /** Between the end of one pass and the next (default 60 s). */
  intervalMs?: number
  /** Repositories polled, the most recently seen by a webhook first (default 100). */
  maxRepos?: number
  /** Branches listed per repository, in GitHub's order (by name; default 300). */
  maxBranches?: number
  /** Open pull requests listed per repository, newest first (default 100). */
  maxPulls?: number
  /** Longest wait after failures (default 5 min). */
  maxBackoffMs?: number
  /** One request's time limit (default 10 s). */
  requestTimeoutMs?: number
  /** Requests of the token's hourly budget left to commit statuses: below it, polling pauses until the reset (default 500). */
  rateLimitReserve?: number
}

export interface HeadPollerStats {
  /** Passes that went through every repository. */
  passes: number
  /** Runs started by polling. */
  started: number
  /** Passes that failed in a row (0 when the last one went through). */
  failures: number
  /** Repositories in the last pass. */
  repos: number
  lastError?: string
  /** Polling waits for GitHub's rate limit reset until then (ms since the epoch). */
  pausedUntil?: number
}

interface CachedPage {
  etag: string
  items: unknown[]
  next: boolean
}

type PageCall = (headers: Record<string, string>, signal: AbortSignal) => Promise<{ data: unknown; headers: Record<string, unknown> }>

export class HeadPoller {
  private readonly o: HeadPollerOptions
  private readonly log: Logger
  private readonly clock: Clock
  private readonly intervalMs: number
  private readonly maxRepos: number
  private readonly maxBranches: number
  private readonly maxPulls: number
  private readonly maxBackoffMs: number
  private readonly requestTimeoutMs: number
  private readonly reserve: number
  private timer: Timer | undefined
  private running: Promise<void> | undefined
  private stopped = false
  private pausedUntil = 0
  private failures = 0
  private readonly repoBackoff = new Map<string, { until: number; failures: number }>()
  private readonly pages = new Map<string, CachedPage>()
  private readonly inFlight = new Set<AbortController>()
  /** Warnings said once, until what they are about changes. */
  private readonly warned = new Map<string, string>()
  private readonly counts: HeadPollerStats = { passes: 0, started: 0, failures: 0, repos: 0 }

  constructor(o: HeadPollerOptions) {
    this.o = o
    this.log = o.logger.child({ component: 'github-poller' })
    this.clock = o.clock ?? systemClock
    this.intervalMs = positive('intervalMs', o.intervalMs ?? DEFAULT_POLL_INTERVAL_MS)
    this.maxRepos = positive('maxRepos', o.maxRepos ?? DEFAULT_MAX_REPOS)
    this.maxBranches = positive('maxBranches', o.maxBranches ?? DEFAULT_MAX_BRANCHES)
    this.maxPulls = positive('maxPulls', o.maxPulls ?? DEFAULT_MAX_PULLS)
    this.maxBackoffMs = positive('maxBackoffMs', o.maxBackoffMs ?? 300_000)
    this.requestTimeoutMs = positive('requestTimeoutMs', o.requestTimeoutMs ?? 10_000)
    this.reserve = Math.max(0, o.rateLimitReserve ?? 500)
  }

  /** Polls now, then every intervalMs (after failures, later). */
  start(): void {
    if (this.stopped || this.timer || this.running) return
    this.log.info({ intervalMs: this.intervalMs, maxRepos: this.maxRepos, maxBranches: this.maxBranches, maxPulls: this.maxPulls }, 'polling GitHub for heads whose webhook never came')
    this.schedule(0)
  }

  /** Stops polling; a pass under way is cut short (requests aborted) and awaited up to `waitMs`. */
  async stop(waitMs = 10_000): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    this.timer = undefined
    for (const c of this.inFlight) c.abort()
    if (!this.running) return
    let bound: Timer | undefined
    await Promise.race([this.running, new Promise<void>((resolve) => { bound = this.clock.setTimeout(resolve, waitMs) })])
    bound?.cancel()
  }

  stats(): HeadPollerStats {
    return { ...this.counts, failures: this.failures, ...(this.pausedUntil > this.clock.now() ? { pausedUntil: this.pausedUntil } : {}) }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      this.running = this.pass()
        .catch((err: Error) => {
          // pass() handles its failures; this is a bug, and still no reason to stop polling
          this.log.error({ err: err.message }, 'head poll failed unexpectedly')
          return this.failed(err.message)
        })
        .then((next) => {
          this.running = undefined
          this.schedule(next)
        })
    }, delayMs)
  }

  /** One pass over the repositories; resolves with the wait before the next. */
  private async pass(): Promise<number> {
    const now = this.clock.now()
    if (this.pausedUntil > now) return this.pausedUntil - now
    let repos: Array<{ record: RepoHeads }>
    try {
      repos = await this.o.ledger.repos()
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read the repositories to poll from KV')
      return this.failed((err as Error).message)
    }
    repos.sort((a, b) => b.record.seenAt - a.record.seenAt)
    if (repos.length > this.maxRepos) {
      this.warnOnce('repos', String(repos.length), { repos: repos.length, maxRepos: this.maxRepos },
        'more repositories than maxRepos: only the most recently seen are polled')
    }
    const polled = repos.slice(0, this.maxRepos)
    this.counts.repos = polled.length
    for (const { record } of polled) {
      if (this.stopped) return this.intervalMs
      const name = record.repo.fullName
      const backoff = this.repoBackoff.get(name.toLowerCase())
      if (backoff && backoff.until > this.clock.now()) continue
      let listing: RepoListing
      try {
        listing = await this.list(name)
      } catch (err) {
        if (this.stopped) return this.intervalMs
        const f = classifyGitHubError(err, this.clock.now())
        if (f.rateLimited) {
          const waitMs = Math.min(3_600_000, f.retryAfterMs ?? this.backoffMs(this.failures + 1))
          this.pausedUntil = this.clock.now() + waitMs
          this.log.warn({ repo: name, waitMs }, `GitHub's rate limit: polling paused (${f.error.message})`)
          return waitMs
        }
        if (f.retryable) {
          // GitHub (or the way to it) is failing: the whole pass waits, not just this repository
          this.log.warn({ repo: name, err: f.error.message, failures: this.failures + 1 }, 'GitHub did not answer the head poll; backing off')
          return this.failed(f.error.message)
        }
        // 404 (gone, or the token cannot see it), 401, 403: this repository alone waits
        const failures = (backoff?.failures ?? 0) + 1
        const waitMs = this.backoffMs(failures)
        this.repoBackoff.set(name.toLowerCase(), { until: this.clock.now() + waitMs, failures })
        this.log.warn({ repo: name, err: f.error.message, waitMs }, 'cannot list the heads of a repository; trying it again later')
        continue
      }
      this.repoBackoff.delete(name.toLowerCase())
      await this.apply(record, listing)
      if (this.pausedUntil > this.clock.now()) return this.pausedUntil - this.clock.now()
    }
    this.forgetPagesExcept(new Set(polled.map((r) => r.record.repo.fullName.toLowerCase())))
    this.counts.passes++
    this.failures = 0
    delete this.counts.lastError
    return this.intervalMs
  }

  private failed(message: string): number {
    this.failures++
    this.counts.lastError = message
    return this.backoffMs(this.failures)
  }

  /** intervalMs doubled per failure, jittered by ±20%, at most maxBackoffMs. */
  private backoffMs(failures: number): number {
    const exponential = this.intervalMs * 2 ** Math.min(failures, 30)
    return Math.round(Math.min(this.maxBackoffMs, exponential * (0.8 + Math.random() * 0.4)))
  }

  /** Records what the plan takes as known, then starts its runs one at a time. */
  private async apply(record: RepoHeads, listing: RepoListing): Promise<void> {
    const name = record.repo.fullName
    const plan = decideHeads(record, listing)
    for (const problem of plan.invalid) this.warnOnce(`invalid:${problem}`, problem, { repo: name }, `skipped: ${problem}`)
    if (!listing.branchesComplete || !listing.pullsComplete) {
      this.warnOnce(`cut:${name.toLowerCase()}`, `${listing.branches.length}/${listing.pulls.length}`,
        { repo: name, branches: listing.branches.length, pulls: listing.pulls.length, maxBranches: this.maxBranches, maxPulls: this.maxPulls },
        'more branches or open pull requests than polled: the rest are not watched')
    }
    const baseline = Object.entries(plan.baseline)
    if (baseline.length > 0 || plan.gone.length > 0 || record.baselinedAt === undefined) {
      try {
        await this.o.ledger.updateRepo(name, (r) => {
          const heads = { ...r.heads }
          for (const [ref, sha] of baseline) heads[ref] ??= sha
          // only what is still as this pass read it: a webhook may have recorded a new head since
          for (const ref of plan.gone) if (heads[ref] === record.heads[ref]) delete heads[ref]
          return { ...r, heads, baselinedAt: r.baselinedAt ?? this.clock.now() }
        })
        if (record.baselinedAt === undefined) this.log.info({ repo: name, heads: baseline.length }, 'first poll of a repository: its heads are taken as they are')
      } catch (err) {
        this.log.warn({ repo: name, err: (err as Error).message }, 'cannot record the heads of a repository in KV')
        // without its baseline recorded, a new repository's old heads must not be built
        if (record.baselinedAt === undefined) return
      }
    }
    for (const trigger of plan.start) {
      if (this.stopped) return
      await this.startHead(trigger, record)
    }
  }

  private async startHead(trigger: Trigger, record: RepoHeads): Promise<void> {
    const ids = { repo: trigger.repo.fullName, ref: trigger.ref, sha: trigger.sha }
    let won: boolean
    try {
      won = await this.o.ledger.tryClaim(trigger, 'poll')
    } catch (err) {
      this.log.warn({ ...ids, err: (err as Error).message }, 'cannot claim a head in KV; trying again next poll')
      return
    }
    if (!won) {
      // its webhook (or another replica) was first; once that run exists, stop asking
      const claim = await this.o.ledger.claimOf(trigger).catch(() => undefined)
      if (claim?.state === 'started') {
        await this.o.ledger.updateRepo(trigger.repo.fullName, (r) => r.heads[trigger.ref] === record.heads[trigger.ref]
          ? { ...r, heads: { ...r.heads, [trigger.ref]: trigger.sha } }
          : undefined).catch(() => undefined)
      }
      return
    }
    this.log.info({ ...ids, kind: trigger.kind }, 'a head with no run (its webhook never came): starting its run')
    let runId: string
    try {
      runId = (await this.o.start(trigger)).meta.runId
    } catch (err) {
      // the claim stays unstarted: taken over once stale, by this poller or another replica's
      this.log.error({ ...ids, err: (err as Error).message }, 'cannot start the run of a polled head')
      return
    }
    this.counts.started++
    this.log.info({ ...ids, runId }, 'run started by polling')
    await this.o.ledger.markStarted(trigger, runId, 'poll')
      .catch((err: Error) => this.log.warn({ ...ids, runId, err: err.message }, 'cannot mark the claim started'))
  }

  // ---- GitHub -----------------------------------------------------------------------------------

  /** A repository's branches and open pull requests, up to the limits. */
  private async list(fullName: string): Promise<RepoListing> {
    const [owner, repo] = fullName.split('/') as [string, string]
    const invalid: string[] = []
    const branchItems = await this.pagesOf('branches', fullName, this.maxBranches, (page, perPage) => (headers, signal) =>
      this.o.client.rest.repos.listBranches({ owner, repo, per_page: perPage, page, headers, request: { signal } }) as never)
    const pullItems = await this.pagesOf('pulls', fullName, this.maxPulls, (page, perPage) => (headers, signal) =>
      this.o.client.rest.pulls.list({ owner, repo, state: 'open', sort: 'created', direction: 'desc', per_page: perPage, page, headers, request: { signal } }) as never)
    const branches: BranchHead[] = []
    branchItems.items.forEach((b, i) => {
      const item = b as { name?: unknown; commit?: { sha?: unknown } } | null
      if (typeof item?.name === 'string' && typeof item.commit?.sha === 'string') branches.push({ name: item.name, sha: item.commit.sha })
      else invalid.push(`branches[${i}] of ${fullName}: no name or commit.sha`)
    })
    const pulls: PullHead[] = []
    pullItems.items.forEach((p, i) => {
      const item = p as {
        number?: unknown; user?: { login?: unknown } | null
        head?: { ref?: unknown; sha?: unknown; repo?: { full_name?: unknown } | null }; base?: { ref?: unknown; repo?: { full_name?: unknown } | null }
      } | null
      const head = item?.head
      const base = item?.base
      if (typeof item?.number !== 'number' || typeof head?.ref !== 'string' || typeof head.sha !== 'string' || typeof base?.ref !== 'string') {
        invalid.push(`pulls[${i}] of ${fullName}: no number, head.ref, head.sha or base.ref`)
        return
      }
      pulls.push({
        number: item.number, headRef: head.ref, headSha: head.sha,
        headRepo: typeof head.repo?.full_name === 'string' ? head.repo.full_name : null,
        baseRef: base.ref,
        baseRepo: typeof base.repo?.full_name === 'string' ? base.repo.full_name : fullName,
        author: typeof item.user?.login === 'string' ? item.user.login : 'unknown',
      })
    })
    return { branches, pulls, branchesComplete: branchItems.complete, pullsComplete: pullItems.complete, invalid }
  }

  /** Up to `max` items of a paginated list, page by page (ETag-conditional). */
  private async pagesOf(kind: string, fullName: string, max: number, call: (page: number, perPage: number) => PageCall): Promise<{ items: unknown[]; complete: boolean }> {
    const perPage = Math.min(PER_PAGE, max)
    const items: unknown[] = []
    for (let page = 1; ; page++) {
      const got = await this.page(`${fullName.toLowerCase()}\u0000${kind}\u0000${perPage}\u0000${page}`, call(page, perPage))
      items.push(...got.items)
      if (items.length >= max) return { items: items.slice(0, max), complete: items.length <= max && !got.next }
      if (!got.next) return { items, complete: true }
    }
  }

  private async page(key: string, call: PageCall): Promise<{ items: unknown[]; next: boolean }> {
    const cached = this.pages.get(key)
    const controller = new AbortController()
    let timedOut = false
    const timer = this.clock.setTimeout(() => {
      timedOut = true
      controller.abort()
    }, this.requestTimeoutMs)
    this.inFlight.add(controller)
    try {
      const res = await call(cached ? { 'if-none-match': cached.etag } : {}, controller.signal)
      this.noteRateLimit(res.headers)
      if (!Array.isArray(res.data)) throw new RegattaError('GITHUB_API_ERROR', `${key.split('\u0000')[1]} of ${key.split('\u0000')[0]}: the answer is not a list`)
      const got = { items: res.data as unknown[], next: /rel="next"/.test(String(res.headers.link ?? '')) }
      const etag = res.headers.etag
      if (typeof etag === 'string' && etag) this.pages.set(key, { etag, ...got })
      else this.pages.delete(key)
      return got
    } catch (err) {
      const e = err as { status?: unknown; response?: { headers?: Record<string, unknown> } }
      // 304 Not Modified: the page is as cached (and costs nothing of the rate limit)
      if (e?.status === 304 && cached) {
        this.noteRateLimit(e.response?.headers ?? {})
        return { items: cached.items, next: cached.next }
      }
      if (timedOut) throw new RegattaError('GITHUB_API_ERROR', `no answer within ${this.requestTimeoutMs} ms`, { cause: err })
      throw err
    } finally {
      timer.cancel()
      this.inFlight.delete(controller)
    }
  }

  /** Leaves `rateLimitReserve` requests of the hour to commit statuses: below it, pause until the reset. */
  private noteRateLimit(headers: Record<string, unknown>): void {
    const remaining = Number(headers['x-ratelimit-remaining'])
    const reset = Number(headers['x-ratelimit-reset'])
    if (!Number.isFinite(remaining) || remaining >= this.reserve || !Number.isFinite(reset)) return
    const until = Math.min(reset * 1000, this.clock.now() + 3_600_000)
    if (until <= this.clock.now() || until <= this.pausedUntil) return
    this.pausedUntil = until
    this.log.warn({ remaining, reserve: this.reserve, until: new Date(until).toISOString() }, 'GitHub rate limit nearly used up: polling paused until its reset')
  }

  private forgetPagesExcept(repos: Set<string>): void {
    for (const key of this.pages.keys()) if (!repos.has(key.split('\u0000')[0]!)) this.pages.delete(key)
  }

  private warnOnce(topic: string, value: string, fields: Record<string, unknown>, message: string): void {
    if (this.warned.get(topic) === value) return
    if (this.warned.size > 1000) this.warned.clear()
    this.warned.set(topic, value)
    this.log.warn(fields, message)
  }
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RegattaError('INVALID_CONFIG', `head poller: ${name} must be a positive number, not ${value}`)
  return value
}
