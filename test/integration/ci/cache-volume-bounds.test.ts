// Cache volumes stay bounded (a real master, one agent with the process containerizer, the CI
// service): a volume unused past the TTL is destroyed and its disk unreserved (offered again as
// unreserved); on an agent with room for two volumes, a third pipeline's job makes room by
// destroying the least recently used free volume, never one a running job holds. (Newer pushes
// do not cancel older runs here: a job holding its volume runs on while others come.)
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { waitUntil } from '../../helpers/wait.js'
import { cacheVolumeBase, cacheVolumeId } from '../../../services/ci/src/cache-volumes.js'
import { CACHE_VOLUMES_BUCKET } from '../../../services/ci/src/cache-volume-ledger.js'

const GATE = join(tmpdir(), `regatta-gate-${process.pid}-${randomBytes(3).toString('hex')}`)

const pipeline = (name: string, wait = false): string => `
name: ${name}
on: { push: { branches: [main] } }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    cache: { key: deps, paths: [.deps], volume: { size: 256 } }
    steps:
      - run: |
          ${wait ? `i=0; while [ ! -e ${GATE}/open ]; do i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.05; done` : 'true'}
          mkdir -p .deps && echo "$REGATTA_RUN_ID" > .deps/stamp
`

type Fixture = CiFixture & { volumes(): string[]; run(name: string, o?: { wait?: boolean; done?: boolean }): Promise<{ runId: string; log: () => Promise<string> }> }

async function start(t: Tap, o: { disk: number; ttlMs: number }): Promise<Fixture> {
  const f = await startCiFixture({ containerizer: 'process', agentResources: `cpus:4;mem:4096;disk:${o.disk}`, ci: { cacheVolumeTtlMs: o.ttlMs, cancelSuperseded: false } })
  t.teardown(() => f.stop())
  let n = 0
  return Object.assign(f, {
    volumes: () => f.cluster.masters[0]!.state().agents[0]!.resources.filter((r) => r.disk).map((r) => r.disk!.persistence.id).sort(),
    async run(name: string, r: { wait?: boolean; done?: boolean } = {}) {
      const sha = await f.repo.commit({ '.regatta/p.yml': pipeline(name, r.wait), README: `${name} ${n++}\n` }, name)
      t.equal((await f.push(sha)).status, 202)
      const run = r.done === false
        ? await f.waitForRun({ sha }, (v) => v.jobs[0]?.state === 'running', 30_000)
        : await f.waitForRun({ sha }, undefined, 30_000)
      if (r.done !== false) t.equal(run.state, 'succeeded', `${name}: ${JSON.stringify(run.jobs)}`)
      return { runId: run.runId, log: () => f.jobLog(run.runId, `${name}/build`) }
    },
  })
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

const vol = (name: string, slot = 0): string => cacheVolumeId(cacheVolumeBase('octo/app', name), slot)

t.teardown(() => rm(GATE, { recursive: true, force: true }))

t.test('Checks that a cache volume unused past its TTL is destroyed and its disk offered again unreserved', async (t) => {
  const f = await start(t, { disk: 2000, ttlMs: 2_500 })
  const first = await f.run('ttl')
  t.match(await first.log(), `::regatta cache volume ${vol('ttl')}: nothing kept for key deps yet`)
  t.same(f.volumes(), [vol('ttl')], 'the job made its volume')
  const kv = await (await f.cluster.connect('check')).jetstream().views.kv(CACHE_VOLUMES_BUCKET)
  const keys: string[] = []
  for await (const k of await kv.keys()) keys.push(k)
  t.equal(keys.length, 1, 'its last use is recorded in KV')
  // the TTL runs from the last use the CI service recorded (the job's end), which is the
  // reference here: a time taken by the test after reading the log is later than it
  const { lastUsedAt } = (await kv.get(keys[0]!))!.json<{ lastUsedAt: number }>()
  await waitUntil('the volume to be destroyed', async () => f.volumes().length === 0, 15_000, 50)
  const ms = Date.now() - lastUsedAt
  t.ok(ms >= 2_500, `destroyed ${ms} ms after its recorded last use, not before the TTL`)
  t.comment(`volume destroyed ${ms} ms after its last use (TTL 2500 ms)`)
  const disk = f.cluster.masters[0]!.state().agents[0]!.resources.filter((r) => r.name === 'disk')
  t.same(disk, [{ name: 'disk', scalar: 2000 }], 'all the disk is unreserved again')
  // offered again as unreserved, to any framework
  const other = await f.cluster.framework({ name: 'other', roles: ['*'] })
  const offer = await other.nextOffer()
  t.same(offer.resources.filter((r) => r.name === 'disk'), [{ name: 'disk', scalar: 2000 }], 'an offer holds the freed disk, unreserved')
  await other.scheduler.teardown()
  const after: string[] = []
  for await (const k of await kv.keys()) after.push(k)
  t.same(after, [], 'its record is gone')
})

t.test('Checks that with room for two cache volumes the least recently used free one makes room, and one in use is never destroyed', async (t) => {
  // 600 MiB: two volumes of 256 fit, a third does not
  const f = await start(t, { disk: 600, ttlMs: 0 })
  await f.run('a')
  await f.run('b')
  await f.run('a') // b is now the least recently used
  t.same(f.volumes(), [vol('a'), vol('b')].sort(), 'two volumes fill the agent')
  const c = await f.run('c')
  t.match(await c.log(), `::regatta cache volume ${vol('c')}: nothing kept for key deps yet`, 'the third pipeline\'s job got a volume')
  t.same(f.volumes(), [vol('a'), vol('c')].sort(), 'b, the least recently used, was destroyed; a (used before b, and again after) kept')

  // a's job holds its volume while c runs and ends: a is then the least recently used, but in use
  await mkdir(GATE, { recursive: true })
  const holding = await f.run('a', { wait: true, done: false })
  await f.run('c')
  const d = await f.run('d')
  t.match(await d.log(), `::regatta cache volume ${vol('d')}: nothing kept for key deps yet`, 'the fourth pipeline\'s job got a volume')
  t.same(f.volumes(), [vol('a'), vol('d')].sort(), 'c was destroyed; a, held by a running job, was not')
  await writeFile(join(GATE, 'open'), '')
  const held = await f.waitForRun({ runId: holding.runId }, undefined, 30_000)
  t.equal(held.state, 'succeeded', JSON.stringify(held.jobs))
  t.match(await holding.log(), `::regatta cache volume ${vol('a')}: key deps warm`, 'the holding job ran with its volume throughout')
})
