// The cluster state as the master reports it (`/api/v1/state`, `regatta status`, the web page).
import { Type, type Static } from '@sinclair/typebox'
import { Attributes, Resource } from './resources.js'
import { TaskState } from './tasks.js'
import { AgentDisk, OrphanCount, Orphans } from './agent.js'

/** Scalar totals by resource name, e.g. { cpus: 4, mem: 8192, disk: 20000, ports: 1001 }. */
export const Amounts = Type.Record(Type.String(), Type.Number())
export type Amounts = Static<typeof Amounts>

/** `recovering`: known from the registry after a master failover, not re-registered yet. */
export const AgentState = Type.Union([Type.Literal('active'), Type.Literal('recovering'), Type.Literal('unreachable'), Type.Literal('draining')])
export type AgentState = Static<typeof AgentState>

export const AgentView = Type.Object({
  id: Type.String(),
  hostname: Type.String(),
  pool: Type.String(),
  attributes: Attributes,
  containerizer: Type.String(),
  state: AgentState,
  registeredAt: Type.Number(),
  lastHeartbeatAt: Type.Number(),
  resources: Type.Array(Resource),
  total: Amounts,
  used: Amounts,
  offered: Amounts,
  tasks: Type.Integer(),
  /** ms since the agent last ran a task (or since registering), while it runs none. */
  idleSince: Type.Optional(Type.Number()),
  /** Leftovers its reaper found and removed since the agent started (from its heartbeats). */
  orphans: Type.Optional(Orphans),
  /** The disk its sandboxes take, against its budget (from its heartbeats). */
  disk: Type.Optional(AgentDisk),
})
export type AgentView = Static<typeof AgentView>

export const FrameworkView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  roles: Type.Array(Type.String()),
  active: Type.Boolean(),
  revocable: Type.Boolean(),
  registeredAt: Type.Number(),
  tasks: Type.Integer(),
  offers: Type.Integer(),
  used: Amounts,
})
export type FrameworkView = Static<typeof FrameworkView>

export const TaskView = Type.Object({
  taskId: Type.String(),
  name: Type.Optional(Type.String()),
  frameworkId: Type.String(),
  agentId: Type.String(),
  role: Type.String(),
  state: TaskState,
  resources: Amounts,
  updatedAt: Type.Number(),
})
export type TaskView = Static<typeof TaskView>

export const OfferView = Type.Object({
  id: Type.String(),
  frameworkId: Type.String(),
  agentId: Type.String(),
  role: Type.String(),
  resources: Amounts,
  createdAt: Type.Number(),
})
export type OfferView = Static<typeof OfferView>

export const RoleView = Type.Object({
  name: Type.String(),
  weight: Type.Number(),
  quota: Type.Optional(Amounts),
  allocated: Amounts,
})
export type RoleView = Static<typeof RoleView>

/** Demand of one pool: what frameworks asked for (REQUEST) and the part its free resources cannot fit. */
export const PoolDemand = Type.Object({
  pool: Type.String(),
  requested: Amounts,
  unmet: Amounts,
  /** Tasks asked for (the sum of the requests' counts). */
  jobs: Type.Integer(),
  /** Of those, the tasks that fit on no active, non-draining agent of the pool. */
  unmetJobs: Type.Integer(),
})
export type PoolDemand = Static<typeof PoolDemand>

export const ClusterState = Type.Object({
  masterId: Type.String(),
  leader: Type.Union([Type.Null(), Type.Object({ id: Type.String(), epoch: Type.Integer(), httpUrl: Type.Optional(Type.String()) })]),
  startedAt: Type.Number(),
  now: Type.Number(),
  total: Amounts,
  used: Amounts,
  offered: Amounts,
  agents: Type.Array(AgentView),
  frameworks: Type.Array(FrameworkView),
  tasks: Type.Array(TaskView),
  offers: Type.Array(OfferView),
  roles: Type.Array(RoleView),
  /** One entry per pool with any demand, by pool name. */
  demand: Type.Array(PoolDemand),
  /** Orphans the agents found and reaped, summed over the agents listed. */
  orphans: Type.Optional(OrphanCount),
})
export type ClusterState = Static<typeof ClusterState>
