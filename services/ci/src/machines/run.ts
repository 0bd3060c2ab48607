// A run as an xstate machine: the coordinator of its jobs. It decides when a job's needs are
// met, routes task events to jobs, cancels, reruns, and ends when every job has ended.
//
//   pending --START--> running --(every job ended)--> succeeded | failed | cancelled
//      |  PIPELINE_INVALID / bad job graph --> error (with its message)
//      +--CANCEL--> cancelled                    failed | cancelled --RERUN_FAILED--> running
//
// How jobs live inside the run (the persistence choice). The run does not spawn job actors:
// its context holds each job as plain data `{ value, context }` and advances it with the job
// machine's pure `transition()`, forwarding the job's effects as its own named actions (with
// `runId` added) and its timeout timer as a delayed `JOB_TIMER` event of the run. Checked in
// xstate 5.33 against invoked/spawned children:
// - children do survive `getPersistedSnapshot()` and `createActor(machine, { snapshot })` when
//   their `src` names an actor of `setup({ actors })`, but a child and its parent are persisted
//   from two mailboxes: a child's `sendParent` is processed after the parent's current event,
//   so a snapshot written in between holds a child that moved and a parent that has not heard,
//   and restoring it leaves the run waiting for a message that will never come;
// - `transition()` cannot drive a parent with children (sends to children are deferred
//   effects, `sendParent` throws without a parent), so the run could not be tested purely;
// - effects provided to the run do not reach children (each child needs its own `provide`).
// As plain data, a run is one JSON document written at once, restored by
// `createActor(runMachine, { snapshot })` with no actor registry, and the whole run can be
// driven by `transition()` in tests. Delayed events are not persisted by xstate either way
// (neither the root's nor children's): after a restore the service sends RESUME, which
// re-arms each running job's timeout for what is left of it.
//
// Times: every outside event carries `at` (the service's clock), so the machine never reads a
// clock and the same events give the same snapshot.
import { assign, enqueueActions, setup, type Snapshot } from 'xstate'
import {
  advanceRun, allEnded, defaultIfHolds, initialEffects, initialRunContext, jobState,
  type IfCheck, type RunContext, type RunEvent, type RunInput,
} from './advance.js'
import type { JobStatusReport, KillRequest, PlacementRequest, PlacementWithdrawal } from './job.js'

export const RUN_STATES = ['pending', 'running', 'succeeded', 'failed', 'cancelled', 'error'] as const
export type RunStateName = (typeof RUN_STATES)[number]
export const FINAL_RUN_STATES: ReadonlySet<RunStateName> = new Set<RunStateName>(['succeeded', 'failed', 'cancelled', 'error'])

// The run's effects: the job's, with the run id added, and the run's own.
export type RunPlacementRequest = PlacementRequest & { runId: string }
export type RunPlacementWithdrawal = PlacementWithdrawal & { runId: string }
export type RunKillRequest = KillRequest & { runId: string }
export type RunJobStatusReport = JobStatusReport & { runId: string }
export interface RunStatusReport { runId: string; state: RunStateName; description: string }
export interface RunCheckpoint { runId: string }

function runDescription(state: RunStateName, c: RunContext): string {
  switch (state) {
    case 'pending': return 'Checking out and planning'
    case 'running': return `Running ${c.order.length} job${c.order.length === 1 ? '' : 's'}`
    case 'succeeded': return 'Succeeded'
    case 'failed': {
      const bad = c.order.filter((id) => ['failed', 'timedOut'].includes(jobState(c.jobs[id])))
      return bad.length > 0 ? `Failed: ${bad.join(', ')}` : 'Failed'
    }
    case 'cancelled': return 'Cancelled'
    case 'error': return c.error ?? 'Error'
  }
}

const announce = (state: RunStateName) => [
  { type: 'reportRun' as const, params: ({ context }: { context: RunContext }) => ({ runId: context.runId, state, description: runDescription(state, context) }) },
  { type: 'persist' as const, params: ({ context }: { context: RunContext }) => ({ runId: context.runId }) },
]

const runSetup = setup({
  types: {
    input: {} as RunInput,
    context: {} as RunContext,
    events: {} as RunEvent,
  },
  actions: {
    requestPlacement: (_, _p: RunPlacementRequest) => {},
    withdrawPlacement: (_, _p: RunPlacementWithdrawal) => {},
    killTask: (_, _p: RunKillRequest) => {},
    reportStatus: (_, _p: RunJobStatusReport) => {},
    reportRun: (_, _p: RunStatusReport) => {},
    /** Write the run's persisted snapshot; see persist.ts for why after the event settles. */
    persist: (_, _p: RunCheckpoint) => {},
  },
  guards: {
    /** Whether a job's `if` holds; provide the real evaluator with `machine.provide({ guards })`. */
    ifHolds: (_, c: IfCheck) => defaultIfHolds(c),
    graphInvalid: ({ context }) => context.error !== null,
    endedCancelled: ({ context }) => allEnded(context) && context.cancelRequested,
    endedOk: ({ context }) => allEnded(context) && context.order.every((id) => ['succeeded', 'skipped'].includes(jobState(context.jobs[id]))),
    ended: ({ context }) => allEnded(context),
  },
})

// Actions that enqueue the named effects above are made from the setup that names them.
const finish = assign<RunContext, RunEvent, undefined, RunEvent, never>({ finishedAt: ({ context }) => context.updatedAt })

/** Every job's pending status, when the run is created. */
const announceJobs = runSetup.createAction(enqueueActions(({ context, enqueue }) => {
  for (const e of initialEffects(context)) {
    if (e.kind === 'reportStatus') enqueue({ type: 'reportStatus', params: { ...e.params, runId: context.runId } })
  }
}))

/** The machine side of `advanceRun`: its context assigned, its effects enqueued in order. */
const advance = runSetup.createAction(enqueueActions(({ context, event, enqueue, check }) => {
  const next = advanceRun(context, event, (c) => {
    // A guard that throws would crash the run; a condition that cannot be evaluated is false
    // (the job is skipped). The provided guard should log its own failures.
    try {
      return check({ type: 'ifHolds', params: c })
    } catch {
      return false
    }
  })
  const runId = context.runId
  if (next.context !== context) enqueue.assign(next.context)
  for (const e of next.effects) {
    switch (e.kind) {
      case 'requestPlacement': enqueue({ type: 'requestPlacement', params: { ...e.params, runId } }); break
      case 'withdrawPlacement': enqueue({ type: 'withdrawPlacement', params: { ...e.params, runId } }); break
      case 'killTask': enqueue({ type: 'killTask', params: { ...e.params, runId } }); break
      case 'reportStatus': enqueue({ type: 'reportStatus', params: { ...e.params, runId } }); break
      case 'timer':
        enqueue.raise({ type: 'JOB_TIMER', jobId: e.jobId, event: e.event }, { id: e.id, delay: e.delay })
        break
      case 'cancelTimer': enqueue.cancel(e.id); break
    }
  }
  if (next.changed) enqueue({ type: 'persist', params: { runId } })
}))

export const runMachine = runSetup.extend({ actions: { finish, announceJobs, advance } }).createMachine({
  id: 'run',
  context: ({ input }) => initialRunContext(input),
  entry: 'announceJobs',
  initial: 'pending',
  states: {
    pending: {
      entry: announce('pending'),
      always: { guard: 'graphInvalid', target: 'error' },
      on: {
        START: { target: 'running', actions: 'advance' },
        PIPELINE_INVALID: { target: 'error', actions: 'advance' },
        CANCEL: { target: 'cancelled', actions: 'advance' },
      },
    },
    running: {
      entry: announce('running'),
      always: [
        { guard: 'endedCancelled', target: 'cancelled' },
        { guard: 'endedOk', target: 'succeeded' },
        { guard: 'ended', target: 'failed' },
      ],
      on: {
        JOB_EVENT: { actions: 'advance' },
        JOB_TIMER: { actions: 'advance' },
        CANCEL: { actions: 'advance' },
        RESUME: { actions: 'advance' },
      },
    },
    succeeded: { tags: 'final', entry: ['finish', ...announce('succeeded')] },
    failed: {
      tags: 'final',
      entry: ['finish', ...announce('failed')],
      on: { RERUN_FAILED: { target: 'running', actions: 'advance' } },
    },
    cancelled: {
      tags: 'final',
      entry: ['finish', ...announce('cancelled')],
      on: { RERUN_FAILED: { target: 'running', actions: 'advance' } },
    },
    error: { tags: 'final', entry: ['finish', ...announce('error')] },
  },
})

/** Anything that has a run's persisted snapshot: the actor, or `self` inside an action. */
export interface PersistableRun {
  getPersistedSnapshot(): Snapshot<unknown>
}

/** The CI service's side of a run: each effect gets everything it needs in its argument. */
export interface RunEffects {
  /** Ask for an offer for the job (REQUEST demand, REVIVE); LAUNCHED answers it. */
  requestPlacement?(p: RunPlacementRequest): void
  /** The job was cancelled while waiting: stop asking for it. */
  withdrawPlacement?(p: RunPlacementWithdrawal): void
  /** KILL the task; keep at it until a terminal status comes back. */
  killTask?(p: RunKillRequest): void
  /** The job's commit status (context `regatta/<pipeline>/<job>`). */
  reportStatus?(p: RunJobStatusReport): void
  reportRun?(p: RunStatusReport): void
  /** Store the run; `checkpointer().persist` from persist.ts does it after the event settles. */
  persist?(p: RunCheckpoint, run: PersistableRun): void
  /** Whether a job's `if` holds (default: `defaultIfHolds`). Must not throw. */
  ifHolds?(c: IfCheck): boolean
}

export type RunMachine = typeof runMachine

/** The run machine with the service's effects provided (those left out do nothing). */
export function createRunMachine(effects: RunEffects = {}): RunMachine {
  return runMachine.provide({
    actions: {
      requestPlacement: (_, p) => effects.requestPlacement?.(p),
      withdrawPlacement: (_, p) => effects.withdrawPlacement?.(p),
      killTask: (_, p) => effects.killTask?.(p),
      reportStatus: (_, p) => effects.reportStatus?.(p),
      reportRun: (_, p) => effects.reportRun?.(p),
      persist: ({ self }, p) => effects.persist?.(p, self),
    },
    guards: {
      ifHolds: (_, c) => (effects.ifHolds ?? defaultIfHolds)(c),
    },
  })
}
