// Docker label keys the agent puts on every task container: they find a task's container
// again after an agent restart (recover) and let operators and tests clean up by label.

/** The task id the container runs. */
export const LABEL_TASK = 'regatta.task'
/** The framework that launched the task. */
export const LABEL_FRAMEWORK = 'regatta.framework'
/** The agent that started the container; `recover(agentId)` lists containers by this label. */
export const LABEL_AGENT = 'regatta.agent'
/** On a sidecar container only: the sidecar's name. Such a container is never a task of its own. */
export const LABEL_SIDECAR = 'regatta.sidecar'
