// kvKeys lists a KV bucket's keys from one stream info request: it answers at once even while
// the bucket is written without pause (nats.js's kv.keys() follows a consumer until nothing is
// pending, and a GET /api/v1/runs under a stream of run updates once waited on it for minutes).
import t from 'tap'
import { kvKeys } from '../../../shared/nats/index.js'
import { startNatsServer } from '../../helpers/nats-server.js'

t.test('Checks that kvKeys lists the keys under a filter at once while the bucket is being written, deleted keys included', async (t) => {
  const server = await startNatsServer()
  t.teardown(() => server.stop())
  const nc = await server.connect()
  t.teardown(() => nc.close())
  const kv = await nc.jetstream().views.kv('kv-keys-test', { history: 1 })
  for (let i = 0; i < 200; i++) await kv.put(`run.r${String(i).padStart(3, '0')}`, new TextEncoder().encode(`{"n":${i}}`))
  await kv.put('other.x', new TextEncoder().encode('{}'))
  await kv.delete('run.r007')

  // a writer that never pauses: every key written again and again
  let writing = true
  const writer = (async () => {
    for (let i = 0; writing; i++) await kv.put(`run.r${String(i % 200).padStart(3, '0')}`, new TextEncoder().encode(`{"n":${i}}`))
  })()
  t.teardown(async () => { writing = false; await writer })
  await new Promise((r) => setTimeout(r, 200))

  const started = Date.now()
  const keys = await kvKeys(nc, 'kv-keys-test', 'run.>')
  const took = Date.now() - started
  writing = false
  await writer
  t.ok(took < 2_000, `answered in ${took} ms while the bucket was being written`)
  t.equal(keys.length, 200, 'every run key (the deleted one too, as a marker)')
  t.notOk(keys.includes('other.x'), 'only keys under the filter')
  t.same(keys.filter((k) => !/^run\.r\d{3}$/.test(k)), [], 'keys as written')
  t.same(await kvKeys(nc, 'kv-keys-test', 'nothing.>'), [], 'an empty list for a filter with no keys')
  await t.rejects(kvKeys(nc, 'no-such-bucket'), 'a missing bucket is an error, not an empty list')
})

t.test('Checks that openKv opens a new bucket from many connections at once (the losers of the race to make it open it)', async (t) => {
  const { openKv } = await import('../../../shared/nats/index.js')
  const server = await startNatsServer()
  t.teardown(() => server.stop())
  const conns = await Promise.all(Array.from({ length: 6 }, () => server.connect()))
  t.teardown(() => Promise.all(conns.map((c) => c.close())))
  for (let round = 0; round < 40; round++) {
    const bucket = `race-${round}`
    const opened = await Promise.allSettled(conns.map((c) => openKv(c, bucket, { history: 1 })))
    const failed = opened.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))
    t.same(failed, [], `${bucket}: all ${conns.length} opened it`)
    const kv = (opened[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof openKv>>>).value
    await kv.put('k', new TextEncoder().encode('v'))
    t.equal((await (opened[5] as PromiseFulfilledResult<Awaited<ReturnType<typeof openKv>>>).value.get('k'))?.string(), 'v', `${bucket}: one bucket, seen by all`)
  }
})

t.test('Checks that a bucket opened with openKv reads from the stream leader, never by direct get (which any replica, lagging or not, may answer), even when the bucket allows direct gets', async (t) => {
  const { openKv } = await import('../../../shared/nats/index.js')
  const server = await startNatsServer()
  t.teardown(() => server.stop())
  const nc = await server.connect()
  const spy = await server.connect()
  t.teardown(() => Promise.all([nc.close(), spy.close()]))
  // made by an older Regatta (nats.js's default: direct gets allowed on the stream)
  const made = await nc.jetstream().views.kv('direct-test', { history: 1, allow_direct: true })
  t.equal((await made.status()).streamInfo.config.allow_direct, true, 'the bucket allows direct gets')
  await made.put('run.r1', new TextEncoder().encode('{"state":"running"}'))

  const seen: string[] = []
  spy.subscribe('$JS.API.DIRECT.GET.>', { callback: (_e, m) => seen.push(m.subject) })
  spy.subscribe('$JS.API.STREAM.MSG.GET.>', { callback: (_e, m) => seen.push(m.subject) })
  await spy.flush()
  const control = await made.get('run.r1')
  t.equal(control?.string(), '{"state":"running"}', 'control: nats.js\'s own handle reads the value')
  await spy.flush()
  await new Promise((r) => setTimeout(r, 50))
  t.ok(seen.some((s) => s.startsWith('$JS.API.DIRECT.GET.')), `control: and it read by direct get (${seen.join(', ')})`)

  seen.length = 0
  const kv = await openKv(nc, 'direct-test', { history: 1 })
  t.equal((await kv.get('run.r1'))?.string(), '{"state":"running"}', 'openKv\'s handle reads the value')
  t.equal(await kv.get('run.none'), null, 'and a missing key as none')
  await spy.flush()
  await new Promise((r) => setTimeout(r, 50))
  t.same(seen.filter((s) => s.startsWith('$JS.API.DIRECT.GET.')), [], 'no direct get')
  t.same([...new Set(seen)], ['$JS.API.STREAM.MSG.GET.KV_direct-test'], 'every read asked the stream leader')
})
