// Two scaler replicas on one host (each with its own `process` provider over the same data
// dir): only the holder of the scaler lease acts, so a pool is never sized twice; when it
// stops, the other takes over, finds the agents the first one started, and sizes the pool
// from there (here: down to zero).
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { Scaler } from '../../../services/scaler/src/scaler.js'
import { PoolStore } from '../../../services/scaler/src/pool-store.js'
import { ProcessProvider } from '../../../services/scaler/src/providers/process.js'
import { fastMasterConfig, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { clusterState } from '../../helpers/processes.js'

const POOL = 'twice'
let cluster: TestCluster
let baseDir: string
const providers: ProcessProvider[] = []
const scalers: Scaler[] = []

async function replica(id: string): Promise<Scaler> {
  const provider = new ProcessProvider({
    natsUrl: cluster.nats.url, baseDir, logger: silentLogger(), containerizer: 'process', logLevel: 'warn',
    resources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]', stopGraceMs: 2_000,
  })
  providers.push(provider)
  const s = new Scaler({ nc: await cluster.connect(id), id, logger: silentLogger(), providers: [provider], intervalMs: 100, leaseTtlMs: 1_000, policy: { cooldownMs: 0 } })
  await s.start()
  scalers.push(s)
  return s
}

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster('m1', fastMasterConfig)
  baseDir = await mkdtemp(join(tmpdir(), 'regatta-scaler-replicas-'))
})
t.teardown(async () => {
  for (const s of scalers) await s.stop()
  for (const p of providers) await p.stopAll()
  await cluster.stop()
  await rm(baseDir, { recursive: true, force: true })
})

t.test('Checks that of two scaler replicas only the lease holder acts, and the other takes over with the agents already started', async (t) => {
  const store = await PoolStore.open(await cluster.connect('pool-set'))
  const nc = await cluster.connect('observer')
  const a = await replica('scaler-a')
  const b = await replica('scaler-b')
  const [first, second] = a.isLeader ? [a, b] : [b, a]
  t.ok(first.isLeader && !second.isLeader, 'one of them leads')

  await store.put({ pool: POOL, min: 2, max: 2, idleMs: 500, provider: 'process' })
  const registered = async (): Promise<number> => (await clusterState(nc)).agents.filter((x) => x.pool === POOL && x.state === 'active').length
  const deadline = Date.now() + 20_000
  while ((await registered()) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  t.equal(await registered(), 2, 'the pool has its two agents')
  await new Promise((r) => setTimeout(r, 500))
  t.same(first.history.map((x) => x.type === 'START' && x.count), [2], 'the leader started two')
  t.same(second.history, [], 'the standby did nothing')

  await first.stop() // resigns the lease; its agents keep running
  const until = Date.now() + 5_000
  while (!second.isLeader && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  t.ok(second.isLeader, 'the other replica took over')
  await new Promise((r) => setTimeout(r, 1_000))
  t.same(second.history.filter((x) => x.type === 'START'), [], 'it found the running agents and started none')
  t.equal(await registered(), 2)

  await store.put({ pool: POOL, min: 0, max: 2, idleMs: 500, provider: 'process' })
  const [firstProvider, secondProvider] = first === a ? [providers[0]!, providers[1]!] : [providers[1]!, providers[0]!]
  const gone = Date.now() + 20_000
  while ((await secondProvider.list()).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 200))
  t.same(second.history.filter((x) => x.type === 'STOP').map((x) => x.type === 'STOP' && x.reason), ['drained', 'drained'], 'it drained and stopped the agents the first one started')
  t.same(await secondProvider.list(), [], 'no agent process is left')
  t.ok((await firstProvider.list()).every((i) => i.state === 'exited'), 'the stopped replica saw its children end')
})
