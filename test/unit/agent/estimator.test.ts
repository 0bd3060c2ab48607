// The resource estimator (services/agent/src/oversubscription/estimator.ts): allocated-but-unused
// CPU and memory of non-revocable tasks, smoothed (peak over a window), less a margin, fed with
// series of cumulative usage readings as the containerizers give them.
import t from 'tap'
import {
  UsageHistory, allocationOf, estimateRevocable, toRevocableResources, unusedOf, type TaskUsage, type UsageReading,
} from '../../../services/agent/src/oversubscription/index.js'

/** Feeds a series of readings, one per second, into a history; returns it. */
function feed(h: UsageHistory, key: string, series: UsageReading[], startMs = 0): UsageHistory {
  series.forEach((r, i) => h.record(key, startMs + i * 1000, r))
  return h
}

/** Cumulative CPU readings for a task that keeps `cores` busy, with memory `memMb`, n seconds long. */
function steady(n: number, cores: number, memMb: number, from = 0): UsageReading[] {
  return Array.from({ length: n }, (_, i) => ({ cpuSeconds: from + i * cores, memMb }))
}

t.test('Checks that the estimate is allocated-but-unused less the margin, summed over tasks', async (t) => {
  const tasks: TaskUsage[] = [
    { allocated: { cpus: 2, memMb: 1024 }, used: { cpus: 0.5, memMb: 256 } },
    { allocated: { cpus: 1, memMb: 512 }, used: { cpus: 0.25, memMb: 128 } },
  ]
  // unused: 1.5 + 0.75 = 2.25 cpus, 768 + 384 = 1152 MiB; allocated 3 cpus, 1536 MiB
  t.same(estimateRevocable(tasks, { margin: 0 }), { cpus: 2.25, memMb: 1152 })
  // margin 0.2 of the allocation: 0.6 cpus and 307.2 MiB kept back
  t.same(estimateRevocable(tasks, { margin: 0.2 }), { cpus: 1.65, memMb: 844 }, 'rounded down: cpus to 0.01, MiB to 1')
})

t.test('Checks that the estimate is never negative and never more than allocated', async (t) => {
  const busy: TaskUsage[] = [{ allocated: { cpus: 1, memMb: 256 }, used: { cpus: 1.7, memMb: 300 } }]
  t.same(estimateRevocable(busy, { margin: 0 }), { cpus: 0, memMb: 0 }, 'a task over its allocation leaves nothing')
  const idle: TaskUsage[] = [{ allocated: { cpus: 1, memMb: 256 }, used: { cpus: 0, memMb: 0 } }]
  t.same(estimateRevocable(idle, { margin: 0 }), { cpus: 1, memMb: 256 }, 'an idle task: at most all of it')
  t.same(estimateRevocable(idle, { margin: -3 }), { cpus: 1, memMb: 256 }, 'a negative margin counts as none')
  t.same(estimateRevocable(idle, { margin: 0.9 }), { cpus: 0.1, memMb: 25 })
  t.same(estimateRevocable(idle, { margin: 5 }), { cpus: 0, memMb: 0 }, 'a margin over 1 counts as 1')
  t.same(estimateRevocable([], { margin: 0.2 }), { cpus: 0, memMb: 0 }, 'no tasks: nothing')
  // one task over its allocation does not eat another task's slack
  const mixed: TaskUsage[] = [
    { allocated: { cpus: 1, memMb: 100 }, used: { cpus: 3, memMb: 500 } },
    { allocated: { cpus: 1, memMb: 100 }, used: { cpus: 0, memMb: 0 } },
  ]
  t.same(estimateRevocable(mixed, { margin: 0 }), { cpus: 1, memMb: 100 })
})

t.test('Checks that a task without a measurement counts as fully used, per dimension', async (t) => {
  t.same(estimateRevocable([{ allocated: { cpus: 2, memMb: 512 } }], { margin: 0 }), { cpus: 0, memMb: 0 })
  t.same(estimateRevocable([{ allocated: { cpus: 2, memMb: 512 }, used: { memMb: 12 } }], { margin: 0 }), { cpus: 0, memMb: 500 })
  t.same(unusedOf({ allocated: { cpus: 2, memMb: 512 }, used: { cpus: 0.5 } }), { cpus: 1.5, memMb: 0 })
})

t.test('Checks that a dimension under host pressure is estimated as zero', async (t) => {
  const idle: TaskUsage[] = [{ allocated: { cpus: 2, memMb: 1000 }, used: { cpus: 0, memMb: 0 } }]
  t.same(estimateRevocable(idle, { margin: 0, pressure: { mem: true } }), { cpus: 2, memMb: 0 })
  t.same(estimateRevocable(idle, { margin: 0, pressure: { cpus: true } }), { cpus: 0, memMb: 1000 })
})

t.test('Checks that the history turns cumulative CPU time into cores busy', async (t) => {
  const h = new UsageHistory(3)
  t.same(h.record('a', 0, { cpuSeconds: 10, memMb: 50 }), { memMb: 50 }, 'the first reading has no rate yet')
  t.equal(h.latest('a'), undefined, 'and is not a sample')
  t.same(h.record('a', 2000, { cpuSeconds: 11, memMb: 60 }), { cpus: 0.5, memMb: 60 }, '1 s of CPU over 2 s')
  t.same(h.record('a', 2500, { cpuSeconds: 12, memMb: 70 }), { cpus: 2, memMb: 70 }, '1 s of CPU over 0.5 s')
  t.same(h.record('a', 3500, { cpuSeconds: 11.5, memMb: 70 }), { cpus: 0, memMb: 70 }, 'a counter that goes back (a process gone) is no negative rate')
  t.same(h.latest('a'), { cpus: 0, memMb: 70 })
  // memory only (no CPU counter): every reading is a sample
  const m = new UsageHistory(2)
  m.record('b', 0, { memMb: 5 })
  m.record('b', 1000, { memMb: 7 })
  t.same(m.peak('b'), { memMb: 7 })
})

t.test('Checks that a task counts only once its window is full, and then by its peak', async (t) => {
  const h = new UsageHistory(4)
  // 1 + 3 readings: 3 samples, the window is not full yet
  feed(h, 'job', steady(4, 0.25, 100))
  t.equal(h.peak('job'), undefined, 'not yet measured')
  const alloc = { cpus: 1, memMb: 400 }
  t.same(estimateRevocable([{ allocated: alloc }], { margin: 0 }), { cpus: 0, memMb: 0 }, 'not yet counted as idle')
  h.record('job', 4000, { cpuSeconds: 1, memMb: 100 })
  t.same(h.peak('job'), { cpus: 0.25, memMb: 100 })
  t.same(estimateRevocable([{ allocated: alloc, used: h.peak('job')! }], { margin: 0 }), { cpus: 0.75, memMb: 300 })
})

t.test('Checks that a rise in usage shrinks the estimate at once and a fall grows it back only after the window', async (t) => {
  const window = 3
  const h = new UsageHistory(window)
  const alloc = { cpus: 2, memMb: 1000 }
  const estimate = (): { cpus: number; memMb: number } => {
    const peak = h.peak('svc')
    return estimateRevocable([{ allocated: alloc, ...(peak ? { used: peak } : {}) }], { margin: 0.1 })
  }
  // quiet: 0.2 cores, 100 MiB, for 6 s
  let cpu = 0
  let at = 0
  const step = (cores: number, memMb: number): void => {
    h.record('svc', at, { cpuSeconds: cpu, memMb })
    cpu += cores
    at += 1000
  }
  for (let i = 0; i < 6; i++) step(0.2, 100)
  const quiet = estimate()
  t.same(quiet, { cpus: 1.6, memMb: 800 }, '2 - 0.2 - 0.2 margin; 1000 - 100 - 100 margin')
  // a burst: 1.5 cores, 700 MiB, seen in one sample
  step(1.5, 700)
  step(1.5, 700) // the rate of the second second is the burst's
  const burst = estimate()
  t.same(burst, { cpus: 0.3, memMb: 200 }, 'the very next estimate takes the burst')
  const series = [burst]
  // back to quiet: the peak stays until the window has forgotten the burst
  for (let i = 0; i < window + 1; i++) {
    step(0.2, 100)
    series.push(estimate())
  }
  t.ok(series.slice(1, window).every((e) => e.memMb === 200), `memory stays low for the window: ${JSON.stringify(series)}`)
  t.same(series[series.length - 1], quiet, 'and comes back once the window has passed')
  t.ok(series.every((e, i) => i === 0 || e.cpus >= series[i - 1]!.cpus), 'it never dips again while recovering')
})

t.test('Checks that the history forgets tasks that are gone', async (t) => {
  const h = new UsageHistory(2)
  feed(h, 'a', steady(3, 0.1, 10))
  feed(h, 'b', steady(3, 0.1, 10))
  h.retain(new Set(['b']))
  t.equal(h.size, 1)
  t.equal(h.peak('a'), undefined)
  t.ok(h.peak('b'))
  t.throws(() => new UsageHistory(0), RangeError)
})

t.test('Checks that a task is revocable when it holds a revocable resource, and counts those amounts', async (t) => {
  t.same(allocationOf([{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 256 }, { name: 'disk', scalar: 10 }]),
    { revocable: false, allocated: { cpus: 1, memMb: 256 } })
  t.same(allocationOf([{ name: 'cpus', scalar: 0.5, revocable: true }, { name: 'mem', scalar: 64, revocable: true }, { name: 'disk', scalar: 10 }]),
    { revocable: true, allocated: { cpus: 0.5, memMb: 64 } })
  t.same(allocationOf([{ name: 'cpus', scalar: 1, role: 'ci' }, { name: 'cpus', scalar: 1 }]),
    { revocable: false, allocated: { cpus: 2, memMb: 0 } }, 'reserved and unreserved both count')
})

t.test('Checks that the estimate goes on the heartbeat as revocable cpus and mem, nothing when zero', async (t) => {
  t.same(toRevocableResources({ cpus: 1.25, memMb: 300 }), [
    { name: 'cpus', scalar: 1.25, revocable: true }, { name: 'mem', scalar: 300, revocable: true },
  ])
  t.same(toRevocableResources({ cpus: 0, memMb: 300 }), [{ name: 'mem', scalar: 300, revocable: true }])
  t.same(toRevocableResources({ cpus: 0, memMb: 0 }), [], 'an empty list (the master then offers none)')
})
