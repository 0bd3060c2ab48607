// Operator calls: what operators (the `regatta` CLI over NATS, the master's HTTP API with its
// bearer token) ask the leading master to do. One union; each member is one call.
import { Type, type Static } from '@sinclair/typebox'
import { Resource } from './resources.js'

const AgentId = Type.String({ minLength: 1, maxLength: 256 })
/** A role a reservation or a setting names: not `*`; nested roles use `/` (`ci/main`). */
const RoleName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$' })
/** Resources as a list, or in the agent's `--resources` syntax (`cpus:2;mem:4096`). */
const OperatorResources = Type.Union([Type.Array(Resource, { minItems: 1, maxItems: 256 }), Type.String({ minLength: 1, maxLength: 4096 })])

/** A role's quota guarantee per scalar (`{ cpus: 4, mem: 8192 }`); null removes it. Kept in the registry. */
export const SetQuotaCall = Type.Object({ type: Type.Literal('SET_QUOTA'), role: RoleName, quota: Type.Union([Type.Null(), Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.Number({ minimum: 0 }))]) })
/** A role's weight: its share is divided by it (default 1). Kept in the registry. */
export const SetWeightCall = Type.Object({ type: Type.Literal('SET_WEIGHT'), role: RoleName, weight: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 }) })
/** Reserves unreserved resources of the agent, free now (its offers are rescinded when they hold them), for the role. */
export const ReserveCall = Type.Object({ type: Type.Literal('RESERVE'), agentId: AgentId, role: RoleName, resources: OperatorResources, principal: Type.Optional(Type.String({ maxLength: 128 })) })
/** Gives back the role's dynamic reservations of the agent (free now); static ones stay. */
export const UnreserveCall = Type.Object({ type: Type.Literal('UNRESERVE'), agentId: AgentId, role: RoleName, resources: OperatorResources, principal: Type.Optional(Type.String({ maxLength: 128 })) })

export const OperatorCall = Type.Union([
  /** Maintenance: the agent takes no new work (its offers are rescinded, none are made), its running tasks go on, frameworks with tasks there get INVERSE_OFFERS. */
  Type.Object({ type: Type.Literal('DRAIN'), agentId: AgentId }),
  /** The agent takes new work again. */
  Type.Object({ type: Type.Literal('UNDRAIN'), agentId: AgentId }),
  // roles and reservations (see the schemas above)
  SetQuotaCall, SetWeightCall, ReserveCall, UnreserveCall,
])
export type OperatorCall = Static<typeof OperatorCall>
export type OperatorCallType = OperatorCall['type']

/** The answer to every operator call that succeeds; failures are `{ error: { code, message } }`. */
export const OperatorReply = Type.Object({ ok: Type.Literal(true) })
export type OperatorReply = Static<typeof OperatorReply>
