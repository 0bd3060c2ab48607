// The QoS controller's decision (services/agent/src/oversubscription/qos.ts): which revocable
// tasks go, newest first, when the non-revocable tasks need their resources back or the host
// runs short.
import t from 'tap'
import { PREEMPTED, decideEvictions, hostPressure, type RevocableTask } from '../../../services/agent/src/oversubscription/index.js'

const task = (key: string, launchedAt: number, cpus: number, memMb: number, used?: RevocableTask['used']): RevocableTask =>
  ({ key, launchedAt, allocated: { cpus, memMb }, ...(used ? { used } : {}) })

t.test('Checks that the preemption reason is PREEMPTED', async (t) => {
  t.equal(PREEMPTED, 'PREEMPTED')
})

t.test('Checks that nothing is evicted while the revocable tasks fit in the unused part', async (t) => {
  const revocable = [task('a', 1, 0.5, 128), task('b', 2, 0.5, 128)]
  t.same(decideEvictions({ unused: { cpus: 1, memMb: 256 }, revocable }), [], 'exactly fits')
  t.same(decideEvictions({ unused: { cpus: 4, memMb: 4096 }, revocable }), [])
  t.same(decideEvictions({ unused: { cpus: 0, memMb: 0 }, revocable: [] }), [], 'no revocable task: nothing to do')
})

t.test('Checks that when memory is needed back the newest revocable tasks go until the rest fits', async (t) => {
  const revocable = [task('old', 100, 0.1, 100), task('mid', 200, 0.1, 100), task('new', 300, 0.1, 100)]
  // 300 MiB held, 150 unused: two must go (100 left fits), the newest two
  const out = decideEvictions({ unused: { cpus: 2, memMb: 150 }, revocable })
  t.same(out.map((e) => e.key), ['new', 'mid'])
  t.match(out[0]!.message, /^preempted: the agent's non-revocable tasks need their memory back \(revocable tasks hold 300 MiB; 150 MiB of the non-revocable allocation is unused\)$/)
  // the input's order does not matter
  t.same(decideEvictions({ unused: { cpus: 2, memMb: 150 }, revocable: [...revocable].reverse() }).map((e) => e.key), ['new', 'mid'])
})

t.test('Checks that when CPU is needed back only tasks holding CPU go', async (t) => {
  const revocable = [task('cpu-old', 1, 1, 10), task('mem-only', 3, 0, 10), task('cpu-new', 2, 1, 10)]
  const out = decideEvictions({ unused: { cpus: 1.2, memMb: 1000 }, revocable })
  t.same(out.map((e) => e.key), ['cpu-new'], 'the newest task holding CPU, not the newer one that holds none')
  t.match(out[0]!.message, /need their CPU back \(revocable tasks hold 2 cpus; 1\.2 cpus of the non-revocable allocation is unused\)/)
})

t.test('Checks that a shortage in both dimensions evicts once per task, memory first', async (t) => {
  const revocable = [task('a', 1, 1, 100), task('b', 2, 1, 100), task('c', 3, 1, 100)]
  const out = decideEvictions({ unused: { cpus: 0.5, memMb: 150 }, revocable })
  t.same(out.map((e) => e.key), ['c', 'b', 'a'], 'memory takes c and b; CPU then takes a')
  t.match(out[0]!.message, /memory/)
  t.match(out[2]!.message, /CPU/)
  t.equal(new Set(out.map((e) => e.key)).size, out.length, 'no task twice')
})

t.test('Checks that negative or tiny shortfalls do not evict', async (t) => {
  t.same(decideEvictions({ unused: { cpus: -1, memMb: -5 }, revocable: [task('z', 1, 0, 0)] }), [], 'a task holding nothing is never in the way')
  t.same(decideEvictions({ unused: { cpus: 0.3 - 1e-9, memMb: 64 }, revocable: [task('a', 1, 0.1, 32), task('b', 1, 0.2, 32)] }), [])
})

t.test('Checks that host memory pressure frees at least the deficit by measured usage, newest first', async (t) => {
  const revocable = [
    task('a', 1, 0.1, 500, { memMb: 400 }),
    task('b', 2, 0.1, 500, { memMb: 50 }),
    task('c', 3, 0.1, 500, { memMb: 100 }),
  ]
  const host = { memAvailableMb: 900, memMinFreeMb: 1000 }
  // deficit 100 MiB: c uses 100, enough
  t.same(decideEvictions({ unused: { cpus: 10, memMb: 10_000 }, revocable, host }).map((e) => e.key), ['c'])
  // deficit 300: c (100) + b (50) + a (400)
  const out = decideEvictions({ unused: { cpus: 10, memMb: 10_000 }, revocable, host: { memAvailableMb: 700, memMinFreeMb: 1000 } })
  t.same(out.map((e) => e.key), ['c', 'b', 'a'])
  t.match(out[0]!.message, /^preempted: the host is low on memory \(700 MiB available, below 1000 MiB\)$/)
  // unmeasured: the allocation counts
  t.same(decideEvictions({ unused: { cpus: 10, memMb: 10_000 }, revocable: [task('x', 1, 0, 80), task('y', 2, 0, 80)], host: { memAvailableMb: 900, memMinFreeMb: 1000 } })
    .map((e) => e.key), ['y', 'x'])
  t.same(decideEvictions({ unused: { cpus: 10, memMb: 10_000 }, revocable, host: { memAvailableMb: 1000, memMinFreeMb: 1000 } }), [], 'at the threshold: no pressure')
})

t.test('Checks that host CPU pressure is acted on only when a threshold is set, one task a round', async (t) => {
  const revocable = [task('idle', 5, 1, 10, { cpus: 0 }), task('spin', 3, 1, 10, { cpus: 0.9 }), task('spin2', 1, 1, 10, { cpus: 0.8 })]
  const unused = { cpus: 10, memMb: 10_000 }
  t.same(decideEvictions({ unused, revocable, host: { cpuBusy: 1 } }), [], 'no threshold: CPU is shared, not acted on')
  const out = decideEvictions({ unused, revocable, host: { cpuBusy: 0.97, cpuMaxBusy: 0.9 } })
  t.same(out.map((e) => e.key), ['spin'], 'the newest that uses CPU')
  t.match(out[0]!.message, /^preempted: the host's CPUs are busy \(97%, at or above 90%\)$/)
  t.same(hostPressure({ cpuBusy: 0.5, cpuMaxBusy: 0.9, memAvailableMb: 10, memMinFreeMb: 5 }), { mem: false, cpus: false })
  t.same(hostPressure(undefined), { mem: false, cpus: false })
})

t.test('Checks that evictions for the non-revocable side come before host pressure, without repeats', async (t) => {
  const revocable = [task('a', 1, 0.1, 100, { memMb: 100 }), task('b', 2, 0.1, 100, { memMb: 100 })]
  const out = decideEvictions({ unused: { cpus: 1, memMb: 150 }, revocable, host: { memAvailableMb: 950, memMinFreeMb: 1000 } })
  t.same(out.map((e) => e.key), ['b', 'a'])
  t.match(out[0]!.message, /non-revocable/)
  t.match(out[1]!.message, /host is low on memory/)
})
