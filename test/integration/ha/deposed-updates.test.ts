// A master that loses its lead publishes nothing more. Its own status updates that JetStream has
// not stored yet (the stream unavailable, say while the master is cut off from the cluster) are
// dropped when it steps down, instead of being retried until they land after a new leader took
// over: a GONE decided by a deposed master must never reach a framework late.
//
// The stream is made unavailable for the master's subject by narrowing its subjects (a publish
// there then has no stream to answer it, as when JetStream cannot be reached), and the master is
// deposed by overwriting its lease key, as another master's election would.
import t from 'tap'
import type { JetStreamManager, NatsConnection } from 'nats'
import { Buckets, Streams, Subjects } from '../../../shared/protocol/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { fastMasterConfig, shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'
import type { TapTest } from '../../helpers/tap-types.js'

const TTL_MS = 1_000

interface Setup {
  cluster: TestCluster
  nc: NatsConnection
  jsm: JetStreamManager
  fw: RecordingFramework
  /** Narrows the updates stream to agents' subjects: the master's updates find no stream. */
  block(): Promise<void>
  unblock(): Promise<void>
}

async function setup(t: TapTest): Promise<Setup> {
  const cluster = await startCluster()
  t.teardown(() => cluster.stop())
  await cluster.startMaster('m1', { ...fastMasterConfig, leaseTtlMs: TTL_MS })
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'agent-1', resources: 'cpus:2;mem:1024;disk:1000' })
  const fw = await cluster.framework()
  const nc = await cluster.nats.connect()
  const jsm = await nc.jetstreamManager()
  const original = (await jsm.streams.info(Streams.updates)).config
  const setSubjects = async (subjects: string[]): Promise<void> => { await jsm.streams.update(Streams.updates, { ...original, subjects }) }
  return {
    cluster, nc, jsm, fw,
    block: () => setSubjects([Subjects.statusUpdate(fw.scheduler.frameworkId, 'agent-1')]),
    unblock: () => setSubjects(original.subjects),
  }
}

/** Launches a task asking for more than its offer holds: the master answers ERROR with an update of its own. */
async function launchInvalid(s: Setup, taskId: string): Promise<void> {
  const offer = await s.fw.nextOffer()
  await s.fw.scheduler.launch(offer, [shellTask(taskId, 'true', { resources: [{ name: 'cpus', scalar: 3 }, { name: 'mem', scalar: 32 }] })], { refuseSeconds: 0 })
}

/**
 * Counts the master's publishes on its update subject from now on (stored or not: a JetStream
 * publish is a message on that subject, which a plain subscriber sees).
 */
function countPublishes(s: Setup): { readonly count: number } {
  const seen = { count: 0 }
  s.nc.subscribe(Subjects.masterStatusUpdate(s.fw.scheduler.frameworkId), { callback: () => { seen.count++ } })
  return seen
}

t.test('Checks (control) that a leading master retries its update until the stream takes it', async (t) => {
  const s = await setup(t)
  await s.block()
  await launchInvalid(s, 'bad-1')
  await new Promise((r) => setTimeout(r, 1_000))
  t.same(s.fw.statesOf('bad-1'), [], 'nothing arrives while the stream refuses the master\'s subject')
  await s.unblock()
  const after = countPublishes(s)
  const end = await s.fw.terminal('bad-1', 10_000)
  t.equal(end.state, 'ERROR', 'the retried update arrives once the stream takes it')
  t.equal(end.source, 'master')
  t.ok(after.count >= 1, `published again after the stream came back (${after.count})`)
})

t.test('Checks that a deposed master drops its unstored updates: none is stored or delivered after it stepped down', async (t) => {
  const s = await setup(t)
  const m1 = s.cluster.masters[0]!
  await s.block()
  await launchInvalid(s, 'bad-2')
  await new Promise((r) => setTimeout(r, 1_000))
  t.same(s.fw.statesOf('bad-2'), [], 'the ERROR update waits, unstored')

  // another writes the lease key: m1's revision is stale, and it steps down at its next refresh
  const kv = await s.nc.jetstream().views.kv(Buckets.leader)
  const intrude = (): Promise<unknown> => kv.put('leader', new TextEncoder().encode(JSON.stringify({ id: 'intruder', info: {} })))
  await intrude()
  // the intruder keeps the lease, so that no master leads while we look (a leader re-elected
  // would rightly tell the framework what it knows)
  const holding = setInterval(() => void intrude().catch(() => undefined), TTL_MS / 4)
  t.teardown(() => clearInterval(holding))
  await waitUntil('m1 to step down', () => !m1.isLeader, TTL_MS * 3)

  const after = countPublishes(s)
  await s.nc.flush()
  await s.unblock()
  // well past the sender's retry delays (100 ms doubling), while nobody leads
  await new Promise((r) => setTimeout(r, 2_500))
  t.equal(after.count, 0, 'the deposed master published nothing once it stepped down')
  t.same(s.fw.updates.filter((u) => u.taskId === 'bad-2').map((u) => [u.state, u.reason]), [], 'and the framework heard nothing from it')
  t.notOk(m1.isLeader, 'm1 still does not lead')
  clearInterval(holding)
})
