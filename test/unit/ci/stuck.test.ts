// What `regatta runs ls --stuck` lists (services/ci/src/stuck.ts): runs driven by the real run
// and job machines on a simulated clock, stored as the service stores them, judged at a time.
import t from 'tap'
import { DEFAULT_STUCK_BOUNDS, TIMEOUT_GRACE_MS, stuckItems } from '../../../services/ci/src/stuck.js'
import type { RunDocument } from '../../../services/ci/src/service.js'
import type { Trigger } from '../../../services/ci/src/trigger.js'
import { RunHarness, job } from '../machines/harness.js'

const MIN = 60_000
const trigger: Trigger = {
  kind: 'push', ref: 'refs/heads/main', sha: 'c0ffee'.padEnd(40, '0'), branch: 'main', actor: 'octocat',
  repo: { fullName: 'octo/app', cloneUrl: 'file:///srv/app.git', defaultBranch: 'main', private: false },
}

function doc(h: RunHarness, runId = 'run-1'): RunDocument {
  return { meta: { runId, trigger, createdAt: 0, jobs: {} }, machine: h.persisted() }
}

t.test('Checks that a job waiting for resources is listed once past the waiting bound, counted from when its wait began', async (t) => {
  const h = new RunHarness([job('build'), job('test', ['build'])])
  t.same(stuckItems([doc(h)], DEFAULT_STUCK_BOUNDS.maxWaitingMs), [], 'not at the bound')
  const [item] = stuckItems([doc(h)], DEFAULT_STUCK_BOUNDS.maxWaitingMs + 1)
  t.match(item, { runId: 'run-1', jobId: 'build', state: 'waiting', bound: 'waiting', boundMs: 10 * MIN, since: 0, forMs: 10 * MIN + 1, repo: 'octo/app' })
  t.match(item!.description, /waiting for resources for 10m \(bound 10m\)/)

  // `test` waits from the end of its need, not from the run's start
  h.advance(4 * MIN)
  h.complete('build')
  const atTest = h.now
  const items = stuckItems([doc(h)], atTest + 10 * MIN + 1)
  t.same(items.map((x) => [x.jobId, x.since]), [['test', atTest]], 'the job whose needs ended waits since then')
  t.same(stuckItems([doc(h)], atTest + 9 * MIN), [], 'nothing before')
})

t.test('Checks that a job requeued after a lost task waits from the loss, and custom bounds apply', async (t) => {
  const h = new RunHarness([job('build', [], { timeoutMs: 60 * MIN })])
  h.launch('build')
  h.running('build')
  h.advance(30 * MIN)
  h.lost('build')
  const lostAt = h.now
  t.same(stuckItems([doc(h)], lostAt + 5 * MIN), [], 'five minutes after the loss: within the default bound')
  const items = stuckItems([doc(h)], lostAt + 5 * MIN, { ...DEFAULT_STUCK_BOUNDS, maxWaitingMs: 2 * MIN })
  t.same(items.map((x) => [x.jobId, x.bound, x.since, x.boundMs]), [['build', 'waiting', lostAt, 2 * MIN]], 'a shorter bound, from the loss')
})

t.test('Checks that a job whose task has not started is listed past the starting bound, from its launch', async (t) => {
  const h = new RunHarness([job('build')])
  h.advance(MIN)
  h.launch('build')
  const launchedAt = h.now
  t.same(stuckItems([doc(h)], launchedAt + 11 * MIN), [], 'not at the bound (the master\'s 10 m start timeout and a minute)')
  const [item] = stuckItems([doc(h)], launchedAt + 11 * MIN + 1)
  t.match(item, { jobId: 'build', state: 'starting', bound: 'starting', boundMs: 11 * MIN, since: launchedAt })
  t.match(item!.description, /task start timeout/)
})

t.test('Checks that a job still running past its own timeout and a grace is listed with that timeout as its bound', async (t) => {
  const h = new RunHarness([job('slow', [], { timeoutMs: 20 * MIN })])
  h.launch('slow')
  h.running('slow')
  const startedAt = h.now
  // the machine's own timer would end it: judged as a stored run nobody drives any more
  t.same(stuckItems([doc(h)], startedAt + 20 * MIN + TIMEOUT_GRACE_MS), [], 'within the grace')
  const [item] = stuckItems([doc(h)], startedAt + 20 * MIN + TIMEOUT_GRACE_MS + 1)
  t.match(item, { jobId: 'slow', state: 'running', bound: 'timeout', boundMs: 20 * MIN, since: startedAt })
  t.match(item!.description, /past its timeout of 20m/)
  t.same(stuckItems([doc(h)], startedAt + 15 * MIN), [], 'a job running within its timeout is not stuck, however long the run has not changed')
})

t.test('Checks that a run with nothing waiting, starting or running is listed past the idle bound, and ended runs never are', async (t) => {
  const pending = new RunHarness([job('build')], { start: false, runId: 'run-idle' })
  const [item] = stuckItems([doc(pending, 'run-idle')], 5 * MIN + 1)
  t.match(item, { runId: 'run-idle', jobId: null, state: 'pending', bound: 'idle', boundMs: 5 * MIN })
  t.same(stuckItems([doc(pending, 'run-idle')], 5 * MIN), [], 'not at the bound')

  const done = new RunHarness([job('build')])
  done.complete('build')
  t.equal(done.state(), 'succeeded')
  t.same(stuckItems([doc(done)], 1_000 * MIN), [], 'an ended run has nothing past a bound')

  const both = stuckItems([doc(new RunHarness([job('a')]), 'run-late'), doc(pending, 'run-idle')], 30 * MIN)
  t.same(both.map((x) => `${x.runId}:${x.bound}`).sort(), ['run-idle:idle', 'run-late:waiting'], 'each run with the bound it passed')
})
