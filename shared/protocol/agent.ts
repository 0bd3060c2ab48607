// Messages between agents and the leading master.
import { Type, type Static } from '@sinclair/typebox'
import { Attributes, Resource, VolumeId } from './resources.js'
import { TaskInfo, TaskStatus } from './tasks.js'

export const AgentInfo = Type.Object({
  /** Chosen by the agent once and kept in its work dir, so a restarted agent is the same agent. */
  id: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._-]+$' }),
  hostname: Type.String({ maxLength: 256 }),
  pool: Type.String({ minLength: 1, maxLength: 128 }),
  attributes: Attributes,
  resources: Type.Array(Resource, { maxItems: 256 }),
  containerizer: Type.Union([Type.Literal('docker'), Type.Literal('process')]),
  version: Type.Optional(Type.String()),
})
export type AgentInfo = Static<typeof AgentInfo>

/** Register (or re-register after a restart or a master failover) with the tasks the agent runs. */
export const RegisterAgent = Type.Object({
  agent: AgentInfo,
  tasks: Type.Array(Type.Object({ task: TaskInfo, status: TaskStatus }), { maxItems: 100_000 }),
})
export type RegisterAgent = Static<typeof RegisterAgent>

export const AgentRegistered = Type.Object({
  agentId: Type.String(),
  epoch: Type.Integer({ minimum: 0 }),
  heartbeatIntervalMs: Type.Integer({ minimum: 1 }),
  /** Tasks the master knows on this agent but the agent did not report (the agent should kill them if it finds them). */
  killTaskIds: Type.Optional(Type.Array(Type.String())),
})
export type AgentRegistered = Static<typeof AgentRegistered>

/** Leftovers of one kind an agent found (no task of its owns them) and removed, since it started. */
export const OrphanCount = Type.Object({
  found: Type.Integer({ minimum: 0 }),
  reaped: Type.Integer({ minimum: 0 }),
})
export type OrphanCount = Static<typeof OrphanCount>

/**
 * What an agent's reaper found and removed since the agent started: Docker containers with its
 * labels, process groups it started, and sandboxes under its work dir, that no task of its owns
 * (after a restart, a crash). `found` and `reaped` are the sums of the three.
 */
export const Orphans = Type.Object({
  found: Type.Integer({ minimum: 0 }),
  reaped: Type.Integer({ minimum: 0 }),
  containers: OrphanCount,
  processes: OrphanCount,
  sandboxes: OrphanCount,
})
export type Orphans = Static<typeof Orphans>

/**
 * The disk an agent's sandboxes take (MiB): those of running tasks and those kept after their
 * task ended; `budgetMb` bounds the sum (kept sandboxes are evicted, least recently used
 * first, to stay under it). `evicted`: kept sandboxes removed for the budget since it started.
 */
export const AgentDisk = Type.Object({
  usedMb: Type.Number({ minimum: 0 }),
  budgetMb: Type.Optional(Type.Number({ minimum: 0 })),
  retained: Type.Integer({ minimum: 0 }),
  evicted: Type.Integer({ minimum: 0 }),
})
export type AgentDisk = Static<typeof AgentDisk>

export const AgentHeartbeat = Type.Object({
  agentId: Type.String({ minLength: 1 }),
  /** Resources currently estimated as revocable (oversubscription); absent when not estimated. */
  revocable: Type.Optional(Type.Array(Resource)),
  /** The agent's reaper counters (absent from agents without a reaper). */
  orphans: Type.Optional(Orphans),
  /** The disk its sandboxes take, against its budget. */
  disk: Type.Optional(AgentDisk),
})
export type AgentHeartbeat = Static<typeof AgentHeartbeat>

export const HeartbeatReply = Type.Object({ epoch: Type.Integer({ minimum: 0 }) })

/** An agent stopping with no task left says so, and the master forgets it at once (not after --agent-gone). */
export const UnregisterAgent = Type.Object({ agentId: Type.String({ minLength: 1, maxLength: 128 }) })
export type UnregisterAgent = Static<typeof UnregisterAgent>
export type HeartbeatReply = Static<typeof HeartbeatReply>

/** A persistent volume on an agent: its id is unique within its role there. */
export const VolumeRef = Type.Object({ role: Type.String({ minLength: 1, maxLength: 128 }), id: VolumeId })
export type VolumeRef = Static<typeof VolumeRef>

/** Commands from the leading master to one agent; each carries the master's epoch (fencing). */
export const AgentCommand = Type.Union([
  Type.Object({ type: Type.Literal('LAUNCH'), epoch: Type.Integer(), tasks: Type.Array(TaskInfo, { minItems: 1, maxItems: 10_000 }) }),
  Type.Object({ type: Type.Literal('KILL'), epoch: Type.Integer(), frameworkId: Type.String(), taskId: Type.String(), gracePeriodMs: Type.Optional(Type.Integer({ minimum: 0 })) }),
  Type.Object({ type: Type.Literal('SHUTDOWN_FRAMEWORK'), epoch: Type.Integer(), frameworkId: Type.String() }),
  /** Persistent volumes just made (CREATE): their directories start empty (anything left there goes). */
  Type.Object({ type: Type.Literal('CREATE_VOLUMES'), epoch: Type.Integer(), volumes: Type.Array(VolumeRef, { minItems: 1, maxItems: 64 }) }),
  /** Persistent volumes destroyed (DESTROY): their directories and all they hold go. */
  Type.Object({ type: Type.Literal('DESTROY_VOLUMES'), epoch: Type.Integer(), volumes: Type.Array(VolumeRef, { minItems: 1, maxItems: 64 }) }),
])
export type AgentCommand = Static<typeof AgentCommand>

/** Published by a master when it starts to lead. */
export const LeaderElected = Type.Object({ masterId: Type.String(), epoch: Type.Integer({ minimum: 0 }) })
export type LeaderElected = Static<typeof LeaderElected>

export const CommandReply = Type.Object({ ok: Type.Literal(true) })
export type CommandReply = Static<typeof CommandReply>
