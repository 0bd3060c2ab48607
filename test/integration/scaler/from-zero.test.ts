// A pool at min 0, for real: a nats-server, a master, the scaler with the `process` provider
// (agents as `regatta agent` child processes) and a framework that tells the master its demand
// (REQUEST). Demand wakes the pool, the task runs on the agent the scaler started, and once that
// agent has been idle for the pool's idle timeout it is drained, then stopped.
import t from 'tap'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { Scaler } from '../../../services/scaler/src/scaler.js'
import { PoolStore } from '../../../services/scaler/src/pool-store.js'
import { ProcessProvider } from '../../../services/scaler/src/providers/process.js'
import { fastMasterConfig, shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { clusterState } from '../../helpers/processes.js'
import { Buckets } from '../../../shared/protocol/index.js'
import { QueueFramework } from './queue-framework.js'

const POOL = 'zero'
const IDLE_MS = 1_500
let cluster: TestCluster
let provider: ProcessProvider
let scaler: Scaler
let baseDir: string

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster('m1', fastMasterConfig)
  baseDir = await mkdtemp(join(tmpdir(), 'regatta-scaler-'))
  provider = new ProcessProvider({
    natsUrl: cluster.nats.url, baseDir, logger: silentLogger(), containerizer: 'process', logLevel: 'warn',
    resources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]',
  })
  const store = await PoolStore.open(await cluster.connect('pool-set'))
  await store.put({ pool: POOL, min: 0, max: 2, idleMs: IDLE_MS, provider: 'process' })
  scaler = new Scaler({
    nc: await cluster.connect('scaler'), logger: silentLogger(), providers: [provider], intervalMs: 100, leaseTtlMs: 2_000,
    policy: { registerDeadlineMs: 20_000, agentLostMs: 5_000, cooldownMs: 500 },
  })
  await scaler.start()
})
t.teardown(async () => {
  await scaler?.stop()
  await provider?.stopAll()
  await cluster?.stop()
  if (baseDir) await rm(baseDir, { recursive: true, force: true })
})

t.test('Checks that demand starts an agent in an empty pool, the task runs on it, and the idle agent is drained then stopped', async (t) => {
  const nc = await cluster.connect('observer')
  await new Promise((r) => setTimeout(r, 500))
  t.same(await provider.list(), [], 'min 0 and no demand: no agent is started')

  // every agent record the master stores in its registry, as it stores it (a watch sees each
  // write; sampling the state every 50 ms missed the short drain once on a loaded machine)
  const drainingSeen = new Set<string>()
  const watch = await (await nc.jetstream().views.kv(Buckets.registry)).watch({ key: 'agent.>' })
  const watching = (async () => {
    for await (const e of watch) {
      if (e.operation !== 'PUT') continue
      const r = e.json<{ info: { id: string }; draining: boolean }>()
      if (r.draining) drainingSeen.add(r.info.id)
    }
  })()

  const fw = await cluster.framework({ name: 'from-zero' })
  const qf = new QueueFramework(fw, { pool: POOL, resources: { cpus: 0.5, mem: 64 }, task: (id) => shellTask(id, 'echo ran on a new agent') })
  qf.start()
  t.teardown(() => qf.stop())
  qf.submit('job-1')
  await qf.until('the task to finish', () => qf.ended.has('job-1'), 30_000)
  const end = qf.ended.get('job-1')!
  t.equal(end.state, 'FINISHED', 'the task ran')

  const instances = await provider.list()
  t.equal(instances.length, 1, 'one agent was started for one task')
  const state = await clusterState(nc)
  const agent = state.agents.find((a) => a.id === end.agentId)
  t.ok(agent, 'the task ran on a registered agent')
  t.equal(agent?.pool, POOL)
  t.equal(agent?.attributes.instance, instances[0]!.id, 'the agent carries its instance id')
  const starts = scaler.history.filter((a) => a.type === 'START')
  t.same(starts.map((a) => a.type === 'START' && [a.count, a.reason]), [[1, 'demand']], 'started once, for the demand')

  // idle for IDLE_MS: drained, then stopped
  await qf.until('the agent to be stopped', () => scaler.history.some((a) => a.type === 'STOP' && a.agentId === end.agentId), 15_000)
  const drain = scaler.history.find((a) => a.type === 'DRAIN' && a.agentId === end.agentId)
  t.match(drain, { reason: 'idle', ok: true }, 'drained for being idle')
  t.match(scaler.history.find((a) => a.type === 'STOP'), { reason: 'drained', instanceId: instances[0]!.id })
  t.ok(agent?.idleSince !== undefined && drain!.at >= agent.idleSince + IDLE_MS, 'not before the idle timeout')
  const deadline = Date.now() + 15_000
  while ((await provider.list()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  t.same(await provider.list(), [], 'the agent process is gone')
  t.same((await readdir(baseDir)).filter((f) => !f.endsWith('.log')), [], 'its work dir is removed')
  watch.stop()
  await watching
  t.ok(drainingSeen.has(end.agentId!), 'the master stored the agent as draining before it stopped')
  t.same(qf.casualties, [], 'no task was killed')
  // the pool stays at zero with no demand
  await new Promise((r) => setTimeout(r, 600))
  t.same(await provider.list(), [], 'back to min 0')
  t.equal(scaler.history.filter((a) => a.type === 'START').length, 1, 'and nothing started again')
})
