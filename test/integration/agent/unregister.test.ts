// An agent that stops with no task left unregisters: the master forgets it at once, instead of
// showing it unreachable and then gone minutes later (a scaled-in agent). One with tasks cannot.
import t from 'tap'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { ClusterState, CommandReply, Subjects } from '../../../shared/protocol/index.js'
import { request } from '../../../shared/nats/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

let cluster: TestCluster
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
})
t.teardown(() => cluster?.stop())

const containerizer = (): ProcessContainerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false })

t.test('Checks that an agent stopping with no task is forgotten at once, and one with a task cannot unregister', async (t) => {
  const nc = await cluster.connect('test')
  const state = (): Promise<ClusterState> => request(nc, Subjects.masterState, {}, ClusterState, 3_000)
  const idle = await cluster.startAgent({ containerizer: containerizer(), id: 'idle-agent' })
  await cluster.startAgent({ containerizer: containerizer(), id: 'busy-agent' })
  await waitUntil('both agents registered', async () => (await state()).agents.length === 2, 5_000)

  const fw = await cluster.framework()
  const offer = await fw.nextOffer((o) => o.agentId === 'busy-agent')
  await fw.scheduler.launch(offer, [shellTask('long', 'sleep 30')], { refuseSeconds: 0 })
  await fw.waitFor('long running', () => fw.statesOf('long').includes('RUNNING'))

  const refused = await request(nc, Subjects.agentUnregister, { agentId: 'busy-agent' }, CommandReply, 3_000).catch((e: unknown) => e)
  t.ok(refused instanceof RegattaError && refused.code === 'INVALID_OPERATION', `an agent with a running task is refused: ${(refused as Error).message}`)
  t.match((refused as Error).message, /busy-agent still runs 1 task/)

  const stoppedAt = Date.now()
  await idle.stop()
  const after = await state()
  t.same(after.agents.map((a) => a.id), ['busy-agent'], `the idle agent is gone from the state ${Date.now() - stoppedAt} ms after it stopped`)
  t.equal(after.offers.filter((o) => o.agentId === 'idle-agent').length, 0, 'and none of its offers is left')

  await fw.scheduler.kill('long')
  t.equal((await fw.terminal('long')).state, 'KILLED')
})
