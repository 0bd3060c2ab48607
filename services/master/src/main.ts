// Entry of `regatta master`: reads config, connects to NATS, wires the master and its HTTP API.
import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import { connectNats } from '../../../shared/nats/index.js'
import { createLogger, type Logger } from '../../../shared/log/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import type { HostPort } from '../../../shared/config/index.js'
import { Master, type MasterConfig } from './master.js'
import { MasterMetrics } from './metrics.js'
import { createMasterHttp } from './http/index.js'
import { schemeOf, type HttpAuth, type HttpTls } from '../../../shared/http/index.js'

export interface MasterRunOptions {
  natsUrl: string
  id?: string
  http?: HostPort
  /** The URL others reach this master's HTTP API at (for redirects); default from `http`. */
  advertiseUrl?: string
  config?: Partial<MasterConfig>
  logger?: Logger
  /** Bearer token of the operator HTTP routes (drain, undrain...); default REGATTA_OPERATOR_TOKEN; none: they answer 403. */
  operatorToken?: string
  /** Who may read and write over HTTP (shared/http/auth.ts); default: operatorToken and REGATTA_READ_TOKEN / REGATTA_TOKENS_FILE. */
  auth?: HttpAuth
  /** HTTPS with this certificate and key (httpTlsFrom: --http-cert/--http-key, REGATTA_HTTP_CERT/KEY); none: plain HTTP. */
  tls?: HttpTls
}

/**
 * The operator token from the flag, else from REGATTA_OPERATOR_TOKEN (an empty one counts as
 * none). It travels in an HTTP header: printable ASCII without spaces, at least 8 characters.
 */
export function operatorTokenFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const [what, token] = flag !== undefined ? ['--operator-token', flag] : ['REGATTA_OPERATOR_TOKEN', env.REGATTA_OPERATOR_TOKEN]
  if (token === undefined || token === '') return undefined
  if (!/^[\x21-\x7e]{8,512}$/.test(token)) {
    throw new RegattaError('INVALID_CONFIG', `${what}: the operator token must be 8 to 512 printable ASCII characters without spaces`)
  }
  return token
}

export interface RunningMaster {
  master: Master
  httpUrl?: string
  stop(): Promise<void>
}

export async function runMaster(o: MasterRunOptions): Promise<RunningMaster> {
  const operatorToken = operatorTokenFrom(o.operatorToken)
  const id = o.id ?? `master-${hostname().replace(/[^A-Za-z0-9-]/g, '-')}-${randomUUID().slice(0, 6)}`
  const logger = (o.logger ?? createLogger('master')).child({ masterId: id })
  const nc = await connectNats(o.natsUrl, `regatta-master-${id}`)
  const metrics = new MasterMetrics()
  const scheme = schemeOf(o.tls)
  const advertise = o.advertiseUrl ?? (o.http ? `${scheme}://${o.http.host === '0.0.0.0' ? '127.0.0.1' : o.http.host}:${o.http.port}` : undefined)
  const master = new Master({ nc, id, logger, metrics, config: o.config, ...(advertise ? { httpUrl: advertise } : {}) })
  await master.start()
  let http: ReturnType<typeof createMasterHttp> | undefined
  let httpUrl: string | undefined
  if (o.http) {
    http = createMasterHttp({
      getState: () => master.state(),
      metrics,
      isLeader: () => master.isLeader,
      leaderHttpUrl: () => master.leaderInfo()?.httpUrl,
      logger,
      operator: (call) => master.operator(call),
      ...(operatorToken ? { operatorToken } : {}),
      ...(o.auth ? { auth: o.auth } : {}),
      ...(o.tls ? { tls: o.tls } : {}),
    })
    await http.listen({ host: o.http.host, port: o.http.port })
    const addr = http.server.address()
    httpUrl = typeof addr === 'object' && addr ? `${scheme}://${o.http.host === '0.0.0.0' ? '127.0.0.1' : o.http.host}:${addr.port}` : advertise
    logger.info({ url: httpUrl }, 'master HTTP API listening')
  }
  return {
    master,
    ...(httpUrl ? { httpUrl } : {}),
    async stop() {
      await master.stop()
      await http?.close()
      await nc.drain().catch(() => undefined)
    },
  }
}
