// Maintenance end to end on a real nats-server with real agents (process containerizer):
// DRAIN over the master's operator subject rescinds the agent's offers, makes no new ones,
// lets running tasks finish and sends the framework INVERSE_OFFERS; the mark survives a master
// failover; UNDRAIN brings offers back; bad operator messages get a clear error.
import t from 'tap'
import type { TapTest } from '../../helpers/tap-types.js'
import type { NatsConnection } from 'nats'
import { OperatorReply, Subjects, decode, type InverseOffer, type OperatorCall } from '../../../shared/protocol/index.js'
import { request } from '../../../shared/nats/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import type { Master } from '../../../services/master/src/master.js'
import { silentLogger } from '../../../shared/log/index.js'
import { fastMasterConfig, shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

const processContainerizer = (): ProcessContainerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false })

async function newCluster(t: TapTest): Promise<TestCluster> {
  const cluster = await startCluster()
  t.teardown(() => cluster.stop())
  return cluster
}

function operator(nc: NatsConnection, call: OperatorCall): Promise<OperatorReply> {
  return request(nc, Subjects.masterOperator, call, OperatorReply, 5_000)
}

/** Lets the master run a few allocation passes (to observe that nothing is offered). */
const fewPasses = (): Promise<void> => new Promise((r) => setTimeout(r, fastMasterConfig.allocationIntervalMs! * 6))

const offerAgentsSince = (fw: RecordingFramework, since: number): string[] =>
  fw.events.slice(since).flatMap((e) => (e.type === 'OFFERS' ? e.offers.map((o) => o.agentId) : []))

const inverseOffers = (fw: RecordingFramework): InverseOffer[] =>
  fw.events.flatMap((e) => (e.type === 'INVERSE_OFFERS' ? e.inverseOffers : []))

const agentView = (m: Master, id: string) => m.state().agents.find((a) => a.id === id)

t.test('Checks that draining an agent with a running task lets it finish, rescinds its offers, lands nothing new there, sends inverse offers, and undrain brings offers back', async (t) => {
  const cluster = await newCluster(t)
  const m1 = await cluster.startMaster('m1')
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1' })
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-2' })
  const fw = await cluster.framework()
  const nc = await cluster.connect('operator')

  const first = await fw.nextOffer((o) => o.agentId === 'agent-1')
  // refuseSeconds 0: the rest of agent-1 is offered again at once, so an offer of it is out when it drains
  await fw.scheduler.launch(first, [shellTask('long', 'sleep 1.5; exit 0')], { refuseSeconds: 0 })
  await fw.waitFor('the task to run', () => fw.statesOf('long').includes('RUNNING'))
  const held = await fw.nextOffer((o) => o.agentId === 'agent-1')

  const mark = fw.events.length
  const drainedAt = Date.now()
  t.same(await operator(nc, { type: 'DRAIN', agentId: 'agent-1' }), { ok: true })
  await fw.waitFor('the offer of the draining agent to be rescinded', () => fw.events.slice(mark).some((e) => e.type === 'RESCIND' && e.offerId === held.id))
  const inverse = await fw.waitFor('an inverse offer', () => inverseOffers(fw)[0])
  t.equal(inverse.agentId, 'agent-1')
  t.equal(inverse.frameworkId, fw.scheduler.frameworkId)
  t.ok(Math.abs(inverse.unavailability.startMs - drainedAt) < 2_000, 'unavailable from the drain on')
  t.equal(inverse.unavailability.durationMs, undefined, 'for good')

  const draining = agentView(m1, 'agent-1')
  t.equal(draining?.state, 'draining')
  t.equal(draining?.tasks, 1, 'the task still runs there')

  // the rescinded offer cannot be used: a task sent with it is dropped, not launched there
  await fw.scheduler.launch(held, [shellTask('late', 'exit 0')])
  const late = await fw.terminal('late')
  t.equal(late.state, 'DROPPED')

  // the other agent still takes work
  const other = await fw.nextOffer((o) => o.agentId === 'agent-2')
  await fw.scheduler.launch(other, [shellTask('elsewhere', 'exit 0')], { refuseSeconds: 0 })
  t.equal((await fw.terminal('elsewhere')).state, 'FINISHED')

  const end = await fw.terminal('long')
  t.equal(end.state, 'FINISHED', 'the running task finished on the draining agent')
  t.equal(end.agentId, 'agent-1')
  await waitUntil('the drained agent to run nothing', () => agentView(m1, 'agent-1')?.tasks === 0)
  const drained = agentView(m1, 'agent-1')
  t.equal(drained?.state, 'draining', 'still draining once drained')
  t.ok(drained?.idleSince !== undefined, 'and idle')
  await fewPasses()
  t.same(offerAgentsSince(fw, mark).filter((a) => a === 'agent-1'), [], 'no offer of the draining agent after the drain')
  t.notOk(m1.state().tasks.some((x) => x.agentId === 'agent-1' && x.taskId !== 'long'), 'no other task landed on it')

  const before = fw.events.length
  t.same(await operator(nc, { type: 'UNDRAIN', agentId: 'agent-1' }), { ok: true })
  await fw.waitFor('an offer of the undrained agent', () => offerAgentsSince(fw, before).includes('agent-1'))
  t.equal(agentView(m1, 'agent-1')?.state, 'active')
})

t.test('Checks that a drain survives a master failover: the new leader keeps the agent draining, tells the framework again, and undrains it', async (t) => {
  const cluster = await newCluster(t)
  const config = { ...fastMasterConfig, leaseTtlMs: 1_000 }
  const m1 = await cluster.startMaster('m1', config)
  const m2 = await cluster.startMaster('m2', config)
  t.ok(m1.isLeader)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-d' })
  const fw = await cluster.framework()
  const nc = await cluster.connect('operator')
  await fw.launch(shellTask('across', 'sleep 3; exit 0'))
  await fw.waitFor('the task to run', () => fw.statesOf('across').includes('RUNNING'))

  await operator(nc, { type: 'DRAIN', agentId: 'agent-d' })
  await fw.waitFor('the first inverse offer', () => inverseOffers(fw).length >= 1)
  await m1.stop()
  await waitUntil('m2 to lead', () => m2.isLeader, 10_000)
  await waitUntil('the agent to re-register with m2, draining', () => agentView(m2, 'agent-d')?.state === 'draining', 10_000)
  t.equal(agentView(m2, 'agent-d')?.tasks, 1, 'with its running task')
  await fw.waitFor('the new leader to send the inverse offer again', () => inverseOffers(fw).length >= 2, 10_000)
  t.equal(inverseOffers(fw)[1]!.agentId, 'agent-d')
  t.equal(inverseOffers(fw)[1]!.unavailability.startMs, inverseOffers(fw)[0]!.unavailability.startMs, 'the same start: the drain did not begin again')

  const mark = fw.events.length
  t.equal((await fw.terminal('across', 15_000)).state, 'FINISHED')
  await fewPasses()
  t.same(offerAgentsSince(fw, mark), [], 'the new leader offers nothing of the draining agent')

  await operator(nc, { type: 'UNDRAIN', agentId: 'agent-d' })
  await fw.waitFor('an offer after the undrain', () => offerAgentsSince(fw, mark).includes('agent-d'))
  t.equal(agentView(m2, 'agent-d')?.state, 'active')
})

t.test('Checks that bad operator messages and unknown agents are answered with a clear error and the master keeps serving', async (t) => {
  const cluster = await newCluster(t)
  const m1 = await cluster.startMaster('m1')
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-ok' })
  const nc = await cluster.connect('operator')
  const raw = async (body: string): Promise<{ error?: { code: string; message: string } }> => {
    const m = await nc.request(Subjects.masterOperator, new TextEncoder().encode(body), { timeout: 5_000 })
    return JSON.parse(new TextDecoder().decode(m.data)) as { error?: { code: string; message: string } }
  }
  const notJson = await raw('drain agent-ok')
  t.equal(notJson.error?.code, 'INVALID_MESSAGE')
  t.match(notJson.error?.message, /not JSON/)
  const unknownType = await raw(JSON.stringify({ type: 'EXPLODE', agentId: 'agent-ok' }))
  t.equal(unknownType.error?.code, 'INVALID_MESSAGE')
  t.match(unknownType.error?.message, /unknown type "EXPLODE"/)
  const noAgent = await raw(JSON.stringify({ type: 'DRAIN' }))
  t.equal(noAgent.error?.code, 'INVALID_MESSAGE')
  t.match(noAgent.error?.message, /agentId/, 'names the missing field')
  const emptyAgent = await raw(JSON.stringify({ type: 'UNDRAIN', agentId: '' }))
  t.equal(emptyAgent.error?.code, 'INVALID_MESSAGE')
  t.match(emptyAgent.error?.message, /\/agentId/)

  const unknown = await operator(nc, { type: 'DRAIN', agentId: 'no-such-agent' }).catch((e: unknown) => e)
  t.ok(unknown instanceof RegattaError)
  t.equal((unknown as RegattaError).code, 'UNKNOWN_AGENT')
  t.match((unknown as RegattaError).message, /no-such-agent/)

  // still serving: a good call works, and draining twice is harmless
  t.same(await operator(nc, { type: 'DRAIN', agentId: 'agent-ok' }), { ok: true })
  t.same(await operator(nc, { type: 'DRAIN', agentId: 'agent-ok' }), { ok: true })
  t.equal(agentView(m1, 'agent-ok')?.state, 'draining')
  const reply = decode(OperatorReply, (await nc.request(Subjects.masterOperator, new TextEncoder().encode(JSON.stringify({ type: 'UNDRAIN', agentId: 'agent-ok' })))).data)
  t.same(reply, { ok: true })
  t.equal(agentView(m1, 'agent-ok')?.state, 'active')
})
