// The allocator's view of the cluster (a snapshot) and what it decides (offers to make).
// The allocator is pure: it reads a snapshot and returns planned offers; the master applies them.
import type { Attributes, Resource } from '../../../../shared/protocol/index.js'

export interface AllocatorAgent {
  id: string
  hostname: string
  pool: string
  attributes: Attributes
  /** Everything the agent has (reserved and unreserved, not revocable). */
  total: Resource[]
  /** What is neither used by tasks nor out in offers: reserved, unreserved and revocable pieces. */
  available: Resource[]
  /** A draining agent gets no new offers. */
  draining?: boolean
}

export interface AllocatorFramework {
  id: string
  roles: string[]
  /** Opted in to revocable resources. */
  revocable: boolean
  /** Roles the framework does not want offers for right now (SUPPRESS). */
  suppressedRoles: readonly string[]
  /** Disconnected frameworks keep their allocation but get no offers. */
  active: boolean
}

export interface RoleConfig {
  /** Share divisor for DRF; default 1. */
  weight?: number
  /** Guaranteed amount per scalar name (e.g. { cpus: 4, mem: 8192 }): allocated before fair sharing. */
  quota?: Record<string, number>
}

/** A refuse filter from DECLINE (or ACCEPT with filters): while active, the framework is not offered resources on this agent that are contained in `resources`. */
export interface RefuseFilter {
  frameworkId: string
  agentId: string
  resources: Resource[]
  until: number
}

export interface Allocation {
  frameworkId: string
  role: string
  /** Resources used by tasks plus resources out in offers. */
  resources: Resource[]
}

export interface AllocationSnapshot {
  now: number
  agents: AllocatorAgent[]
  frameworks: AllocatorFramework[]
  roles: Record<string, RoleConfig>
  allocations: Allocation[]
  filters: RefuseFilter[]
  /**
   * Seed of the order agents are visited in (shuffled so no agent is always first). Optional:
   * by default it is derived from `now`, so a pass is deterministic given the snapshot.
   */
  seed?: number
}

/**
 * One offer to make. `resources` may share objects with the snapshot (pieces offered whole):
 * resources are values, and neither side mutates them.
 */
export interface PlannedOffer {
  frameworkId: string
  role: string
  agentId: string
  resources: Resource[]
}
