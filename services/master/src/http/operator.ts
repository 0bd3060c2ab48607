// The operator routes of the master's HTTP API (drain, undrain...): behind the server's access
// hook (an operator token), each the same operator call the NATS subject serves (Master.operator).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import { checkAccess } from '../../../../shared/http/index.js'
import { OperatorReply, type OperatorCall } from '../../../../shared/protocol/index.js'

export interface OperatorRoutesOptions {
  /** Carries out an operator call (the master's one function per call). */
  operator(call: OperatorCall): Promise<OperatorReply>
  isLeader(): boolean
  /** How a standby answers (a redirect to the leader, or 503). */
  answerAsStandby(request: FastifyRequest, reply: FastifyReply): FastifyReply
}

/**
 * Checks an `Authorization` header against the configured operator token (the shared check,
 * shared/http/auth.ts): OPERATOR_API_DISABLED (403) when no token is configured, UNAUTHORIZED
 * (401) when the header is missing, not a bearer token, or another token.
 */
export function checkOperatorToken(configured: string | undefined, authorization: string | undefined): void {
  checkAccess({ tokens: configured ? [{ name: 'operator', role: 'operator', token: configured }] : [], openReads: true }, 'operator', authorization)
}

const AgentParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) })

/** Registers the operator routes; the server's access hook (shared/http) lets only operator tokens through. */
export function registerOperatorRoutes(app: FastifyInstance<any, any, any, any>, o: OperatorRoutesOptions): void {
  const route = (path: string, call: (params: { id: string }) => OperatorCall): void => {
    app.post<{ Params: { id: string } }>(path, {
      schema: { params: AgentParams, response: { 200: OperatorReply } },
    }, async (request, reply) => {
      if (!o.isLeader()) return o.answerAsStandby(request, reply)
      return o.operator(call(request.params))
    })
  }
  route('/api/v1/agents/:id/drain', ({ id }) => ({ type: 'DRAIN', agentId: id }))
  route('/api/v1/agents/:id/undrain', ({ id }) => ({ type: 'UNDRAIN', agentId: id }))
}
