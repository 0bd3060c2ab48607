// A run's persisted form: JSON round-trips mid-run, restored timers, stored-document checks, coalesced writes.
import t from 'tap'
import fc from 'fast-check'
import { SimulatedClock, createActor } from 'xstate'
import {
  activeTasks, checkpointer, createRunMachine, parseRun, persistRun, resumeRun, serializeRun,
  type PersistedRun, type RunJobSpec,
} from '../../../services/ci/src/machines/index.js'
import { RunHarness, job } from './harness.js'

t.test('Checks that a run serialized to JSON mid-run and restored finishes exactly as an uninterrupted one', async (t) => {
  const jobs = [job('build', [], { timeoutMs: 60_000 }), job('test', ['build'], { retries: 1, timeoutMs: 30_000 }), job('lint'), job('deploy', ['test', 'lint'])]
  const script = (h: RunHarness, restartAt: number | null) => {
    const steps: Array<() => void> = [
      () => h.launch('build'),
      () => h.launch('lint'),
      () => h.running('build'),
      () => h.advance(10_000),
      () => h.finish('build'),
      () => h.launch('test'),
      () => h.running('test'),
      () => h.advance(5000),
      () => h.fail('test', 1),
      () => h.launch('test'),
      () => h.running('test'),
      () => h.advance(30_000), // test attempt 2 times out
      () => h.running('lint'),
      () => h.finish('lint'),
    ]
    steps.forEach((step, i) => {
      if (i === restartAt) h.restart()
      step()
    })
  }
  const plain = new RunHarness(jobs)
  script(plain, null)
  t.equal(plain.state(), 'failed')
  t.same(plain.states(), { build: 'succeeded', test: 'timedOut', lint: 'succeeded', deploy: 'skipped' })
  for (let cut = 0; cut <= 14; cut++) {
    const h = new RunHarness(jobs)
    script(h, cut)
    t.same(h.persisted(), plain.persisted(), `restarted before step ${cut}: same end`)
    t.same(h.of('reportStatus'), plain.of('reportStatus'), `restarted before step ${cut}: same statuses`)
    t.same(h.of('killTask'), plain.of('killTask'), `restarted before step ${cut}: same kills`)
  }
})

t.test('Checks that a restored running job still times out at its original deadline', async (t) => {
  const h = new RunHarness([job('slow', [], { timeoutMs: 60_000 })])
  h.launch('slow')
  h.running('slow')
  h.advance(45_000)
  h.restart()
  h.advance(14_999)
  t.equal(h.jobState('slow'), 'running')
  h.advance(1)
  t.equal(h.jobState('slow'), 'timedOut')
  t.same(h.of('killTask').map((p) => p.taskId), ['slow.1'])
  t.equal(h.job('slow').finishedAt, 60_000)

  const late = new RunHarness([job('slow', [], { timeoutMs: 60_000 })])
  late.launch('slow')
  late.running('slow')
  const text = JSON.stringify(late.persisted())
  late.actor.stop()
  // The service was down past the deadline: the timeout falls due as soon as it resumes.
  const clock = new SimulatedClock()
  clock.set(120_000)
  const actor = resumeRun(late.machine, parseRun(text), { clock, at: 120_000 })
  clock.increment(0)
  t.equal(actor.getSnapshot().context.jobs.slow.value, 'timedOut')
  t.equal(actor.getSnapshot().context.jobs.slow.context.finishedAt, 60_000, 'ended at its deadline, not at the restart')
  t.equal(actor.getSnapshot().value, 'failed')
  actor.stop()
})

t.test('Checks that a restored run asks placement again for jobs that were waiting for an offer', async (t) => {
  const h = new RunHarness([job('a'), job('b')])
  h.launch('a')
  const before = h.placements().length
  h.restart()
  t.same(h.placements().slice(before), ['b#1'])
  t.same(activeTasks(h.persisted()), [{ jobId: 'a', taskId: 'a.1', state: 'starting' }], 'the task to reconcile with the master')
})

t.test('Checks that the persisted run is plain JSON carrying its version, id and state, with no child actors', async (t) => {
  const h = new RunHarness([job('a')])
  h.launch('a')
  const p = h.persisted()
  t.equal(p.version, 1)
  t.equal(p.runId, 'run-1')
  t.equal(p.state, 'running')
  t.same(p.snapshot.children, {})
  t.same(JSON.parse(JSON.stringify(p)), p, 'survives JSON unchanged')
  t.same(parseRun(serializeRun(h.actor)), p)
  t.same(parseRun(new TextEncoder().encode(serializeRun(h.actor))), p, 'KV values come as bytes')
})

t.test('Checks that parseRun refuses a damaged document with INVALID_MESSAGE naming what is wrong', async (t) => {
  const good = new RunHarness([job('a')]).persisted()
  const bad = (change: (p: PersistedRun) => unknown) => {
    const p = JSON.parse(JSON.stringify(good)) as PersistedRun
    change(p)
    return JSON.stringify(p)
  }
  const cases: Array<[string, string | RegExp]> = [
    ['{', /^persisted run: not JSON/],
    ['null', 'persisted run: not an object'],
    [bad((p) => { (p as { version: number }).version = 2 }), 'persisted run run-1: version must be 1, got 2'],
    [bad((p) => { p.snapshot.value = 'paused' }), 'persisted run run-1: snapshot.value is not a run state: "paused"'],
    [bad((p) => { p.state = 'failed' }), 'persisted run run-1: state "failed" differs from snapshot.value "running"'],
    [bad((p) => { p.snapshot.context.runId = 'other' }), 'persisted run run-1: snapshot.context.runId is "other"'],
    [bad((p) => { p.snapshot.context.jobs.a.value = 'zombie' }), 'persisted run run-1: snapshot.context.jobs.a.value is not a job state: "zombie"'],
    [bad((p) => { delete (p.snapshot.context.jobs as Record<string, unknown>).a }), 'persisted run run-1: snapshot.context.jobs.a is missing or names another job'],
  ]
  for (const [text, message] of cases) {
    t.throws(() => parseRun(text), { name: 'RegattaError', code: 'INVALID_MESSAGE', message }, String(message))
  }
})

t.test('Checks that checkpointer writes each run once per event, after the event, in order', async (t) => {
  const writes: PersistedRun[] = []
  const saved = checkpointer((run) => { writes.push(run) })
  const machine = createRunMachine({ persist: saved.persist })
  const actor = createActor(machine, { input: { runId: 'r', jobs: [job('a'), job('b', ['a'])] } })
  actor.start()
  await saved.flush()
  t.same(writes.map((w) => w.state), ['pending'], 'start persists once')
  actor.send({ type: 'START', at: 0 })
  await saved.flush()
  t.same(writes.map((w) => w.state), ['pending', 'running'], 'START persisted twice inside (jobs, then state): written once')
  t.equal(writes[1].snapshot.context.jobs.a.value, 'waiting', 'the write holds the state after the event')
  actor.send({ type: 'JOB_EVENT', jobId: 'a', event: { type: 'LAUNCHED', taskId: 't', at: 1 } })
  actor.send({ type: 'JOB_EVENT', jobId: 'a', event: { type: 'TASK_FINISHED', taskId: 't', exitCode: 0, at: 2 } })
  await saved.flush()
  t.equal(writes.length, 3, 'two events sent together: one write')
  t.same(activeTasks(writes[2]), [])
  t.same(writes[2].snapshot.context.jobs.b.value, 'waiting')
  actor.stop()
})

t.test('Checks that a failed write goes to onError and later writes still happen', async (t) => {
  const errors: string[] = []
  let fail = true
  const written: string[] = []
  const saved = checkpointer(async (run) => {
    if (fail) { fail = false; throw new Error('kv down') }
    written.push(run.state)
  }, (err, runId) => errors.push(`${runId}: ${(err as Error).message}`))
  const actor = createActor(createRunMachine({ persist: saved.persist }), { input: { runId: 'r', jobs: [job('a')] } })
  actor.start()
  await saved.flush()
  actor.send({ type: 'START', at: 0 })
  await saved.flush()
  t.same(errors, ['r: kv down'])
  t.same(written, ['running'])
  actor.stop()
})

t.test('Checks that persistRun refuses an actor that crashed', async (t) => {
  t.throws(() => persistRun({ getPersistedSnapshot: () => ({ status: 'error', error: new Error('boom'), output: undefined }) }),
    { name: 'RegattaError', code: 'INTERNAL', message: /run actor failed: Error: boom/ })
})

// ---- property: any event sequence, cut and restored anywhere, ends where the uninterrupted run ends

type Step =
  | { kind: 'advance'; ms: number }
  /** `next`: what would happen next to the job (launch when waiting, RUNNING when starting, an end when running). */
  | { kind: 'task'; job: number; what: 'next' | 'launch' | 'running' | 'finish' | 'fail' | 'lost' | 'preempt' }
  | { kind: 'cancel' }
  | { kind: 'rerun' }

const graphArb = fc.integer({ min: 1, max: 5 }).chain((n) => fc.tuple(
  ...Array.from({ length: n }, (_, i) => fc.record({
    needs: fc.subarray(Array.from({ length: i }, (_, k) => `j${k}`)),
    retries: fc.integer({ min: 0, max: 2 }),
    timeoutMs: fc.constantFrom(1000, 5000, 20_000),
    maxRequeues: fc.integer({ min: 0, max: 2 }),
    if: fc.constantFrom(undefined, undefined, 'always()', 'failure()'),
  }).map((j): RunJobSpec => ({ id: `j${i}`, needs: j.needs, retries: j.retries, timeoutMs: j.timeoutMs, maxRequeues: j.maxRequeues, ...(j.if ? { if: j.if } : {}) }))),
))

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 4000 }) }) },
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('task' as const), job: fc.nat(4), what: fc.constant('next' as const) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('task' as const), job: fc.nat(4), what: fc.constantFrom('launch', 'running', 'finish', 'fail', 'lost', 'preempt') }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'cancel' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'rerun' as const }) },
)

function play(h: RunHarness, steps: Step[], cut: number | null): void {
  steps.forEach((s, i) => {
    if (i === cut) h.restart()
    const ids = h.actor.getSnapshot().context.order
    switch (s.kind) {
      case 'advance': h.advance(s.ms); break
      case 'cancel': h.actor.send({ type: 'CANCEL', at: h.now }); break
      case 'rerun': h.actor.send({ type: 'RERUN_FAILED', at: h.now }); break
      case 'task': {
        const id = ids[s.job % ids.length]
        const taskId = h.job(id).taskId ?? 'no-task'
        const at = h.now
        const state = h.jobState(id)
        const what = s.what !== 'next' ? s.what
          : state === 'waiting' ? 'launch' : state === 'starting' ? 'running'
          : (['finish', 'fail', 'lost', 'preempt', 'finish', 'fail'] as const)[i % 6]
        switch (what) {
          case 'launch': h.jobEvent(id, { type: 'LAUNCHED', taskId: `${id}.${i}`, at }); break
          case 'running': h.jobEvent(id, { type: 'TASK_RUNNING', taskId, at }); break
          case 'finish': h.jobEvent(id, { type: 'TASK_FINISHED', taskId, exitCode: 0, at }); break
          case 'fail': h.jobEvent(id, { type: 'TASK_FAILED', taskId, exitCode: 1, reason: 'r', at }); break
          case 'lost': h.jobEvent(id, { type: 'TASK_LOST', taskId, reason: 'r', at }); break
          case 'preempt': h.jobEvent(id, { type: 'TASK_PREEMPTED', taskId, at }); break
        }
      }
    }
  })
  if (cut === steps.length) h.restart()
  h.advance(60_000) // let every armed timeout fall due
}

t.test('Checks (property) that any event sequence, persisted and restored at any point, ends in the same state with the same statuses', async (t) => {
  fc.assert(fc.property(graphArb, fc.array(stepArb, { maxLength: 40 }), fc.nat(), (jobs, steps, cutSeed) => {
    const cut = cutSeed % (steps.length + 1)
    const plain = new RunHarness(jobs)
    play(plain, steps, null)
    const again = new RunHarness(jobs)
    play(again, steps, null)
    const restored = new RunHarness(jobs)
    play(restored, steps, cut)
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)
    if (!same(plain.persisted(), again.persisted())) throw new Error('not deterministic')
    if (!same(plain.persisted(), restored.persisted())) throw new Error(`restored at ${cut}: different end`)
    if (!same(plain.of('reportStatus'), restored.of('reportStatus'))) throw new Error(`restored at ${cut}: different statuses`)
    if (!same(plain.of('killTask'), restored.of('killTask'))) throw new Error(`restored at ${cut}: different kills`)
  }), { numRuns: 300 })
  t.pass('300 random runs')
})
