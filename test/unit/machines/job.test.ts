// The job machine alone, driven by the pure transition() (and by an actor on a simulated clock for its timeout).
import t from 'tap'
import { SimulatedClock, createActor, initialTransition, transition } from 'xstate'
import {
  jobMachine, jobStateName, type JobEvent, type JobInput, type JobStatusReport,
} from '../../../services/ci/src/machines/index.js'

type Snap = ReturnType<typeof initialTransition<typeof jobMachine>>[0]
type Action = { type: string; params?: unknown }

/** A job driven by transition(), keeping every action it asked for. */
class Job {
  snap: Snap
  actions: Action[] = []
  constructor(input: Partial<JobInput> = {}) {
    const [snap, actions] = initialTransition(jobMachine, { jobId: 'build', needs: [], retries: 0, timeoutMs: 60_000, ...input })
    this.snap = snap
    this.actions.push(...actions)
  }

  send(event: JobEvent | { type: string }): Action[] {
    const [snap, actions] = transition(jobMachine, this.snap, event as JobEvent)
    this.snap = snap
    this.actions.push(...actions)
    return actions
  }

  get state() {
    return jobStateName(this.snap.value)
  }

  get ctx() {
    return this.snap.context
  }

  named(type: string): unknown[] {
    return this.actions.filter((a) => a.type === type).map((a) => a.params)
  }

  statuses(): string[] {
    return (this.named('reportStatus') as JobStatusReport[]).map((p) => `${p.status}:${p.state}`)
  }

  /** NEEDS_MET, LAUNCHED and TASK_RUNNING: the job runs `taskId`. */
  run(taskId: string, at = 0): void {
    if (this.state === 'queued') this.send({ type: 'NEEDS_MET', ifHolds: true, at })
    this.send({ type: 'LAUNCHED', taskId, at })
    this.send({ type: 'TASK_RUNNING', taskId, at })
  }
}

t.test('Checks that a queued job reports pending and asks for placement only once its needs are met', async (t) => {
  const job = new Job({ needs: ['lint'] })
  t.equal(job.state, 'queued')
  t.same(job.named('requestPlacement'), [], 'no placement while needs are pending')
  t.same(job.statuses(), ['pending:queued'])
  t.match(job.named('reportStatus')[0], { description: 'Queued: waiting for lint' })
  t.same(job.send({ type: 'LAUNCHED', taskId: 'x', at: 1 }), [], 'a launch before its needs are met is ignored')
  job.send({ type: 'NEEDS_MET', ifHolds: true, at: 5 })
  t.equal(job.state, 'waiting')
  t.same(job.named('requestPlacement'), [{ jobId: 'build', attempt: 1, requeue: 0 }])
})

t.test('Checks that a false if and a failed need both skip the job, with a passing status saying why', async (t) => {
  const ifFalse = new Job()
  ifFalse.send({ type: 'NEEDS_MET', ifHolds: false, at: 3 })
  t.equal(ifFalse.state, 'skipped')
  t.match(ifFalse.ctx, { reason: 'if-false', finishedAt: 3 })
  t.match(ifFalse.named('reportStatus').at(-1), { status: 'success', description: 'Skipped: its if condition is false' })

  const needFailed = new Job()
  needFailed.send({ type: 'NEEDS_FAILED', at: 4 })
  t.equal(needFailed.state, 'skipped')
  t.match(needFailed.ctx, { reason: 'needs-failed' })
  t.match(needFailed.named('reportStatus').at(-1), { description: 'Skipped: a job it needs did not succeed' })
  t.same(needFailed.named('requestPlacement'), [])
})

t.test('Checks that a job runs through starting and running to succeeded, recording times and the attempt', async (t) => {
  const job = new Job()
  job.send({ type: 'NEEDS_MET', ifHolds: true, at: 0 })
  job.send({ type: 'LAUNCHED', taskId: 't1', at: 10 })
  t.equal(job.state, 'starting')
  job.send({ type: 'TASK_RUNNING', taskId: 't1', at: 20 })
  t.equal(job.state, 'running')
  job.send({ type: 'TASK_FINISHED', taskId: 't1', exitCode: 0, at: 65_020 })
  t.equal(job.state, 'succeeded')
  t.ok(job.snap.hasTag('final'))
  t.match(job.ctx, { attempt: 1, taskId: 't1', launchedAt: 10, startedAt: 20, finishedAt: 65_020, exitCode: 0 })
  t.same(job.ctx.history.map((h) => [h.attempt, h.taskId, h.outcome]), [[1, 't1', 'succeeded']])
  t.same(job.statuses(), ['pending:queued', 'pending:waiting', 'pending:starting', 'pending:running', 'success:succeeded'])
  t.match(job.named('reportStatus').at(-1), { description: 'Succeeded in 1m 5s' })
})

t.test('Checks that a task that finishes without a RUNNING update (a fast task, or a reconciliation) still ends the job', async (t) => {
  const job = new Job()
  job.send({ type: 'NEEDS_MET', ifHolds: true, at: 0 })
  job.send({ type: 'LAUNCHED', taskId: 't1', at: 1 })
  job.send({ type: 'TASK_FINISHED', taskId: 't1', exitCode: 0, at: 2 })
  t.equal(job.state, 'succeeded')
  t.equal(job.ctx.startedAt, null)
})

t.test('Checks that a failed attempt with retries left goes back to waiting as attempt + 1, and the last one fails', async (t) => {
  const job = new Job({ retries: 2 })
  job.run('t1')
  job.send({ type: 'TASK_FAILED', taskId: 't1', exitCode: 2, reason: 'REASON_COMMAND_EXECUTOR_FAILED', message: 'exit 2', at: 5 })
  t.equal(job.state, 'waiting')
  t.match(job.ctx, { attempt: 2, retriesLeft: 1, taskId: null, exitCode: null })
  job.run('t2', 6)
  // A non-zero FINISHED counts as a failure too.
  job.send({ type: 'TASK_FINISHED', taskId: 't2', exitCode: 1, at: 7 })
  t.equal(job.state, 'waiting')
  t.match(job.ctx, { attempt: 3, retriesLeft: 0 })
  job.run('t3', 8)
  job.send({ type: 'TASK_FAILED', taskId: 't3', exitCode: 3, reason: 'REASON_COMMAND_EXECUTOR_FAILED', at: 90_008 })
  t.equal(job.state, 'failed')
  t.same(job.ctx.history.map((h) => [h.attempt, h.taskId, h.outcome, h.exitCode]), [
    [1, 't1', 'failed', 2], [2, 't2', 'failed', 1], [3, 't3', 'failed', 3],
  ])
  t.same(job.named('requestPlacement'), [{ jobId: 'build', attempt: 1, requeue: 0 }, { jobId: 'build', attempt: 2, requeue: 0 }, { jobId: 'build', attempt: 3, requeue: 0 }])
  t.match(job.named('reportStatus').at(-1), { status: 'failure', description: 'Failed with exit code 3 in 1m 30s (attempt 3)', attempt: 3 })
})

t.test('Checks that lost and preempted tasks requeue without spending an attempt, up to maxRequeues, then fail with error', async (t) => {
  const job = new Job({ retries: 1, maxRequeues: 2 })
  job.run('t1')
  job.send({ type: 'TASK_LOST', taskId: 't1', reason: 'REASON_AGENT_REMOVED', at: 5 })
  t.equal(job.state, 'waiting')
  t.match(job.ctx, { attempt: 1, retriesLeft: 1, requeues: 1 })
  t.match(job.named('reportStatus').at(-1), { status: 'pending', description: 'Requeued after its task was lost: waiting for resources' })
  job.run('t2')
  job.send({ type: 'TASK_PREEMPTED', taskId: 't2', at: 6 })
  t.equal(job.state, 'waiting')
  t.match(job.ctx, { attempt: 1, retriesLeft: 1, requeues: 2 })
  job.run('t3')
  job.send({ type: 'TASK_LOST', taskId: 't3', reason: 'REASON_AGENT_REMOVED', at: 7 })
  t.equal(job.state, 'failed', 'the third loss is past maxRequeues = 2')
  t.match(job.ctx, { attempt: 1, retriesLeft: 1 }, 'still no attempt spent')
  t.same(job.ctx.history.map((h) => h.outcome), ['lost', 'preempted', 'lost'])
  t.match(job.named('reportStatus').at(-1), { status: 'error', description: 'Gave up after 3 lost or preempted tasks (last: lost, REASON_AGENT_REMOVED)' })
  t.same(job.named('requestPlacement'), [0, 1, 2].map((requeue) => ({ jobId: 'build', attempt: 1, requeue })), 'each relaunch is asked for as a new task')
})

t.test('Checks that updates about a task that is not the job\'s current one change nothing', async (t) => {
  const job = new Job({ retries: 1 })
  job.run('t1')
  job.send({ type: 'TASK_LOST', taskId: 't1', reason: 'REASON_AGENT_REMOVED', at: 1 })
  t.equal(job.state, 'waiting')
  t.same(job.send({ type: 'TASK_FINISHED', taskId: 't1', exitCode: 0, at: 2 }), [], 'late FINISHED of the lost task, while waiting')
  job.run('t2')
  t.same(job.send({ type: 'TASK_FAILED', taskId: 't1', reason: 'x', at: 3 }), [], 'late FAILED of the old task, while running')
  t.equal(job.state, 'running')
  job.send({ type: 'TASK_FINISHED', taskId: 't2', exitCode: 0, at: 4 })
  t.equal(job.state, 'succeeded')
  t.same(job.send({ type: 'TASK_FINISHED', taskId: 't2', exitCode: 0, at: 5 }), [], 'a duplicate update after the end')
  t.same(job.send({ type: 'TASK_LOST', taskId: 't2', reason: 'x', at: 6 }), [])
  t.equal(job.state, 'succeeded')
})

t.test('Checks that the timeout, counted from RUNNING on a simulated clock, kills the task and ends timedOut without retrying', async (t) => {
  const clock = new SimulatedClock()
  const kills: unknown[] = []
  const reports: string[] = []
  const actor = createActor(jobMachine.provide({
    actions: {
      killTask: (_, p) => { kills.push(p) },
      reportStatus: (_, p) => { reports.push(`${p.status}:${p.state}`) },
    },
  }), { clock, input: { jobId: 'build', needs: [], retries: 3, timeoutMs: 20 * 60_000 } })
  actor.start()
  actor.send({ type: 'NEEDS_MET', ifHolds: true, at: 0 })
  actor.send({ type: 'LAUNCHED', taskId: 't1', at: 0 })
  clock.increment(5 * 60_000)
  t.equal(jobStateName(actor.getSnapshot().value), 'starting', 'no timeout before RUNNING')
  actor.send({ type: 'TASK_RUNNING', taskId: 't1', at: clock.now() })
  clock.increment(20 * 60_000 - 1)
  t.equal(jobStateName(actor.getSnapshot().value), 'running', 'still running 1 ms before the deadline')
  t.same(kills, [])
  clock.increment(1)
  t.equal(jobStateName(actor.getSnapshot().value), 'timedOut')
  t.same(kills, [{ jobId: 'build', taskId: 't1', reason: 'timeout' }])
  t.match(actor.getSnapshot().context, { attempt: 1, retriesLeft: 3, finishedAt: 25 * 60_000, reason: 'timeout' }, 'retries untouched: timeouts are not retried')
  t.same(reports.slice(-2), ['pending:running', 'error:timedOut'])
  // The kill's own update arrives later and changes nothing.
  actor.send({ type: 'TASK_FAILED', taskId: 't1', reason: 'REASON_TASK_KILLED', at: clock.now() })
  t.equal(jobStateName(actor.getSnapshot().value), 'timedOut')
  actor.stop()
})

t.test('Checks that the timeout is disarmed when the task ends first', async (t) => {
  const clock = new SimulatedClock()
  const kills: unknown[] = []
  const actor = createActor(jobMachine.provide({ actions: { killTask: (_, p) => { kills.push(p) } } }),
    { clock, input: { jobId: 'build', needs: [], retries: 0, timeoutMs: 1000 } })
  actor.start()
  actor.send({ type: 'NEEDS_MET', ifHolds: true, at: 0 })
  actor.send({ type: 'LAUNCHED', taskId: 't1', at: 0 })
  actor.send({ type: 'TASK_RUNNING', taskId: 't1', at: 0 })
  actor.send({ type: 'TASK_FINISHED', taskId: 't1', exitCode: 0, at: 500 })
  clock.increment(10_000)
  t.equal(jobStateName(actor.getSnapshot().value), 'succeeded')
  t.same(kills, [])
  actor.stop()
})

t.test('Checks that RESUME re-arms the timeout for what is left of it, without announcing running again', async (t) => {
  const job = new Job({ timeoutMs: 60_000 })
  job.run('t1', 1000)
  const actions = job.send({ type: 'RESUME', at: 41_000 })
  t.same(actions.map((a) => a.type), ['xstate.cancel', 'xstate.raise'])
  t.match(actions[1].params, { delay: 20_000 })
  const late = job.send({ type: 'RESUME', at: 500_000 })
  t.match(late[1].params, { delay: 0 }, 'past the deadline: due at once')
  const waiting = new Job()
  waiting.send({ type: 'NEEDS_MET', ifHolds: true, at: 0 })
  t.same(waiting.send({ type: 'RESUME', at: 9 }).map((a) => [a.type, a.params]), [['requestPlacement', { jobId: 'build', attempt: 1, requeue: 0 }]],
    'a waiting job asks for placement again')
})

t.test('Checks that CANCEL kills a starting or running task, withdraws a waiting placement, and ends every live state cancelled', async (t) => {
  for (const [name, setup] of [
    ['queued', (_j: Job) => {}],
    ['waiting', (j: Job) => j.send({ type: 'NEEDS_MET', ifHolds: true, at: 0 })],
    ['starting', (j: Job) => { j.send({ type: 'NEEDS_MET', ifHolds: true, at: 0 }); j.send({ type: 'LAUNCHED', taskId: 't1', at: 0 }) }],
    ['running', (j: Job) => j.run('t1')],
  ] as const) {
    const job = new Job()
    setup(job)
    t.equal(job.state, name)
    job.send({ type: 'CANCEL', at: 50 })
    t.equal(job.state, 'cancelled', `cancel from ${name}`)
    t.equal(job.ctx.finishedAt, 50)
    t.same(job.named('killTask'), name === 'starting' || name === 'running' ? [{ jobId: 'build', taskId: 't1', reason: 'cancel' }] : [], `kill from ${name}`)
    t.same(job.named('withdrawPlacement'), name === 'waiting' ? [{ jobId: 'build' }] : [], `withdraw from ${name}`)
    t.match(job.named('reportStatus').at(-1), { status: 'error', description: 'Cancelled' })
  }
  const done = new Job()
  done.run('t1')
  done.send({ type: 'TASK_FINISHED', taskId: 't1', exitCode: 0, at: 1 })
  t.same(done.send({ type: 'CANCEL', at: 2 }), [], 'an ended job is not cancelled')
  t.equal(done.state, 'succeeded')
})

t.test('Checks that RETRY reruns an ended job as a new attempt with its retries and requeues back, and is ignored while live', async (t) => {
  const job = new Job({ retries: 1, maxRequeues: 1 })
  t.same(job.send({ type: 'RETRY', at: 0 }), [], 'no RETRY while queued')
  job.run('t1')
  t.same(job.send({ type: 'RETRY', at: 0 }), [], 'no RETRY while running')
  job.send({ type: 'TASK_LOST', taskId: 't1', reason: 'r', at: 1 })
  job.run('t2')
  job.send({ type: 'TASK_FAILED', taskId: 't2', reason: 'r', at: 2 })
  job.run('t3')
  job.send({ type: 'TASK_FAILED', taskId: 't3', reason: 'r', at: 3 })
  t.equal(job.state, 'failed')
  t.match(job.ctx, { attempt: 2, retriesLeft: 0, requeues: 1 })
  job.send({ type: 'RETRY', at: 10 })
  t.equal(job.state, 'queued')
  t.match(job.ctx, { attempt: 3, retriesLeft: 1, requeues: 0, taskId: null, finishedAt: null, reason: null })
  t.equal(job.ctx.history.length, 3, 'history kept')
  t.same(job.statuses().slice(-2), ['failure:failed', 'pending:queued'])
  job.run('t4', 11)
  job.send({ type: 'TASK_FINISHED', taskId: 't4', exitCode: 0, at: 12 })
  t.equal(job.state, 'succeeded')
})

t.test('Checks that every state change reports a status and then persists, and nothing else does', async (t) => {
  const job = new Job({ retries: 1 })
  job.run('t1')
  job.send({ type: 'TASK_FAILED', taskId: 't1', reason: 'r', at: 1 })
  job.run('t2')
  job.send({ type: 'TASK_RUNNING', taskId: 't2', at: 2 })
  job.send({ type: 'RESUME', at: 3 })
  job.send({ type: 'TASK_FINISHED', taskId: 't2', exitCode: 0, at: 4 })
  const seq = job.actions.filter((a) => a.type === 'reportStatus' || a.type === 'persist')
    .map((a) => `${a.type}:${(a.params as { state: string }).state}`)
  const states = ['queued', 'waiting', 'starting', 'running', 'waiting', 'starting', 'running', 'succeeded']
  t.same(seq, states.flatMap((s) => [`reportStatus:${s}`, `persist:${s}`]))
})

t.test('Checks that a long description is clipped to GitHub\'s 140 characters', async (t) => {
  const job = new Job({ needs: Array.from({ length: 40 }, (_, i) => `a-rather-long-job-name-${i}`) })
  const d = (job.named('reportStatus')[0] as JobStatusReport).description
  t.equal(d.length, 140)
  t.ok(d.endsWith('…'))
})
