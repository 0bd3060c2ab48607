// Every NATS subject, stream, consumer and bucket name of Regatta, declared once.
// Nobody writes a subject string by hand elsewhere.

/**
 * An id as one subject token: letters, digits and `-` stay; every other character becomes `_`
 * and its code in hex (so `a.b` is `a_2e_b`... and `_` itself `_5f_`): never a wildcard, never a
 * separator, and two ids never share a token.
 */
export function idToken(id: string): string {
  if (id.length === 0) throw new Error('an empty id cannot be a subject token')
  return id.replace(/[^A-Za-z0-9-]/g, (c) => `_${c.codePointAt(0)!.toString(16)}_`)
}

/**
 * The sender token of the master's own status updates. idToken never makes it (a `_` it writes
 * is followed by hex digits and another `_`), so no agent id maps to it.
 */
export const MASTER_SENDER = '_master'

export const Subjects = {
  /** Agent -> master (request): register or re-register. */
  agentRegister: 'regatta.master.agent.register',
  /** Agent -> master (request): heartbeat. */
  agentHeartbeat: 'regatta.master.agent.heartbeat',
  /** Agent -> master (request): stopping with no task left; forget me. */
  agentUnregister: 'regatta.master.agent.unregister',
  /** Framework -> master (request): every scheduler call. */
  schedulerCall: 'regatta.master.scheduler',
  /** Master -> everyone: a new leader announces itself ({ masterId, epoch }), so agents re-register at once. */
  leaderElected: 'regatta.master.leader',
  /** Anyone -> master (request): the cluster state, as /api/v1/state gives it. */
  masterState: 'regatta.master.state',
  /** Operator -> master (request): OperatorCall (DRAIN, UNDRAIN, ...), answered { ok: true } or { error }. */
  masterOperator: 'regatta.master.operator',
  /** Master -> agent (request): commands. */
  agentCommand: (agentId: string) => `regatta.agent.${idToken(agentId)}.cmd`,
  /** Master -> framework: events (core NATS; offers are not durable, as in Mesos). */
  frameworkEvents: (frameworkId: string) => `regatta.framework.${idToken(frameworkId)}.events`,
  /**
   * Agent -> JetStream: acknowledged status updates of one framework's tasks, from one agent
   * (`regatta.update.<framework>.<agent>`): an agent's NATS user may publish on its own only.
   */
  statusUpdate: (frameworkId: string, agentId: string) => `regatta.update.${idToken(frameworkId)}.${idToken(agentId)}`,
  /** Master -> JetStream: the master's own status updates (`regatta.update.<framework>._master`; no agent may publish there). */
  masterStatusUpdate: (frameworkId: string) => `regatta.update.${idToken(frameworkId)}.${MASTER_SENDER}`,
  /** Every status update of one framework, whoever sent it: the filter of its durable consumer. */
  frameworkStatusUpdates: (frameworkId: string) => `regatta.update.${idToken(frameworkId)}.*`,
  statusUpdateAll: 'regatta.update.>',
  /** Agent -> JetStream: output of one framework's task, from the agent running it (`regatta.output.<framework>.<agent>.<task>`). */
  taskOutput: (frameworkId: string, agentId: string, taskId: string) => `regatta.output.${idToken(frameworkId)}.${idToken(agentId)}.${idToken(taskId)}`,
  /** A task's output whatever agent runs it (`regatta.output.<framework>.*.<task>`): what readers subscribe to or filter on. */
  taskOutputAnyAgent: (frameworkId: string, taskId: string) => `regatta.output.${idToken(frameworkId)}.*.${idToken(taskId)}`,
  taskOutputAll: 'regatta.output.>',
  /** CI replica -> the CI replica holding the lease (request): triggers, cancels, reruns. */
  ciLeader: 'regatta.ci.leader',
  /** Operator -> CI services (request, queue group): store, list or delete repository secrets. */
  ciSecrets: 'regatta.ci.secrets',
} as const

/**
 * Why a status update may not be taken from the subject it came on, or undefined when it may:
 * the subject must be `regatta.update.<framework>.<sender>` with the update's own framework, and
 * the sender the update claims (`source: 'master'`: the master's token; else its `agentId`).
 * The server lets an agent publish on its own subjects only, so this ties the update to its agent.
 */
export function updateSenderMismatch(subject: string, status: { frameworkId: string; agentId?: string; source: 'agent' | 'master' }): string | undefined {
  const parts = subject.split('.')
  if (parts.length !== 4 || parts[0] !== 'regatta' || parts[1] !== 'update') return `subject ${subject} is not regatta.update.<framework>.<sender>`
  if (parts[2] !== idToken(status.frameworkId)) return `an update of framework ${status.frameworkId} came on ${subject}`
  if (status.source === 'master') return parts[3] === MASTER_SENDER ? undefined : `an update of source master came on ${subject}`
  if (status.agentId === undefined || status.agentId.length === 0) return `an agent's update without agentId came on ${subject}`
  return parts[3] === idToken(status.agentId) ? undefined : `an update of agent ${status.agentId} came on ${subject}`
}

export const Streams = {
  updates: 'REGATTA_UPDATES',
  output: 'REGATTA_OUTPUT',
} as const

export const Consumers = {
  /** The master's durable consumer of all status updates. */
  masterUpdates: 'master',
  /** A framework's durable consumer of its own status updates. */
  frameworkUpdates: (frameworkId: string) => `fw-${idToken(frameworkId)}`,
} as const

export const Buckets = {
  /** Master leader lease. */
  leader: 'regatta-leader',
  /** CI service lease: its holder runs the CI framework. */
  ciLeader: 'regatta-ci-leader',
  /** Master registry. */
  registry: 'regatta-registry',
  /** Pool policies (PoolPolicy, shared/protocol/pool.ts), key idToken(pool): written by `regatta pool set`, read by the scaler. */
  pools: 'regatta-pools',
  /** The scaler's leader lease (its own bucket: a lease bucket's TTL is the lease's). */
  scalerLeader: 'regatta-scaler-leader',
  /** Object store: task caches, tar.gz by cache key; entries expire 7 days after they were saved. */
  cache: 'regatta-cache',
  /** Object store: task artifacts, tar.gz by artifact name; entries expire after 30 days. */
  artifacts: 'regatta-artifacts',
  /** Object store: job logs (a task's output as text, by task id) once the task ended. */
  logs: 'regatta-logs',
  /** Repository secrets, sealed with the CI service's key; key `<repo token>.<NAME>`. */
  secrets: 'regatta-secrets',
} as const
