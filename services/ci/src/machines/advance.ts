// How a run advances its jobs, as plain data: a run's context and an event in, the next context
// and the jobs' effects out. Each job is `{ value, context }` stepped with the job machine's
// pure `transition()`; the run machine (run.ts) turns the result into actions and timers.
import { initialTransition, transition, type StateValue } from 'xstate'
import { ancestorsOf, checkJobGraph } from './dag.js'
import {
  FINAL_JOB_STATES, jobInputOf, jobMachine, jobStateName, initialJobContext,
  type JobContext, type JobEvent, type JobStateName, type JobStatusReport, type JobTaskEvent,
  type KillRequest, type PlacementRequest, type PlacementWithdrawal,
} from './job.js'

export interface RunJobSpec {
  id: string
  needs: string[]
  retries: number
  timeoutMs: number
  /** The job's `if` expression (without `${{ }}`); absent means `success()`. */
  if?: string
  maxRequeues?: number
}

export interface RunInput {
  runId: string
  jobs: RunJobSpec[]
  createdAt?: number
}

/** A job inside a run: what `jobMachine.resolveState` takes back. */
export interface JobRecord {
  value: StateValue
  context: JobContext
}

export interface RunContext {
  runId: string
  /** Job ids in the order given, for stable iteration and display. */
  order: string[]
  jobs: Record<string, JobRecord>
  /** Why the run ended `error`. */
  error: string | null
  cancelRequested: boolean
  createdAt: number | null
  startedAt: number | null
  finishedAt: number | null
  /** The `at` of the last event that changed something. */
  updatedAt: number | null
}

/** A timeout of a job falling due; sent by the run to itself, never by the service. */
export interface JobTimerEvent { type: 'JOB_TIMER'; jobId: string; event: { type: string } }

export type RunEvent =
  /** Checkout and planning done: start the jobs whose needs are met. */
  | { type: 'START'; at: number }
  | { type: 'PIPELINE_INVALID'; message: string; at: number }
  /** A task event for one job (the service maps taskId to jobId). */
  | { type: 'JOB_EVENT'; jobId: string; event: JobTaskEvent }
  | { type: 'CANCEL'; at: number }
  /** From failed or cancelled: run again every job that did not succeed. */
  | { type: 'RERUN_FAILED'; at: number }
  /** Sent once after a restore: re-arms timeouts and placement requests. */
  | { type: 'RESUME'; at: number }
  | JobTimerEvent

/** What the `ifHolds` guard is asked: the job's `if` and GitHub's status functions' values. */
export interface IfCheck {
  /** The run the job belongs to (one `ifHolds` serves every run). */
  runId?: string
  jobId: string
  ifExpr: string
  /** `success()`: every need succeeded. */
  success: boolean
  /** `failure()`: some job this one depends on (directly or not) failed or timed out. */
  failure: boolean
  /** `cancelled()`: some job this one depends on was cancelled. */
  cancelled: boolean
}

/**
 * The default `ifHolds`: GitHub's status functions alone (`always()`, `success()`, `failure()`,
 * `cancelled()`, `!cancelled()`); any other expression is taken as `success()`. The CI service
 * provides the real evaluator (expressions over `github.*`, `env.*`, ...).
 */
export function defaultIfHolds(c: IfCheck): boolean {
  switch (c.ifExpr.replace(/\s+/g, '')) {
    case 'always()': return true
    case 'failure()': return c.failure
    case 'cancelled()': return c.cancelled
    case '!cancelled()': return !c.cancelled
    default: return c.success
  }
}

/** One effect of a job, ready to become an action or a timer of the run. */
export type JobEffect =
  | { kind: 'requestPlacement'; params: PlacementRequest }
  | { kind: 'withdrawPlacement'; params: PlacementWithdrawal }
  | { kind: 'killTask'; params: KillRequest }
  | { kind: 'reportStatus'; params: JobStatusReport }
  | { kind: 'timer'; jobId: string; id: string; delay: number; event: { type: string } }
  | { kind: 'cancelTimer'; id: string }

export interface RunAdvance {
  context: RunContext
  effects: JobEffect[]
  changed: boolean
}

export function jobState(record: JobRecord): JobStateName {
  return jobStateName(record.value)
}

function timerId(jobId: string, id: string): string {
  return `${jobId}/${id}`
}

/** The job's own effects from `transition()`, as data. Its `persist` folds into the run's. */
function effectsOf(jobId: string, actions: ReadonlyArray<{ type: string; params?: unknown }>): JobEffect[] {
  const out: JobEffect[] = []
  for (const a of actions) {
    const p = a.params as never
    switch (a.type) {
      case 'requestPlacement': case 'withdrawPlacement': case 'killTask': case 'reportStatus':
        out.push({ kind: a.type, params: p })
        break
      case 'persist':
        break
      case 'xstate.raise': {
        const { id, delay, event } = a.params as { id: string; delay?: number; event: { type: string } }
        if (delay === undefined) throw new Error(`job ${jobId}: an undelayed raise escaped the job machine`)
        out.push({ kind: 'timer', jobId, id: timerId(jobId, id), delay, event })
        break
      }
      case 'xstate.cancel':
        out.push({ kind: 'cancelTimer', id: timerId(jobId, (a.params as { sendId: string }).sendId) })
        break
      default:
        throw new Error(`job ${jobId}: the run cannot forward the job's action ${a.type}`)
    }
  }
  return out
}

/** Advances one job by one event; `changed` is false when the job ignored it. */
function stepJob(record: JobRecord, event: JobEvent | { type: string }): { record: JobRecord; effects: JobEffect[]; changed: boolean } {
  const before = jobMachine.resolveState({ value: record.value, context: record.context })
  const [after, actions] = transition(jobMachine, before, event as JobEvent)
  const changed = actions.length > 0 || after.context !== before.context || JSON.stringify(after.value) !== JSON.stringify(before.value)
  if (!changed) return { record, effects: [], changed }
  return { record: { value: after.value, context: after.context }, effects: effectsOf(record.context.jobId, actions), changed }
}

class Batch {
  jobs: Record<string, JobRecord>
  effects: JobEffect[] = []
  changed = false
  constructor(readonly context: RunContext) {
    this.jobs = context.jobs
  }

  send(jobId: string, event: JobEvent | { type: string }): void {
    const record = this.jobs[jobId]
    if (!record) return
    const step = stepJob(record, event)
    if (!step.changed) return
    this.jobs = { ...this.jobs, [jobId]: step.record }
    this.effects.push(...step.effects)
    this.changed = true
  }

  state(jobId: string): JobStateName {
    return jobState(this.jobs[jobId])
  }

  /** Decides every queued job whose needs have all ended, until nothing more can be decided. */
  settle(at: number, ifHolds: (c: IfCheck) => boolean): void {
    const needsOf = (id: string) => this.jobs[id]?.context.needs ?? []
    for (let progress = true; progress;) {
      progress = false
      for (const id of this.context.order) {
        if (this.state(id) !== 'queued') continue
        const needs = needsOf(id)
        if (!needs.every((n) => FINAL_JOB_STATES.has(this.state(n)))) continue
        const success = needs.every((n) => this.state(n) === 'succeeded')
        const ancestors = [...ancestorsOf(id, needsOf)].map((n) => this.state(n))
        const failure = ancestors.some((s) => s === 'failed' || s === 'timedOut')
        const cancelled = ancestors.some((s) => s === 'cancelled')
        const ifExpr = this.jobs[id].context.ifExpr
        const holds = ifExpr === null ? success : ifHolds({ jobId: id, ifExpr, success, failure, cancelled })
        this.send(id, holds || success ? { type: 'NEEDS_MET', ifHolds: holds, at } : { type: 'NEEDS_FAILED', at })
        progress = true
      }
    }
  }

  result(extra: Partial<RunContext> = {}): RunAdvance {
    const changed = this.changed || Object.keys(extra).length > 0
    return { context: changed ? { ...this.context, ...extra, jobs: this.jobs } : this.context, effects: this.effects, changed }
  }
}

/**
 * The run's reaction to `event`, as data: the next context and the jobs' effects in order. Pure;
 * the machine's `advance` action turns the result into an assign, actions and timers.
 */
export function advanceRun(context: RunContext, event: RunEvent, ifHolds: (c: IfCheck) => boolean): RunAdvance {
  const guard = ifHolds
  ifHolds = (c) => guard({ ...c, runId: context.runId })
  const batch = new Batch(context)
  const notEnded = context.order.filter((id) => !FINAL_JOB_STATES.has(batch.state(id)))
  switch (event.type) {
    case 'START':
      batch.settle(event.at, ifHolds)
      return batch.result({ startedAt: event.at, updatedAt: event.at })
    case 'PIPELINE_INVALID':
      for (const id of notEnded) batch.send(id, { type: 'CANCEL', at: event.at })
      return batch.result({ error: event.message, updatedAt: event.at })
    case 'JOB_EVENT':
      batch.send(event.jobId, event.event)
      if (!batch.changed) return batch.result()
      batch.settle(event.event.at, ifHolds)
      return batch.result({ updatedAt: event.event.at })
    case 'JOB_TIMER': {
      batch.send(event.jobId, event.event)
      if (!batch.changed) return batch.result()
      // The job ends at its deadline, which is also the time of what follows from it.
      const at = batch.jobs[event.jobId].context.finishedAt ?? context.updatedAt ?? 0
      batch.settle(at, ifHolds)
      return batch.result({ updatedAt: at })
    }
    case 'CANCEL':
      for (const id of notEnded) batch.send(id, { type: 'CANCEL', at: event.at })
      return batch.result({ cancelRequested: true, updatedAt: event.at })
    case 'RERUN_FAILED':
      for (const id of context.order) {
        if (batch.state(id) !== 'succeeded') batch.send(id, { type: 'RETRY', at: event.at })
      }
      batch.settle(event.at, ifHolds)
      return batch.result({ cancelRequested: false, startedAt: event.at, finishedAt: null, updatedAt: event.at })
    case 'RESUME':
      for (const id of notEnded) batch.send(id, { type: 'RESUME', at: event.at })
      // Re-arming timers is no change of state: nothing to persist.
      return { ...batch.result(), changed: false }
  }
}

/** The effects of every job's initial `queued` entry (its pending status). */
export function initialEffects(context: RunContext): JobEffect[] {
  return context.order.flatMap((id) => {
    const [, actions] = initialTransition(jobMachine, jobInputOf(context.jobs[id].context))
    return effectsOf(id, actions)
  })
}

export function allEnded(c: RunContext): boolean {
  return c.order.every((id) => FINAL_JOB_STATES.has(jobState(c.jobs[id])))
}

export function initialRunContext(input: RunInput): RunContext {
  const error = checkJobGraph(input.jobs)
  const jobs: Record<string, JobRecord> = {}
  if (error === null) {
    for (const spec of input.jobs) {
      jobs[spec.id] = {
        value: 'queued',
        context: initialJobContext({
          jobId: spec.id, needs: spec.needs, retries: spec.retries, timeoutMs: spec.timeoutMs,
          ...(spec.if !== undefined ? { ifExpr: spec.if } : {}),
          ...(spec.maxRequeues !== undefined ? { maxRequeues: spec.maxRequeues } : {}),
        }),
      }
    }
  }
  return {
    runId: input.runId,
    order: error === null ? input.jobs.map((j) => j.id) : [],
    jobs,
    error,
    cancelRequested: false,
    createdAt: input.createdAt ?? null,
    startedAt: null,
    finishedAt: null,
    updatedAt: input.createdAt ?? null,
  }
}
