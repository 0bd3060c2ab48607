// The reservation and role routes of the master's HTTP API: operator calls behind the server's
// access hook (an operator token) like the other operator routes, carried out by the same function as on NATS.
//
//   POST   /api/v1/reservations   { agentId, role, resources, principal? }   RESERVE
//   DELETE /api/v1/reservations   { agentId, role, resources, principal? }   UNRESERVE
//   PUT    /api/v1/roles/:role    { weight?, quota? }  (quota null removes it; `ci%2Fmain` for ci/main)
import type { FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { RegattaError } from '../../../../shared/errors/index.js'
import { ReserveCall, SetQuotaCall, SetWeightCall, UnreserveCall, validate } from '../../../../shared/protocol/index.js'
import type { OperatorRoutesOptions } from './operator.js'

// Bodies are checked with the protocol's own schemas (as on NATS, same messages); fastify's
// validator would coerce a string into an array while it tries `resources`' union.
const ReserveBody = Type.Omit(ReserveCall, ['type'])
const UnreserveBody = Type.Omit(UnreserveCall, ['type'])
const RoleBody = Type.Object({
  weight: Type.Optional(SetWeightCall.properties.weight),
  quota: Type.Optional(SetQuotaCall.properties.quota),
}, { additionalProperties: false })

export function registerReservationRoutes(app: FastifyInstance<any, any, any, any>, o: OperatorRoutesOptions): void {
  app.post('/api/v1/reservations', async (request, reply) => {
    if (!o.isLeader()) return o.answerAsStandby(request, reply)
    return o.operator({ type: 'RESERVE', ...validate(ReserveBody, request.body, 'reservation') })
  })

  app.delete('/api/v1/reservations', async (request, reply) => {
    if (!o.isLeader()) return o.answerAsStandby(request, reply)
    return o.operator({ type: 'UNRESERVE', ...validate(UnreserveBody, request.body, 'reservation') })
  })

  app.put<{ Params: { role: string } }>('/api/v1/roles/:role', async (request, reply) => {
    if (!o.isLeader()) return o.answerAsStandby(request, reply)
    const body = validate(RoleBody, request.body, 'role settings')
    if (body.weight === undefined && body.quota === undefined) {
      throw new RegattaError('INVALID_MESSAGE', 'invalid role settings: give "weight" and/or "quota" (null removes the quota)')
    }
    const role = request.params.role
    if (body.weight !== undefined) await o.operator({ type: 'SET_WEIGHT', role, weight: body.weight })
    if (body.quota !== undefined) await o.operator({ type: 'SET_QUOTA', role, quota: body.quota })
    return { ok: true as const }
  })
}
