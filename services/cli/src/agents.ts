// `regatta agents ls|drain|undrain`: the pool's agents as the leading master sees them, and
// maintenance through the master's operator subject (the same calls as its HTTP API).
import { ClusterState, OperatorReply, Subjects, type AgentView, type OperatorCall } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { requestWithRetry, type NatsConnection } from '../../../shared/nats/index.js'
import { formatAgents } from './format.js'

/** Where a command writes: stdout in the CLI, a buffer in tests. */
export type Write = (text: string) => void

/** A failover takes seconds: requests retry while no master leads, up to this long. */
const DEADLINE_MS = 10_000

export function clusterState(nc: NatsConnection): Promise<ClusterState> {
  return requestWithRetry(nc, Subjects.masterState, {}, ClusterState, { deadlineMs: DEADLINE_MS, timeoutMs: 3_000 })
}

export async function agentsLs(nc: NatsConnection, o: { json?: boolean; pool?: string }, out: Write): Promise<void> {
  const state = await clusterState(nc)
  const agents = o.pool === undefined ? state.agents : state.agents.filter((a) => a.pool === o.pool)
  out(o.json ? `${JSON.stringify(agents)}\n` : `${formatAgents({ ...state, agents })}\n`)
}

/** `regatta agents drain ID` and `undrain ID`: the operator call, then the agent as it is now. */
export async function agentsDrain(nc: NatsConnection, type: 'DRAIN' | 'UNDRAIN', agentId: string, o: { json?: boolean }, out: Write): Promise<void> {
  if (agentId.trim() === '') throw new RegattaError('INVALID_CONFIG', 'agent id: empty (see regatta agents ls)')
  const call: OperatorCall = { type, agentId }
  await requestWithRetry(nc, Subjects.masterOperator, call, OperatorReply, { deadlineMs: DEADLINE_MS, timeoutMs: 5_000 })
  const agent = (await clusterState(nc)).agents.find((a) => a.id === agentId)
  out(o.json ? `${JSON.stringify(agent ?? { id: agentId })}\n` : `${drainMessage(type, agentId, agent)}\n`)
}

/** What a drain or undrain did, in one line. */
export function drainMessage(type: 'DRAIN' | 'UNDRAIN', agentId: string, agent: AgentView | undefined): string {
  if (type === 'UNDRAIN') return `Agent ${agentId} takes new work again.`
  if (!agent || agent.tasks === 0) return `Agent ${agentId} is drained: it runs no task and takes no new work; it can be stopped.`
  const n = agent.tasks === 1 ? '1 task still runs' : `${agent.tasks} tasks still run`
  return `Agent ${agentId} is draining: ${n} and will finish; it takes no new work (see regatta agents ls).`
}
