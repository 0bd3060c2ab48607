// The leader lease (shared/nats/lease.ts) on a real nats-server: two contenders on one KV bucket,
// exactly one leads; the other takes over after a resign (fast) or when the holder stops
// refreshing (after the TTL); a holder with a stale revision is refused; epochs only grow.
import t from 'tap'
import type { TapTest } from '../../helpers/tap-types.js'
import type { KV, NatsConnection } from 'nats'
import { LeaderLease } from '../../../shared/nats/index.js'
import { ManualClock, type Clock } from '../../../shared/clock/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'
import { waitUntil } from '../../helpers/wait.js'

let nats: NatsServer
t.before(async () => { nats = await startNatsServer() })
t.teardown(() => nats.stop())

interface Contender {
  id: string
  lease: LeaderLease
  elected: Array<{ epoch: number; at: number }>
  demoted: Array<{ reason: string; at: number }>
}

let bucketSeq = 0
async function contenders(t: TapTest, ttlMs: number, specs: Array<{ id: string; clock?: Clock }>): Promise<{ bucket: string; list: Contender[]; kv: KV }> {
  const bucket = `lease-test-${++bucketSeq}`
  const list: Contender[] = []
  const conns: NatsConnection[] = []
  for (const s of specs) {
    const nc = await nats.connect()
    conns.push(nc)
    const c: Contender = { id: s.id, elected: [], demoted: [], lease: undefined as unknown as LeaderLease }
    c.lease = new LeaderLease({
      nc, bucket, ttlMs, holderId: s.id, info: { httpUrl: `http://${s.id}` }, logger: silentLogger(),
      ...(s.clock ? { clock: s.clock } : {}),
      onElected: (epoch) => c.elected.push({ epoch, at: Date.now() }),
      onDemoted: (reason) => c.demoted.push({ reason, at: Date.now() }),
    })
    list.push(c)
  }
  t.teardown(async () => {
    for (const c of list) await c.lease.resign().catch(() => undefined)
  })
  const kv = await (await nats.connect()).jetstream().views.kv(bucket, { ttl: ttlMs, history: 1 })
  return { bucket, list, kv }
}

t.test('Checks that of two contenders exactly one is elected, and it keeps the lease past the TTL by refreshing', async (t) => {
  const { list: [a, b], kv } = await contenders(t, 1_000, [{ id: 'a' }, { id: 'b' }])
  await Promise.all([a!.lease.start(), b!.lease.start()])
  const leaders = [a!, b!].filter((c) => c.lease.isLeader)
  t.equal(leaders.length, 1, 'exactly one leads after both contended')
  const leader = leaders[0]!
  const standby = leader === a ? b! : a!
  t.equal(leader.elected.length, 1)
  t.equal(standby.elected.length, 0)
  t.equal(leader.lease.epoch, leader.elected[0]!.epoch)
  t.equal(standby.lease.current?.id, leader.id, 'the standby knows who leads')
  t.equal(standby.lease.current?.info.httpUrl, `http://${leader.id}`, 'and where to redirect')
  // refreshed (compare-and-set) more than once: the key's revision moves past the epoch
  await waitUntil('two refreshes', async () => ((await kv.get('leader'))?.revision ?? 0) >= leader.lease.epoch + 2, 5_000)
  // observe for two TTLs: no expiry, no second leader, no demotion
  await new Promise((r) => setTimeout(r, 2_000))
  t.equal(leader.lease.isLeader, true, 'still leading after 2 TTLs')
  t.equal(standby.lease.isLeader, false)
  t.equal(standby.elected.length, 0, 'the standby was never elected')
  t.same(leader.demoted, [], 'the leader was never demoted')
})

t.test('Checks that the standby takes over soon after the leader resigns, well before the TTL, with a higher epoch', async (t) => {
  const ttl = 4_000
  const { list: [a, b] } = await contenders(t, ttl, [{ id: 'a' }, { id: 'b' }])
  await a!.lease.start()
  await b!.lease.start()
  t.equal(a!.lease.isLeader, true, 'the first to start leads')
  const firstEpoch = a!.lease.epoch
  const resignedAt = Date.now()
  await a!.lease.resign()
  t.equal(a!.lease.isLeader, false)
  t.same(a!.demoted.map((d) => d.reason), ['resigned'])
  await waitUntil('b elected', () => b!.elected.length > 0, ttl)
  const took = b!.elected[0]!.at - resignedAt
  t.ok(took < ttl / 2, `b took over ${took} ms after the resign (TTL ${ttl} ms): the resign freed the key`)
  t.ok(b!.lease.epoch > firstEpoch, `epoch ${b!.lease.epoch} > ${firstEpoch}`)
})

t.test('Checks that a holder that stops refreshing loses the lease after the TTL, and its stale refresh is refused', async (t) => {
  const ttl = 1_500
  // a's timers run only when the test advances its clock: after its election it never refreshes
  const frozen = new ManualClock()
  const { list: [a, b] } = await contenders(t, ttl, [{ id: 'a', clock: frozen }, { id: 'b' }])
  await a!.lease.start()
  t.equal(a!.lease.isLeader, true)
  const electedAt = a!.elected[0]!.at
  await b!.lease.start()
  t.equal(b!.lease.isLeader, false, 'b waits while the lease is live')

  await waitUntil('b elected', () => b!.elected.length > 0, ttl + 5_000)
  const took = b!.elected[0]!.at - electedAt
  t.ok(took >= ttl - 100, `b took over ${took} ms after a's last write, not before the TTL (${ttl} ms)`)
  t.ok(took < ttl + 2_000, `and soon after it (${took} ms)`)
  t.ok(b!.lease.epoch > a!.lease.epoch, `epoch ${b!.lease.epoch} > ${a!.lease.epoch}`)

  // a wakes up still believing it leads; its compare-and-set on the old revision is refused
  t.equal(a!.lease.isLeader, true, 'a has not noticed yet')
  frozen.advance(ttl / 4)
  await waitUntil('a demoted', () => a!.demoted.length > 0, 5_000)
  t.match(a!.demoted[0]!.reason, /lease lost/)
  t.equal(a!.lease.isLeader, false)
  t.equal(b!.lease.isLeader, true, 'b keeps leading')

  // and a contends again, as a standby that sees b
  frozen.advance(ttl / 4)
  await waitUntil('a sees b', () => a!.lease.current?.id === 'b', 5_000)
  t.equal(a!.elected.length, 1, 'a was not elected again')
})

t.test('Checks that a leader whose key was overwritten is demoted and is elected again, with a higher epoch, once the key expires', async (t) => {
  const ttl = 1_200
  const { list: [a], kv } = await contenders(t, ttl, [{ id: 'a' }])
  await a!.lease.start()
  t.equal(a!.lease.isLeader, true)
  const epochs = [a!.lease.epoch]
  // someone else writes the key: a's revision is stale now
  await kv.put('leader', new TextEncoder().encode(JSON.stringify({ id: 'intruder', info: {} })))
  await waitUntil('a demoted', () => a!.demoted.length > 0, ttl)
  t.match(a!.demoted[0]!.reason, /lease lost/)
  await waitUntil('a sees the intruder', () => a!.lease.current?.id === 'intruder', ttl)
  // the intruder never refreshes: its write expires and a is elected again
  await waitUntil('a elected again', () => a!.elected.length === 2, ttl + 5_000)
  epochs.push(a!.lease.epoch)
  t.ok(epochs[1]! > epochs[0]!, `epochs increase: ${epochs.join(' < ')}`)
  t.equal(a!.lease.isLeader, true)
})

t.test('Checks that a refresh stored after its request timed out keeps the lease (the key still holds the holder\'s own id and epoch), while another holder\'s write still takes it', async (t) => {
  const ttl = 1_200
  // a's timers run only when the test advances its clock: its refreshes happen on cue
  const clock = new ManualClock()
  const { list: [a], kv } = await contenders(t, ttl, [{ id: 'a', clock }])
  await a!.lease.start()
  t.equal(a!.lease.isLeader, true)
  const epoch = a!.lease.epoch
  // a refresh of a's, stored, whose answer a never got: the same value at a newer revision
  const own = (await kv.get('leader'))!
  const value = JSON.parse(new TextDecoder().decode(own.value)) as { id: string; epoch?: number }
  t.same({ id: value.id, epoch: value.epoch }, { id: 'a', epoch }, 'the key holds a\'s id and epoch')
  await kv.update('leader', own.value, own.revision)
  clock.advance(ttl / 8)
  await waitUntil('a to refresh past it', async () => ((await kv.get('leader'))?.revision ?? 0) >= own.revision + 2, 5_000)
  t.same(a!.demoted, [], 'a was not demoted: the write it did not hear of was its own')
  t.equal(a!.lease.isLeader, true, 'and still leads')
  t.equal(a!.lease.epoch, epoch, 'with the same epoch')
  // control: the same with another holder's id is a lost lease
  const now = (await kv.get('leader'))!
  await kv.update('leader', new TextEncoder().encode(JSON.stringify({ id: 'b', epoch, info: {} })), now.revision)
  clock.advance(ttl / 8)
  await waitUntil('a demoted', () => a!.demoted.length > 0, 5_000)
  t.match(a!.demoted[0]!.reason, /lease lost/, 'another holder\'s write takes the lease from a')
})

t.test('Checks that a standby reports the leader\'s epoch (the revision it won at), not the latest refresh', async (t) => {
  const ttl = 1_000
  const { list: [a, b], kv } = await contenders(t, ttl, [{ id: 'a' }, { id: 'b' }])
  await a!.lease.start()
  const epoch = a!.lease.epoch
  await waitUntil('a few refreshes', async () => ((await kv.get('leader'))?.revision ?? 0) >= epoch + 2, 5_000)
  await b!.lease.start()
  t.equal(b!.lease.current?.id, 'a')
  // lease.ts takes `e.revision` of the current value for a holder it sees first: after any
  // refresh that is not the epoch, so `regatta status` on a standby shows a wrong epoch.
  t.equal(b!.lease.current?.epoch, epoch, 'the standby sees the epoch a won at')
})
