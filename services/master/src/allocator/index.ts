// The allocator's public surface: a pure function from a cluster snapshot to planned offers.
//
//   import { allocate } from './allocator/index.js'
//   const planned = allocate(cluster.snapshot(clock.now()))   // PlannedOffer[]
//   for (const p of planned) sendOffer(p.frameworkId, p.agentId, p.role, p.resources)
//
// See README.md in this folder for the pipeline and the quota/headroom rules.
export { allocate } from './allocate.js'
export { MIN_ALLOCATABLE_CPUS, MIN_ALLOCATABLE_MEM } from './dimensions.js'
export type {
  AllocatorAgent, AllocatorFramework, RoleConfig, RefuseFilter, Allocation, AllocationSnapshot, PlannedOffer,
} from './types.js'
