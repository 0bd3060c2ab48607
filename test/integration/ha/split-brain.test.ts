// Split-brain guard with real processes: the leading master is paused with SIGSTOP past its
// lease TTL, a standby takes over and a task is launched through it, then the old leader is
// resumed with SIGCONT. The old leader must not act on its old epoch: the agent refuses
// commands carrying it, the old master steps down at once and sends nothing, the new leader
// stays leader, and no task runs twice or ends twice.
import t from 'tap'
import { createInbox } from 'nats'
import { CommandReply, Subjects, decode, ClusterState, type AgentCommand } from '../../../shared/protocol/index.js'
import { request } from '../../../shared/nats/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { shellTask } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../../helpers/docker.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'
import { MASTER_READ_HEADERS, clusterState } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'
import { diagnoseOnFailure, logsOnFailure, realTerminal, contradictedReconciliation, startHaCluster, terminalsOf, watchContainerStarts, type HaCluster } from './fixture.js'

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

/** Every answer to one `regatta.master.state` request within `ms` (only the leader may answer). */
async function stateAnswers(ms = 700): Promise<string[]> {
  const inbox = createInbox()
  const ids: string[] = []
  const sub = c.nc.subscribe(inbox, {
    callback: (err, m) => {
      if (!err && m.data.length) ids.push(decode(ClusterState, m.data, 'state').masterId)
    },
  })
  c.nc.publish(Subjects.masterState, new Uint8Array(), { reply: inbox })
  await new Promise((r) => setTimeout(r, ms))
  sub.unsubscribe()
  return ids
}

t.test('Checks that a leader paused past its lease and resumed does not act on its old epoch', async (t) => {
  logsOnFailure(t, c)
  const fw = await c.framework()
  diagnoseOnFailure(t, c, fw)
  const starts = await watchContainerStarts(fw.scheduler.frameworkId)
  t.teardown(() => starts.close())
  await fw.nextOffer()
  const agent = c.agents[0]!

  const old = await c.leader()
  t.equal(old.master.id, 'm1')
  const oldEpoch = old.epoch
  const eventsAtPause = fw.events.length
  old.master.kill('SIGSTOP')
  t.teardown(() => old.master.kill('SIGCONT'))
  const pausedAt = Date.now()

  const fresh = await c.leader((id) => id !== old.master.id, 15_000)
  t.ok(fresh.epoch > oldEpoch, `the standby ${fresh.master.id} leads with epoch ${fresh.epoch} > ${oldEpoch}`)
  // the agent learns the new epoch from the new leader (heartbeat reply, then re-registration)
  await agent.waitForLog((l) => l.msg === 'registered with the master' && Number(l.epoch) >= fresh.epoch, 15_000)

  // a task launched through the new leader, while the old one is still paused
  // (the old leader is paused: whatever offers arrive now come from the new one)
  const offer = await fw.waitFor('an offer of the new leader', () => {
    for (const e of fw.events.slice(eventsAtPause)) if (e.type === 'OFFERS' && e.offers.length) return e.offers[0]
    return undefined
  }, 15_000)
  fw.offers = []
  await fw.scheduler.launch(offer, [shellTask('sb-1', 'sleep 4; exit 0')], { refuseSeconds: 0 })
  await fw.waitFor('sb-1 RUNNING', () => fw.statesOf('sb-1').includes('RUNNING'), 20_000)

  // fencing: the agent refuses a command that carries the old epoch
  const stale: AgentCommand = {
    type: 'LAUNCH', epoch: oldEpoch,
    tasks: [{ ...shellTask('sb-stale', 'exit 0'), frameworkId: fw.scheduler.frameworkId, agentId: agent.agentId, role: '*' }],
  }
  const refused = await request(c.nc, Subjects.agentCommand(agent.agentId), stale, CommandReply, 3_000).then(
    () => undefined, (err: RegattaError) => err,
  )
  t.equal(refused?.code, 'STALE_EPOCH', `the agent refuses epoch ${oldEpoch}: ${refused?.message ?? 'accepted!'}`)
  t.ok(Date.now() - pausedAt > LEASE_TTL_MS, 'the old leader has been paused past its lease TTL')

  // resume the old leader
  const eventsAtResume = fw.events.length
  const linesAtResume = old.master.lines().length
  old.master.kill('SIGCONT')
  const health = await old.master.health()
  t.equal(health.leader, false, 'the first /health answer of the resumed master says it does not lead')
  await old.master.waitForLog((l) => l.msg === 'no longer leading' || l.msg === 'stepping down', 5_000, linesAtResume)
  t.pass('the resumed master logs that it stepped down')

  // the new leader stays leader; only it answers the state subject
  for (let i = 0; i < 4; i++) {
    const answers = await stateAnswers(LEASE_TTL_MS / 2)
    t.same(answers, [fresh.master.id], `only ${fresh.master.id} answers regatta.master.state (round ${i + 1})`)
  }
  const s = await clusterState(c.nc)
  t.equal(s.leader?.id, fresh.master.id, 'the new leader still leads')
  t.equal(s.leader?.epoch, fresh.epoch, 'with the same epoch (it never lost the lease)')
  t.equal((await fresh.master.health()).leader, true)
  t.equal((await old.master.health()).leader, false)
  await waitUntil('the old master redirects to the new leader', async () => {
    const res = await fetch(`${old.master.httpUrl}/api/v1/state`, { redirect: 'manual', headers: MASTER_READ_HEADERS })
    return res.status === 307 && res.headers.get('location') === `${fresh.master.httpUrl}/api/v1/state`
  }, 5_000, 100)
  t.pass('the old master, now a standby, redirects to the new leader')

  // the task ran once and ended once; the stale LAUNCH never ran
  const end = await realTerminal(fw, 'sb-1', 20_000)
  t.equal(end.state, 'FINISHED', `sb-1 FINISHED${end.message ? ` (${end.message})` : ''}`)
  t.equal(terminalsOf(fw, 'sb-1').length, 1, `exactly one terminal update for sb-1 (states: ${fw.statesOf('sb-1').join(' ')})`)
  t.equal(starts.startsOf('sb-1'), 1, 'sb-1 ran in one container')
  t.same(contradictedReconciliation(fw), [], 'no reconciliation answer said a task that ran was LOST')
  t.equal(starts.startsOf('sb-stale'), 0, 'the LAUNCH with the old epoch never started a container')
  t.same(fw.statesOf('sb-stale'), [], 'and the framework heard nothing of it')

  // nothing the old master did after resuming reached the framework: every offer received
  // since is one the new leader made (it still holds it), and no update came from the old master
  const afterResume = fw.events.slice(eventsAtResume)
  const rescinded = new Set(afterResume.flatMap((e) => (e.type === 'RESCIND' ? [e.offerId] : [])))
  const offered = afterResume.flatMap((e) => (e.type === 'OFFERS' ? e.offers.map((o) => o.id) : [])).filter((id) => !rescinded.has(id))
  const known = new Set((await clusterState(c.nc)).offers.map((o) => o.id))
  t.same(offered.filter((id) => !known.has(id)), [], 'no offer came from the resumed old master')
  const oldLines = old.master.lines().slice(linesAtResume)
  t.notOk(oldLines.some((l) => l.msg === 'agent registered' || l.msg === 'framework subscribed'), 'the old master served no registration or subscription after resuming')
  const commands = oldLines.filter((l) => l.msg === 'agent command failed' || l.msg === 'launch command timed out; waiting for the agent to report')
  t.same(commands.map((l) => JSON.stringify(l)), [], 'the old master sent no command to an agent')
})
