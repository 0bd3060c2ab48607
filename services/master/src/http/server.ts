// The master's HTTP server: health, Prometheus metrics, the cluster state API and the web page.
// A standby sends API and page requests to the leader (307), or answers 503 while none is known.
// HTTPS when given a certificate (shared/http/tls.ts); the page's shell is public, its data not.
import Fastify, {
  LogController, type FastifyInstance, type FastifyReply, type FastifyRequest,
  type RawReplyDefaultExpression, type RawRequestDefaultExpression, type RawServerDefault,
} from 'fastify'
import type { Logger } from 'pino'
import { Type } from '@sinclair/typebox'
import { silentLogger } from '../../../../shared/log/index.js'
import { RegattaError } from '../../../../shared/errors/index.js'
import { ClusterState, type OperatorCall, type OperatorReply } from '../../../../shared/protocol/index.js'
import type { MasterMetrics } from '../metrics.js'
import { errorBody, installErrorHandlers } from './errors.js'
import { PAGE_HEADERS, renderPage } from './page.js'
import { registerOperatorRoutes } from './operator.js'
import { registerReservationRoutes } from './reservations.js'
import { httpAuthFrom, installAccessHook, type HttpAuth, type HttpTls } from '../../../../shared/http/index.js'

export interface MasterHttpOptions {
  /** A snapshot of the cluster as this master sees it. */
  getState(): ClusterState
  metrics: MasterMetrics
  /** Whether this master holds the lease right now. */
  isLeader(): boolean
  /** Base URL of the leading master's HTTP server (e.g. `http://10.0.0.2:5050`), when known. */
  leaderHttpUrl(): string | undefined
  logger?: Logger
  /** Operator calls (drain, undrain...); without it the operator routes answer 503. */
  operator?(call: OperatorCall): Promise<OperatorReply>
  /** Bearer token of the operator routes; none: they answer 403. */
  operatorToken?: string
  /**
   * Who may read and who may write (shared/http/auth.ts); default: `operatorToken` and what
   * REGATTA_READ_TOKEN / REGATTA_TOKENS_FILE hold (httpAuthFrom).
   */
  auth?: HttpAuth
  /** Serve HTTPS with this certificate and key (REGATTA_HTTP_CERT / REGATTA_HTTP_KEY); none: plain HTTP. */
  tls?: HttpTls
}

const Health = Type.Object({ status: Type.Literal('ok'), leader: Type.Boolean() })

/** The fastify instance `createMasterHttp` returns (its logger is the pino one given). */
export type MasterHttp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, Logger>

/** Builds the server; the caller calls `listen` (and `close`). */
export function createMasterHttp(options: MasterHttpOptions): MasterHttp {
  const app = Fastify({
    loggerInstance: options.logger ?? silentLogger(),
    // per-request lines would be mostly the page's 2 s polling; errors are logged by the error handler
    logController: new LogController({ disableRequestLogging: true }),
    ...(options.tls ? { https: { cert: options.tls.cert, key: options.tls.key } } : {}),
  }) as unknown as MasterHttp

  installErrorHandlers(app)
  // every route reads (a read or operator token, or open reads) or writes (an operator token);
  // /health is open, and so is the page's shell: its script asks for a token and fetches the state
  const auth = options.auth ?? httpAuthFrom({ ...(options.operatorToken ? { operatorToken: options.operatorToken } : {}) }, { ...process.env, REGATTA_OPERATOR_TOKEN: '' })
  installAccessHook(app, auth, { public: ['/health', '/'] })
  if (!auth.openReads && auth.tokens.length === 0) app.log.warn('no HTTP token is configured: every read but /health answers 401 (set REGATTA_READ_TOKEN or REGATTA_OPERATOR_TOKEN)')

  /** On a standby: sends the request on to the leader (same path and query), or 503 while none is known. */
  const answerAsStandby = (request: FastifyRequest, reply: FastifyReply, leader: string | undefined): FastifyReply => {
    if (leader) return reply.redirect(leader.replace(/\/+$/, '') + request.url, 307)
    return reply.code(503).header('retry-after', '1').send(errorBody('NOT_LEADER', 'no leading master is known yet'))
  }

  app.get('/health', { schema: { response: { 200: Health } } }, async () => {
    return { status: 'ok' as const, leader: options.isLeader() }
  })

  app.get('/metrics', async (_request, reply) => {
    options.metrics.observeState(options.getState())
    const text = await options.metrics.metricsText()
    return reply.type(options.metrics.contentType).send(text)
  })

  app.get('/api/v1/state', { schema: { response: { 200: ClusterState } } }, async (request, reply) => {
    if (!options.isLeader()) return answerAsStandby(request, reply, options.leaderHttpUrl())
    return options.getState()
  })

  const operatorRoutes = {
    operator: options.operator ?? (() => Promise.reject(new RegattaError('NOT_LEADER', 'this server carries out no operator calls'))),
    isLeader: options.isLeader,
    answerAsStandby: (request: FastifyRequest, reply: FastifyReply) => answerAsStandby(request, reply, options.leaderHttpUrl()),
  }
  registerOperatorRoutes(app, operatorRoutes)
  registerReservationRoutes(app, operatorRoutes)

  app.get('/', async (request, reply) => {
    // the state goes into the page only where anyone may read it (regatta dev); otherwise the
    // script fetches it with the token the reader gives
    if (options.isLeader()) return reply.headers(PAGE_HEADERS).send(renderPage(auth.openReads ? options.getState() : undefined))
    const leader = options.leaderHttpUrl()
    if (leader) return answerAsStandby(request, reply, leader)
    // a standby that knows no leader still serves the page (a browser shows why it is empty); it polls until one appears
    return reply.headers(PAGE_HEADERS).send(renderPage(undefined, 'no leading master is known yet; retrying'))
  })

  return app
}
