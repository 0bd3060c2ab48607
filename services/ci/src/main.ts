// Entry of `regatta ci`: reads the environment (REGATTA_WEBHOOK_SECRET, REGATTA_GITHUB_TOKEN,
// REGATTA_GITHUB_API_URL, REGATTA_PUBLIC_URL, REGATTA_SECRETS_KEY, REGATTA_CANCEL_SUPERSEDED, REGATTA_LOG_RETENTION,
// REGATTA_GITHUB_POLL_INTERVAL, REGATTA_RECONCILE_INTERVAL, REGATTA_CACHE_VOLUME_TTL), connects to NATS, wires the service and its HTTP API.
import type { KV, NatsConnection } from 'nats'
import { connectNats } from '../../../shared/nats/index.js'
import { createLogger, type Logger } from '../../../shared/log/index.js'
import { parseDuration, type HostPort } from '../../../shared/config/index.js'
import {
  DEFAULT_POLL_INTERVAL_MS, HeadLedger, HeadPoller, StatusReporter, createGitHubClient, type DeliveryLog, type HeadPollerOptions,
} from './github/index.js'
import { CiService } from './service.js'
import { parseRepoWeights } from './placement.js'
import { createCiHttp } from './http.js'
import { schemeOf, type HttpAuth, type HttpTls } from '../../../shared/http/index.js'
import { runsPage } from './ui/page.js'
import { Schedules } from './schedules.js'
import { SecretStore } from './secrets.js'
import { LogArchive } from './logs.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { parseSecretsKey } from '../../../shared/secrets/index.js'
import { openKv } from '../../../shared/nats/kv.js'

export const DELIVERIES_BUCKET = 'regatta-deliveries'

/** A delivery id as a KV key (GitHub's are UUIDs; anything else is made to fit). */
const deliveryKey = (id: string): string => id.replace(/[^A-Za-z0-9_=-]/g, '_').slice(0, 200) || '_'

/** Webhook deliveries seen, in NATS KV for a day: a redelivery after a restart is still known. */
export class KvDeliveryLog implements DeliveryLog {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, replicas = 1): Promise<KvDeliveryLog> {
    return new KvDeliveryLog(await openKv(nc, DELIVERIES_BUCKET, { ttl: 24 * 3600_000, history: 1, replicas }))
  }

  async seen(id: string): Promise<boolean> {
    try {
      await this.kv.create(deliveryKey(id), new Uint8Array([1]))
      return false
    } catch (err) {
      if (/wrong last sequence|exists/i.test((err as Error).message)) return true
      throw err
    }
  }

  async forget(id: string): Promise<void> {
    await this.kv.delete(deliveryKey(id))
  }
}

export interface CiRunOptions {
  natsUrl: string
  http: HostPort
  webhookSecret?: string
  githubToken?: string
  githubApiUrl?: string
  publicUrl?: string
  replicas?: number
  /** Seals repository secrets (REGATTA_SECRETS_KEY); without one, secrets cannot be stored or used. */
  secretsKey?: Buffer
  /** A newer push to a branch or pull request cancels its older runs (REGATTA_CANCEL_SUPERSEDED, default true). */
  cancelSuperseded?: boolean
  /** Who may read and write over HTTP; default from the environment (REGATTA_OPERATOR_TOKEN, REGATTA_READ_TOKEN, REGATTA_TOKENS_FILE). */
  auth?: HttpAuth
  /** HTTPS with this certificate and key (httpTlsFrom: --http-cert/--http-key, REGATTA_HTTP_CERT/KEY); none: plain HTTP. */
  tls?: HttpTls
  /** TTL of the CI lease (one replica runs the framework; another takes over this long after it dies). */
  leaseTtlMs?: number
  /** How long job logs are kept after their task ended (REGATTA_LOG_RETENTION, default 30 days). */
  logRetentionMs?: number
  /**
   * How often GitHub is asked for the branch heads and open pull requests of the repositories
   * webhooks came from, to build what a lost webhook missed (REGATTA_GITHUB_POLL_INTERVAL,
   * default 60 s; 0: never). Needs githubToken.
   */
  githubPollIntervalMs?: number
  /**
   * A launched job whose task has not started after this long is asked about, checked as often
   * (REGATTA_RECONCILE_INTERVAL, default 60 s): a launch the master lost is requeued.
   */
  reconcileIntervalMs?: number
  /**
   * Cache volumes unused for this long are destroyed and their disk unreserved
   * (REGATTA_CACHE_VOLUME_TTL, default 7 days; 0: never).
   */
  cacheVolumeTtlMs?: number
  /** Weights of the fair share between repositories (REGATTA_REPO_WEIGHTS `owner/repo=2,...`; default 1). */
  repoWeights?: Readonly<Record<string, number>>
  /** The head poller's limits (github/poller.ts), beyond its interval. */
  headPoller?: Partial<Pick<HeadPollerOptions, 'maxRepos' | 'maxBranches' | 'maxPulls' | 'maxBackoffMs' | 'requestTimeoutMs' | 'rateLimitReserve'>>
  logger?: Logger
  page?: () => string
}

export interface RunningCi {
  service: CiService
  url: string
  /** The GitHub head poller, when polling is on (a token, and an interval above 0). */
  poller?: HeadPoller
  stop(): Promise<void>
}

export async function runCi(o: CiRunOptions): Promise<RunningCi> {
  const logger = o.logger ?? createLogger('ci')
  const nc = await connectNats(o.natsUrl, 'regatta-ci')
  // commit statuses need a token: without one, none are sent (and nothing calls GitHub)
  const github = o.githubToken ? createGitHubClient({ logger, token: o.githubToken, ...(o.githubApiUrl ? { baseUrl: o.githubApiUrl } : {}) }) : undefined
  const statuses = github ? new StatusReporter({ logger, client: github }) : undefined
  if (!statuses) logger.warn('REGATTA_GITHUB_TOKEN is not set: no commit statuses are reported, no heads are polled')
  // heads whose webhook never came: polled with the same client, claimed in KV with the webhooks
  const pollMs = o.githubPollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS
  const ledger = github && pollMs > 0 ? await HeadLedger.open({ nc, logger, ...(o.replicas ? { replicas: o.replicas } : {}) }) : undefined
  const secrets = new SecretStore({ nc, logger, ...(o.secretsKey ? { key: o.secretsKey } : {}), ...(o.replicas ? { replicas: o.replicas } : {}) })
  await secrets.start()
  if (!o.secretsKey) logger.warn('REGATTA_SECRETS_KEY is not set: repository secrets cannot be stored, and jobs that name one run without it')
  const logs = new LogArchive(nc, { ...(o.logRetentionMs ? { retentionMs: o.logRetentionMs } : {}), ...(o.replicas ? { replicas: o.replicas } : {}) })
  let service: CiService | undefined
  const schedules = new Schedules(nc, (t) => service!.trigger(t), logger, { ...(o.replicas ? { replicas: o.replicas } : {}) })
  service = new CiService({
    nc, logger, schedules, ...(statuses ? { statuses } : {}), ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}), ...(o.githubToken ? { githubToken: o.githubToken } : {}),
    ...(o.replicas ? { replicas: o.replicas } : {}), secrets, logs,
    ...(o.cancelSuperseded !== undefined ? { cancelSuperseded: o.cancelSuperseded } : {}),
    ...(o.leaseTtlMs !== undefined ? { leaseTtlMs: o.leaseTtlMs } : {}),
    ...(ledger ? { heads: ledger } : {}),
    ...(o.reconcileIntervalMs !== undefined ? { reconcileStartingMs: o.reconcileIntervalMs } : {}),
    ...(o.cacheVolumeTtlMs !== undefined ? { cacheVolumeTtlMs: o.cacheVolumeTtlMs } : {}),
    ...(o.repoWeights ? { repoWeights: o.repoWeights } : {}),
  })
  await service.start()
  const poller = github && ledger
    ? new HeadPoller({ ledger, client: github, start: (t) => service!.trigger(t), logger, intervalMs: pollMs, ...o.headPoller })
    : undefined
  await schedules.open()
  const deliveries = await KvDeliveryLog.open(nc, o.replicas)
  if (!o.webhookSecret) logger.warn('REGATTA_WEBHOOK_SECRET is not set: webhooks are refused (503)')
  const app = createCiHttp({ service, nc, logger, webhookSecret: o.webhookSecret, deliveries, logs, page: o.page ?? runsPage, ...(o.auth ? { auth: o.auth } : {}), ...(o.tls ? { tls: o.tls } : {}) })
  try {
    await app.listen({ host: o.http.host, port: o.http.port })
  } catch (err) {
    // nothing may keep the process alive when it cannot serve
    await poller?.stop()
    schedules.stop()
    secrets.stop()
    await service.stop().catch(() => undefined)
    await nc.drain().catch(() => undefined)
    throw err
  }
  const addr = app.server.address()
  const port = typeof addr === 'object' && addr ? addr.port : o.http.port
  const url = `${schemeOf(o.tls)}://${o.http.host === '0.0.0.0' ? '127.0.0.1' : o.http.host}:${port}`
  logger.info({ url }, 'CI service listening')
  poller?.start()
  return {
    service,
    url,
    ...(poller ? { poller } : {}),
    async stop() {
      // every part is stopped even when one fails (a KV write timing out under load): the
      // failure is logged, and the connection is always drained
      const step = (what: string, p: Promise<unknown> | undefined): Promise<unknown> =>
        Promise.resolve(p).catch((err: unknown) => logger.warn({ err: (err as Error)?.message ?? String(err) }, `stopping: ${what} failed`))
      await step('the HTTP server', app.close())
      await step('the head poller', poller?.stop())
      schedules.stop()
      secrets.stop()
      await step('the service', service!.stop())
      await step('statuses', statuses?.flush(2_000))
      await step('statuses', statuses?.close())
      await nc.drain().catch(() => undefined)
    },
  }
}

/** The service's settings from its environment, as DESIGN.md lists them. */
export function ciEnv(env: NodeJS.ProcessEnv = process.env): Pick<CiRunOptions, 'webhookSecret' | 'githubToken' | 'githubApiUrl' | 'publicUrl' | 'secretsKey' | 'cancelSuperseded' | 'logRetentionMs' | 'githubPollIntervalMs' | 'reconcileIntervalMs' | 'cacheVolumeTtlMs' | 'repoWeights'> {
  const cancel = env.REGATTA_CANCEL_SUPERSEDED
  if (cancel !== undefined && !['true', 'false', '1', '0'].includes(cancel)) {
    throw new RegattaError('INVALID_CONFIG', `REGATTA_CANCEL_SUPERSEDED: "${cancel}" is not true or false`)
  }
  return {
    ...(env.REGATTA_SECRETS_KEY ? { secretsKey: parseSecretsKey(env.REGATTA_SECRETS_KEY) } : {}),
    ...(cancel !== undefined ? { cancelSuperseded: cancel === 'true' || cancel === '1' } : {}),
    ...(env.REGATTA_LOG_RETENTION ? { logRetentionMs: parseDuration(env.REGATTA_LOG_RETENTION, 'REGATTA_LOG_RETENTION') } : {}),
    ...(env.REGATTA_GITHUB_POLL_INTERVAL ? { githubPollIntervalMs: pollInterval(env.REGATTA_GITHUB_POLL_INTERVAL) } : {}),
    ...(env.REGATTA_RECONCILE_INTERVAL ? { reconcileIntervalMs: reconcileInterval(env.REGATTA_RECONCILE_INTERVAL) } : {}),
    ...(env.REGATTA_CACHE_VOLUME_TTL ? { cacheVolumeTtlMs: cacheVolumeTtl(env.REGATTA_CACHE_VOLUME_TTL) } : {}),
    ...(env.REGATTA_REPO_WEIGHTS ? { repoWeights: parseRepoWeights(env.REGATTA_REPO_WEIGHTS) } : {}),
    ...(env.REGATTA_WEBHOOK_SECRET ? { webhookSecret: env.REGATTA_WEBHOOK_SECRET } : {}),
    ...(env.REGATTA_GITHUB_TOKEN ? { githubToken: env.REGATTA_GITHUB_TOKEN } : {}),
    ...(env.REGATTA_GITHUB_API_URL ? { githubApiUrl: env.REGATTA_GITHUB_API_URL } : {}),
    ...(env.REGATTA_PUBLIC_URL ? { publicUrl: env.REGATTA_PUBLIC_URL } : {}),
  }
}

/** REGATTA_GITHUB_POLL_INTERVAL: a duration, or 0 / off for no polling. */
export function pollInterval(text: string, what = 'REGATTA_GITHUB_POLL_INTERVAL'): number {
  if (/^\s*(off|0)\s*$/i.test(text)) return 0
  const ms = parseDuration(text, what)
  if (ms === 0) return 0
  if (ms < 100) throw new RegattaError('INVALID_CONFIG', `${what}: "${text}" is too short (at least 100ms; 0 or off for no polling)`)
  return ms
}

/** REGATTA_RECONCILE_INTERVAL: a duration of at least 100 ms. */
export function reconcileInterval(text: string, what = 'REGATTA_RECONCILE_INTERVAL'): number {
  const ms = parseDuration(text, what)
  if (ms < 100) throw new RegattaError('INVALID_CONFIG', `${what}: "${text}" is too short (at least 100ms)`)
  return ms
}

/** REGATTA_CACHE_VOLUME_TTL: a duration of at least 1 s, or 0 / off to keep unused cache volumes. */
export function cacheVolumeTtl(text: string, what = 'REGATTA_CACHE_VOLUME_TTL'): number {
  if (/^\s*(off|0)\s*$/i.test(text)) return 0
  const ms = parseDuration(text, what)
  if (ms === 0) return 0
  if (ms < 1_000) throw new RegattaError('INVALID_CONFIG', `${what}: "${text}" is too short (at least 1s; 0 or off to keep unused volumes)`)
  return ms
}
