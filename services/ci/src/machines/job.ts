// One job of a run as an xstate machine: queued until its needs end, waiting for an offer,
// starting, running, then an end state; retries, requeues after infrastructure losses, timeout.
//
//   queued --NEEDS_MET(if holds)--> waiting --LAUNCHED--> starting --TASK_RUNNING--> running
//     |  NEEDS_MET(if false) / NEEDS_FAILED -> skipped        ^  |                    |
//     |                                                        |  +-- exit 0 --------> succeeded
//     |        failed attempt with retries left (attempt + 1) -+  +-- exit != 0 -----> failed
//     |        TASK_LOST / TASK_PREEMPTED (attempt not counted) -+ (up to maxRequeues, then failed)
//     |                                                            timeoutMs in running -> timedOut
//     +-- CANCEL from any state that has not ended -------------------------------> cancelled
//   RETRY from an end state -> queued (a manual rerun: attempt + 1, retries and requeues reset)
//
// Pure: effects are named actions the CI service provides (`requestPlacement`,
// `withdrawPlacement`, `killTask`, `reportStatus`, `persist`); time comes in on events (`at`,
// the service's clock when it hands the event over) and through the `jobTimeout` delay.
//
// Choices:
// - A timeout is final and not retried (as GitHub Actions' timeout-minutes): a job that hangs
//   would hang again, and each retry would hold an executor for the whole timeout once more.
//   `retries` covers failed attempts (non-zero exit, FAILED task) only.
// - Lost tasks (LOST, DROPPED, GONE, ERROR before start: the service maps them to TASK_LOST)
//   and revocable evictions (TASK_PREEMPTED) are not the job's fault: the job goes back to
//   `waiting` without spending an attempt, at most `maxRequeues` times in all (default 3);
//   past that it fails with GitHub status `error`.
// - End states are not xstate `type: 'final'` (they carry tag `final`) because RETRY leaves
//   them; an actor of this machine therefore never reports `done`.
// - Task events carry the taskId and are ignored unless it is the job's current task, so a late
//   update from a task of an earlier attempt cannot end the current one.
// - Delayed events do not survive xstate persistence: after a restore, RESUME re-arms the
//   timeout for what is left of it (and asks for placement again when waiting).
import { and, assign, or, setup, stateIn } from 'xstate'
import { MAX_TIMEOUT_MS } from './dag.js'

export const JOB_STATES = [
  'queued', 'waiting', 'starting', 'running',
  'succeeded', 'failed', 'cancelled', 'timedOut', 'skipped',
] as const
export type JobStateName = (typeof JOB_STATES)[number]
export const FINAL_JOB_STATES: ReadonlySet<JobStateName> = new Set<JobStateName>([
  'succeeded', 'failed', 'cancelled', 'timedOut', 'skipped',
])
export const DEFAULT_MAX_REQUEUES = 3

/** A GitHub commit status state. */
export type CommitState = 'pending' | 'success' | 'failure' | 'error'

export interface JobInput {
  jobId: string
  needs: string[]
  /** Extra attempts after a failed one. */
  retries: number
  /** From RUNNING to the kill; at most MAX_TIMEOUT_MS. */
  timeoutMs: number
  /** The job's `if`, for the run's `ifHolds` guard; absent means `success()`. */
  ifExpr?: string
  /** Lost or preempted tasks requeued without spending an attempt, in all. Default 3. */
  maxRequeues?: number
}

export type AttemptOutcome = 'succeeded' | 'failed' | 'lost' | 'preempted' | 'timedOut' | 'cancelled'

/** One task the job ran (or tried to), oldest first in `history`. */
export interface AttemptRecord {
  attempt: number
  taskId: string
  launchedAt: number | null
  startedAt: number | null
  finishedAt: number
  outcome: AttemptOutcome
  exitCode: number | null
  reason: string | null
  message: string | null
}

/** Absent values are null, not undefined, so a context survives JSON unchanged. */
export interface JobContext {
  jobId: string
  needs: string[]
  retries: number
  timeoutMs: number
  ifExpr: string | null
  maxRequeues: number
  /** 1 for the first attempt; failed attempts and manual reruns add one, requeues do not. */
  attempt: number
  retriesLeft: number
  /** Lost/preempted requeues since the job was queued (or rerun). */
  requeues: number
  taskId: string | null
  launchedAt: number | null
  startedAt: number | null
  finishedAt: number | null
  exitCode: number | null
  /** Why the job ended (or why its task did): a task status reason or `needs-failed`, `if-false`, `timeout`, `cancelled`. */
  reason: string | null
  message: string | null
  history: AttemptRecord[]
}

type At = { at: number }
/** Events about the job's task; the run routes them with JOB_EVENT. */
export type JobTaskEvent =
  | ({ type: 'LAUNCHED'; taskId: string } & At)
  | ({ type: 'TASK_RUNNING'; taskId: string } & At)
  | ({ type: 'TASK_FINISHED'; taskId: string; exitCode: number } & At)
  | ({ type: 'TASK_FAILED'; taskId: string; exitCode?: number; reason: string; message?: string } & At)
  | ({ type: 'TASK_LOST'; taskId: string; reason: string; message?: string } & At)
  | ({ type: 'TASK_PREEMPTED'; taskId: string; message?: string } & At)

export type JobEvent =
  | JobTaskEvent
  /** The needs ended and the run decided: run the job if `ifHolds`, else skip it. */
  | ({ type: 'NEEDS_MET'; ifHolds: boolean } & At)
  /** A need did not succeed and the job's `if` does not ask to run anyway: skip it. */
  | ({ type: 'NEEDS_FAILED' } & At)
  | ({ type: 'CANCEL' } & At)
  /** Manual rerun, from an end state only. */
  | ({ type: 'RETRY' } & At)
  /** After a restore: re-arm the timeout, ask for placement again. Changes no state. */
  | ({ type: 'RESUME' } & At)

// Effect parameters: everything an effect needs, so the CI service can act on it alone.
/** `requeue`: lost or preempted tasks of this attempt so far (each relaunch is a new task). */
export interface PlacementRequest { jobId: string; attempt: number; requeue: number }
export interface PlacementWithdrawal { jobId: string }
export interface KillRequest { jobId: string; taskId: string; reason: 'timeout' | 'cancel' }
export interface JobStatusReport {
  jobId: string
  state: JobStateName
  status: CommitState
  /** At most 140 characters (GitHub's limit). */
  description: string
  attempt: number
}
export interface JobCheckpoint { jobId: string; state: JobStateName }

/** The GitHub status for a job in `state`: pending until it ends; error for infrastructure, timeouts and cancels. */
export function jobStatus(state: JobStateName, c: JobContext): JobStatusReport {
  const [status, description] = describe(state, c)
  return { jobId: c.jobId, state, status, description: clip(description), attempt: c.attempt }
}

function describe(state: JobStateName, c: JobContext): [CommitState, string] {
  const of = c.attempt > 1 ? ` (attempt ${c.attempt})` : ''
  const last = c.history.at(-1)
  switch (state) {
    case 'queued':
      return ['pending', c.needs.length > 0 ? `Queued: waiting for ${c.needs.join(', ')}` : 'Queued']
    case 'waiting':
      if (last && (last.outcome === 'lost' || last.outcome === 'preempted') && last.attempt === c.attempt) {
        return ['pending', `Requeued after its task was ${last.outcome}: waiting for resources${of}`]
      }
      return ['pending', `Waiting for resources${of}`]
    case 'starting':
      return ['pending', `Starting${of}`]
    case 'running':
      return ['pending', `Running${of}`]
    case 'succeeded':
      return ['success', `Succeeded${took(c)}${of}`]
    case 'failed':
      if (last && (last.outcome === 'lost' || last.outcome === 'preempted')) {
        const why = last.reason && last.reason !== last.outcome ? `${last.outcome}, ${last.reason}` : last.outcome
        return ['error', `Gave up after ${c.requeues + 1} lost or preempted tasks (last: ${why})`]
      }
      return ['failure', `Failed${c.exitCode !== null ? ` with exit code ${c.exitCode}` : ''}${c.reason && c.exitCode === null ? `: ${c.reason}` : ''}${took(c)}${of}`]
    case 'timedOut':
      return ['error', `Timed out after ${duration(c.timeoutMs)}`]
    case 'cancelled':
      return ['error', 'Cancelled']
    case 'skipped':
      // Commit statuses have no "neutral": skipped reads as passing, like a skipped check.
      return ['success', c.reason === 'if-false' ? 'Skipped: its if condition is false' : 'Skipped: a job it needs did not succeed']
  }
}

function took(c: JobContext): string {
  return c.startedAt !== null && c.finishedAt !== null ? ` in ${duration(c.finishedAt - c.startedAt)}` : ''
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return s % 60 === 0 ? `${m}m` : `${m}m ${s % 60}s`
  const h = Math.floor(m / 60)
  return m % 60 === 0 ? `${h}h` : `${h}h ${m % 60}m`
}

function clip(text: string): string {
  return text.length <= 140 ? text : `${text.slice(0, 139)}…`
}

/** The state name of a job snapshot's value (`running` has a substate holding its timer). */
export function jobStateName(value: unknown): JobStateName {
  const name = typeof value === 'string' ? value : Object.keys(value as object)[0]
  if (!(JOB_STATES as readonly string[]).includes(name)) throw new Error(`not a job state: ${JSON.stringify(value)}`)
  return name as JobStateName
}

export function initialJobContext(input: JobInput): JobContext {
  return {
    jobId: input.jobId,
    needs: [...input.needs],
    retries: input.retries,
    timeoutMs: input.timeoutMs,
    ifExpr: input.ifExpr ?? null,
    maxRequeues: input.maxRequeues ?? DEFAULT_MAX_REQUEUES,
    attempt: 1,
    retriesLeft: input.retries,
    requeues: 0,
    taskId: null,
    launchedAt: null,
    startedAt: null,
    finishedAt: null,
    exitCode: null,
    reason: null,
    message: null,
    history: [],
  }
}

/** The input a context was made from (the run re-derives a job's entry effects with it). */
export function jobInputOf(c: JobContext): JobInput {
  return {
    jobId: c.jobId, needs: c.needs, retries: c.retries, timeoutMs: c.timeoutMs,
    maxRequeues: c.maxRequeues, ...(c.ifExpr !== null ? { ifExpr: c.ifExpr } : {}),
  }
}

const NO_TASK = { taskId: null, launchedAt: null, startedAt: null, finishedAt: null, exitCode: null, reason: null, message: null }

type TaskEnd = Extract<JobEvent, { type: 'TASK_FINISHED' | 'TASK_FAILED' | 'TASK_LOST' | 'TASK_PREEMPTED' | 'CANCEL' }>

/** The context after the current task ended with `outcome`, its attempt added to history. */
function ended(c: JobContext, outcome: AttemptOutcome, event: TaskEnd | null): JobContext {
  const finishedAt = event ? event.at : (c.startedAt ?? 0) + c.timeoutMs
  const exitCode = event && 'exitCode' in event && event.exitCode !== undefined ? event.exitCode : null
  const reason = event && 'reason' in event ? event.reason : outcome === 'timedOut' ? 'timeout' : outcome === 'cancelled' ? 'cancelled' : null
  const message = event && 'message' in event && event.message !== undefined ? event.message : null
  const history = c.taskId === null ? c.history : [...c.history, {
    attempt: c.attempt, taskId: c.taskId, launchedAt: c.launchedAt, startedAt: c.startedAt,
    finishedAt, outcome, exitCode, reason, message,
  }]
  return { ...c, finishedAt, exitCode, reason, message, history }
}

const announce = (state: JobStateName) => [
  { type: 'reportStatus' as const, params: ({ context }: { context: JobContext }) => jobStatus(state, context) },
  { type: 'persist' as const, params: ({ context }: { context: JobContext }) => ({ jobId: context.jobId, state }) },
]

export const jobMachine = setup({
  types: {
    input: {} as JobInput,
    context: {} as JobContext,
    events: {} as JobEvent,
  },
  actions: {
    requestPlacement: (_, _p: PlacementRequest) => {},
    withdrawPlacement: (_, _p: PlacementWithdrawal) => {},
    killTask: (_, _p: KillRequest) => {},
    reportStatus: (_, _p: JobStatusReport) => {},
    persist: (_, _p: JobCheckpoint) => {},
  },
  guards: {
    isCurrentTask: ({ context, event }) => 'taskId' in event && context.taskId !== null && event.taskId === context.taskId,
    inTask: or([stateIn('#job.starting'), stateIn('#job.running')]),
    isFinal: or([...FINAL_JOB_STATES].map((s) => stateIn(`#job.${s}`))),
    exitedZero: ({ event }) => event.type === 'TASK_FINISHED' && event.exitCode === 0,
    hasRetriesLeft: ({ context }) => context.retriesLeft > 0,
    hasRequeuesLeft: ({ context }) => context.requeues < context.maxRequeues,
    ifHolds: ({ event }) => event.type === 'NEEDS_MET' && event.ifHolds,
  },
  delays: {
    // Entered on TASK_RUNNING: the whole timeout; on RESUME: what is left of it.
    jobTimeout: ({ context, event }) => {
      const remaining = event.type === 'RESUME' && context.startedAt !== null
        ? context.startedAt + context.timeoutMs - event.at
        : context.timeoutMs
      return Math.min(MAX_TIMEOUT_MS, Math.max(0, remaining))
    },
  },
}).createMachine({
  id: 'job',
  context: ({ input }) => initialJobContext(input),
  initial: 'queued',
  states: {
    queued: {
      entry: announce('queued'),
      on: {
        NEEDS_MET: [
          { guard: 'ifHolds', target: 'waiting' },
          { target: 'skipped', actions: assign({ reason: 'if-false', finishedAt: ({ event }) => event.at }) },
        ],
        NEEDS_FAILED: { target: 'skipped', actions: assign({ reason: 'needs-failed', finishedAt: ({ event }) => event.at }) },
        CANCEL: { target: 'cancelled', actions: assign({ reason: 'cancelled', finishedAt: ({ event }) => event.at }) },
      },
    },
    waiting: {
      entry: [
        { type: 'requestPlacement', params: ({ context }) => ({ jobId: context.jobId, attempt: context.attempt, requeue: context.requeues }) },
        ...announce('waiting'),
      ],
      on: {
        LAUNCHED: {
          target: 'starting',
          actions: assign({ taskId: ({ event }) => event.taskId, launchedAt: ({ event }) => event.at }),
        },
        CANCEL: {
          target: 'cancelled',
          actions: [
            { type: 'withdrawPlacement', params: ({ context }) => ({ jobId: context.jobId }) },
            assign({ reason: 'cancelled', finishedAt: ({ event }) => event.at }),
          ],
        },
        RESUME: { actions: { type: 'requestPlacement', params: ({ context }) => ({ jobId: context.jobId, attempt: context.attempt, requeue: context.requeues }) } },
      },
    },
    starting: {
      entry: announce('starting'),
      on: {
        TASK_RUNNING: { guard: 'isCurrentTask', target: 'running', actions: assign({ startedAt: ({ event }) => event.at }) },
      },
    },
    running: {
      entry: announce('running'),
      initial: 'timing',
      states: {
        timing: {
          // Re-entering only this substate re-arms the timer without announcing `running` again.
          on: { RESUME: { target: 'timing', reenter: true } },
          after: {
            jobTimeout: {
              target: '#job.timedOut',
              actions: [
                { type: 'killTask', params: ({ context }) => ({ jobId: context.jobId, taskId: context.taskId!, reason: 'timeout' as const }) },
                assign(({ context }) => ended(context, 'timedOut', null)),
              ],
            },
          },
        },
      },
    },
    succeeded: { tags: 'final', entry: announce('succeeded') },
    failed: { tags: 'final', entry: announce('failed') },
    cancelled: { tags: 'final', entry: announce('cancelled') },
    timedOut: { tags: 'final', entry: announce('timedOut') },
    skipped: { tags: 'final', entry: announce('skipped') },
  },
  // Task outcomes, the same from `starting` and `running` (a fast task may skip RUNNING, and
  // reconciliation reports only the latest state); CANCEL and RETRY everywhere they apply.
  on: {
    TASK_FINISHED: [
      { guard: and(['isCurrentTask', 'inTask', 'exitedZero']), target: '.succeeded', actions: assign(({ context, event }) => ended(context, 'succeeded', event)) },
      { guard: and(['isCurrentTask', 'inTask', 'hasRetriesLeft']), target: '.waiting', actions: assign(({ context, event }) => nextAttempt(ended(context, 'failed', event))) },
      { guard: and(['isCurrentTask', 'inTask']), target: '.failed', actions: assign(({ context, event }) => ended(context, 'failed', event)) },
    ],
    TASK_FAILED: [
      { guard: and(['isCurrentTask', 'inTask', 'hasRetriesLeft']), target: '.waiting', actions: assign(({ context, event }) => nextAttempt(ended(context, 'failed', event))) },
      { guard: and(['isCurrentTask', 'inTask']), target: '.failed', actions: assign(({ context, event }) => ended(context, 'failed', event)) },
    ],
    TASK_LOST: [
      { guard: and(['isCurrentTask', 'inTask', 'hasRequeuesLeft']), target: '.waiting', actions: assign(({ context, event }) => requeued(ended(context, 'lost', event))) },
      { guard: and(['isCurrentTask', 'inTask']), target: '.failed', actions: assign(({ context, event }) => ended(context, 'lost', event)) },
    ],
    TASK_PREEMPTED: [
      { guard: and(['isCurrentTask', 'inTask', 'hasRequeuesLeft']), target: '.waiting', actions: assign(({ context, event }) => requeued(ended(context, 'preempted', event))) },
      { guard: and(['isCurrentTask', 'inTask']), target: '.failed', actions: assign(({ context, event }) => ({ ...ended(context, 'preempted', event), reason: 'preempted' })) },
    ],
    CANCEL: {
      guard: 'inTask',
      target: '.cancelled',
      actions: [
        { type: 'killTask', params: ({ context }) => ({ jobId: context.jobId, taskId: context.taskId!, reason: 'cancel' as const }) },
        assign(({ context, event }) => ended(context, 'cancelled', event)),
      ],
    },
    RETRY: {
      guard: 'isFinal',
      target: '.queued',
      actions: assign(({ context }) => ({
        ...context, ...NO_TASK, attempt: context.attempt + 1, retriesLeft: context.retries, requeues: 0,
      })),
    },
  },
})

function nextAttempt(c: JobContext): JobContext {
  return { ...c, ...NO_TASK, attempt: c.attempt + 1, retriesLeft: c.retriesLeft - 1 }
}

function requeued(c: JobContext): JobContext {
  return { ...c, ...NO_TASK, requeues: c.requeues + 1 }
}

export type JobMachine = typeof jobMachine
