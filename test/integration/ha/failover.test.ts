// Master failover with real processes: three `regatta master` processes, one Docker agent
// process, a framework in the test process. The leader is killed with SIGKILL while container
// tasks run; a standby must lead within seconds with a higher epoch, the tasks must finish with
// their FINISHED updates delivered and acknowledged, and the new leader must make offers on
// which a new task runs.
import t from 'tap'
import { isTerminal } from '../../../shared/protocol/index.js'
import { shellTask } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../../helpers/docker.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'
import { MASTER_READ_HEADERS, clusterState, leaderOf } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'
import { diagnoseOnFailure, logsOnFailure, realTerminal, contradictedReconciliation, startHaCluster, terminalsOf, updatesFullyAcknowledged, watchContainerStarts, type HaCluster } from './fixture.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

const LEASE_TTL_MS = 1_500

let nats: NatsServer
let c: HaCluster
t.before(async () => {
  nats = await startNatsServer()
  c = await startHaCluster(nats.url)
  await c.startMasters(3, { leaseTtl: `${LEASE_TTL_MS}ms`, heartbeatInterval: '500ms' })
  await c.startAgent({ containerizer: 'docker', resources: 'cpus:2;mem:2048;disk:10000;ports:[31000-31100]' })
})
t.teardown(async () => {
  await c?.stop()
  await nats?.stop()
})

t.test('Checks that one master leads and the standbys redirect the HTTP API to it', async (t) => {
  const [m1, m2, m3] = c.masters
  const leader = await leaderOf(c.nc)
  t.equal(leader?.id, 'm1', 'the first master started leads')
  t.equal(leader?.httpUrl, m1!.httpUrl, 'the lease names its HTTP URL')
  t.same(await Promise.all(c.masters.map((m) => m.health().then((h) => h.leader))), [true, false, false], 'only m1 says it leads')
  for (const standby of [m2!, m3!]) {
    const res = await fetch(`${standby.httpUrl}/api/v1/state`, { redirect: 'manual', headers: MASTER_READ_HEADERS })
    t.equal(res.status, 307, `${standby.id} redirects`)
    t.equal(res.headers.get('location'), `${m1!.httpUrl}/api/v1/state`, `${standby.id} redirects to the leader`)
  }
  // followed by hand: fetch drops the Authorization header on a redirect to another origin
  const to = (await fetch(`${m3!.httpUrl}/api/v1/state`, { redirect: 'manual', headers: MASTER_READ_HEADERS })).headers.get('location')!
  const followed = await fetch(to, { headers: MASTER_READ_HEADERS })
  t.equal(followed.status, 200)
  t.equal((await followed.json() as { masterId: string }).masterId, 'm1', 'the redirect lands on the leader')
})

t.test('Checks that after kill -9 of the leader a standby leads, running tasks finish and are acknowledged, and new offers come', async (t) => {
  logsOnFailure(t, c)
  const fw = await c.framework()
  diagnoseOnFailure(t, c, fw)
  const starts = await watchContainerStarts(fw.scheduler.frameworkId)
  t.teardown(() => starts.close())
  const ids = ['ft-1', 'ft-2', 'ft-3']
  const offer = await fw.nextOffer()
  await fw.scheduler.launch(offer, ids.map((id, i) => shellTask(id, `sleep ${3 + i * 0.5}; exit 0`)), { refuseSeconds: 0 })
  await fw.waitFor('every task RUNNING', () => ids.every((id) => fw.statesOf(id).includes('RUNNING')))

  const before = await c.leader()
  t.equal(before.master.id, 'm1')
  const killedAt = Date.now()
  before.master.kill('SIGKILL')
  const exit = await before.master.exited
  t.equal(exit.signal, 'SIGKILL', 'the leader died of SIGKILL')
  const mark = fw.events.length

  const after = await c.leader((id) => id !== before.master.id, 15_000)
  const takeoverMs = Date.now() - killedAt
  t.comment(`${after.master.id} leads ${takeoverMs} ms after the kill (lease TTL ${LEASE_TTL_MS} ms), epoch ${before.epoch} -> ${after.epoch}`)
  t.ok(after.epoch > before.epoch, `the new epoch ${after.epoch} is above the old ${before.epoch}`)
  t.ok(takeoverMs < LEASE_TTL_MS * 2 + 2_000, `a standby leads within a few seconds (${takeoverMs} ms)`)
  t.same((await after.master.health()).leader, true, 'its /health says it leads')

  // the tasks run on; their terminal updates come straight from the agent through JetStream
  for (const id of ids) {
    const end = await realTerminal(fw, id, 30_000)
    t.equal(end.state, 'FINISHED', `${id} FINISHED${end.message ? ` (${end.message})` : ''}`)
    t.equal(end.exitCode, 0)
    t.equal(terminalsOf(fw, id).length, 1, `${id}: exactly one terminal update`)
    t.notOk(fw.statesOf(id).some((s) => s === 'KILLED' || s === 'LOST' || s === 'UNREACHABLE' || s === 'GONE'), `${id}: never killed, lost or unreachable (${fw.statesOf(id).join(' ')})`)
    t.equal(starts.startsOf(id), 1, `${id}: its container started once`)
  }
  t.same(contradictedReconciliation(fw), [], 'no reconciliation answer said a task that ran was LOST')
  await waitUntil('every update acknowledged to JetStream', async () => {
    const q = await updatesFullyAcknowledged(c.nc, fw.scheduler.frameworkId)
    return q.pending === 0 && q.ackPending === 0
  }, 15_000, 100)
  t.pass('the framework consumer has nothing pending and nothing waiting for an ack')

  // offers from the new leader (the old one is dead), and a task launched on one of them
  const fresh = await fw.waitFor('an offer after the kill', () => {
    for (const e of fw.events.slice(mark)) if (e.type === 'OFFERS' && e.offers.length) return e.offers[0]
    return undefined
  }, 15_000)
  const subscribed = fw.events.slice(mark).find((e) => e.type === 'SUBSCRIBED')
  if (subscribed?.type === 'SUBSCRIBED') t.equal(subscribed.masterId, after.master.id, 'the framework re-subscribed with the new leader')
  fw.offers = fw.offers.filter((o) => o.id !== fresh.id)
  await fw.scheduler.launch(fresh, [shellTask('ft-after', 'exit 0')], { refuseSeconds: 0 })
  const end = await realTerminal(fw, 'ft-after', 30_000)
  t.equal(end.state, 'FINISHED', `a task launched through the new leader finishes${end.message ? ` (${end.message})` : ''}`)

  // the new leader rebuilt the tasks from the agent and freed their resources once they ended
  const state = await waitUntil('resources freed on the new leader', async () => {
    const s = await clusterState(c.nc)
    return s.agents.length === 1 && (s.agents[0]!.used.cpus ?? 0) === 0 ? s : undefined
  }, 10_000, 100).catch(async () => clusterState(c.nc))
  t.equal(state.masterId, after.master.id)
  t.equal(state.agents.length, 1, 'the agent is registered with the new leader')
  t.equal(state.agents[0]?.state, 'active')
  t.equal(state.agents[0]?.used.cpus ?? 0, 0, 'no cpus held by ended tasks')
  t.notOk(state.tasks.some((x) => [...ids, 'ft-after'].includes(x.taskId) && !isTerminal(x.state)), 'no task left non-terminal on the new leader')

  // the killed master comes back as a standby and redirects to the new leader
  const back = await c.restartMaster(c.masters.indexOf(before.master))
  t.equal((await back.health()).leader, false, 'the restarted master is a standby')
  await waitUntil('the restarted master redirects', async () => {
    const res = await fetch(`${back.httpUrl}/api/v1/state`, { redirect: 'manual', headers: MASTER_READ_HEADERS })
    return res.status === 307 && res.headers.get('location') === `${after.master.httpUrl}/api/v1/state`
  }, 10_000, 100)
  t.pass('the restarted master redirects to the new leader')
  t.equal((await leaderOf(c.nc))?.id, after.master.id, 'leadership did not move back')
})
