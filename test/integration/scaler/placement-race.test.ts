// Scale-down racing placement: a pool whose agents count as idle at once (idle timeout 0, no
// cooldown) while a framework keeps sending tasks with short gaps. The scaler drains agents
// the moment they are empty, so launches land on agents being drained, offers are rescinded
// under the framework's feet and agents get work while picked for scale-down. Whatever the
// interleaving, no task that was placed is killed or lost: a launch on a rescinded offer is
// DROPPED before it runs (the framework places it again), a busy agent is never stopped.
import t from 'tap'
import { shellTask } from '../../helpers/cluster.js'
import { startScalerFixture, waitForNoInstances, type ScalerFixture } from './fixture.js'
import { QueueFramework } from './queue-framework.js'

const POOL = 'race'
const TASKS = 24
let f: ScalerFixture

t.before(async () => {
  f = await startScalerFixture({
    policy: { pool: POOL, min: 0, max: 4, idleMs: 0, provider: 'process' },
    agentResources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]',
    intervalMs: 30,
    config: { cooldownMs: 0 },
  })
})
t.teardown(() => f?.stop())

t.test('Checks that scale-down while tasks are being placed never kills a task', async (t) => {
  const fw = await f.cluster.framework({ name: 'race' })
  const qf = new QueueFramework(fw, { pool: POOL, resources: { cpus: 0.5, mem: 64 }, task: (id) => shellTask(id, 'sleep 0.15') })
  qf.start()
  t.teardown(() => qf.stop())
  // two chains of tasks, each submitted 0-60 ms after the one before ended: just when the
  // scaler (every 30 ms) finds its agent empty and drains it
  const chain = async (name: string): Promise<void> => {
    for (let i = 0; i < TASKS / 2; i++) {
      const id = `${name}-${i}`
      qf.submit(id)
      await qf.until(`${id} to end`, () => qf.ended.has(id), 30_000)
      await new Promise((r) => setTimeout(r, (i * 17) % 61))
    }
  }
  const drains = (): number => f.scaler.history.filter((a) => a.type === 'DRAIN').length
  const starts = (): number => f.scaler.history.filter((a) => a.type === 'START').length
  // rounds until the race has happened (agents drained and started again while tasks came), at most 4
  let rounds = 0
  do {
    rounds++
    await Promise.all([chain(`a${rounds}`), chain(`b${rounds}`)])
  } while (rounds < 4 && (drains() < 2 || starts() < 2))
  const total = rounds * TASKS
  await qf.until(`all ${total} tasks to end`, () => qf.ended.size === total, 45_000)
  t.same(qf.casualties.map((s) => `${s.taskId} ${s.state} ${s.reason ?? ''} ${s.message ?? ''}`), [], 'no task was killed, lost or failed')
  t.equal(qf.done, total, `every task finished (${rounds} round(s) of ${TASKS})`)
  t.same(qf.launchErrors, [], 'the master refused no launch (one on a withdrawn offer is DROPPED, and placed again)')

  t.ok(drains() >= 2 && starts() >= 2, `agents were drained and started again meanwhile (${drains()} drains, ${starts()} starts, ${qf.requeued.length} launches dropped and placed again, ${f.scaler.history.filter((a) => a.type === 'UNDRAIN').length} undrains)`)
  for (const s of f.scaler.history.filter((a) => a.type === 'STOP')) {
    t.equal(s.type === 'STOP' && s.reason, 'drained', `instance ${s.type === 'STOP' ? s.instanceId : ''} was stopped only once drained and empty`)
  }
  await waitForNoInstances(f, 20_000)
})
