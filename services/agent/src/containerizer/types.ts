// The containerizer interface: how an agent runs a task's command (Docker or a plain process).

/** Where the task's sandbox appears inside a container (and the default working dir). */
export const SANDBOX_MOUNT = '/sandbox'

export interface LaunchSpec {
  taskId: string
  frameworkId: string
  agentId: string
  /** Docker image (the docker containerizer requires one; the process containerizer ignores it). */
  image?: string
  command: string[]
  env: Record<string, string>
  /** Working dir inside the container; default: the sandbox (mounted at /sandbox in Docker). */
  workdir?: string
  /** Host directory of this task, created by the agent before launch. */
  sandbox: string
  network: 'none' | 'host'
  /** Extra bind mounts: host source (absolute) -> container target. */
  mounts: Array<{ source: string; target: string; readOnly?: boolean }>
  cpus?: number
  memMb?: number
  /** Labels that name the task and framework (and the agent), for recovery and cleanup. */
  labels: Record<string, string>
  /**
   * Containers started before the main one, in its network namespace (Docker only; the process
   * containerizer refuses a task with sidecars). Removed when the main container exits.
   */
  sidecars?: SidecarSpec[]
}

export interface SidecarSpec {
  /** Unique within the task. */
  name: string
  image: string
  /** argv; absent: the image's command. */
  command?: string[]
  /** The sidecar's environment (the task's own environment is not passed on). */
  env: Record<string, string>
}

export interface ExitInfo {
  /** The command's exit code; null when it was killed by a signal or never ran. */
  exitCode: number | null
  signal?: string
  oomKilled?: boolean
  /** Set when the task was killed through `kill()`. */
  killed: boolean
  /** A human reason when the container failed outside the command (e.g. lost, could not wait). */
  message?: string
  /**
   * The container was created but never started (its agent died between the two): the command
   * never ran, so the task may safely be launched again.
   */
  neverStarted?: boolean
}

export interface OutputSink {
  (stream: 'stdout' | 'stderr', chunk: Buffer): void
}

export interface RunningContainer {
  /** Docker container id, or `pid:<n>` for a process. */
  id: string
  /** Resolves once, when the command has exited (never rejects). */
  exited: Promise<ExitInfo>
  /** SIGTERM, then SIGKILL after graceMs; resolves when the command is gone. */
  kill(graceMs: number): Promise<void>
  /**
   * What the task uses now (oversubscription samples it): CPU time since it started and memory
   * in use. Undefined when it cannot be measured (or has exited); never rejects.
   */
  usage?(): Promise<ContainerUsage | undefined>
}

/** A reading of a task's usage: cumulative CPU seconds, memory MiB (page cache that can be dropped left out). */
export interface ContainerUsage {
  cpuSeconds?: number
  memMb?: number
}

export interface RecoveredContainer {
  taskId: string
  frameworkId: string
  container: RunningContainer
  /** Created but never started: not running, and never was (see ExitInfo.neverStarted). */
  neverStarted?: boolean
}

/**
 * Something a containerizer started for this agent and may have left behind (a crash, a restart):
 * a Docker container with the agent's labels, or the processes whose environment names the
 * agent and a task (and whose HOME is one of its sandboxes). The reaper removes those no task of the agent owns.
 */
export interface Leftover {
  kind: 'container' | 'process'
  /** Docker container id, or `task:<frameworkId>/<taskId>` for a task's processes. */
  id: string
  /** From its labels (or environment); absent when it carries none. */
  frameworkId?: string
  taskId?: string
  /** A sidecar's name (Docker), when it is one. */
  sidecar?: string
}

/** Where a containerizer looks for leftovers: this agent's id, and its sandboxes directory. */
export interface LeftoverScope {
  agentId: string
  /** `<work dir>/sandboxes`: what carries the agent's id but runs in a sandbox elsewhere is another agent's. */
  sandboxes: string
}

export interface Containerizer {
  readonly kind: 'docker' | 'process'
  /**
   * Creates and starts the task's container; resolves once the command runs. Throws a
   * RegattaError (IMAGE_PULL_FAILED, CONTAINER_ERROR) when it cannot start it.
   */
  launch(spec: LaunchSpec, output: OutputSink): Promise<RunningContainer>
  /** Finds the containers this agent started before a restart (by label) and re-attaches to them. */
  recover(agentId: string, output: (taskId: string) => OutputSink): Promise<RecoveredContainer[]>
  /** Removes what is left of a finished task's container. */
  remove(containerId: string): Promise<void>
  /**
   * After an agent restart: stops what may be left running of a task that cannot be recovered
   * (a process outlives its agent), once it is sure the container still belongs to that task.
   */
  destroyLeftover?(containerId: string, taskId: string): Promise<void>
  /** What this agent's containers or processes may have left behind, whoever owns it now (the reaper decides). */
  leftovers?(scope: LeftoverScope): Promise<Leftover[]>
  /** Kills and removes a leftover (with a container's sidecars); gone already is not an error. */
  removeLeftover?(leftover: Leftover, scope: LeftoverScope): Promise<void>
}
