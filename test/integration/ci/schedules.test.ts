// Cron schedules: a due tick starts one run on the default branch, even with two replicas.
import t from 'tap'
import { Schedules, latestTick } from '../../../services/ci/src/schedules.js'
import { silentLogger } from '../../../shared/log/index.js'
import { ManualClock } from '../../../shared/clock/index.js'
import type { Trigger } from '../../../services/ci/src/trigger.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'
import { createRepo, type TestRepo } from '../../helpers/git-repo.js'

let nats: NatsServer
let repo: TestRepo
t.before(async () => {
  nats = await startNatsServer()
  repo = await createRepo()
})
t.teardown(async () => {
  await nats.stop()
  await repo.remove()
})

t.test('Checks that latestTick finds the last tick in the window, and none outside it', async (t) => {
  const at = (s: string): number => Date.parse(s)
  t.equal(latestTick('*/5 * * * *', at('2026-01-01T00:03:00Z'), at('2026-01-01T00:12:00Z')), at('2026-01-01T00:10:00Z'))
  t.equal(latestTick('*/5 * * * *', at('2026-01-01T00:10:00Z'), at('2026-01-01T00:12:00Z')), undefined, 'the tick at the start is not in (since, now]')
  t.equal(latestTick('0 3 * * *', at('2026-01-01T02:00:00Z'), at('2026-01-01T03:00:00Z')), at('2026-01-01T03:00:00Z'))
  t.equal(latestTick('not a cron', 0, Date.now()), undefined)
})

t.test('Checks that a due tick starts one run of the default branch, even with two replicas', async (t) => {
  const sha = await repo.commit({ 'README.md': 'x' })
  const started: Trigger[] = []
  const clock = new ManualClock(Date.parse('2026-01-01T00:00:30Z'))
  const replicas = await Promise.all([1, 2].map(async () => {
    const s = new Schedules(await nats.connect(), async (tr) => { started.push(tr) }, silentLogger(), { clock, intervalMs: 3_600_000 })
    await s.open()
    return s
  }))
  t.teardown(() => replicas.forEach((r) => r.stop()))
  await replicas[0]!.record({ fullName: 'octo/app', cloneUrl: repo.url, defaultBranch: 'main', private: false }, ['* * * * *'])
  const now = Date.parse('2026-01-01T00:02:10Z')
  const counts = await Promise.all(replicas.map((r) => r.check(now)))
  t.equal(counts[0]! + counts[1]!, 1, 'one replica started the tick')
  t.equal(started.length, 1)
  t.equal(started[0]!.kind, 'schedule')
  t.equal(started[0]!.schedule, '* * * * *')
  t.equal(started[0]!.sha, sha, 'the head of the default branch')
  t.equal(started[0]!.branch, 'main')
  t.same(await Promise.all(replicas.map((r) => r.check(now + 1_000))), [0, 0], 'no new tick, no new run')
  await replicas[0]!.record({ fullName: 'octo/app', cloneUrl: repo.url, defaultBranch: 'main', private: false }, [])
  t.same(await Promise.all(replicas.map((r) => r.check(now + 120_000))), [0, 0], 'schedules removed: nothing more')
})
