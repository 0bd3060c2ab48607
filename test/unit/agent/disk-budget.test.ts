// The sandboxes' disk budget: which kept sandboxes go first (pure), and SandboxDisk on real
// directories with a manual clock (retention, least-recently-used eviction, live sandboxes never
// evicted); the agent's disk flags.
import t from 'tap'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ManualClock } from '../../../shared/clock/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { SandboxDisk, chooseEvictions, diskUsage } from '../../../services/agent/src/disk-budget.js'
import { diskFromFlags } from '../../../services/agent/src/main.js'

const MIB = 1024 * 1024
const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false)

let root: string
t.before(async () => { root = await mkdtemp(join(tmpdir(), 'regatta-disk-')) })
t.teardown(() => rm(root, { recursive: true, force: true }))

/** A sandbox holding `mib` MiB of written (not sparse) data. */
async function sandbox(name: string, mib: number): Promise<string> {
  const dir = join(root, name)
  await mkdir(dir, { recursive: true })
  if (mib > 0) await writeFile(join(dir, 'stdout'), Buffer.alloc(Math.round(mib * MIB), 7))
  return dir
}

t.test('Checks that chooseEvictions takes the least recently used kept sandboxes until the rest fits', async (t) => {
  const kept = [
    { path: '/s/c', lastUsedAt: 300, bytes: 40 },
    { path: '/s/a', lastUsedAt: 100, bytes: 30 },
    { path: '/s/b', lastUsedAt: 200, bytes: 20 },
  ]
  t.same(chooseEvictions(0, kept, 90), [], 'within the budget: nothing')
  t.same(chooseEvictions(0, kept, 89), ['/s/a'], 'just over: the oldest only')
  t.same(chooseEvictions(0, kept, 40), ['/s/a', '/s/b'], 'oldest first, until it fits')
  t.same(chooseEvictions(50, kept, 90), ['/s/a', '/s/b'], 'live bytes count against the budget')
  t.same(chooseEvictions(200, kept, 90), ['/s/a', '/s/b', '/s/c'], 'live alone over the budget: every kept one goes, and no more')
  t.same(chooseEvictions(0, [{ path: '/s/y', lastUsedAt: 1, bytes: 5 }, { path: '/s/x', lastUsedAt: 1, bytes: 5 }], 5), ['/s/x'], 'ties broken by path')
  t.same(chooseEvictions(0, [], 0), [])
})

t.test('Checks that diskUsage counts the blocks a tree takes and 0 for what does not exist', async (t) => {
  const dir = await sandbox('usage', 1)
  await mkdir(join(dir, 'workspace', 'deep'), { recursive: true })
  await writeFile(join(dir, 'workspace', 'deep', 'f'), Buffer.alloc(MIB, 1))
  const bytes = await diskUsage(dir)
  t.ok(bytes >= 2 * MIB && bytes < 2 * MIB + 64 * 1024, `two MiB written, ${bytes} bytes counted`)
  t.equal(await diskUsage(join(root, 'nothing-here')), 0)
})

t.test('Checks that a kept sandbox is removed when its retention has passed, and at once with no retention', async (t) => {
  const clock = new ManualClock()
  const disk = new SandboxDisk({ retentionMs: 60_000, clock, logger: silentLogger(), live: () => [] })
  const dir = await sandbox('kept', 0.1)
  disk.retain(dir)
  t.ok(disk.has(dir))
  clock.advance(59_000)
  t.ok(await exists(dir), 'still there within the retention')
  clock.advance(1_000)
  await t.resolves(async () => {
    for (let i = 0; i < 100 && await exists(dir); i++) await new Promise((r) => setTimeout(r, 10))
  })
  t.notOk(await exists(dir), 'removed once the retention passed')
  t.notOk(disk.has(dir))

  const old = await sandbox('ended-long-ago', 0.1)
  let told: boolean | undefined
  disk.retain(old, clock.now() - 120_000, (removed) => { told = removed })
  for (let i = 0; i < 100 && told === undefined; i++) await new Promise((r) => setTimeout(r, 10))
  t.equal(told, true, 'a sandbox whose retention passed already goes at once, and the caller is told')
  t.notOk(await exists(old))

  const none = new SandboxDisk({ retentionMs: 0, clock, logger: silentLogger(), live: () => [] })
  const now = await sandbox('no-retention', 0.1)
  none.retain(now)
  for (let i = 0; i < 100 && await exists(now); i++) await new Promise((r) => setTimeout(r, 10))
  t.notOk(await exists(now), 'retention 0: removed at once')
  disk.stop()
  none.stop()
})

t.test('Checks that kept sandboxes over the budget are evicted least recently used first and running ones never', async (t) => {
  const clock = new ManualClock()
  const live: string[] = []
  const disk = new SandboxDisk({ retentionMs: 3_600_000, budgetMb: 3.5, clock, logger: silentLogger(), live: () => live })
  live.push(await sandbox('lru/running', 1))
  const a = await sandbox('lru/a', 1)
  const b = await sandbox('lru/b', 1)
  const c = await sandbox('lru/c', 1)
  // ended in the order b, a, c: b is the least recently used
  disk.retain(b, clock.now() - 3_000)
  disk.retain(a, clock.now() - 2_000)
  t.same(await disk.enforce({ measureLive: true }), [], '1 MiB running + 2 MiB kept: within 3.5 MiB')
  disk.retain(c, clock.now() - 1_000)
  const evicted = await disk.enforce()
  t.same(evicted, [b], 'the least recently used one went')
  t.notOk(await exists(b))
  t.ok(await exists(a) && await exists(c) && await exists(live[0]!), 'the others stay')
  const stats = disk.stats()
  t.equal(stats.evicted, 1)
  t.equal(stats.retained, 2)
  t.equal(stats.budgetMb, 3.5)
  t.ok(stats.usedMb >= 3 && stats.usedMb <= 3.5, `used ${stats.usedMb} MiB`)

  // the running task grows past the budget: every kept sandbox goes, the running one stays
  await writeFile(join(live[0]!, 'big'), Buffer.alloc(3 * MIB, 1))
  const all = await disk.enforce({ measureLive: true })
  t.same(all, [a, c], 'oldest first, all of them')
  t.ok(await exists(live[0]!), 'a running task\'s sandbox is never evicted')
  t.equal(disk.stats().retained, 0)
  t.equal(disk.stats().evicted, 3)
  disk.stop()
})

t.test('Checks that a task that ended since the last measure counts once, as kept, not also as running', async (t) => {
  const clock = new ManualClock()
  const live: string[] = []
  const disk = new SandboxDisk({ retentionMs: 3_600_000, budgetMb: 2.5, clock, logger: silentLogger(), live: () => live })
  const first = await sandbox('once/first', 1)
  disk.retain(first, clock.now() - 1_000)
  const second = await sandbox('once/second', 1)
  live.push(second)
  t.same(await disk.enforce({ measureLive: true }), [], '1 MiB kept + 1 MiB running')
  // the running task ends: its sandbox is kept now; measured as running a moment ago, it must not count twice
  live.pop()
  disk.retain(second)
  t.same(await disk.enforce(), [], 'two 1 MiB sandboxes fit 2.5 MiB')
  t.ok(await exists(first) && await exists(second))
  t.ok(disk.stats().usedMb < 2.5, `used ${disk.stats().usedMb} MiB`)
  disk.stop()
})

t.test('Checks that without a budget nothing is evicted and the disk used is still reported', async (t) => {
  const clock = new ManualClock()
  const disk = new SandboxDisk({ retentionMs: 3_600_000, clock, logger: silentLogger(), live: () => [] })
  const a = await sandbox('unbounded/a', 1)
  disk.retain(a)
  t.same(await disk.enforce({ measureLive: true }), [])
  const stats = disk.stats()
  t.equal(stats.budgetMb, undefined)
  t.ok(stats.usedMb >= 1, `used ${stats.usedMb} MiB`)
  t.ok(await exists(a))
  disk.stop()
})

t.test('Checks that the agent\'s disk flags are validated and a bad one is named', async (t) => {
  t.same(diskFromFlags({}), {})
  t.same(diskFromFlags({ reapInterval: '5s', diskBudget: '2048', sandboxRetention: '0' }), { reapIntervalMs: 5_000, diskBudgetMb: 2048, sandboxRetentionMs: 0 })
  const bad = (f: Parameters<typeof diskFromFlags>[0], flag: string): void => {
    let caught: unknown
    try {
      diskFromFlags(f)
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof RegattaError && caught.code === 'INVALID_CONFIG' && caught.message.startsWith(`${flag}: `), `${JSON.stringify(f)}: ${String(caught)}`)
  }
  bad({ reapInterval: 'soon' }, '--reap-interval')
  bad({ reapInterval: '10ms' }, '--reap-interval')
  bad({ diskBudget: '-1' }, '--disk-budget')
  bad({ diskBudget: 'lots' }, '--disk-budget')
  bad({ sandboxRetention: '5 minutes' }, '--sandbox-retention')
})
