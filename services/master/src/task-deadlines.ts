// Bounds on the master's waits for tasks, as pure functions of the cluster state:
// - the start deadline: a task still STAGING or STARTING `taskStartTimeoutMs` after the master
//   launched it (or first heard of it, after a failover) is killed and reported LOST with
//   reason TASK_START_TIMEOUT; its framework is then not offered that agent for a while, so
//   that the task is retried elsewhere (Marathon's task_launch_timeout, with a hold);
// - stranded tasks: a framework asked about a task on an agent that did not re-register after
//   a failover and was answered UNREACHABLE; when that agent is removed (gone), or comes back
//   without the task, the framework hears GONE or LOST, rather than nothing ever again;
// - no second copy: an agent that comes back with a task the master reported ended is told
//   to kill it (its framework has launched it again elsewhere; master.ts, Cluster.hasEnded).
import type { RefuseFilter } from './allocator/types.js'
import type { Cluster, TaskEntry } from './cluster.js'
import { add } from '../../../shared/resources/index.js'

/** The reason of the LOST update of a task that did not reach RUNNING in time. */
export const REASON_TASK_START_TIMEOUT = 'TASK_START_TIMEOUT'

/** The states a task waits in before RUNNING: the agent got it / is pulling, checking out, starting. */
const STARTING_STATES = new Set(['STAGING', 'STARTING'])

/**
 * The tasks past their start deadline: STAGING or STARTING for more than `timeoutMs` since the
 * master launched them, on an agent that is active (an unreachable agent's tasks are
 * UNREACHABLE and bounded by the agent-gone timeout instead).
 */
export function overdueStarts(cluster: Cluster, now: number, timeoutMs: number): TaskEntry[] {
  const out: TaskEntry[] = []
  for (const t of cluster.tasks.values()) {
    if (!STARTING_STATES.has(t.state) || now - t.launchedAt <= timeoutMs) continue
    if (cluster.agents.get(t.info.agentId)?.state !== 'active') continue
    out.push(t)
  }
  return out
}

/** The message of the LOST update: what waited, how long, and where. */
export function startTimeoutMessage(t: TaskEntry, now: number, timeoutMs: number): string {
  return `the task did not reach RUNNING within the task start timeout (${duration(timeoutMs)}): ` +
    `still ${t.state} on agent ${t.info.agentId} ${duration(now - t.launchedAt)} after its launch; it was killed there`
}

/** "800ms", "45s", "10m", "1h5m": a duration for people. */
export function duration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))}ms`
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`
  const h = Math.floor(m / 60)
  return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`
}

/** A framework not offered an agent until `until` (a task of it timed out starting there). */
export interface AgentHold {
  frameworkId: string
  agentId: string
  until: number
}

/**
 * The holds as refuse filters for the allocator: each covers all the agent has now (its
 * resources and revocable estimate), so no offer of that agent reaches the framework. Kept
 * apart from DECLINE's filters because a REVIVE clears those, and a framework revives as soon
 * as its task is back in its queue.
 */
export function holdFilters(holds: readonly AgentHold[], cluster: Cluster, now: number): RefuseFilter[] {
  const out: RefuseFilter[] = []
  for (const h of holds) {
    if (h.until <= now) continue
    const agent = cluster.agents.get(h.agentId)
    if (!agent) continue
    out.push({ frameworkId: h.frameworkId, agentId: h.agentId, resources: add(agent.info.resources, agent.revocable), until: h.until })
  }
  return out
}

/** Tasks answered UNREACHABLE by reconciliation after a failover, per agent that did not re-register. */
export class StrandedTasks {
  private readonly byAgent = new Map<string, Map<string, { frameworkId: string; taskId: string }>>()

  add(agentId: string, frameworkId: string, taskId: string): void {
    let tasks = this.byAgent.get(agentId)
    if (!tasks) this.byAgent.set(agentId, tasks = new Map())
    tasks.set(`${frameworkId}\u0000${taskId}`, { frameworkId, taskId })
  }

  /** The stranded tasks of an agent, forgotten here. */
  take(agentId: string): Array<{ frameworkId: string; taskId: string }> {
    const tasks = this.byAgent.get(agentId)
    this.byAgent.delete(agentId)
    return tasks ? [...tasks.values()] : []
  }

  get size(): number {
    let n = 0
    for (const tasks of this.byAgent.values()) n += tasks.size
    return n
  }
}
