// The operator routes of the master's HTTP API (drain, undrain...): each one a bearer-token
// check, then the same operator call the NATS subject serves (Master.operator).
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import { RegattaError } from '../../../../shared/errors/index.js'
import { OperatorReply, type OperatorCall } from '../../../../shared/protocol/index.js'

export interface OperatorRoutesOptions {
  /** Carries out an operator call (the master's one function per call). */
  operator(call: OperatorCall): Promise<OperatorReply>
  /** The bearer token operator calls must carry; none configured: every operator call is refused (403). */
  operatorToken?: string
  isLeader(): boolean
  /** How a standby answers (a redirect to the leader, or 503). */
  answerAsStandby(request: FastifyRequest, reply: FastifyReply): FastifyReply
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/**
 * Checks an `Authorization` header against the configured operator token: throws
 * OPERATOR_API_DISABLED (403) when no token is configured, UNAUTHORIZED (401) when the header is
 * missing, not a bearer token, or another token. Compared in constant time.
 */
export function checkOperatorToken(configured: string | undefined, authorization: string | undefined): void {
  if (!configured) {
    throw new RegattaError('OPERATOR_API_DISABLED', 'operator calls over HTTP are disabled: start the master with --operator-token or REGATTA_OPERATOR_TOKEN')
  }
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')
  if (!m) throw new RegattaError('UNAUTHORIZED', 'an operator call needs the header "Authorization: Bearer <operator token>"')
  if (!timingSafeEqual(digest(m[1]!), digest(configured))) throw new RegattaError('UNAUTHORIZED', 'the bearer token is not the operator token')
}

const AgentParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) })

/** Registers the operator routes; other operator routes use `operatorPreHandler` the same way. */
export function registerOperatorRoutes(app: FastifyInstance<any, any, any, any>, o: OperatorRoutesOptions): void {
  const authorize = operatorPreHandler(o.operatorToken)
  const route = (path: string, call: (params: { id: string }) => OperatorCall): void => {
    app.post<{ Params: { id: string } }>(path, {
      schema: { params: AgentParams, response: { 200: OperatorReply } },
      preHandler: authorize,
    }, async (request, reply) => {
      if (!o.isLeader()) return o.answerAsStandby(request, reply)
      return o.operator(call(request.params))
    })
  }
  route('/api/v1/agents/:id/drain', ({ id }) => ({ type: 'DRAIN', agentId: id }))
  route('/api/v1/agents/:id/undrain', ({ id }) => ({ type: 'UNDRAIN', agentId: id }))
}

/** A fastify preHandler that lets only callers with the operator token through (see checkOperatorToken). */
export function operatorPreHandler(token: string | undefined) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    try {
      checkOperatorToken(token, request.headers.authorization)
    } catch (err) {
      if ((err as RegattaError).code === 'UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="regatta operator"')
      throw err
    }
  }
}
