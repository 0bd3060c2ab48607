// Demand end to end on a real nats-server with real agents (process containerizer): a
// framework's REQUEST shows per pool in the cluster state (as `regatta status` and the scaler
// read it over NATS), unmet demand follows the free capacity of active, non-draining agents, and
// demand goes away when cleared, torn down, past the failover timeout, and comes back after a
// master failover.
import t from 'tap'
import type { TapTest } from '../../helpers/tap-types.js'
import type { NatsConnection } from 'nats'
import { ClusterState, OperatorReply, Subjects, type PoolDemand } from '../../../shared/protocol/index.js'
import { request } from '../../../shared/nats/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { fastMasterConfig, shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

const processContainerizer = (): ProcessContainerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false })

async function newCluster(t: TapTest): Promise<TestCluster> {
  const cluster = await startCluster()
  t.teardown(() => cluster.stop())
  return cluster
}

/** The leader's state over NATS, as `regatta status` and the scaler get it. */
async function demandOf(nc: NatsConnection, pool: string): Promise<PoolDemand | undefined> {
  const state = await request(nc, Subjects.masterState, {}, ClusterState, 3_000)
  return state.demand.find((d) => d.pool === pool)
}

t.test('Checks that a REQUEST shows per pool in the state, its unmet part follows free capacity, running tasks and draining, and an empty REQUEST clears it', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startMaster('m1')
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'ci-1', pool: 'ci', resources: 'cpus:2;mem:2048;disk:1000' })
  const nc = await cluster.connect('observer')
  const fw = await cluster.framework()
  t.same((await request(nc, Subjects.masterState, {}, ClusterState, 3_000)).demand, [], 'no demand before any REQUEST')

  await fw.scheduler.request([
    { pool: 'ci', resources: { cpus: 1, mem: 512 }, count: 3 },
    { pool: 'gpu', resources: { cpus: 1, gpus: 1 }, count: 2 },
  ])
  t.same(await demandOf(nc, 'ci'), { pool: 'ci', requested: { cpus: 3, mem: 1536 }, unmet: { cpus: 1, mem: 512 }, jobs: 3, unmetJobs: 1 },
    'two of three fit the agent\'s 2 free cpus; one is unmet')
  t.same(await demandOf(nc, 'gpu'), { pool: 'gpu', requested: { cpus: 2, gpus: 2 }, unmet: { cpus: 2, gpus: 2 }, jobs: 2, unmetJobs: 2 },
    'a pool without agents: all unmet')

  // a running task takes one cpu: one fewer fits
  const offer = await fw.nextOffer((o) => o.agentId === 'ci-1')
  await fw.scheduler.launch(offer, [shellTask('busy', 'sleep 30', { resources: [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 64 }] })], { refuseSeconds: 0 })
  await fw.waitFor('the task to run', () => fw.statesOf('busy').includes('RUNNING'))
  t.equal((await demandOf(nc, 'ci'))?.unmetJobs, 2, 'free capacity, not total, counts')

  // a draining agent takes no new work: it meets no demand
  await request(nc, Subjects.masterOperator, { type: 'DRAIN', agentId: 'ci-1' }, OperatorReply)
  t.equal((await demandOf(nc, 'ci'))?.unmetJobs, 3, 'nothing fits a draining agent')
  await request(nc, Subjects.masterOperator, { type: 'UNDRAIN', agentId: 'ci-1' }, OperatorReply)
  t.equal((await demandOf(nc, 'ci'))?.unmetJobs, 2)

  // the next REQUEST replaces the whole demand
  await fw.scheduler.request([{ pool: 'ci', resources: { cpus: 0.5 }, count: 1 }])
  t.same((await request(nc, Subjects.masterState, {}, ClusterState, 3_000)).demand,
    [{ pool: 'ci', requested: { cpus: 0.5 }, unmet: {}, jobs: 1, unmetJobs: 0 }])
  await fw.scheduler.request([])
  t.same((await request(nc, Subjects.masterState, {}, ClusterState, 3_000)).demand, [], 'an empty REQUEST clears it')
  await fw.scheduler.kill('busy')
  await fw.terminal('busy')
})

t.test('Checks that demand from several frameworks adds up, and goes with a framework torn down or past its failover timeout', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startMaster('m1')
  const nc = await cluster.connect('observer')
  const a = await cluster.framework({ name: 'a' })
  const b = await cluster.framework({ name: 'b', failoverTimeoutMs: 200 })
  const c = await cluster.framework({ name: 'c' })
  await a.scheduler.request([{ pool: 'ci', resources: { cpus: 1 }, count: 2 }])
  await b.scheduler.request([{ pool: 'ci', resources: { cpus: 2 }, count: 1 }])
  await c.scheduler.request([{ pool: 'ci', resources: { cpus: 4 }, count: 1 }])
  t.same(await demandOf(nc, 'ci'), { pool: 'ci', requested: { cpus: 8 }, unmet: { cpus: 8 }, jobs: 4, unmetJobs: 4 })

  await c.scheduler.teardown()
  t.same((await demandOf(nc, 'ci'))?.requested, { cpus: 4 }, 'the torn-down framework\'s demand is gone')

  // b goes away without a teardown: its demand stays while it may come back, then goes
  await b.scheduler.stop()
  t.same((await demandOf(nc, 'ci'))?.requested, { cpus: 4 }, 'still counted while it may come back')
  const gone = Date.now()
  await waitUntil('b\'s failover timeout to pass', async () => (await demandOf(nc, 'ci'))?.jobs === 2, 15_000, 100)
  t.ok(Date.now() - gone >= fastMasterConfig.frameworkInactiveMs! - 500, 'not before it went inactive')
  t.same((await demandOf(nc, 'ci'))?.requested, { cpus: 2 })
})

t.test('Checks that the framework sends its demand again to a new leader after a failover', async (t) => {
  const cluster = await newCluster(t)
  const config = { ...fastMasterConfig, leaseTtlMs: 1_000 }
  const m1 = await cluster.startMaster('m1', config)
  const m2 = await cluster.startMaster('m2', config)
  const nc = await cluster.connect('observer')
  const fw = await cluster.framework()
  await fw.scheduler.request([{ pool: 'ci', role: '*', resources: { cpus: 1, mem: 256 }, count: 5 }])
  t.equal((await demandOf(nc, 'ci'))?.jobs, 5)
  await m1.stop()
  await waitUntil('m2 to lead', () => m2.isLeader, 10_000)
  const d = await waitUntil('the demand on the new leader', () => m2.state().demand.find((x) => x.pool === 'ci'), 10_000)
  t.same(d, { pool: 'ci', requested: { cpus: 5, mem: 1280 }, unmet: { cpus: 5, mem: 1280 }, jobs: 5, unmetJobs: 5 })
})

t.test('Checks that a malformed REQUEST is answered with an error naming the field, and the demand stays as it was', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startMaster('m1')
  const nc = await cluster.connect('observer')
  const fw = await cluster.framework()
  await fw.scheduler.request([{ pool: 'ci', resources: { cpus: 1 }, count: 1 }])
  const send = async (body: unknown): Promise<{ error?: { code: string; message: string } }> => {
    const m = await nc.request(Subjects.schedulerCall, new TextEncoder().encode(JSON.stringify(body)), { timeout: 3_000 })
    return JSON.parse(new TextDecoder().decode(m.data)) as { error?: { code: string; message: string } }
  }
  const frameworkId = fw.scheduler.frameworkId
  const zero = await send({ type: 'REQUEST', frameworkId, requests: [{ pool: 'ci', resources: { cpus: 1 }, count: 0 }] })
  t.equal(zero.error?.code, 'INVALID_MESSAGE')
  t.match(zero.error?.message, /\/requests\/0\/count/)
  const negative = await send({ type: 'REQUEST', frameworkId, requests: [{ pool: 'ci', resources: { cpus: -1 }, count: 1 }] })
  t.match(negative.error?.message, /\/requests\/0\/resources\/cpus/)
  const noPool = await send({ type: 'REQUEST', frameworkId, requests: [{ resources: {}, count: 1 }] })
  t.match(noPool.error?.message, /pool/)
  const unknown = await send({ type: 'REQUEST', frameworkId: 'nobody', requests: [] })
  t.equal(unknown.error?.code, 'UNKNOWN_FRAMEWORK')
  t.equal((await demandOf(nc, 'ci'))?.jobs, 1, 'the good demand is untouched')
})
