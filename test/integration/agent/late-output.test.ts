// Output an agent could not store by the time its task ended (its host cut off from the NATS
// cluster: the multi-host test saw such an attempt's log stay empty) is still stored once the
// stream takes it again, after the end was reported, for a bounded time. The stream is made
// unavailable for the output subjects by narrowing its subjects, on a real nats-server.
import t from 'tap'
import { Streams } from '../../../shared/protocol/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { taskOutputText } from '../../../services/ci/src/logs.js'
import { shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import type { TapTest } from '../../helpers/tap-types.js'
import { waitUntil } from '../../helpers/wait.js'

const LINES = 300
const SCRIPT = `i=0; while [ $i -lt ${LINES} ]; do echo "line $i"; i=$((i+1)); done`
const EXPECTED = Array.from({ length: LINES }, (_, i) => `line ${i}\n`).join('')

async function setUp(t: TapTest, outputLateMs: number): Promise<{ cluster: TestCluster; refuse(): Promise<void>; restore(): Promise<void> }> {
  const cluster = await startCluster()
  t.teardown(() => cluster.stop())
  await cluster.startMaster('m1')
  await cluster.startAgent({
    containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'agent-late',
    options: { outputFlushMs: 500, outputLateMs },
  })
  const nc = await cluster.connect('stream-admin')
  const jsm = await nc.jetstreamManager()
  const original = (await jsm.streams.info(Streams.output)).config
  return {
    cluster,
    refuse: async () => { await jsm.streams.update(Streams.output, { ...original, subjects: ['regatta.output.nobody.>'] }) },
    restore: async () => { await jsm.streams.update(Streams.output, original) },
  }
}

t.test('Checks that output not stored when the task ended is stored once the stream is back, after the end was reported: the whole log, in order', async (t) => {
  const { cluster, refuse, restore } = await setUp(t, 60_000)
  const fw = await cluster.framework({ name: 'late', roles: ['*'] })
  const reader = await cluster.connect('reader')
  await refuse()
  await fw.launch(shellTask('late-1', SCRIPT, { streamOutput: true }))
  const end = await fw.terminal('late-1', 20_000)
  t.equal(end.state, 'FINISHED', 'the task\'s end was reported while its output could not be stored')
  t.equal(await taskOutputText(reader, fw.scheduler.frameworkId, 'late-1'), '', 'no output stored then')
  await restore()
  const text = await waitUntil('the rest of the output to be stored', async () => {
    const s = await taskOutputText(reader, fw.scheduler.frameworkId, 'late-1')
    return s.length >= EXPECTED.length ? s : undefined
  }, 20_000)
  t.equal(text, EXPECTED, 'the whole output, in order, once')
})

t.test('Checks that output is tried only for the late window after the end: past it, nothing more is stored', async (t) => {
  const { cluster, refuse, restore } = await setUp(t, 1_000)
  const fw = await cluster.framework({ name: 'late', roles: ['*'] })
  const reader = await cluster.connect('reader')
  await refuse()
  await fw.launch(shellTask('late-2', SCRIPT, { streamOutput: true }))
  t.equal((await fw.terminal('late-2', 20_000)).state, 'FINISHED', 'the end was reported')
  // past the late window (1 s) the agent gave the rest up
  await new Promise((r) => setTimeout(r, 2_500))
  await restore()
  await new Promise((r) => setTimeout(r, 3_000))
  t.equal(await taskOutputText(reader, fw.scheduler.frameworkId, 'late-2'), '', 'nothing was stored after the window (it stays in the sandbox files)')
})
