// Operator calls: what operators (the `regatta` CLI over NATS, the master's HTTP API with its
// bearer token) ask the leading master to do. One union; each member is one call.
import { Type, type Static } from '@sinclair/typebox'

const AgentId = Type.String({ minLength: 1, maxLength: 256 })

export const OperatorCall = Type.Union([
  /** Maintenance: the agent takes no new work (its offers are rescinded, none are made), its running tasks go on, frameworks with tasks there get INVERSE_OFFERS. */
  Type.Object({ type: Type.Literal('DRAIN'), agentId: AgentId }),
  /** The agent takes new work again. */
  Type.Object({ type: Type.Literal('UNDRAIN'), agentId: AgentId }),
])
export type OperatorCall = Static<typeof OperatorCall>
export type OperatorCallType = OperatorCall['type']

/** The answer to every operator call that succeeds; failures are `{ error: { code, message } }`. */
export const OperatorReply = Type.Object({ ok: Type.Literal(true) })
export type OperatorReply = Static<typeof OperatorReply>
