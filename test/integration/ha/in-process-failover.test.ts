// Failover of masters inside one process (fast): a standby takes over from the registry,
// agents re-register with their running tasks, frameworks carry on and reconcile.
import t from 'tap'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { isTerminal } from '../../../shared/protocol/index.js'
import { startCluster, shellTask, fastMasterConfig, type TestCluster } from '../../helpers/cluster.js'

let cluster: TestCluster
t.before(async () => {
  cluster = await startCluster()
})
t.teardown(() => cluster.stop())

t.test('Checks that a standby takes over, agents re-register with running tasks, and tasks finish', async (t) => {
  const config = { ...fastMasterConfig, leaseTtlMs: 1_000 }
  const m1 = await cluster.startMaster('m1', config)
  const m2 = await cluster.startMaster('m2', config)
  t.ok(m1.isLeader, 'm1 leads')
  t.notOk(m2.isLeader, 'm2 stands by')
  const agent = await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'agent-ha' })
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  await fw.launch(shellTask('long-1', 'sleep 2; exit 0'))
  await fw.waitFor('RUNNING', () => fw.statesOf('long-1').includes('RUNNING'))

  const epoch1 = m1.epoch
  await m1.stop()
  await fw.waitFor('m2 to lead', () => m2.isLeader, 10_000)
  t.ok(m2.epoch > epoch1, 'the new leader has a higher epoch')
  t.equal(m2.state().frameworks.length, 1, 'the new leader knows the framework from the registry')

  // the agent re-registers with its running task
  await fw.waitFor('the agent to re-register', () => m2.state().agents.find((a) => a.id === 'agent-ha' && a.state === 'active'), 10_000)
  await fw.waitFor('the task on the new leader', () => m2.state().tasks.find((x) => x.taskId === 'long-1'), 10_000)
  const end = await fw.terminal('long-1', 15_000)
  t.equal(end.state, 'FINISHED', 'the task finished across the failover')
  t.equal(fw.updates.filter((u) => u.taskId === 'long-1' && isTerminal(u.state) && u.reason !== 'RECONCILIATION').length, 1, 'one terminal update')

  // the framework gets offers from the new leader and launches again
  await fw.launch(shellTask('after-1', 'exit 0'))
  t.equal((await fw.terminal('after-1', 15_000)).state, 'FINISHED')
  t.equal(agent.epoch, m2.epoch, 'the agent follows the new epoch')
})
