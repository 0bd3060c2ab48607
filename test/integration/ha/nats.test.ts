// NATS itself failing, with real processes. (a) The only nats-server stops and starts again on
// the same port and store: the masters elect a leader again, the agent re-registers, a task
// that ran through the outage is reported, and a new task can be launched. (b) On a 3-node
// NATS cluster with stream and KV replicas 3 (`regatta master --replicas 3`), killing the
// node that leads the status-update stream does not stop the cluster.
import t from 'tap'
import type { NatsConnection } from 'nats'
import { Streams, isTerminal, type TaskStatus } from '../../../shared/protocol/index.js'
import { shellTask, type RecordingFramework } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../../helpers/docker.js'
import { startNatsServer } from '../../helpers/nats-server.js'
import { startNatsCluster } from '../../helpers/nats-cluster.js'
import { waitForLeader } from '../../helpers/processes.js'
import { deliveryLags, diagnoseOnFailure, logsOnFailure, realTerminal, contradictedReconciliation, startHaCluster, terminalsOf } from './fixture.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

const AGENT_RESOURCES = 'cpus:2;mem:2048;disk:10000;ports:[31000-31100]'
/**
 * A replicated stream is unavailable ~5 s while it elects a leader (19 s was seen with the
 * multi-host test loading both cores); agents retry storing with a doubling backoff meanwhile (up
 * to ~5 s between tries). A consumer that stalls until its pull expires (~30 s, after the
 * election) is what this bound catches.
 */
const MAX_DELIVERY_LAG_MS = 25_000

/**
 * Launches a task as a framework would through a failover: on an offer it holds or gets; when
 * the attempt is dropped (the offer was of a leader that lost the lease meanwhile) or lost, it
 * declines what it holds (so the leader offers it again at once) and launches a new attempt on
 * a fresh offer. Returns the end of the last attempt.
 */
async function launchUntilItRuns(fw: RecordingFramework, base: string, script: string, deadlineMs = 60_000): Promise<{ end: TaskStatus; attempts: string[] }> {
  const deadline = Date.now() + deadlineMs
  const attempts: string[] = []
  let mark = 0
  for (let n = 1; ; n++) {
    const taskId = `${base}-a${n}`
    attempts.push(taskId)
    // the newest offer it holds (older ones may be of a leader that has lost the lease since)
    const offer = await fw.waitFor(`an offer for ${taskId}`, () => {
      for (const e of fw.events.slice(mark).reverse()) if (e.type === 'OFFERS' && e.offers.length && fw.offers.some((o) => o.id === e.offers[0]!.id)) return e.offers[0]
      return undefined
    }, Math.max(1_000, deadline - Date.now()))
    fw.offers = fw.offers.filter((o) => o.id !== offer.id)
    await fw.scheduler.launch(offer, [shellTask(taskId, script)], { refuseSeconds: 0 })
    const end = await fw.terminal(taskId, Math.max(1_000, deadline - Date.now()))
    if (!['DROPPED', 'LOST', 'ERROR'].includes(end.state) || Date.now() > deadline) return { end, attempts }
    mark = fw.events.length
    const held = fw.offers.map((o) => o.id)
    fw.offers = []
    if (held.length) await fw.scheduler.decline(held, { refuseSeconds: 0 }).catch(() => undefined)
  }
}

async function jetStreamReplicas(nc: NatsConnection, stream: string): Promise<number> {
  const info = await (await nc.jetstreamManager()).streams.info(stream)
  return info.config.num_replicas
}

t.test('Checks that masters, agent and framework carry on after the nats-server restarts', async (t) => {
  const nats = await startNatsServer()
  const c = await startHaCluster(nats.url)
  t.teardown(async () => {
    await c.stop()
    await nats.stop()
  })
  logsOnFailure(t, c)
  await c.startMasters(2, { leaseTtl: '1500ms', heartbeatInterval: '500ms' })
  const agent = await c.startAgent({ containerizer: 'docker', resources: AGENT_RESOURCES })
  const fw = await c.framework()
  diagnoseOnFailure(t, c, fw)
  const before = await c.leader()

  // a task that runs through the outage: its FINISHED must still arrive, once
  const offer = await fw.nextOffer()
  await fw.scheduler.launch(offer, [shellTask('through-outage', 'sleep 3; exit 0')], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('through-outage').includes('RUNNING'))
  const registrations = agent.count('registered with the master')

  const leaderLines = before.master.lines().length
  await nats.stop({ keepStore: true })
  // the leader notices the lost connection and steps down at once
  await before.master.waitForLog((l) => l.msg === 'no longer leading' || l.msg === 'stepping down', 10_000, leaderLines)
  t.pass('the leader stepped down when NATS went away')
  await nats.restart()
  const restartedAt = Date.now()

  const after = await waitForLeader(c.nc, (l) => l.epoch > before.epoch, 30_000)
  t.ok(after.epoch > before.epoch, `a master leads again ${Date.now() - restartedAt} ms after the restart (${after.id}, epoch ${before.epoch} -> ${after.epoch})`)
  await agent.waitForLog((l) => l.msg === 'registered with the master' && Number(l.epoch) >= after.epoch, 20_000)
  t.ok(agent.count('registered with the master') > registrations, 'the agent re-registered with the leader')

  const through = await realTerminal(fw, 'through-outage', 30_000)
  t.equal(through.state, 'FINISHED', `the task that ran through the outage FINISHED${through.message ? ` (${through.message})` : ''}`)
  t.equal(terminalsOf(fw, 'through-outage').length, 1, 'and was reported once')
  t.comment(`its FINISHED arrived ${Date.now() - restartedAt} ms after the restart`)
  t.same(contradictedReconciliation(fw), [], 'no reconciliation answer said a task that ran was LOST')

  const { end, attempts } = await launchUntilItRuns(fw, 'after-restart', 'exit 0', 40_000)
  t.equal(end.state, 'FINISHED', `a task launched after the restart FINISHED (attempts: ${attempts.join(', ')})`)
  t.comment(`it ended ${Date.now() - restartedAt} ms after the restart`)
  const slow = deliveryLags(fw).filter((x) => x.lagMs > MAX_DELIVERY_LAG_MS)
  t.same(slow.map((x) => `${x.taskId}:${x.state} ${x.lagMs} ms`), [], `every status update reached the framework within ${MAX_DELIVERY_LAG_MS} ms of being sent`)
})

t.test('Checks that with replicas 3 on a 3-node NATS cluster, killing one node does not stop the cluster', async (t) => {
  const nc3 = await startNatsCluster(3)
  const c = await startHaCluster(nc3.urls)
  t.teardown(async () => {
    await c.stop()
    await nc3.stop()
  })
  logsOnFailure(t, c)
  t.teardown(async () => {
    if (!t.passing()) t.comment(`clients per node: ${JSON.stringify(await nc3.clients().catch((e: Error) => e.message))}`)
  })
  // a replicated bucket is unavailable for ~5 s when its stream leader dies (nats-server 2.9):
  // the lease TTL must outlast that (STACK-NOTES)
  await c.startMasters(2, { leaseTtl: '10s', heartbeatInterval: '500ms', replicas: 3, timeoutMs: 60_000 })
  await c.startAgent({ containerizer: 'docker', resources: AGENT_RESOURCES })
  const fw = await c.framework()
  diagnoseOnFailure(t, c, fw)

  const leaderKv = 'KV_regatta-leader'
  for (const stream of [leaderKv, 'KV_regatta-registry', Streams.updates]) {
    t.equal(await jetStreamReplicas(c.nc, stream).catch((err: Error) => err.message), 3, `${stream} has 3 replicas`)
  }
  const { end: first } = await launchUntilItRuns(fw, 'before-kill', 'exit 0', 30_000)
  t.equal(first.state, 'FINISHED', 'a task runs before the kill')
  const held = await fw.nextOffer()
  await fw.scheduler.launch(held, [shellTask('through-kill', 'sleep 4; exit 0')], { refuseSeconds: 0 })
  await fw.waitFor('through-kill RUNNING', () => fw.statesOf('through-kill').includes('RUNNING'))

  const victim = await nc3.streamLeader(Streams.updates)
  t.comment(`killing ${nc3.nodes[victim]!.name}, leader of ${Streams.updates} (${leaderKv} led by ${nc3.nodes[await nc3.streamLeader(leaderKv)]!.name})`)
  const killedAt = Date.now()
  await nc3.kill(victim)

  const { end: told, attempts } = await launchUntilItRuns(fw, 'after-kill', 'sleep 1; exit 0', 60_000)
  // a reconciliation answer may tell the end before the agent's stored update arrives (JetStream
  // catching up after the kill): the agent's own end is the one counted
  const end = told.uuid === undefined ? await realTerminal(fw, told.taskId, 30_000) : told
  t.equal(end.state, 'FINISHED', `a task launched after the node died FINISHED (attempts: ${attempts.join(', ')})`)
  t.equal(terminalsOf(fw, end.taskId).length, 1, 'reported once')
  t.comment(`${end.taskId} ended ${Date.now() - killedAt} ms after the kill`)
  const through = await realTerminal(fw, 'through-kill', 30_000)
  t.equal(through.state, 'FINISHED', 'the task running when the node died FINISHED')
  t.equal(terminalsOf(fw, 'through-kill').length, 1, 'and was reported once')
  t.same(contradictedReconciliation(fw), [], 'no reconciliation answer said a task that ran was LOST')
  const leader = await waitForLeader(c.nc, () => true, 20_000)
  t.ok(leader.id, `a master leads (${leader.id}, epoch ${leader.epoch})`)
  // once stored (after the stream's ~5 s leader election), updates must flow on: a consumer that
  // stalls until its pull expires holds them back for tens of seconds
  const slow = deliveryLags(fw).filter((x) => x.lagMs > MAX_DELIVERY_LAG_MS)
  t.same(slow.map((x) => `${x.taskId}:${x.state} ${x.lagMs} ms`), [], `every status update reached the framework within ${MAX_DELIVERY_LAG_MS} ms of being sent`)
  const failed = fw.updates.filter((u) => u.taskId.startsWith('after-kill') && u.reason !== 'RECONCILIATION' && isTerminal(u.state) && !['FINISHED', 'DROPPED', 'LOST'].includes(u.state))
  t.same(failed.map((u) => `${u.taskId}:${u.state}:${u.message ?? ''}`), [], 'no attempt failed, was killed or went GONE')
})
