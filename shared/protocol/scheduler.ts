// The framework (scheduler) API: calls a framework sends the master and the events it receives.
import { Type, type Static } from '@sinclair/typebox'
import { Attributes, CreateOperation, DestroyOperation, ReserveOperation, Resource, UnreserveOperation } from './resources.js'
import { TaskSpec, TaskStatus } from './tasks.js'

const Id = Type.String({ minLength: 1, maxLength: 256 })
/** Framework ids travel in subject names and KV keys: letters, digits, `.`, `_`, `-`. */
export const FrameworkId = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-][A-Za-z0-9._-]*$' })

export const FrameworkInfo = Type.Object({
  /** Set when re-subscribing after a failover. */
  id: Type.Optional(FrameworkId),
  name: Type.String({ minLength: 1, maxLength: 256 }),
  /** Roles the framework takes resources under, e.g. `ci/main`; nested roles use `/`. */
  roles: Type.Array(Type.String({ minLength: 1, maxLength: 128, pattern: '^([*]|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)$' }), { minItems: 1, maxItems: 64 }),
  /** Opt in to revocable (oversubscribed) resources. */
  revocable: Type.Optional(Type.Boolean()),
  /** How long the master keeps the framework's tasks after it disconnects. */
  failoverTimeoutMs: Type.Optional(Type.Integer({ minimum: 0 })),
  principal: Type.Optional(Type.String({ maxLength: 128 })),
})
export type FrameworkInfo = Static<typeof FrameworkInfo>

export const Filters = Type.Object({
  /** Do not offer these agents' resources back to this framework for this long (default 5 s). */
  refuseSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 31_536_000 })),
})
export type Filters = Static<typeof Filters>

export const Operation = Type.Union([
  Type.Object({ type: Type.Literal('LAUNCH'), tasks: Type.Array(TaskSpec, { minItems: 1, maxItems: 10_000 }) }),
  // dynamic reservations and persistent volumes (see their schemas in resources.ts)
  ReserveOperation, UnreserveOperation, CreateOperation, DestroyOperation,
])
export type Operation = Static<typeof Operation>

/** A role name as frameworks use it: `*`, or `ci/main` (nested roles use `/`). */
const RoleName = Type.String({ minLength: 1, maxLength: 128, pattern: '^([*]|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)$' })

/**
 * What a framework waits for (REQUEST): `count` tasks of one shape (scalars by name: `cpus`,
 * `mem` MiB, `disk` MiB) in one pool, under `role` (absent: any of the framework's roles).
 */
export const ResourceRequest = Type.Object({
  pool: Type.String({ minLength: 1, maxLength: 128 }),
  role: Type.Optional(RoleName),
  resources: Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.Number({ minimum: 0 })),
  count: Type.Integer({ minimum: 1, maximum: 100_000 }),
})
export type ResourceRequest = Static<typeof ResourceRequest>

export const Call = Type.Union([
  Type.Object({ type: Type.Literal('SUBSCRIBE'), framework: FrameworkInfo }),
  Type.Object({ type: Type.Literal('ACCEPT'), frameworkId: FrameworkId, offerIds: Type.Array(Id, { minItems: 1, maxItems: 1000 }), operations: Type.Array(Operation, { maxItems: 1000 }), filters: Type.Optional(Filters) }),
  Type.Object({ type: Type.Literal('DECLINE'), frameworkId: FrameworkId, offerIds: Type.Array(Id, { minItems: 1, maxItems: 100_000 }), filters: Type.Optional(Filters) }),
  Type.Object({ type: Type.Literal('REVIVE'), frameworkId: FrameworkId, roles: Type.Optional(Type.Array(Type.String())) }),
  Type.Object({ type: Type.Literal('SUPPRESS'), frameworkId: FrameworkId, roles: Type.Optional(Type.Array(Type.String())) }),
  Type.Object({ type: Type.Literal('KILL'), frameworkId: FrameworkId, taskId: Id, agentId: Type.Optional(Id), gracePeriodMs: Type.Optional(Type.Integer({ minimum: 0 })) }),
  Type.Object({ type: Type.Literal('ACKNOWLEDGE'), frameworkId: FrameworkId, taskId: Id, agentId: Type.Optional(Id), uuid: Id }),
  Type.Object({ type: Type.Literal('RECONCILE'), frameworkId: FrameworkId, tasks: Type.Array(Type.Object({ taskId: Id, agentId: Type.Optional(Id) }), { maxItems: 100_000 }) }),
  Type.Object({ type: Type.Literal('TEARDOWN'), frameworkId: Id }),
  /** Replaces the framework's whole outstanding demand (an empty list clears it); re-sent after a re-subscription or a new leader. */
  Type.Object({ type: Type.Literal('REQUEST'), frameworkId: FrameworkId, requests: Type.Array(ResourceRequest, { maxItems: 10_000 }) }),
  /** Tells the master the framework is alive (frameworks reach the master only over NATS). */
  Type.Object({ type: Type.Literal('KEEPALIVE'), frameworkId: Id }),
])
export type Call = Static<typeof Call>
export type CallType = Call['type']

export const Offer = Type.Object({
  id: Id,
  frameworkId: FrameworkId,
  agentId: Id,
  hostname: Type.String(),
  pool: Type.String(),
  attributes: Attributes,
  /** The role the resources are allocated to. */
  role: Type.String(),
  resources: Type.Array(Resource),
})
export type Offer = Static<typeof Offer>

/**
 * Maintenance (Mesos' inverse offer): the master asks the framework to move its work off an
 * agent, which is unavailable from `startMs` (for `durationMs`, or for good when absent). The
 * agent takes no new tasks; the ones running there go on until they end.
 */
export const InverseOffer = Type.Object({
  id: Id,
  agentId: Id,
  frameworkId: FrameworkId,
  unavailability: Type.Object({ startMs: Type.Number(), durationMs: Type.Optional(Type.Number({ minimum: 0 })) }),
})
export type InverseOffer = Static<typeof InverseOffer>

export const Event = Type.Union([
  Type.Object({ type: Type.Literal('SUBSCRIBED'), frameworkId: FrameworkId, heartbeatIntervalMs: Type.Integer(), masterId: Type.String(), epoch: Type.Integer() }),
  /** `epoch`: the leader that made the offers (offers of an older leader are void). */
  Type.Object({ type: Type.Literal('OFFERS'), offers: Type.Array(Offer), epoch: Type.Optional(Type.Integer()) }),
  Type.Object({ type: Type.Literal('RESCIND'), offerId: Id }),
  Type.Object({ type: Type.Literal('UPDATE'), status: TaskStatus }),
  Type.Object({ type: Type.Literal('FAILURE'), agentId: Id, message: Type.Optional(Type.String()) }),
  Type.Object({ type: Type.Literal('HEARTBEAT') }),
  Type.Object({ type: Type.Literal('ERROR'), message: Type.String(), code: Type.Optional(Type.String()) }),
  /** Agents the framework has tasks on are being drained (see InverseOffer). */
  Type.Object({ type: Type.Literal('INVERSE_OFFERS'), inverseOffers: Type.Array(InverseOffer) }),
])
export type Event = Static<typeof Event>

/** What the master answers to a call: SUBSCRIBE gets SUBSCRIBED, every other call `{ ok: true }`. */
export const CallReply = Type.Union([
  /** `epoch` tells the framework which leader answered: a new one means offers it holds are void. */
  Type.Object({ ok: Type.Literal(true), epoch: Type.Optional(Type.Integer()) }),
  Type.Object({ type: Type.Literal('SUBSCRIBED'), frameworkId: FrameworkId, heartbeatIntervalMs: Type.Integer(), masterId: Type.String(), epoch: Type.Integer() }),
])
export type CallReply = Static<typeof CallReply>

/** One chunk of a task's output, published on the framework's output subject. */
export const OutputChunk = Type.Object({
  taskId: Id,
  stream: Type.Union([Type.Literal('stdout'), Type.Literal('stderr')]),
  seq: Type.Integer({ minimum: 0 }),
  data: Type.String(),
})
export type OutputChunk = Static<typeof OutputChunk>
