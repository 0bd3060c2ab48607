// Every NATS subject, stream, consumer and bucket name of Regatta, declared once.
// Nobody writes a subject string by hand elsewhere.

const token = (s: string): string => {
  if (!/^[A-Za-z0-9_@:+=-][A-Za-z0-9._@:+=-]*$/.test(s) || s.includes('..')) {
    throw new Error(`not a valid subject token: ${JSON.stringify(s)}`)
  }
  return s
}
/** Ids may contain dots; a subject token may not. */
const idToken = (id: string): string => token(id.replace(/\./g, '_'))

export const Subjects = {
  /** Agent -> master (request): register or re-register. */
  agentRegister: 'regatta.master.agent.register',
  /** Agent -> master (request): heartbeat. */
  agentHeartbeat: 'regatta.master.agent.heartbeat',
  /** Framework -> master (request): every scheduler call. */
  schedulerCall: 'regatta.master.scheduler',
  /** Anyone -> master (request): the cluster state, as /api/v1/state gives it. */
  masterState: 'regatta.master.state',
  /** Master -> agent (request): commands. */
  agentCommand: (agentId: string) => `regatta.agent.${idToken(agentId)}.cmd`,
  /** Master -> framework: events (core NATS; offers are not durable, as in Mesos). */
  frameworkEvents: (frameworkId: string) => `regatta.framework.${idToken(frameworkId)}.events`,
  /** Agent -> JetStream: acknowledged status updates for one framework. */
  statusUpdate: (frameworkId: string) => `regatta.update.${idToken(frameworkId)}`,
  statusUpdateAll: 'regatta.update.>',
  /** Agent -> JetStream: task output for one framework's task. */
  taskOutput: (frameworkId: string, taskId: string) => `regatta.output.${idToken(frameworkId)}.${idToken(taskId)}`,
  taskOutputAll: 'regatta.output.>',
} as const

export const Streams = {
  updates: 'REGATTA_UPDATES',
  output: 'REGATTA_OUTPUT',
} as const

export const Consumers = {
  /** The master's durable consumer of all status updates. */
  masterUpdates: 'master',
  /** A framework's durable consumer of its own status updates. */
  frameworkUpdates: (frameworkId: string) => `fw-${idToken(frameworkId).replace(/[^A-Za-z0-9_-]/g, '_')}`,
} as const

export const Buckets = {
  /** Master leader lease. */
  leader: 'regatta-leader',
  /** Master registry. */
  registry: 'regatta-registry',
} as const
