// A run actor on a simulated clock with every effect recorded, and shorthands for task events.
import { SimulatedClock, createActor } from 'xstate'
import {
  createRunMachine, jobState, parseRun, resumeRun, persistRun,
  type IfCheck, type JobContext, type JobStateName, type JobTaskEvent, type PersistedRun,
  type RunActor, type RunEffects, type RunJobSpec, type RunMachine, type RunStateName,
} from '../../../services/ci/src/machines/index.js'

export type Effect = { type: keyof RunEffects; params: Record<string, unknown> }

export function job(id: string, needs: string[] = [], more: Partial<RunJobSpec> = {}): RunJobSpec {
  return { id, needs, retries: 0, timeoutMs: 60_000, ...more }
}

export function recordingMachine(effects: Effect[], ifHolds?: (c: IfCheck) => boolean): RunMachine {
  const rec = (type: keyof RunEffects) => (params: object) => { effects.push({ type, params: params as Record<string, unknown> }) }
  return createRunMachine({
    requestPlacement: rec('requestPlacement'),
    withdrawPlacement: rec('withdrawPlacement'),
    killTask: rec('killTask'),
    reportStatus: rec('reportStatus'),
    reportRun: rec('reportRun'),
    persist: rec('persist'),
    ...(ifHolds ? { ifHolds } : {}),
  })
}

export class RunHarness {
  clock = new SimulatedClock()
  readonly effects: Effect[] = []
  readonly machine: RunMachine
  actor: RunActor
  private launches = 0

  constructor(readonly jobs: RunJobSpec[], options: { ifHolds?: (c: IfCheck) => boolean; start?: boolean; runId?: string } = {}) {
    this.machine = recordingMachine(this.effects, options.ifHolds)
    this.actor = createActor(this.machine, { clock: this.clock, input: { runId: options.runId ?? 'run-1', jobs, createdAt: 0 } })
    this.actor.start()
    if (options.start !== false) this.actor.send({ type: 'START', at: this.now })
  }

  get now(): number {
    return this.clock.now()
  }

  advance(ms: number): void {
    this.clock.increment(ms)
  }

  state(): RunStateName {
    return this.actor.getSnapshot().value as RunStateName
  }

  jobState(id: string): JobStateName {
    return jobState(this.actor.getSnapshot().context.jobs[id])
  }

  job(id: string): JobContext {
    return this.actor.getSnapshot().context.jobs[id].context
  }

  states(): Record<string, JobStateName> {
    const c = this.actor.getSnapshot().context
    return Object.fromEntries(c.order.map((id) => [id, jobState(c.jobs[id])]))
  }

  jobEvent(jobId: string, event: JobTaskEvent): void {
    this.actor.send({ type: 'JOB_EVENT', jobId, event })
  }

  private task(id: string): string {
    const taskId = this.job(id).taskId
    if (taskId === null) throw new Error(`job ${id} has no task (it is ${this.jobState(id)})`)
    return taskId
  }

  launch(id: string): string {
    const taskId = `${id}.${++this.launches}`
    this.jobEvent(id, { type: 'LAUNCHED', taskId, at: this.now })
    return taskId
  }

  running(id: string): void {
    this.jobEvent(id, { type: 'TASK_RUNNING', taskId: this.task(id), at: this.now })
  }

  finish(id: string, exitCode = 0): void {
    this.jobEvent(id, { type: 'TASK_FINISHED', taskId: this.task(id), exitCode, at: this.now })
  }

  fail(id: string, exitCode = 1): void {
    this.jobEvent(id, { type: 'TASK_FAILED', taskId: this.task(id), exitCode, reason: 'REASON_COMMAND_EXECUTOR_FAILED', message: `exit ${exitCode}`, at: this.now })
  }

  lost(id: string): void {
    this.jobEvent(id, { type: 'TASK_LOST', taskId: this.task(id), reason: 'REASON_AGENT_REMOVED', at: this.now })
  }

  preempt(id: string): void {
    this.jobEvent(id, { type: 'TASK_PREEMPTED', taskId: this.task(id), at: this.now })
  }

  /** Launch, run and end a job in one go. */
  complete(id: string, exitCode = 0): void {
    this.launch(id)
    this.running(id)
    if (exitCode === 0) this.finish(id)
    else this.fail(id, exitCode)
  }

  of(type: keyof RunEffects): Array<Record<string, unknown>> {
    return this.effects.filter((e) => e.type === type).map((e) => e.params)
  }

  /** `status:state` of each report for a job, in order. */
  statuses(jobId: string): string[] {
    return this.of('reportStatus').filter((p) => p.jobId === jobId).map((p) => `${p.status}:${p.state}`)
  }

  placements(): string[] {
    return this.of('requestPlacement').map((p) => `${p.jobId}#${p.attempt}`)
  }

  persisted(): PersistedRun {
    return persistRun(this.actor)
  }

  /** Stops this actor and carries on from its persisted JSON on a new clock at the same time, as a restarted service. */
  restart(): void {
    const text = JSON.stringify(this.persisted())
    this.actor.stop()
    const now = this.now
    this.clock = new SimulatedClock()
    this.clock.set(now)
    this.actor = resumeRun(this.machine, parseRun(text), { clock: this.clock, at: now })
  }
}
