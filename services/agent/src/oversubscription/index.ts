// Oversubscription on an agent: the resource estimator (what its non-revocable tasks leave
// unused, offered as revocable) and the QoS controller (revocable tasks preempted when the
// non-revocable ones need their resources back).
//
//   const ovs = new OversubscriptionController(port, { intervalMs: 2_000, margin: 0.2 }, { logger })
//   ovs.start()                         // samples, estimates and preempts every intervalMs
//   heartbeat({ agentId, revocable: ovs.revocable() })
//
// A preempted task ends KILLED with reason PREEMPTED and a message saying why.
export {
  OVERSUBSCRIPTION_DEFAULTS, OversubscriptionController,
  type HostSamplers, type ObservedTask, type OversubscriptionOptions, type OversubscriptionPort, type Round,
} from './controller.js'
export {
  UsageHistory, allocationOf, estimateRevocable, toRevocableResources, unusedOf,
  type CpuMem, type EstimateOptions, type TaskUsage, type Usage, type UsageReading,
} from './estimator.js'
export { PREEMPTED, decideEvictions, hostPressure, type Eviction, type HostState, type QosInput, type RevocableTask } from './qos.js'
export { HostCpuSampler, processGroupUsage, readHostMemory } from './procfs.js'
