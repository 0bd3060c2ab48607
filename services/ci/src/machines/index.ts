// The run and job state machines of the CI service: pure xstate 5 machines whose effects the
// service provides, and the persisted form of a run.
//
// Usage (the CI service; `kv`, `scheduler`, `statuses` and `evaluateCondition` are its own):
//
//   import { checkpointer, createRunMachine, parseRun, resumeRun, activeTasks } from './machines/index.js'
//   import { createActor } from 'xstate'
//
//   const saved = checkpointer((run) => kv.put(`run.${run.runId}`, JSON.stringify(run)), (err, runId) => log.error({ err, runId }))
//   const machine = createRunMachine({
//     requestPlacement: ({ runId, jobId, attempt }) => scheduler.want(runId, jobId, attempt),
//     withdrawPlacement: ({ runId, jobId }) => scheduler.forget(runId, jobId),
//     killTask: ({ taskId }) => scheduler.kill(taskId),
//     reportStatus: ({ runId, jobId, status, description }) => statuses.set(runId, jobId, status, description),
//     persist: saved.persist,
//     ifHolds: ({ jobId, ifExpr, success, failure, cancelled }) =>
//       evaluateCondition(ifExpr, { ...contextOf(jobId), status: { success, failure, cancelled } }),
//   })
//
//   // A new run: jobs from the planner, START once checked out.
//   const run = createActor(machine, { input: { runId, jobs: [{ id: 'build', needs: [], retries: 0, timeoutMs: 20 * 60_000 }] } })
//   run.start()
//   run.send({ type: 'START', at: Date.now() })
//   // An offer fits job `build`: record the task first, then launch it.
//   run.send({ type: 'JOB_EVENT', jobId: 'build', event: { type: 'LAUNCHED', taskId, at: Date.now() } })
//   await saved.flush()
//   await scheduler.accept(offer, taskFor('build', taskId))
//   // Task status updates, mapped from TaskStatus by the service:
//   run.send({ type: 'JOB_EVENT', jobId: 'build', event: { type: 'TASK_RUNNING', taskId, at: Date.now() } })
//
//   // After a restart: restore every stored run, re-arm its timers, reconcile its tasks.
//   const stored = parseRun(entry.value)
//   const resumed = resumeRun(machine, stored, { at: Date.now() })
//   await scheduler.reconcile(activeTasks(stored).map((t) => t.taskId))
//
// Events carry `at` (the service's clock), so the machines never read a clock. Tests drive
// the machines with `transition()` or with `createActor` and xstate's `SimulatedClock`.
export {
  jobMachine, jobStatus, jobStateName, initialJobContext, jobInputOf, duration,
  JOB_STATES, FINAL_JOB_STATES, DEFAULT_MAX_REQUEUES,
  type JobMachine, type JobInput, type JobContext, type JobEvent, type JobTaskEvent, type JobStateName,
  type AttemptRecord, type AttemptOutcome, type CommitState,
  type PlacementRequest, type PlacementWithdrawal, type KillRequest, type JobStatusReport, type JobCheckpoint,
} from './job.js'
export {
  runMachine, createRunMachine, RUN_STATES, FINAL_RUN_STATES,
  type RunMachine, type RunStateName, type RunEffects, type PersistableRun,
  type RunPlacementRequest, type RunPlacementWithdrawal, type RunKillRequest, type RunJobStatusReport,
  type RunStatusReport, type RunCheckpoint,
} from './run.js'
export {
  advanceRun, initialRunContext, defaultIfHolds, jobState,
  type RunInput, type RunJobSpec, type RunContext, type RunEvent, type JobTimerEvent,
  type JobRecord, type IfCheck, type RunAdvance, type JobEffect,
} from './advance.js'
export {
  persistRun, serializeRun, parseRun, restoreRun, resumeRun, checkpointer, activeTasks,
  PERSISTED_RUN_VERSION,
  type RunActor, type PersistedRun, type PersistedRunSnapshot, type Checkpointer, type ActiveTask,
} from './persist.js'
export { checkJobGraph, ancestorsOf, MAX_TIMEOUT_MS, type JobNode } from './dag.js'
