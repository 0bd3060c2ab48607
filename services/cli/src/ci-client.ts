// A client of the CI service's HTTP API (GET/POST /api/v1/runs...), for the run commands of
// `regatta` (runs, logs, trigger): they talk to the CI service over HTTP, not to NATS.
import { readFileSync } from 'node:fs'
import { RegattaError, isWireError } from '../../../shared/errors/index.js'
import { checkTokenText, httpRequest } from '../../../shared/http/index.js'
import type { RunView, StuckView } from '../../ci/src/views.js'

export const DEFAULT_CI_URL = 'http://127.0.0.1:8080'
const REQUEST_TIMEOUT_MS = 30_000

/** The CI service's base URL from `--ci`, else REGATTA_CI_URL, else the default; validated. */
export function ciUrl(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const url = flag ?? (env.REGATTA_CI_URL || DEFAULT_CI_URL)
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {
    parsed = undefined
  }
  if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.search || parsed.hash) {
    throw new RegattaError('INVALID_CONFIG', `--ci: "${url}" is not the CI service's URL (expected http://HOST:PORT or https://HOST:PORT)`)
  }
  return url.replace(/\/+$/, '')
}

/** Where `regatta dev` writes its operator token (under its default --data directory). */
export const DEV_TOKEN_FILE = '.regatta/token'

/**
 * The bearer token the run commands send: `--token`, else REGATTA_TOKEN, else
 * REGATTA_OPERATOR_TOKEN (a machine that runs the services), else what `regatta dev` wrote to
 * .regatta/token in this directory; none: requests carry no token (open reads in `regatta dev`).
 */
export function ciToken(flag?: string, env: NodeJS.ProcessEnv = process.env, devTokenFile = DEV_TOKEN_FILE): string | undefined {
  if (flag !== undefined) return checkTokenText(flag, '--token')
  if (env.REGATTA_TOKEN) return checkTokenText(env.REGATTA_TOKEN, 'REGATTA_TOKEN')
  if (env.REGATTA_OPERATOR_TOKEN) return checkTokenText(env.REGATTA_OPERATOR_TOKEN, 'REGATTA_OPERATOR_TOKEN')
  let text: string
  try {
    text = readFileSync(devTokenFile, 'utf8')
  } catch {
    return undefined
  }
  return checkTokenText(text.trim(), devTokenFile)
}

/** One piece of a job's output as the log's event stream sends it. */
export interface LogOutput {
  stream: 'stdout' | 'stderr'
  data: string
}

export interface TriggerRequest {
  repo: string
  ref: string
  sha?: string
}

export class CiClient {
  /**
   * `token`: sent as `Authorization: Bearer <token>` with every request; `ca`: PEM of a CA
   * trusted (beside the system's) for an https URL (--ca / REGATTA_HTTP_CA, httpCaFrom).
   */
  constructor(readonly baseUrl: string, private readonly token?: string, private readonly ca?: Buffer) {}

  async listRuns(limit?: number): Promise<RunView[]> {
    const body = await this.json<{ runs: RunView[] }>('GET', `/api/v1/runs${limit === undefined ? '' : `?limit=${limit}`}`)
    return body.runs
  }

  /** What is past its bound (`GET /api/v1/runs?stuck=true`); bounds not given are the service's defaults. */
  stuck(bounds: { maxWaitingMs?: number; maxStartingMs?: number; maxIdleMs?: number } = {}): Promise<StuckView> {
    const q = new URLSearchParams({ stuck: 'true' })
    for (const [k, v] of Object.entries(bounds)) if (v !== undefined) q.set(k, String(v))
    return this.json('GET', `/api/v1/runs?${q.toString()}`)
  }

  getRun(runId: string): Promise<RunView> {
    return this.json('GET', `/api/v1/runs/${encodeURIComponent(runId)}`)
  }

  trigger(t: TriggerRequest): Promise<RunView> {
    return this.json('POST', '/api/v1/runs', t)
  }

  cancel(runId: string): Promise<RunView> {
    return this.json('POST', `/api/v1/runs/${encodeURIComponent(runId)}/cancel`)
  }

  rerun(runId: string): Promise<RunView> {
    return this.json('POST', `/api/v1/runs/${encodeURIComponent(runId)}/rerun`)
  }

  /** A job's whole log so far, as text. */
  async jobLog(runId: string, jobId: string): Promise<string> {
    const res = await this.send('GET', logPath(runId, jobId), { accept: 'text/plain' })
    return res.text()
  }

  /**
   * Follows a job's log over server-sent events: what was written so far, then what comes,
   * until the service sends `end` (the job ended). Rejects if the stream breaks before that.
   */
  async followJobLog(runId: string, jobId: string, onOutput: (o: LogOutput) => void): Promise<void> {
    // no timeout: a queued job may wait long for resources before it prints anything
    const res = await this.send('GET', logPath(runId, jobId), { accept: 'text/event-stream' }, undefined, null)
    if (!res.body) throw new RegattaError('INTERNAL', `the CI service at ${this.baseUrl} sent no log stream`)
    const decoder = new TextDecoder()
    let buffered = ''
    try {
      for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(bytes, { stream: true }).replace(/\r\n?/g, '\n')
        let end: number
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const event = parseEvent(buffered.slice(0, end))
          buffered = buffered.slice(end + 2)
          if (event.name === 'end') return
          if (event.name === 'output' && event.data !== undefined) {
            const o = parseJson(event.data) as Partial<LogOutput> | undefined
            if (typeof o?.data === 'string') onOutput({ stream: o.stream === 'stderr' ? 'stderr' : 'stdout', data: o.data })
          }
        }
      }
    } catch (err) {
      throw this.unreachable(err)
    }
    throw new RegattaError('INTERNAL', `the log stream from ${this.baseUrl} broke off before job ${jobId} ended`)
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, { accept: 'application/json' }, body)
    return await res.json() as T
  }

  /** Sends a request; an error answer is rebuilt as the RegattaError the service sent. */
  private async send(method: string, path: string, headers: Record<string, string>, body?: unknown, timeoutMs: number | null = REQUEST_TIMEOUT_MS): Promise<Response> {
    let res: Response
    try {
      res = await httpRequest(`${this.baseUrl}${path}`, {
        ...(this.ca ? { ca: this.ca } : {}),
        method,
        headers: {
          ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(timeoutMs === null ? {} : { signal: AbortSignal.timeout(timeoutMs) }),
      })
    } catch (err) {
      throw this.unreachable(err)
    }
    if (res.ok) return res
    const text = await res.text().catch(() => '')
    const answer = parseJson(text)
    if (isWireError(answer)) throw RegattaError.fromWire(answer.error)
    const first = text.trim().split('\n')[0]?.slice(0, 200)
    throw new RegattaError('INTERNAL', `the CI service at ${this.baseUrl} answered ${method} ${path} with HTTP ${res.status}${first ? `: ${first}` : ''}`)
  }

  private unreachable(err: unknown): RegattaError {
    if (err instanceof RegattaError) return err
    const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } }
    if (e.name === 'TimeoutError' || e.name === 'AbortError') {
      return new RegattaError('TIMEOUT', `the CI service at ${this.baseUrl} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`)
    }
    const code = e.cause?.code ?? ''
    if (TLS_TRUST_CODES.has(code) || /certificate/i.test(e.cause?.message ?? '')) {
      // one line that says what to do: the server's certificate is fine, this side does not trust its CA
      return new RegattaError('NO_RESPONDERS', `cannot trust the CI service at ${this.baseUrl}: its TLS certificate does not check out (${[code, e.cause?.message?.split('\n')[0]].filter(Boolean).join(': ')}); give the PEM of the CA that signed it with --ca or REGATTA_HTTP_CA`, { cause: err })
    }
    if (code === 'EPROTO' && this.baseUrl.startsWith('https:')) {
      return new RegattaError('NO_RESPONDERS', `cannot talk TLS to the CI service at ${this.baseUrl} (EPROTO); does it serve plain HTTP? (try http://)`, { cause: err })
    }
    if ((code === 'ECONNRESET' || /socket hang up/i.test(e.cause?.message ?? '')) && this.baseUrl.startsWith('http:')) {
      return new RegattaError('NO_RESPONDERS', `the CI service at ${this.baseUrl} closed the connection (${code || 'socket hang up'}); does it serve HTTPS? (try https://)`, { cause: err })
    }
    const why = code === 'ECONNREFUSED' ? 'connection refused' : code || (e.cause?.message ?? e.message ?? String(err))
    // NO_RESPONDERS: nobody serves what was asked for, as when no master answers on NATS
    return new RegattaError('NO_RESPONDERS', `cannot reach the CI service at ${this.baseUrl} (${why}); is \`regatta ci\` running? (--ci or REGATTA_CI_URL)`, { cause: err })
  }
}

/** Errors of a certificate chain this side does not trust (as opposed to a server that is down). */
const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_SIGNATURE_FAILURE', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID',
])

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

function logPath(runId: string, jobId: string): string {
  return `/api/v1/runs/${encodeURIComponent(runId)}/jobs/${encodeURIComponent(jobId)}/log`
}

/** One server-sent event block: its `event:` name and its `data:` lines joined. */
function parseEvent(block: string): { name: string; data?: string } {
  let name = 'message'
  const data: string[] = []
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue
    const i = line.indexOf(':')
    const field = i < 0 ? line : line.slice(0, i)
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '')
    if (field === 'event') name = value
    else if (field === 'data') data.push(value)
  }
  return data.length > 0 ? { name, data: data.join('\n') } : { name }
}
