// The run machine: DAG order, failure propagation, if conditions, retries, timeouts, cancel, rerun, statuses.
import t from 'tap'
import { initialTransition, transition } from 'xstate'
import { runMachine, advanceRun, initialRunContext, type IfCheck, type RunEvent } from '../../../services/ci/src/machines/index.js'
import { RunHarness, job } from './harness.js'

t.test('Checks that a job waits for its needs: placement is asked for in DAG order', async (t) => {
  // build -> (test, lint) -> deploy
  const h = new RunHarness([job('build'), job('test', ['build']), job('lint', ['build']), job('deploy', ['test', 'lint'])])
  t.equal(h.state(), 'running')
  t.same(h.placements(), ['build#1'], 'only the root at first')
  t.same(h.states(), { build: 'waiting', test: 'queued', lint: 'queued', deploy: 'queued' })
  h.launch('build')
  h.running('build')
  t.same(h.placements(), ['build#1'], 'nothing more while build runs')
  h.finish('build')
  t.same(h.placements(), ['build#1', 'test#1', 'lint#1'])
  h.complete('test')
  t.equal(h.jobState('deploy'), 'queued', 'deploy still waits for lint')
  h.complete('lint')
  t.same(h.placements(), ['build#1', 'test#1', 'lint#1', 'deploy#1'])
  h.complete('deploy')
  t.equal(h.state(), 'succeeded')
  t.ok(h.actor.getSnapshot().hasTag('final'))
})

t.test('Checks that a run stays pending, announcing its jobs as pending, until START', async (t) => {
  const h = new RunHarness([job('build'), job('test', ['build'])], { start: false })
  t.equal(h.state(), 'pending')
  t.same(h.placements(), [])
  t.same(h.of('reportStatus').map((p) => `${p.jobId}:${p.status}`), ['build:pending', 'test:pending'], 'statuses go out while checking out')
  t.same(h.of('reportRun').map((p) => p.state), ['pending'])
  h.actor.send({ type: 'START', at: 10 })
  t.equal(h.state(), 'running')
  t.same(h.placements(), ['build#1'])
  t.equal(h.actor.getSnapshot().context.startedAt, 10)
})

t.test('Checks that a failed job skips the jobs that need it, directly or not, and the run fails', async (t) => {
  const h = new RunHarness([job('build'), job('test', ['build']), job('deploy', ['test']), job('docs')])
  h.complete('build', 2)
  t.same(h.states(), { build: 'failed', test: 'skipped', deploy: 'skipped', docs: 'waiting' })
  t.equal(h.state(), 'running', 'docs is still to run')
  h.complete('docs')
  t.equal(h.state(), 'failed')
  t.match(h.of('reportRun').at(-1), { state: 'failed', description: 'Failed: build' })
  t.same(h.placements(), ['build#1', 'docs#1'], 'skipped jobs never asked for resources')
  t.same(h.statuses('deploy'), ['pending:queued', 'success:skipped'])
})

t.test('Checks that always() and failure() jobs run after a failure, and a false if skips a job whose needs succeeded', async (t) => {
  const h = new RunHarness([
    job('build'),
    job('test', ['build']),
    job('report', ['test'], { if: 'always()' }),
    job('notify', ['test'], { if: 'failure()' }),
    job('release', ['test'], { if: "github.ref == 'refs/heads/main'" }),
  ], { ifHolds: (c) => (c.ifExpr.startsWith('github.') ? false : defaultish(c)) })
  h.complete('build', 1)
  // test is skipped; report and notify run anyway (failure() looks at ancestors); release is skipped.
  t.same(h.states(), { build: 'failed', test: 'skipped', report: 'waiting', notify: 'waiting', release: 'skipped' })
  h.complete('report')
  h.complete('notify')
  t.equal(h.state(), 'failed')

  const ok = new RunHarness([
    job('build'),
    job('cleanup', ['build'], { if: 'always()' }),
    job('notify', ['build'], { if: 'failure()' }),
    job('release', ['build'], { if: "github.ref == 'refs/heads/main'" }),
  ], { ifHolds: (c) => (c.ifExpr.startsWith('github.') ? false : defaultish(c)) })
  ok.complete('build')
  t.same(ok.states(), { build: 'succeeded', cleanup: 'waiting', notify: 'skipped', release: 'skipped' })
  t.match(ok.job('release'), { reason: 'if-false' })
  t.match(ok.job('notify'), { reason: 'if-false' })
  ok.complete('cleanup')
  t.equal(ok.state(), 'succeeded', 'skipped jobs do not fail a run')
})

function defaultish(c: IfCheck): boolean {
  return c.ifExpr === 'always()' ? true : c.ifExpr === 'failure()' ? c.failure : c.success
}

t.test('Checks that the ifHolds guard is asked with the job, its expression and the status functions\' values', async (t) => {
  const asked: IfCheck[] = []
  const h = new RunHarness([job('a'), job('b', ['a']), job('c', ['b'], { if: 'custom' }), job('d', ['a'], { if: 'custom' })],
    { ifHolds: (c) => { asked.push(c); return false } })
  t.same(asked, [], 'not asked for jobs whose needs have not ended')
  h.complete('a', 1)
  // b has no if: it is skipped without asking; c (after b's skip) and d are asked, in job order.
  t.same(asked, [
    { jobId: 'c', ifExpr: 'custom', success: false, failure: true, cancelled: false, runId: 'run-1' },
    { jobId: 'd', ifExpr: 'custom', success: false, failure: true, cancelled: false, runId: 'run-1' },
  ], 'failure() is true for c through b, which it does not need directly')
})

t.test('Checks that a guard that throws skips the job instead of crashing the run', async (t) => {
  const h = new RunHarness([job('a'), job('b', ['a'], { if: 'boom' })], { ifHolds: () => { throw new Error('bad expression') } })
  h.complete('a')
  t.equal(h.jobState('b'), 'skipped')
  t.equal(h.state(), 'succeeded')
  t.equal(h.actor.getSnapshot().status, 'active')
})

t.test('Checks that a run retries a failed attempt, and requeues a lost or preempted task without counting it', async (t) => {
  const h = new RunHarness([job('flaky', [], { retries: 1 }), job('after', ['flaky'])])
  h.launch('flaky')
  h.lost('flaky')
  h.launch('flaky')
  h.running('flaky')
  h.preempt('flaky')
  h.complete('flaky', 1)
  t.equal(h.jobState('flaky'), 'waiting')
  t.match(h.job('flaky'), { attempt: 2, retriesLeft: 0, requeues: 2 })
  t.same(h.placements(), ['flaky#1', 'flaky#1', 'flaky#1', 'flaky#2'])
  t.equal(h.jobState('after'), 'queued', 'a retrying job has not ended: its dependents wait')
  h.complete('flaky')
  t.equal(h.jobState('flaky'), 'succeeded')
  t.same(h.job('flaky').history.map((a) => `${a.attempt}:${a.outcome}`), ['1:lost', '1:preempted', '1:failed', '2:succeeded'])
  h.complete('after')
  t.equal(h.state(), 'succeeded')
})

t.test('Checks that a job timeout on the simulated clock kills the task, skips its dependents and fails the run', async (t) => {
  const h = new RunHarness([job('slow', [], { timeoutMs: 10 * 60_000, retries: 2 }), job('next', ['slow'])])
  h.launch('slow')
  h.advance(60_000)
  h.running('slow')
  h.advance(10 * 60_000 - 1)
  t.same(h.of('killTask'), [])
  h.advance(1)
  t.same(h.of('killTask'), [{ runId: 'run-1', jobId: 'slow', taskId: 'slow.1', reason: 'timeout' }])
  t.same(h.states(), { slow: 'timedOut', next: 'skipped' })
  t.equal(h.state(), 'failed')
  t.equal(h.job('slow').finishedAt, 11 * 60_000)
  t.equal(h.actor.getSnapshot().context.finishedAt, 11 * 60_000)
  t.same(h.placements(), ['slow#1'], 'no retry after a timeout')
  t.same(h.statuses('slow').slice(-1), ['error:timedOut'])
})

t.test('Checks that cancelling a running run kills its running and starting tasks, withdraws waiting jobs, and ends cancelled', async (t) => {
  const h = new RunHarness([job('a'), job('b'), job('c'), job('d', ['a'])])
  h.launch('a')
  h.running('a')
  h.launch('b')
  t.same(h.states(), { a: 'running', b: 'starting', c: 'waiting', d: 'queued' })
  h.advance(1000)
  h.actor.send({ type: 'CANCEL', at: h.now })
  t.equal(h.state(), 'cancelled')
  t.same(h.states(), { a: 'cancelled', b: 'cancelled', c: 'cancelled', d: 'cancelled' })
  t.same(h.of('killTask').map((p) => `${p.jobId}:${p.taskId}:${p.reason}`), ['a:a.1:cancel', 'b:b.2:cancel'])
  t.same(h.of('withdrawPlacement').map((p) => p.jobId), ['c'])
  t.same(['a', 'b', 'c', 'd'].map((id) => h.statuses(id).at(-1)), ['error:cancelled', 'error:cancelled', 'error:cancelled', 'error:cancelled'])
  t.match(h.of('reportRun').at(-1), { state: 'cancelled' })
  // The kills' own updates come later and change nothing.
  const before = h.persisted()
  h.jobEvent('a', { type: 'TASK_FAILED', taskId: 'a.1', reason: 'REASON_TASK_KILLED', at: h.now })
  t.same(h.persisted(), before)
})

t.test('Checks that cancelling a pending run cancels its queued jobs and ends cancelled', async (t) => {
  const h = new RunHarness([job('a'), job('b', ['a'])], { start: false })
  h.actor.send({ type: 'CANCEL', at: 3 })
  t.equal(h.state(), 'cancelled')
  t.same(h.states(), { a: 'cancelled', b: 'cancelled' })
  t.same(h.of('killTask'), [])
})

t.test('Checks that RERUN_FAILED reruns the jobs that did not succeed, as new attempts, and the run can then succeed', async (t) => {
  const h = new RunHarness([job('build'), job('test', ['build']), job('deploy', ['test']), job('lint')])
  h.complete('build')
  h.complete('lint')
  h.complete('test', 1)
  t.equal(h.state(), 'failed')
  t.same(h.states(), { build: 'succeeded', test: 'failed', deploy: 'skipped', lint: 'succeeded' })
  h.advance(5000)
  h.actor.send({ type: 'RERUN_FAILED', at: h.now })
  t.equal(h.state(), 'running')
  t.same(h.states(), { build: 'succeeded', test: 'waiting', deploy: 'queued', lint: 'succeeded' })
  t.match(h.job('test'), { attempt: 2 })
  t.equal(h.actor.getSnapshot().context.finishedAt, null)
  h.complete('test')
  h.complete('deploy')
  t.equal(h.state(), 'succeeded')
  t.same(h.placements(), ['build#1', 'lint#1', 'test#1', 'test#2', 'deploy#2'])
  t.same(h.statuses('test'), [
    'pending:queued', 'pending:waiting', 'pending:starting', 'pending:running', 'failure:failed',
    'pending:queued', 'pending:waiting', 'pending:starting', 'pending:running', 'success:succeeded',
  ])

  const cancelled = new RunHarness([job('a')])
  cancelled.actor.send({ type: 'CANCEL', at: 1 })
  cancelled.actor.send({ type: 'RERUN_FAILED', at: 2 })
  t.equal(cancelled.state(), 'running', 'a cancelled run can be rerun too')
  t.equal(cancelled.jobState('a'), 'waiting')
})

t.test('Checks that each job reports pending, then success, failure or error, in order', async (t) => {
  const h = new RunHarness([job('ok'), job('bad'), job('lost', [], { maxRequeues: 0 }), job('slow', [], { timeoutMs: 1000 })])
  h.complete('ok')
  h.complete('bad', 1)
  h.launch('lost')
  h.lost('lost')
  h.launch('slow')
  h.running('slow')
  h.advance(1000)
  const pending = ['pending:queued', 'pending:waiting', 'pending:starting']
  t.same(h.statuses('ok'), [...pending, 'pending:running', 'success:succeeded'])
  t.same(h.statuses('bad'), [...pending, 'pending:running', 'failure:failed'])
  t.same(h.statuses('lost'), [...pending, 'error:failed'], 'an infrastructure failure is an error, not a failure')
  t.same(h.statuses('slow'), [...pending, 'pending:running', 'error:timedOut'])
  t.same(h.of('reportRun').map((p) => p.state), ['pending', 'running', 'failed'])
  for (const r of h.of('reportStatus')) t.equal(r.runId, 'run-1')
})

t.test('Checks that every event that changes the run persists it, and one that changes nothing does not', async (t) => {
  const h = new RunHarness([job('a')])
  const count = () => h.of('persist').length
  const n = count()
  h.launch('a')
  t.equal(count(), n + 1)
  h.jobEvent('a', { type: 'TASK_RUNNING', taskId: 'nope', at: 0 })
  t.equal(count(), n + 1, 'an ignored update')
  h.actor.send({ type: 'JOB_EVENT', jobId: 'ghost', event: { type: 'LAUNCHED', taskId: 'x', at: 0 } })
  t.equal(count(), n + 1, 'an unknown job')
})

t.test('Checks that a bad job graph or PIPELINE_INVALID ends the run in error with the message', async (t) => {
  const cycle = new RunHarness([job('a', ['b']), job('b', ['a'])], { start: false })
  t.equal(cycle.state(), 'error')
  t.equal(cycle.actor.getSnapshot().context.error, 'jobs form a cycle through needs: a -> b -> a')
  t.match(cycle.of('reportRun').at(-1), { state: 'error', description: 'jobs form a cycle through needs: a -> b -> a' })
  t.same(cycle.of('reportStatus'), [], 'no job statuses for a run that cannot run')

  const invalid = new RunHarness([], { start: false })
  invalid.actor.send({ type: 'PIPELINE_INVALID', message: '.regatta/ci.yml:3:5: jobs.build.steps is required', at: 7 })
  t.equal(invalid.state(), 'error')
  t.match(invalid.of('reportRun').at(-1), { state: 'error', description: '.regatta/ci.yml:3:5: jobs.build.steps is required' })
})

t.test('Checks that a run with no jobs succeeds when started', async (t) => {
  const h = new RunHarness([])
  t.equal(h.state(), 'succeeded')
})

t.test('Checks that the run is pure: transition() gives its next snapshot and effects without running them', async (t) => {
  const input = { runId: 'r', jobs: [job('build'), job('test', ['build'], { timeoutMs: 5000 })] }
  let [snap, actions] = initialTransition(runMachine, input)
  t.same(actions.map((a) => a.type), ['reportStatus', 'reportStatus', 'reportRun', 'persist'])
  ;[snap, actions] = transition(runMachine, snap, { type: 'START', at: 0 })
  t.same(actions.map((a) => [a.type, (a.params as { jobId?: string }).jobId]), [
    ['requestPlacement', 'build'], ['reportStatus', 'build'], ['persist', undefined], ['reportRun', undefined], ['persist', undefined],
  ])
  const events: RunEvent[] = [
    { type: 'JOB_EVENT', jobId: 'build', event: { type: 'LAUNCHED', taskId: 'b', at: 1 } },
    { type: 'JOB_EVENT', jobId: 'build', event: { type: 'TASK_FINISHED', taskId: 'b', exitCode: 0, at: 2 } },
    { type: 'JOB_EVENT', jobId: 'test', event: { type: 'LAUNCHED', taskId: 't', at: 3 } },
  ]
  for (const e of events) [snap, actions] = transition(runMachine, snap, e)
  ;[snap, actions] = transition(runMachine, snap, { type: 'JOB_EVENT', jobId: 'test', event: { type: 'TASK_RUNNING', taskId: 't', at: 4 } })
  const timer = actions.find((a) => a.type === 'xstate.raise')
  t.match(timer?.params, { delay: 5000, id: 'test/xstate.after.jobTimeout.job.running.timing', event: { type: 'JOB_TIMER', jobId: 'test' } },
    'the job\'s timeout becomes a delayed event of the run')
  ;[snap, actions] = transition(runMachine, snap, (timer!.params as unknown as { event: RunEvent }).event)
  t.same(actions.filter((a) => a.type === 'killTask').map((a) => a.params), [{ jobId: 'test', taskId: 't', reason: 'timeout', runId: 'r' }])
  t.equal(snap.value, 'failed')
  t.equal(snap.context.jobs.test.context.finishedAt, 5004)
})

t.test('Checks that advanceRun is a plain function of context and event', async (t) => {
  const c0 = initialRunContext({ runId: 'r', jobs: [job('a')], createdAt: 0 })
  const step = advanceRun(c0, { type: 'START', at: 1 }, () => true)
  t.ok(step.changed)
  t.same(step.effects.map((e) => e.kind), ['requestPlacement', 'reportStatus'])
  t.equal(c0.jobs.a.value, 'queued', 'the input context is not changed')
  const ignored = advanceRun(step.context, { type: 'JOB_EVENT', jobId: 'a', event: { type: 'TASK_RUNNING', taskId: 'x', at: 2 } }, () => true)
  t.notOk(ignored.changed)
  t.equal(ignored.context, step.context)
})
