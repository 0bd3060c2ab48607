// The oversubscription controller (services/agent/src/oversubscription/controller.ts) on a manual
// clock: each round samples the tasks it is given, renews the estimate, tells the agent when it
// shrank, and preempts revocable tasks when the non-revocable ones need their resources back.
import t from 'tap'
import { ManualClock } from '../../../shared/clock/index.js'
import {
  OversubscriptionController, type HostSamplers, type ObservedTask, type UsageReading,
} from '../../../services/agent/src/oversubscription/index.js'

/** A task whose container reports what the test sets: cores busy and memory. */
class ScriptedTask implements ObservedTask {
  cores = 0
  memMb = 0
  cpuSeconds = 0
  ending = false
  readonly container = { usage: async (): Promise<UsageReading> => ({ cpuSeconds: this.cpuSeconds, memMb: this.memMb }) }
  constructor(readonly key: string, readonly resources: ObservedTask['resources'], readonly launchedAt: number) {}
}

function harness(o: { window?: number; margin?: number; host?: Partial<HostSamplers> } = {}) {
  const clock = new ManualClock(0)
  const tasks: ScriptedTask[] = []
  const preempted: Array<{ key: string; message: string }> = []
  let shrinks = 0
  const host: HostSamplers = {
    memory: async () => ({ availableMb: 10_000, totalMb: 16_000 }),
    cpuBusy: async () => 0.1,
    ...o.host,
  }
  const ctl = new OversubscriptionController({
    tasks: () => tasks.filter((x) => !preempted.some((p) => p.key === x.key)),
    preempt: (key, message) => { preempted.push({ key, message }) },
    estimateShrank: () => { shrinks++ },
  }, { intervalMs: 1000, window: o.window ?? 2, margin: o.margin ?? 0 }, { clock, host })
  /** One second passes (each task burns its cores), then a round. */
  const round = async () => {
    clock.advance(1000)
    for (const x of tasks) x.cpuSeconds += x.cores
    return ctl.tick()
  }
  return { clock, tasks, preempted, ctl, round, shrinks: () => shrinks }
}

const plain = (cpus: number, mem: number) => [{ name: 'cpus', scalar: cpus }, { name: 'mem', scalar: mem }]
const revocable = (cpus: number, mem: number) => [{ name: 'cpus', scalar: cpus, revocable: true }, { name: 'mem', scalar: mem, revocable: true }]

t.test('Checks that the estimate appears once a quiet non-revocable task has a full window of samples', async (t) => {
  const h = harness({ window: 2 })
  const svc = new ScriptedTask('svc', plain(2, 1000), 0)
  svc.cores = 0.5
  svc.memMb = 200
  h.tasks.push(svc)
  t.same(h.ctl.revocable(), [], 'nothing before any sample')
  await h.round() // first reading: no CPU rate yet
  await h.round() // one sample
  t.same(h.ctl.revocable(), [], 'not yet a full window')
  await h.round()
  t.same(h.ctl.current(), { cpus: 1.5, memMb: 800 })
  t.same(h.ctl.revocable(), [{ name: 'cpus', scalar: 1.5, revocable: true }, { name: 'mem', scalar: 800, revocable: true }])
})

t.test('Checks that a rise in usage preempts the newest revocable task and shrinks the estimate at once', async (t) => {
  const h = harness({ window: 2 })
  const svc = new ScriptedTask('svc', plain(2, 1000), 0)
  svc.memMb = 100
  h.tasks.push(svc)
  for (let i = 0; i < 3; i++) await h.round()
  t.same(h.ctl.current(), { cpus: 2, memMb: 900 })
  const older = new ScriptedTask('rev-old', revocable(0.5, 300), 10)
  const newer = new ScriptedTask('rev-new', revocable(0.5, 300), 20)
  h.tasks.push(older, newer)
  await h.round()
  t.same(h.preempted, [], '600 MiB held, 900 unused: they fit')
  // the service grows to 550 MiB: 450 unused, 600 held -> the newest goes, 300 left fits
  svc.memMb = 550
  const r = await h.round()
  t.same(h.preempted.map((p) => p.key), ['rev-new'])
  t.match(h.preempted[0]!.message, /need their memory back/)
  t.same(r?.estimate, { cpus: 2, memMb: 450 }, 'the estimate takes the rise in the same round')
  t.equal(h.shrinks(), 1, 'and the agent is told at once')
  await h.round()
  t.same(h.preempted.map((p) => p.key), ['rev-new'], 'no further preemption: the rest fits')
})

t.test('Checks that tasks being killed or without a container are not sampled or preempted', async (t) => {
  const h = harness({ window: 1 })
  const svc = new ScriptedTask('svc', plain(1, 100), 0)
  svc.memMb = 90
  const dying = new ScriptedTask('dying', revocable(1, 100), 5)
  dying.ending = true
  h.tasks.push(svc, dying)
  await h.round()
  const r = await h.round()
  t.same(r?.evictions, [], 'a task already being killed is not killed again (1 GiB held in 10 MiB unused)')
  t.same(h.ctl.current(), { cpus: 1, memMb: 10 }, 'the non-revocable task is measured')
  // a non-revocable task not started yet (no container) counts as fully used
  const staging: ObservedTask = { key: 'staging', resources: plain(4, 4000), launchedAt: 9, ending: false }
  h.tasks.push(staging as ScriptedTask)
  await h.round()
  t.same(h.ctl.current(), { cpus: 1, memMb: 10 }, 'it adds nothing to the estimate')
})

t.test('Checks that host memory pressure preempts and holds the memory estimate at zero for a window', async (t) => {
  let available = 10_000
  const h = harness({ window: 2, host: { memory: async () => ({ availableMb: available, totalMb: 20_000 }) } })
  const svc = new ScriptedTask('svc', plain(1, 1000), 0)
  h.tasks.push(svc)
  for (let i = 0; i < 3; i++) await h.round()
  t.same(h.ctl.current(), { cpus: 1, memMb: 1000 })
  const rev = new ScriptedTask('rev', revocable(0.1, 100), 1)
  rev.memMb = 80
  h.tasks.push(rev)
  available = 900 // default threshold: 5% of 20,000 = 1,000 MiB
  const r = await h.round()
  t.same(r?.evictions.map((e) => e.key), ['rev'])
  t.match(r?.evictions[0]?.message, /host is low on memory \(900 MiB available, below 1000 MiB\)/)
  t.same(h.ctl.current(), { cpus: 1, memMb: 0 }, 'no memory offered while the host is short')
  available = 5_000
  await h.round()
  t.equal(h.ctl.current().memMb, 0, 'still held')
  await h.round()
  await h.round()
  t.equal(h.ctl.current().memMb, 1000, 'offered again once the hold is over')
})

t.test('Checks that the rounds run on their interval once started, and stop', async (t) => {
  const h = harness({ window: 1 })
  let sampled = 0
  const svc = new ScriptedTask('svc', plain(1, 100), 0)
  const usage = svc.container.usage
  svc.container.usage = async () => { sampled++; return usage() }
  h.tasks.push(svc)
  h.ctl.start()
  for (let i = 0; i < 3; i++) {
    h.clock.advance(1000)
    await new Promise((r) => setImmediate(r))
  }
  t.equal(sampled, 3, 'one sample a second')
  await h.ctl.stop()
  h.clock.advance(5000)
  await new Promise((r) => setImmediate(r))
  t.equal(sampled, 3, 'none after stop')
})

t.test('Checks that a sampler that fails or hangs leaves the round going', async (t) => {
  const h = harness({ window: 1, host: { memory: async () => { throw new Error('no /proc') } } })
  const broken: ObservedTask = {
    key: 'broken', resources: plain(1, 100), launchedAt: 0, ending: false,
    container: { usage: async () => { throw new Error('engine down') } },
  }
  const hanging: ObservedTask = {
    key: 'hanging', resources: plain(1, 100), launchedAt: 0, ending: false,
    container: { usage: () => new Promise(() => undefined) },
  }
  h.tasks.push(broken as ScriptedTask, hanging as ScriptedTask)
  const pending = h.ctl.tick()
  h.clock.advance(1000) // the hanging sample's bound
  const r = await pending
  t.ok(r, 'the round finished')
  t.same(r?.estimate, { cpus: 0, memMb: 0 }, 'unmeasured tasks count as fully used')
  t.same(r?.host, {}, 'no host state without /proc')
})
