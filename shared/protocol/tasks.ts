// Wire schema of tasks: what a framework launches and the status updates it gets back.
import { Type, type Static } from '@sinclair/typebox'
import { Resource } from './resources.js'

export const TASK_STATES = [
  'STAGING', 'STARTING', 'RUNNING',
  'FINISHED', 'FAILED', 'KILLED', 'LOST', 'ERROR', 'DROPPED', 'GONE', 'UNREACHABLE',
] as const
export type TaskState = (typeof TASK_STATES)[number]
export const TaskState = Type.Union(TASK_STATES.map((s) => Type.Literal(s)))

/**
 * The status reason of a revocable task killed so that non-revocable tasks get their resources
 * back (state KILLED): not the task's fault, a framework runs it again elsewhere. After a master
 * failover, reconciliation answers with reason RECONCILIATION and keeps the message, which then
 * starts with PREEMPTED_MESSAGE_PREFIX.
 */
export const REASON_PREEMPTED = 'PREEMPTED'
export const PREEMPTED_MESSAGE_PREFIX = 'preempted:'

/** True for the end of a task that was preempted, however the framework learned of it. */
export function wasPreempted(s: { state: TaskState; reason?: string | undefined; message?: string | undefined }): boolean {
  return s.state === 'KILLED' && (s.reason === REASON_PREEMPTED || (s.message ?? '').startsWith(PREEMPTED_MESSAGE_PREFIX))
}

const TERMINAL = new Set<TaskState>(['FINISHED', 'FAILED', 'KILLED', 'LOST', 'ERROR', 'DROPPED', 'GONE'])
/** Terminal states end a task for good; UNREACHABLE is not terminal (the agent may come back). */
export function isTerminal(state: TaskState): boolean {
  return TERMINAL.has(state)
}

export const ContainerInfo = Type.Object({
  /** Docker image; absent for the process containerizer (or to use the agent's default image). */
  image: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  /** argv; use ["sh", "-c", "..."] for a shell line. */
  command: Type.Array(Type.String({ maxLength: 131072 }), { minItems: 1, maxItems: 4096 }),
  env: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 131072 }))),
  /** Env vars holding secrets: set like `env`, and their values are masked in the task's output. */
  secretEnv: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 65536 }))),
  /** Working directory inside the container (default: the sandbox, `/sandbox` in Docker). */
  workdir: Type.Optional(Type.String({ maxLength: 1024 })),
  /** Docker network mode; `none` unless asked for. */
  network: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('host')])),
  /** Host paths of the sandbox to mount into the container, relative to the sandbox. */
  mounts: Type.Optional(Type.Array(Type.Object({
    source: Type.String({ maxLength: 1024 }),
    target: Type.String({ maxLength: 1024 }),
    readOnly: Type.Optional(Type.Boolean()),
  }), { maxItems: 64 })),
})
export type ContainerInfo = Static<typeof ContainerInfo>

/**
 * A git commit the agent checks out into the task's sandbox before the container starts
 * (`<sandbox>/workspace`, mounted at /workspace and used as the working directory).
 */
export const Checkout = Type.Object({
  /** Anything `git fetch` takes: https URL, or `file://` for a local repository. */
  url: Type.String({ minLength: 1, maxLength: 2048 }),
  sha: Type.String({ pattern: '^[0-9a-f]{7,64}$' }),
  /** The ref to fetch when the remote refuses to hand out a bare sha (e.g. refs/heads/main). */
  ref: Type.Optional(Type.String({ maxLength: 1024 })),
  /** A token for private https repositories (sent as a header, never written to disk). */
  token: Type.Optional(Type.String({ maxLength: 4096 })),
})
export type Checkout = Static<typeof Checkout>

/**
 * A sidecar container (a pipeline's `service`: a database, a cache server) that runs beside the
 * task's main container and shares its network namespace: each reaches the others on
 * 127.0.0.1. Started before the main container, removed when it exits. Docker only.
 */
export const Sidecar = Type.Object({
  /** Unique within the task; names the sidecar in labels and in the `[service name]` lines of stderr. */
  name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' }),
  image: Type.String({ minLength: 1, maxLength: 512 }),
  /** argv; absent: the image's own command. */
  command: Type.Optional(Type.Array(Type.String({ maxLength: 131072 }), { minItems: 1, maxItems: 4096 })),
  env: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 131072 }))),
  /** As the task's `secretEnv`: masked in the output the sidecar adds to the task's. */
  secretEnv: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 65536 }))),
})
export type Sidecar = Static<typeof Sidecar>

/**
 * Paths relative to the task's workspace (the checkout, or the sandbox without one): files or
 * directories, no globs. Absolute paths and `..` are refused when the task launches.
 */
const WorkspacePaths = Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: 64 })

/**
 * A cache in the NATS object store (bucket `regatta-cache`, object `key`): restored into the
 * workspace before the command runs, saved after it succeeds unless `key` was restored.
 */
export const TaskCache = Type.Object({
  key: Type.String({ minLength: 1, maxLength: 512 }),
  paths: WorkspacePaths,
})
export type TaskCache = Static<typeof TaskCache>

/** Paths saved as one tar.gz in the NATS object store (bucket `regatta-artifacts`, object `name`) after the command. */
export const TaskArtifacts = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 512 }),
  paths: WorkspacePaths,
})
export type TaskArtifacts = Static<typeof TaskArtifacts>

/** A task as a framework asks for it in ACCEPT/LAUNCH. */
export const TaskSpec = Type.Object({
  taskId: Type.String({ minLength: 1, maxLength: 256, pattern: '^[A-Za-z0-9._:/@+-]+$' }),
  name: Type.Optional(Type.String({ maxLength: 256 })),
  resources: Type.Array(Resource, { maxItems: 64 }),
  container: ContainerInfo,
  /** How long a kill waits between SIGTERM and SIGKILL. */
  killGracePeriodMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000 })),
  labels: Type.Optional(Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 1024 }))),
  /** Stream the task's stdout/stderr to the framework on its output subject. */
  streamOutput: Type.Optional(Type.Boolean()),
  checkout: Type.Optional(Checkout),
  /** Sidecar containers (Docker only); names unique. */
  sidecars: Type.Optional(Type.Array(Sidecar, { maxItems: 8 })),
  cache: Type.Optional(TaskCache),
  artifacts: Type.Optional(TaskArtifacts),
})
export type TaskSpec = Static<typeof TaskSpec>

/** A task as the master sends it to an agent. */
export const TaskInfo = Type.Composite([TaskSpec, Type.Object({
  frameworkId: Type.String(),
  agentId: Type.String(),
  role: Type.String(),
})])
export type TaskInfo = Static<typeof TaskInfo>

export const TaskStatus = Type.Object({
  taskId: Type.String({ minLength: 1, maxLength: 256 }),
  frameworkId: Type.String({ minLength: 1, maxLength: 256 }),
  agentId: Type.Optional(Type.String()),
  state: TaskState,
  /** Set on updates that must be acknowledged; absent on reconciliation answers. */
  uuid: Type.Optional(Type.String()),
  source: Type.Union([Type.Literal('agent'), Type.Literal('master')]),
  reason: Type.Optional(Type.String({ maxLength: 128 })),
  message: Type.Optional(Type.String({ maxLength: 8192 })),
  exitCode: Type.Optional(Type.Integer()),
  /** On a terminal update of a task with `artifacts`: the object it saved. */
  artifact: Type.Optional(Type.Object({
    bucket: Type.String(),
    name: Type.String(),
    /** Bytes of the tar.gz. */
    size: Type.Integer({ minimum: 0 }),
  })),
  /** On a terminal update of a task with `cache`: whether its key was restored and whether it was saved. */
  cache: Type.Optional(Type.Object({
    key: Type.String(),
    restored: Type.Boolean(),
    saved: Type.Boolean(),
  })),
  /** ms since the epoch */
  timestamp: Type.Number(),
})
export type TaskStatus = Static<typeof TaskStatus>

/**
 * Status updates as they travel through JetStream: a batch of one or more, from one sender for
 * one framework, in order. Each update keeps its own uuid and is acknowledged on its own.
 */
export const StatusUpdates = Type.Object({
  updates: Type.Array(TaskStatus, { minItems: 1, maxItems: 1000 }),
})
export type StatusUpdates = Static<typeof StatusUpdates>
