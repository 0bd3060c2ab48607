// A framework that goes away keeps its tasks for its failover timeout, gets them back when it
// subscribes again with its id, and loses them (killed) once the timeout passes.
import t from 'tap'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { startCluster, shellTask, fastMasterConfig, type TestCluster } from '../../helpers/cluster.js'

let cluster: TestCluster
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster('m1', { ...fastMasterConfig, frameworkInactiveMs: 600 })
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'agent-fw' })
})
t.teardown(() => cluster.stop())

t.test('Checks that a re-subscribing framework keeps its running task and gets its updates', async (t) => {
  const fw = await cluster.framework({ failoverTimeoutMs: 30_000 })
  await fw.launch(shellTask('keep-1', 'sleep 2; exit 0'))
  await fw.waitFor('RUNNING', () => fw.statesOf('keep-1').includes('RUNNING'))
  await fw.scheduler.stop()
  const master = cluster.masters[0]!
  await fw.waitFor('the framework to go inactive', () => master.state().frameworks.find((f) => f.id === fw.scheduler.frameworkId && !f.active), 5_000)
  t.equal(master.state().tasks.find((x) => x.taskId === 'keep-1')?.state, 'RUNNING', 'its task keeps running')

  const back = await cluster.framework({ id: fw.scheduler.frameworkId, failoverTimeoutMs: 30_000 })
  t.teardown(() => back.scheduler.teardown().catch(() => undefined))
  const end = await back.terminal('keep-1', 15_000)
  t.equal(end.state, 'FINISHED', 'the re-subscribed framework hears the task finish')
  t.ok(master.state().frameworks.find((f) => f.id === back.scheduler.frameworkId)?.active, 'active again')
})

t.test('Checks that a framework away past its failover timeout loses its tasks (killed)', async (t) => {
  const fw = await cluster.framework({ failoverTimeoutMs: 1_000 })
  await fw.launch(shellTask('lose-1', 'sleep 30'))
  await fw.waitFor('RUNNING', () => fw.statesOf('lose-1').includes('RUNNING'))
  const frameworkId = fw.scheduler.frameworkId
  await fw.scheduler.stop()
  const master = cluster.masters[0]!
  await fw.waitFor('the framework to be removed', () => !master.state().frameworks.some((f) => f.id === frameworkId), 10_000)
  t.notOk(master.state().tasks.some((x) => x.taskId === 'lose-1' && x.state === 'RUNNING'), 'the master no longer counts its task as running')
  // the agent killed it: nothing of it runs there any more
  const agent = cluster.agents[0]!
  await fw.waitFor('the agent to kill the task', () => !agent.runningTasks().some((x) => x.taskId === 'lose-1'), 10_000)
  t.pass('the task is gone from the agent')
  t.equal(master.state().agents[0]!.used.cpus ?? 0, 0, 'its resources are free')
})
