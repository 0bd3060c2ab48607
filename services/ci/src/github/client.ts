// The one @octokit/rest client of the CI service (commit statuses and head polling share it), and
// how its failures are read: retry later or not, and how long GitHub asks us to wait.
import { Octokit } from '@octokit/rest'
import { RegattaError } from '../../../../shared/errors/index.js'
import type { Logger } from '../../../../shared/log/index.js'

export const DEFAULT_GITHUB_API_URL = 'https://api.github.com'

export interface GitHubClientOptions {
  /** REGATTA_GITHUB_TOKEN; without it requests are unauthenticated (GitHub refuses most). */
  token?: string
  /** Default: REGATTA_GITHUB_API_URL, else https://api.github.com. */
  baseUrl?: string
  logger: Logger
}

/** The API's base URL without a trailing slash; INVALID_CONFIG when it is not http(s). */
export function githubApiUrl(baseUrl?: string): string {
  const url = (baseUrl || process.env.REGATTA_GITHUB_API_URL || DEFAULT_GITHUB_API_URL).replace(/\/+$/, '')
  if (!/^https?:\/\/[^/]/.test(url)) {
    throw new RegattaError('INVALID_CONFIG', `REGATTA_GITHUB_API_URL must be an http(s) URL, not "${url}"`)
  }
  return url
}

export function createGitHubClient(options: GitHubClientOptions): Octokit {
  const octokitLog = options.logger.child({ component: 'octokit' })
  return new Octokit({
    ...(options.token ? { auth: options.token } : {}),
    baseUrl: githubApiUrl(options.baseUrl),
    userAgent: 'regatta',
    log: {
      debug: (m: string) => octokitLog.debug(m),
      info: (m: string) => octokitLog.debug(m),
      warn: (m: string) => octokitLog.warn(m),
      error: (m: string) => octokitLog.error(m),
    },
  })
}

export interface GitHubFailure {
  error: RegattaError
  /** Worth trying again later: no answer, a timeout, a 5xx, 408, 429 or a rate limit. */
  retryable: boolean
  /** The HTTP status, when there was an answer. */
  status?: number
  /** A rate limit (403 or 429 saying so): wait until `retryAfterMs` has passed. */
  rateLimited: boolean
  /** How long GitHub asks to wait (Retry-After, or until X-RateLimit-Reset when exhausted). */
  retryAfterMs?: number
}

/** What an error thrown by an octokit request means. */
export function classifyGitHubError(err: unknown, now = Date.now()): GitHubFailure {
  const e = err as { status?: unknown; message?: unknown; response?: { headers?: Record<string, string | undefined> } } | null
  const status = typeof e?.status === 'number' ? e.status : undefined
  const headers = e?.response?.headers ?? {}
  const text = typeof e?.message === 'string' ? e.message : String(err)
  const error = new RegattaError('GITHUB_API_ERROR', status !== undefined ? `HTTP ${status}: ${text}` : text, { cause: err })
  const retryAfter = Number(headers['retry-after'])
  let retryAfterMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined
  const exhausted = headers['x-ratelimit-remaining'] === '0'
  if (retryAfterMs === undefined && exhausted) {
    const reset = Number(headers['x-ratelimit-reset'])
    if (Number.isFinite(reset) && reset * 1000 > now) retryAfterMs = reset * 1000 - now
  }
  const rateLimited = (status === 403 || status === 429) && (exhausted || retryAfterMs !== undefined || /rate limit/i.test(text))
  // no status: the request never got an answer (connection refused, reset, DNS)
  const retryable = status === undefined || status >= 500 || status === 408 || status === 429 || rateLimited
  return { error, retryable, rateLimited, ...(status !== undefined ? { status } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }
}
