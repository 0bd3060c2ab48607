// Offers end to end on a real nats-server, with real agents (process containerizer): decline
// filters, SUPPRESS/REVIVE, fairness between roles, static reservations, revocable resources,
// offer timeouts, and ACCEPTs the master must refuse. Each test gets its own cluster.
import t from 'tap'
import type { TapTest } from '../../helpers/tap-types.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Subjects, HeartbeatReply, type Offer } from '../../../shared/protocol/index.js'
import { request } from '../../../shared/nats/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import type { MasterConfig } from '../../../services/master/src/master.js'
import { silentLogger } from '../../../shared/log/index.js'
import { scalar } from '../../../shared/resources/index.js'
import { alive, killTaskGroup, readPid, recordPid } from '../../helpers/process-tasks.js'
import { fastMasterConfig, shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'

const processContainerizer = (): ProcessContainerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false })

async function newCluster(t: TapTest, config: Partial<MasterConfig> = fastMasterConfig): Promise<TestCluster> {
  const cluster = await startCluster()
  t.teardown(() => cluster.stop())
  await cluster.startMaster('m1', config)
  return cluster
}

/** Every offer the framework got after its `since`-th event. */
function offersSince(fw: RecordingFramework, since: number): Offer[] {
  return fw.events.slice(since).flatMap((e) => (e.type === 'OFFERS' ? e.offers : []))
}

/** Lets the master run a few allocation passes (to observe that nothing is offered). */
const fewPasses = (): Promise<void> => new Promise((r) => setTimeout(r, fastMasterConfig.allocationIntervalMs! * 5))

t.test('Checks that a DECLINE with refuseSeconds keeps the agent\'s resources from the framework for that long, then offers them again', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1' })
  const fw = await cluster.framework()
  const first = await fw.nextOffer()
  const mark = fw.events.length
  const declinedAt = Date.now()
  await fw.scheduler.decline([first.id], { refuseSeconds: 2 })
  const again = await fw.nextOffer((o) => o.id !== first.id)
  const after = Date.now() - declinedAt
  t.equal(again.agentId, 'agent-1')
  t.ok(after >= 1_950, `offered again ${after} ms after the decline, not before refuseSeconds (2 s)`)
  t.ok(after < 2_000 + 1_500, `and soon after it (${after} ms)`)
  t.equal(offersSince(fw, mark).length, 1, 'exactly one offer in between: the one after the filter ended')
  t.same(again.resources, first.resources, 'the same resources')
})

t.test('Checks that SUPPRESS stops offers and REVIVE brings them back', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1' })
  const fw = await cluster.framework()
  const first = await fw.nextOffer()
  await fw.scheduler.suppress()
  const mark = fw.events.length
  await fw.scheduler.decline([first.id], { refuseSeconds: 0 }) // no filter: only the suppression holds offers back
  await fewPasses()
  t.same(offersSince(fw, mark), [], 'no offers while suppressed')
  const revivedAt = Date.now()
  await fw.scheduler.revive()
  const back = await fw.nextOffer()
  t.equal(back.agentId, 'agent-1')
  t.ok(Date.now() - revivedAt < 2_000, 'offered again soon after REVIVE')
})

t.test('Checks that REVIVE also clears the framework\'s refuse filters', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1' })
  const fw = await cluster.framework()
  const first = await fw.nextOffer()
  await fw.scheduler.decline([first.id], { refuseSeconds: 3600 })
  const mark = fw.events.length
  await fewPasses()
  t.same(offersSince(fw, mark), [], 'filtered')
  await fw.scheduler.revive()
  t.equal((await fw.nextOffer()).agentId, 'agent-1', 'offered again at once, not in an hour')
})

t.test('Checks that two frameworks in different roles both get offers, from different agents (DRF)', async (t) => {
  const cluster = await newCluster(t)
  const a = await cluster.framework({ name: 'a', roles: ['team-a'] })
  const b = await cluster.framework({ name: 'b', roles: ['team-b'] })
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1', resources: 'cpus:2;mem:2048' })
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-2', resources: 'cpus:2;mem:2048' })
  const oa = await a.nextOffer()
  const ob = await b.nextOffer()
  t.not(oa.agentId, ob.agentId, `a got ${oa.agentId}, b got ${ob.agentId}`)
  t.equal(oa.role, 'team-a')
  t.equal(ob.role, 'team-b')
  await fewPasses()
  t.same(a.offers, [], 'a got nothing more: everything is out in offers')
  t.same(b.offers, [])

  // a declines: holding nothing now, a has the lowest share and gets its agent back
  await a.scheduler.decline([oa.id], { refuseSeconds: 0 })
  const oa2 = await a.nextOffer()
  t.equal(oa2.agentId, oa.agentId, 'the declined agent is offered again (a has the lowest share)')
})

t.test('Checks that a static reservation cpus(ci/main):1 is offered only to role ci/main', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1', resources: 'cpus(ci/main):1;cpus:1;mem:1024;disk:1000' })
  const pr = await cluster.framework({ name: 'pr', roles: ['ci/pr'] })
  const prOffer = await pr.nextOffer()
  t.equal(prOffer.role, 'ci/pr')
  t.same(prOffer.resources.filter((r) => r.role !== undefined), [], 'ci/pr sees no reserved resources')
  t.equal(scalar(prOffer.resources, 'cpus'), 1, 'only the unreserved cpu')

  const main = await cluster.framework({ name: 'main', roles: ['ci/main'] })
  const mainOffer = await main.nextOffer()
  t.equal(mainOffer.role, 'ci/main')
  t.same(mainOffer.resources.filter((r) => r.name === 'cpus'), [{ name: 'cpus', scalar: 1, role: 'ci/main' }],
    'ci/main gets the reserved cpu, which ci/pr could not take')

  // ci/pr declines (ci/main keeps its offer): the unreserved part comes back to ci/pr, never the reservation
  await pr.scheduler.decline([prOffer.id], { refuseSeconds: 0 })
  const prAgain = await pr.nextOffer()
  t.same(prAgain.resources.filter((r) => r.role !== undefined), [], 'still no reserved resources for ci/pr')
  const all = pr.events.flatMap((e) => (e.type === 'OFFERS' ? e.offers : []))
  t.equal(all.length, 2)
})

t.test('Checks that revocable resources are offered only to a framework that opted in', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1', resources: 'cpus:1;mem:1024;disk:1000' })
  // what an agent's estimator would report: allocated-but-unused capacity, as revocable
  const nc = await cluster.connect('estimator')
  const reply = await request(nc, Subjects.agentHeartbeat, { agentId: 'agent-1', revocable: [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 2048 }] }, HeartbeatReply)
  t.ok(reply.epoch > 0, 'the master took the heartbeat')

  const plain = await cluster.framework({ name: 'plain', roles: ['*'] })
  const first = await plain.nextOffer()
  t.same(first.resources.filter((r) => r.revocable), [], 'no revocable resources for a framework that did not opt in')
  t.equal(scalar(first.resources, 'cpus'), 1)

  const opt = await cluster.framework({ name: 'opt', roles: ['*'], revocable: true })
  const optOffer = await opt.nextOffer()
  t.same(optOffer.resources.filter((r) => r.name === 'cpus'), [{ name: 'cpus', scalar: 4, revocable: true }],
    'the opted-in framework gets the revocable cpus the plain one left')

  // the plain framework declines its offer: the regular part comes back to it, never the revocable
  // part (opt suppresses, so that it does not win the regular part on a tie of shares)
  await opt.scheduler.suppress()
  await plain.scheduler.decline([first.id], { refuseSeconds: 0 })
  await plain.waitFor('another offer', () => plain.offers.length > 0, 5_000)
  const seen = plain.events.flatMap((e) => (e.type === 'OFFERS' ? e.offers : []))
  t.ok(seen.every((o) => o.resources.every((r) => !r.revocable)), `plain never saw a revocable resource in ${seen.length} offers`)
})

t.test('Checks that an offer held past offerTimeoutMs is rescinded and offered again', async (t) => {
  // the timed-out offer counts as declined for defaultRefuseSeconds: 1 s keeps the test short
  const cluster = await newCluster(t, { ...fastMasterConfig, offerTimeoutMs: 1_000, defaultRefuseSeconds: 1 })
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1' })
  const fw = await cluster.framework()
  const offer = await fw.waitFor('an offer', () => fw.offers[0])
  // from when the master made it (the offer reaches the framework some ms later)
  const madeAt = cluster.masters[0]!.state().offers.find((o) => o.id === offer.id)!.createdAt
  const rescind = await fw.waitFor('RESCIND', () => fw.events.find((e) => e.type === 'RESCIND' && e.offerId === offer.id), 5_000)
  const after = Date.now() - madeAt
  t.ok(rescind, 'the held offer was rescinded')
  t.ok(after >= 1_000, `rescinded ${after} ms after it was made, not before offerTimeoutMs (1000)`)
  t.ok(after < 1_000 + 1_500, `and soon after it (${after} ms)`)
  const fresh = await fw.nextOffer((o) => o.id !== offer.id)
  t.equal(fresh.agentId, 'agent-1', 'the resources are offered again')
  // accepting the rescinded offer drops the task
  await fw.scheduler.launch(offer, [shellTask('late-1', 'true')])
  const end = await fw.terminal('late-1', 5_000)
  t.equal(end.state, 'DROPPED')
  t.equal(end.reason, 'INVALID_OFFERS')
})

// Without the filter the master puts on a timed-out offer (as on a decline, for defaultRefuseSeconds)
// the hoarder, which wins the share tie, is offered the agent straight back after every rescind.
t.test('Checks that a framework sitting on its offers cannot hoard them: past offerTimeoutMs another framework gets the agent', async (t) => {
  const cluster = await newCluster(t, { ...fastMasterConfig, offerTimeoutMs: 1_000 })
  // the hoarder's role sorts first, so it wins the first pass (both hold nothing) and every tie after
  const hoarder = await cluster.framework({ name: 'hoarder', roles: ['a-hoard'] })
  const waiter = await cluster.framework({ name: 'waiter', roles: ['b-wait'] })
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1', resources: 'cpus:2;mem:2048' })
  const held = await hoarder.nextOffer()
  // from when the master made it (the offer reaches the framework some ms later)
  const heldAt = cluster.masters[0]!.state().offers.find((o) => o.id === held.id)!.createdAt
  t.equal(held.agentId, 'agent-1')
  t.same(waiter.offers, [], 'the waiter gets nothing while the hoarder holds the only agent')
  // the hoarder never answers; the waiter gets the agent once the held offer times out
  const got = await waiter.nextOffer()
  const after = Date.now() - heldAt
  t.equal(got.agentId, 'agent-1', `the waiter got the agent ${after} ms after the hoarder's offer was made`)
  t.ok(after >= 1_000, `not before offerTimeoutMs (1000): ${after} ms`)
  t.ok(hoarder.events.some((e) => e.type === 'RESCIND' && e.offerId === held.id), 'the hoarder\'s offer was rescinded')
  await waiter.scheduler.launch(got, [shellTask('waiter-1', 'true')])
  t.equal((await waiter.terminal('waiter-1', 5_000)).state, 'FINISHED', 'and the waiter runs its task there')
})

t.test('Checks that an ACCEPT asking for more than the offer holds yields an ERROR update, and the resources come back', async (t) => {
  const cluster = await newCluster(t)
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1', resources: 'cpus:2;mem:1024;disk:1000' })
  const fw = await cluster.framework()
  const offer = await fw.nextOffer()
  await fw.scheduler.launch(offer, [shellTask('big-1', 'true', { resources: [{ name: 'cpus', scalar: 3 }, { name: 'mem', scalar: 32 }] })], { refuseSeconds: 0 })
  const end = await fw.terminal('big-1', 5_000)
  t.equal(end.state, 'ERROR')
  t.equal(end.source, 'master')
  t.equal(end.reason, 'TASK_INVALID')
  t.match(end.message, /more than its offers hold/)
  t.same(fw.statesOf('big-1'), ['ERROR'], 'it never reached the agent')
  const again = await fw.nextOffer()
  t.equal(scalar(again.resources, 'cpus'), 2, 'the whole agent is offered again')
})

t.test('Checks that launching with a task id in use yields ERROR and leaves the running task alone', async (t) => {
  const cluster = await newCluster(t)
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-alloc-agent-'))
  t.teardown(() => rm(workDir, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined))
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1', workDir })
  const fw = await cluster.framework()
  const first = await fw.nextOffer()
  await fw.scheduler.launch(first, [shellTask('dup-1', recordPid(join(workDir, 'dup-1.pid'), 'sleep 30'), { killGracePeriodMs: 0 })], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('dup-1').includes('RUNNING'))
  // if the master loses track of the task, nobody kills it: end it by its pid
  const pid = await readPid(join(workDir, 'dup-1.pid'))
  try {
    await duplicateLaunch(t, fw, pid)
  } finally {
    killTaskGroup(pid)
  }
})

async function duplicateLaunch(t: TapTest, fw: RecordingFramework, pid: number): Promise<void> {
  const second = await fw.nextOffer()
  await fw.scheduler.launch(second, [shellTask('dup-1', 'echo impostor')], { refuseSeconds: 0 })
  const err = await fw.waitFor('ERROR', () => fw.updates.find((u) => u.taskId === 'dup-1' && u.state === 'ERROR'), 5_000)
  t.equal(err.reason, 'TASK_INVALID')
  t.match(err.message, /already in use/)
  // the first task still runs, in the master's view too
  await fw.scheduler.reconcile([{ taskId: 'dup-1' }])
  const answer = await fw.waitFor('reconciliation', () => fw.updates.find((u) => u.taskId === 'dup-1' && u.reason === 'RECONCILIATION'), 5_000)
  // The master publishes the ERROR under the running task's own (framework, task) id; its own
  // status-update consumer then applies it to the running task (ERROR, resources released) and
  // the framework's acknowledgement makes it forget the task, which still runs on the agent.
  t.equal(answer.state, 'RUNNING', `the running task is untouched (the master answered ${answer.state}: ${answer.message ?? ''})`)
  t.ok(await alive(pid), 'its process still runs')
  await fw.scheduler.kill('dup-1', { gracePeriodMs: 0 })
  const killed = await fw.waitFor('KILLED', () => fw.updates.find((u) => u.taskId === 'dup-1' && u.state === 'KILLED'), 5_000).catch(() => undefined)
  t.ok(killed, 'and a KILL still reaches it (KILLED)')
}
