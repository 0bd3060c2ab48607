// Commit statuses to GitHub, in the background: `report()` only enqueues, so a slow or failing
// GitHub API never stalls a build. Usage:
//
//   const statuses = new StatusReporter({ token: process.env.REGATTA_GITHUB_TOKEN, logger })
//   statuses.report({ repo: 'octo/app', sha, context: 'regatta/ci/build', state: 'pending',
//                     description: 'queued', targetUrl: `${publicUrl}/runs/${runId}` })
//   ...
//   await statuses.flush(5_000); await statuses.close()
//
// Statuses of one (repo, sha, context) are sent one at a time, in the order reported. What
// waits to be sent is coalesced: a newer `pending` replaces everything queued before it, and a
// final state (success, failure, error) replaces a queued final state, so the queue of a context
// is at most "pending, then a final state" (GitHub shows only the latest; the pending is kept
// so that its history reads pending → success). Contexts are sent in parallel, up to
// `concurrency` requests at once.
//
// A request that fails with a network error, a timeout (`requestTimeoutMs`), a 5xx, 408, 429 or
// a rate-limit 403 is retried with exponential backoff (honouring Retry-After) up to
// `maxAttempts` attempts, then given up and logged; any other 4xx is logged and dropped at once.
import type { Octokit } from '@octokit/rest'
import { RegattaError } from '../../../../shared/errors/index.js'
import { systemClock, type Clock, type Timer } from '../../../../shared/clock/index.js'
import type { Logger } from '../../../../shared/log/index.js'
import { classifyGitHubError, createGitHubClient, githubApiUrl } from './client.js'

export { DEFAULT_GITHUB_API_URL } from './client.js'
/** GitHub refuses longer status descriptions. */
export const MAX_DESCRIPTION_CHARS = 140

export type CommitState = 'pending' | 'success' | 'failure' | 'error'

export interface CommitStatus {
  /** `owner/name` */
  repo: string
  sha: string
  /** `regatta/<pipeline>/<job>` */
  context: string
  state: CommitState
  /** Cut to 140 characters. */
  description?: string
  /** The job's page. */
  targetUrl?: string
}

export interface StatusReporterOptions {
  /** REGATTA_GITHUB_TOKEN; without it requests are unauthenticated (GitHub refuses them). */
  token?: string
  /** Default: REGATTA_GITHUB_API_URL, else https://api.github.com. */
  baseUrl?: string
  logger: Logger
  /** The service's GitHub client (client.ts), shared with the head poller; default: one made from token and baseUrl. */
  client?: Octokit
  clock?: Clock
  /** One request's time limit (default 10 s). */
  requestTimeoutMs?: number
  /** Attempts per status before giving up (default 8: about a minute of retries). */
  maxAttempts?: number
  /** Wait before the first retry, doubled each time (default 500 ms). */
  retryDelayMs?: number
  /** Longest wait between retries (default 30 s). */
  maxRetryDelayMs?: number
  /** Requests in flight at once, over all contexts (default 4). */
  concurrency?: number
}

export interface StatusReporterStats {
  /** Accepted by GitHub. */
  sent: number
  /** Given up: retries exhausted, refused by GitHub, or invalid. */
  failed: number
  /** Replaced by a newer status before being sent. */
  superseded: number
  /** Retries made (attempts after the first). */
  retries: number
  /** Waiting or in flight. */
  queued: number
}

interface Entry {
  status: Required<Pick<CommitStatus, 'repo' | 'sha' | 'context' | 'state'>> & Pick<CommitStatus, 'description' | 'targetUrl'>
  attempts: number
}

/** The statuses of one (repo, sha, context): sent one at a time, in order. */
interface Lane {
  key: string
  queue: Entry[]
  state: 'idle' | 'waiting-slot' | 'sending' | 'backoff'
  timer?: Timer
}

const REPO = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/
const SHA = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/
const STATES: readonly string[] = ['pending', 'success', 'failure', 'error']

export class StatusReporter {
  private readonly octokit: Octokit
  private readonly log: Logger
  private readonly clock: Clock
  private readonly requestTimeoutMs: number
  private readonly maxAttempts: number
  private readonly retryDelayMs: number
  private readonly maxRetryDelayMs: number
  private readonly concurrency: number
  private readonly lanes = new Map<string, Lane>()
  private readonly waitingForSlot: Lane[] = []
  private readonly inFlight = new Set<AbortController>()
  private readonly idleWaiters = new Set<() => void>()
  private active = 0
  private closed = false
  /** Statuses queued or in flight when closed: they will never be sent. */
  private droppedAtClose = 0
  private readonly counts = { sent: 0, failed: 0, superseded: 0, retries: 0 }

  constructor(options: StatusReporterOptions) {
    this.log = options.logger.child({ component: 'github-statuses' })
    this.clock = options.clock ?? systemClock
    this.requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs ?? 10_000)
    this.maxAttempts = positive('maxAttempts', options.maxAttempts ?? 8)
    this.retryDelayMs = positive('retryDelayMs', options.retryDelayMs ?? 500)
    this.maxRetryDelayMs = positive('maxRetryDelayMs', options.maxRetryDelayMs ?? 30_000)
    this.concurrency = positive('concurrency', options.concurrency ?? 4)
    if (options.client) {
      this.octokit = options.client
      return
    }
    const baseUrl = githubApiUrl(options.baseUrl)
    if (!options.token) this.log.warn({ baseUrl }, 'no GitHub token (REGATTA_GITHUB_TOKEN): statuses are sent unauthenticated')
    this.octokit = createGitHubClient({ baseUrl, logger: this.log, ...(options.token ? { token: options.token } : {}) })
  }

  /** Enqueues a status and returns at once; never throws (a bad status is logged and dropped). */
  report(status: CommitStatus): void {
    if (this.closed) {
      this.log.debug({ repo: status?.repo, sha: status?.sha, context: status?.context }, 'status reported after close: dropped')
      return
    }
    const problem = problemOf(status)
    if (problem) {
      this.counts.failed++
      this.log.error({ code: 'INVALID_MESSAGE', repo: status?.repo, sha: status?.sha, context: status?.context }, `status not sent: ${problem}`)
      return
    }
    const entry: Entry = {
      status: {
        repo: status.repo,
        sha: status.sha,
        context: status.context,
        state: status.state,
        ...(status.description !== undefined ? { description: truncate(status.description, MAX_DESCRIPTION_CHARS) } : {}),
        ...(status.targetUrl ? { targetUrl: status.targetUrl } : {}),
      },
      attempts: 0,
    }
    const key = `${status.repo.toLowerCase()}\0${status.sha}\0${status.context}`
    let lane = this.lanes.get(key)
    if (!lane) {
      lane = { key, queue: [], state: 'idle' }
      this.lanes.set(key, lane)
    }
    const before = lane.queue.length
    lane.queue = lane.queue.filter((queued) => !supersedes(entry, queued))
    this.counts.superseded += before - lane.queue.length
    lane.queue.push(entry)
    if (lane.state === 'idle') this.schedule(lane)
  }

  /**
   * Resolves when every status reported so far is sent or given up: true, or false when
   * `timeoutMs` passed first or close() dropped statuses.
   */
  flush(timeoutMs?: number): Promise<boolean> {
    if (this.closed || this.isIdle()) return Promise.resolve(this.isDrained())
    return new Promise<boolean>((resolve) => {
      let timer: Timer | undefined
      const done = (): void => {
        this.idleWaiters.delete(done)
        timer?.cancel()
        resolve(this.isDrained())
      }
      this.idleWaiters.add(done)
      if (timeoutMs !== undefined) timer = this.clock.setTimeout(done, timeoutMs)
    })
  }

  /** Stops: requests in flight are aborted and what is queued is dropped (flush first to send it). */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    let dropped = 0
    for (const lane of this.lanes.values()) {
      dropped += lane.queue.length + (lane.state === 'sending' ? 1 : 0)
      lane.timer?.cancel()
    }
    this.droppedAtClose = dropped
    this.lanes.clear()
    this.waitingForSlot.length = 0
    for (const controller of this.inFlight) controller.abort()
    if (dropped > 0) this.log.warn({ dropped }, 'closed with statuses not sent')
    this.notifyIdle()
  }

  stats(): StatusReporterStats {
    let queued = 0
    for (const lane of this.lanes.values()) queued += lane.queue.length + (lane.state === 'sending' ? 1 : 0)
    return { ...this.counts, queued }
  }

  private isIdle(): boolean {
    return this.lanes.size === 0
  }

  /** Idle, and nothing was dropped by close(). */
  private isDrained(): boolean {
    return this.isIdle() && this.droppedAtClose === 0
  }

  private notifyIdle(): void {
    if (!this.isIdle() && !this.closed) return
    for (const waiter of [...this.idleWaiters]) waiter()
  }

  private schedule(lane: Lane): void {
    if (this.active < this.concurrency) {
      void this.send(lane)
    } else {
      lane.state = 'waiting-slot'
      this.waitingForSlot.push(lane)
    }
  }

  private releaseSlot(): void {
    this.active--
    const next = this.waitingForSlot.shift()
    if (next) void this.send(next)
  }

  /** Sends the first status of a lane, then moves on: next status, retry later, or lane done. */
  private async send(lane: Lane): Promise<void> {
    const entry = lane.queue.shift()
    if (!entry) {
      this.finishLane(lane)
      return
    }
    lane.state = 'sending'
    this.active++
    entry.attempts++
    if (entry.attempts > 1) this.counts.retries++
    const { repo, sha, context, state } = entry.status
    const ids = { repo, sha, context, state, attempt: entry.attempts }
    const outcome = await this.post(entry)
    if (this.closed) return
    if (outcome.ok) {
      this.counts.sent++
      this.log.debug(ids, 'status sent')
      this.next(lane)
      return
    }
    const { error, retryable, retryAfterMs } = outcome
    if (!retryable || entry.attempts >= this.maxAttempts) {
      this.counts.failed++
      const why = retryable ? `gave up after ${entry.attempts} attempts` : 'refused'
      this.log.error({ ...ids, code: 'GITHUB_API_ERROR', err: error }, `status not sent (${why}): ${error.message}`)
      this.next(lane)
      return
    }
    if (lane.queue.some((queued) => supersedes(queued, entry))) {
      // a newer status replaces the one that failed: no need to retry it
      this.counts.superseded++
      this.next(lane)
      return
    }
    lane.queue.unshift(entry)
    const delay = this.backoff(entry.attempts, retryAfterMs)
    this.log.warn({ ...ids, delayMs: delay }, `status failed, retrying: ${error.message}`)
    lane.state = 'backoff'
    this.releaseSlot()
    lane.timer = this.clock.setTimeout(() => {
      lane.timer = undefined
      if (!this.closed) this.schedule(lane)
    }, delay)
  }

  private next(lane: Lane): void {
    lane.state = 'idle'
    this.releaseSlot()
    if (lane.queue.length > 0) this.schedule(lane)
    else this.finishLane(lane)
  }

  private finishLane(lane: Lane): void {
    lane.state = 'idle'
    if (lane.queue.length === 0 && this.lanes.get(lane.key) === lane) this.lanes.delete(lane.key)
    this.notifyIdle()
  }

  private backoff(attempts: number, retryAfterMs: number | undefined): number {
    const exponential = this.retryDelayMs * 2 ** Math.min(attempts - 1, 30)
    const jittered = exponential * (0.8 + Math.random() * 0.4)
    return Math.round(Math.min(this.maxRetryDelayMs, Math.max(jittered, retryAfterMs ?? 0)))
  }

  private async post(entry: Entry): Promise<{ ok: true } | { ok: false; error: RegattaError; retryable: boolean; retryAfterMs?: number }> {
    const { repo, sha, context, state, description, targetUrl } = entry.status
    const [owner, name] = repo.split('/')
    const controller = new AbortController()
    let timedOut = false
    const timer = this.clock.setTimeout(() => {
      timedOut = true
      controller.abort()
    }, this.requestTimeoutMs)
    this.inFlight.add(controller)
    try {
      await this.octokit.rest.repos.createCommitStatus({
        owner,
        repo: name,
        sha,
        state,
        context,
        ...(description !== undefined ? { description } : {}),
        ...(targetUrl !== undefined ? { target_url: targetUrl } : {}),
        request: { signal: controller.signal },
      })
      return { ok: true }
    } catch (err) {
      if (timedOut) {
        return { ok: false, retryable: true, error: new RegattaError('GITHUB_API_ERROR', `no answer within ${this.requestTimeoutMs} ms`, { cause: err }) }
      }
      return { ok: false, ...classify(err) }
    } finally {
      timer.cancel()
      this.inFlight.delete(controller)
    }
  }
}

/** Whether a status reported later makes an earlier one, still queued, pointless to send. */
function supersedes(later: Entry, earlier: Entry): boolean {
  if (later.status.state === 'pending') return true
  return earlier.status.state !== 'pending'
}

function classify(err: unknown): { error: RegattaError; retryable: boolean; retryAfterMs?: number } {
  const { error, retryable, retryAfterMs } = classifyGitHubError(err)
  return { error, retryable, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }
}

function problemOf(s: CommitStatus | undefined): string | undefined {
  if (typeof s !== 'object' || s === null) return 'not an object'
  if (typeof s.repo !== 'string' || !REPO.test(s.repo)) return `repo must be "owner/name", not ${JSON.stringify(s.repo)}`
  if (typeof s.sha !== 'string' || !SHA.test(s.sha)) return `sha must be 40 or 64 lowercase hex digits, not ${JSON.stringify(s.sha)}`
  if (typeof s.context !== 'string' || s.context.length === 0) return 'context must be a non-empty string'
  if (!STATES.includes(s.state)) return `state must be one of ${STATES.join(', ')}, not ${JSON.stringify(s.state)}`
  if (s.description !== undefined && typeof s.description !== 'string') return 'description must be a string'
  if (s.targetUrl !== undefined && typeof s.targetUrl !== 'string') return 'targetUrl must be a string'
  return undefined
}

/** At most `max` characters (code points, so no half emoji), with an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  const chars = Array.from(text)
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new RegattaError('INVALID_CONFIG', `${name} must be a positive number, not ${value}`)
  return value
}
