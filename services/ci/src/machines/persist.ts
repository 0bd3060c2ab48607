// A run's persisted form: one JSON document holding the run and all its jobs, written after each
// event (NATS KV in the CI service) and turned back into an actor after a restart.
//
// Why writes wait for the event to settle: xstate runs an action while it is still computing
// the snapshot, so a `persist` action that read the actor at once would store the state before
// the event. `checkpointer().persist` only notes the run and writes it on the next microtask,
// when the event, with every eventless transition after it, is committed; several persists
// during one event make one write.
//
// Why RESUME after a restore: xstate does not persist delayed events, so a restored run has no
// timers; RESUME re-arms each running job's timeout for what is left of it and asks placement
// again for jobs that were waiting for an offer.
import { createActor, type Actor, type ActorOptions, type Snapshot, type StateValue } from 'xstate'
import { RegattaError } from '../../../../shared/errors/index.js'
import { jobStateName, type JobStateName } from './job.js'
import type { RunContext } from './advance.js'
import { RUN_STATES, type PersistableRun, type RunMachine, type RunStateName } from './run.js'

export type RunActor = Actor<RunMachine>

export const PERSISTED_RUN_VERSION = 1

/** What `getPersistedSnapshot()` gives for a run (no children: jobs are in the context). */
export interface PersistedRunSnapshot {
  status: 'active' | 'done' | 'stopped'
  value: StateValue
  context: RunContext
  historyValue: Record<string, unknown>
  children: Record<string, never>
  [key: string]: unknown
}

export interface PersistedRun {
  version: typeof PERSISTED_RUN_VERSION
  runId: string
  /** The run's state, readable without xstate (lists, the web UI). */
  state: RunStateName
  snapshot: PersistedRunSnapshot
}

function invalid(runId: string, what: string): RegattaError {
  return new RegattaError('INVALID_MESSAGE', `persisted run${runId ? ` ${runId}` : ''}: ${what}`)
}

/** The run as JSON-safe data. Throws INTERNAL for an actor that crashed (nothing sane to store). */
export function persistRun(run: PersistableRun): PersistedRun {
  const raw = run.getPersistedSnapshot() as Snapshot<unknown> & { value?: StateValue; context?: RunContext }
  if (raw.status === 'error') throw new RegattaError('INTERNAL', `run actor failed: ${String(raw.error)}`)
  const snapshot = JSON.parse(JSON.stringify(raw)) as PersistedRunSnapshot
  return { version: PERSISTED_RUN_VERSION, runId: snapshot.context.runId, state: snapshot.value as RunStateName, snapshot }
}

export function serializeRun(run: PersistableRun): string {
  return JSON.stringify(persistRun(run))
}

/** Reads a stored run back, checking what the machine relies on. Throws INVALID_MESSAGE naming the field. */
export function parseRun(text: string | Uint8Array): PersistedRun {
  let data: unknown
  try {
    data = JSON.parse(typeof text === 'string' ? text : new TextDecoder().decode(text))
  } catch (e) {
    throw invalid('', `not JSON (${(e as Error).message})`)
  }
  const run = data as Partial<PersistedRun> | null
  if (!run || typeof run !== 'object') throw invalid('', 'not an object')
  const runId = typeof run.runId === 'string' ? run.runId : ''
  if (run.version !== PERSISTED_RUN_VERSION) throw invalid(runId, `version must be ${PERSISTED_RUN_VERSION}, got ${JSON.stringify(run.version)}`)
  if (!runId) throw invalid('', 'runId must be a non-empty string')
  const s = run.snapshot
  if (!s || typeof s !== 'object') throw invalid(runId, 'snapshot is missing')
  if (typeof s.value !== 'string' || !(RUN_STATES as readonly string[]).includes(s.value)) {
    throw invalid(runId, `snapshot.value is not a run state: ${JSON.stringify(s.value)}`)
  }
  if (s.value !== run.state) throw invalid(runId, `state ${JSON.stringify(run.state)} differs from snapshot.value ${JSON.stringify(s.value)}`)
  const c = s.context
  if (!c || typeof c !== 'object') throw invalid(runId, 'snapshot.context is missing')
  if (c.runId !== runId) throw invalid(runId, `snapshot.context.runId is ${JSON.stringify(c.runId)}`)
  if (!Array.isArray(c.order) || !c.jobs || typeof c.jobs !== 'object') throw invalid(runId, 'snapshot.context needs order and jobs')
  for (const id of c.order) {
    const job = c.jobs[id]
    if (!job || !job.context || job.context.jobId !== id) throw invalid(runId, `snapshot.context.jobs.${id} is missing or names another job`)
    try {
      jobStateName(job.value)
    } catch {
      throw invalid(runId, `snapshot.context.jobs.${id}.value is not a job state: ${JSON.stringify(job.value)}`)
    }
  }
  return run as PersistedRun
}

/** An actor (not started) that continues from `run`; `input` is ignored on restore. */
export function restoreRun(
  machine: RunMachine,
  run: PersistedRun,
  options: Omit<ActorOptions<RunMachine>, 'snapshot' | 'input'> = {},
): RunActor {
  // `input` is required by the type and ignored by xstate when a snapshot is given.
  return createActor(machine, { ...options, snapshot: run.snapshot as unknown as Snapshot<unknown>, input: undefined })
}

/** Restores, starts, and sends RESUME at `at` (the clock now): what a restarted CI service does. */
export function resumeRun(
  machine: RunMachine,
  run: PersistedRun,
  options: Omit<ActorOptions<RunMachine>, 'snapshot' | 'input'> & { at: number },
): RunActor {
  const { at, ...actorOptions } = options
  const actor = restoreRun(machine, run, actorOptions)
  actor.start()
  actor.send({ type: 'RESUME', at })
  return actor
}

export interface Checkpointer {
  /** The run's `persist` effect: writes the run once its current event has settled. */
  persist(checkpoint: { runId: string }, run: PersistableRun): void
  /** Resolves when every write asked for so far has finished (failed writes went to onError). */
  flush(): Promise<void>
}

/**
 * Coalesced, ordered writes of runs: at most one write per run per event, in the order asked.
 * Await `flush()` before an effect that must not be repeated after a crash (accepting an offer
 * after LAUNCHED: the run must remember the task before the task exists).
 */
export function checkpointer(
  write: (run: PersistedRun) => Promise<void> | void,
  onError: (err: unknown, runId: string) => void = () => {},
): Checkpointer {
  const scheduled = new Set<PersistableRun>()
  let chain: Promise<void> = Promise.resolve()
  return {
    persist(checkpoint, run) {
      if (scheduled.has(run)) return
      scheduled.add(run)
      queueMicrotask(() => {
        scheduled.delete(run)
        let doc: PersistedRun
        try {
          doc = persistRun(run)
        } catch (err) {
          onError(err, checkpoint.runId)
          return
        }
        chain = chain.then(() => write(doc)).catch((err) => onError(err, checkpoint.runId))
      })
    },
    async flush() {
      // Let scheduled microtasks queue their writes first.
      await Promise.resolve()
      await chain
    },
  }
}

export interface ActiveTask {
  jobId: string
  taskId: string
  state: JobStateName
}

/** Tasks the run believes exist (jobs starting or running): what to reconcile with the master after a restore. */
export function activeTasks(run: PersistedRun | RunContext): ActiveTask[] {
  const c = 'snapshot' in run ? run.snapshot.context : run
  const out: ActiveTask[] = []
  for (const id of c.order) {
    const job = c.jobs[id]
    const state = jobStateName(job.value)
    if ((state === 'starting' || state === 'running') && job.context.taskId !== null) {
      out.push({ jobId: id, taskId: job.context.taskId, state })
    }
  }
  return out
}
