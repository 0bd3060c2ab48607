// A burst of 30 short tasks on a pool at min 0 with max 3 agents (each agent fits two tasks):
// the scaler starts agents up to max and never more, every task finishes, and the pool goes
// back to zero once they are idle. Real processes: nats-server, master, `regatta agent`s.
import t from 'tap'
import { shellTask } from '../../helpers/cluster.js'
import { PoolSampler, startScalerFixture, waitForNoInstances, type ScalerFixture } from './fixture.js'
import { QueueFramework } from './queue-framework.js'

const POOL = 'burst'
let f: ScalerFixture

t.before(async () => {
  f = await startScalerFixture({
    policy: { pool: POOL, min: 0, max: 3, idleMs: 1_000, provider: 'process' },
    agentResources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]',
  })
})
t.teardown(() => f?.stop())

t.test('Checks that a burst of 30 tasks with max 3 runs all 30 on at most 3 agents at once, then scales back to min', async (t) => {
  const fw = await f.cluster.framework({ name: 'burst' })
  const qf = new QueueFramework(fw, { pool: POOL, resources: { cpus: 0.5, mem: 64 }, task: (id) => shellTask(id, 'sleep 0.3') })
  qf.start()
  t.teardown(() => qf.stop())
  const sampler = new PoolSampler(f, POOL)
  const ids = Array.from({ length: 30 }, (_, i) => `burst-${i}`)
  qf.submit(...ids)
  await qf.until('all 30 tasks to end', () => qf.ended.size === 30, 40_000)
  t.equal(qf.done, 30, 'all 30 finished')
  t.same(qf.casualties, [], 'none killed or lost')
  const agentsUsed = new Set([...qf.ended.values()].map((s) => s.agentId))
  t.ok(agentsUsed.size >= 2 && agentsUsed.size <= 3, `the tasks spread over the started agents (${agentsUsed.size})`)
  const starts = f.scaler.history.filter((a) => a.type === 'START')
  t.equal(starts.reduce((n, a) => n + (a.type === 'START' ? a.count : 0), 0), 3, 'three agents started, for demand that asked for 15')

  await waitForNoInstances(f, 20_000)
  await sampler.stop()
  t.ok(sampler.samples > 20, `sampled all along (${sampler.samples})`)
  t.equal(sampler.maxInstances, 3, 'never more than max agent processes')
  t.ok(sampler.maxAgents <= 3, `never more than max agents registered (${sampler.maxAgents})`)
  const stops = f.scaler.history.filter((a) => a.type === 'STOP')
  t.same(stops.map((s) => s.type === 'STOP' && s.reason), ['drained', 'drained', 'drained'], 'each drained before it stopped')
})
