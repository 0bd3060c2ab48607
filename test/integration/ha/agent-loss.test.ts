// Agents dying for real: `regatta agent` processes killed with SIGKILL. One never comes back
// (its containers are removed too): its tasks go UNREACHABLE, then GONE, and the framework
// hears FAILURE. One is started again on the same work dir: it finds its Docker containers by
// label, re-attaches, and each task ends once, with its own exit code.
import t from 'tap'
import { LABEL_AGENT } from '../../../services/agent/src/containerizer/labels.js'
import { shellTask } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage, listContainersByLabel, removeContainersByLabel } from '../../helpers/docker.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'
import { clusterState } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'
import { diagnoseOnFailure, logsOnFailure, realTerminal, contradictedReconciliation, startHaCluster, terminalsOf, watchContainerStarts, type HaCluster } from './fixture.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

const UNREACHABLE_MS = 1_500
const GONE_MS = 4_000
const AGENT_RESOURCES = 'cpus:1;mem:1024;disk:10000;ports:[31000-31100]'

let nats: NatsServer
let c: HaCluster
t.before(async () => {
  nats = await startNatsServer()
  c = await startHaCluster(nats.url)
  await c.startMasters(2, {
    leaseTtl: '1500ms', heartbeatInterval: '300ms', agentUnreachable: `${UNREACHABLE_MS}ms`, agentGone: `${GONE_MS}ms`,
  })
})
t.teardown(async () => {
  await c?.stop()
  await nats?.stop()
})

t.test('Checks that the tasks of an agent killed for good go UNREACHABLE, then GONE, and the framework hears FAILURE', async (t) => {
  logsOnFailure(t, c)
  const agent = await c.startAgent({ containerizer: 'docker', resources: AGENT_RESOURCES })
  const fw = await c.framework()
  diagnoseOnFailure(t, c, fw)
  // a framework that holds offers would starve the next test's framework
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  const offer = await fw.nextOffer((o) => o.agentId === agent.agentId)
  await fw.scheduler.launch(offer, [shellTask('lost-1', 'sleep 120'), shellTask('lost-2', 'sleep 120')], { refuseSeconds: 0 })
  await fw.waitFor('both RUNNING', () => ['lost-1', 'lost-2'].every((id) => fw.statesOf(id).includes('RUNNING')))

  const killedAt = Date.now()
  agent.kill('SIGKILL')
  t.equal((await agent.exited).signal, 'SIGKILL', 'the agent died of SIGKILL')
  // the host is gone with it: nothing of that agent keeps running
  t.equal(await removeContainersByLabel(LABEL_AGENT, agent.agentId), 2, 'its two containers were removed')
  t.same(await listContainersByLabel(LABEL_AGENT, agent.agentId), [], 'no container of the dead agent is left')

  for (const id of ['lost-1', 'lost-2']) {
    await fw.waitFor(`${id} UNREACHABLE`, () => fw.statesOf(id).includes('UNREACHABLE'), 15_000)
  }
  const unreachableAfter = Date.now() - killedAt
  t.ok(unreachableAfter >= UNREACHABLE_MS - 400, // less up to one heartbeat interval
    `UNREACHABLE only after the agent was silent for --agent-unreachable (${unreachableAfter} ms)`)
  const seen = await clusterState(c.nc)
  t.equal(seen.agents.find((a) => a.id === agent.agentId)?.state, 'unreachable', 'the master shows the agent unreachable')

  for (const id of ['lost-1', 'lost-2']) {
    const end = await realTerminal(fw, id, 20_000)
    t.equal(end.state, 'GONE', `${id} ends GONE (${end.reason ?? ''}: ${end.message ?? ''})`)
    t.same(fw.statesOf(id), ['STARTING', 'RUNNING', 'UNREACHABLE', 'GONE'], `${id}: RUNNING, UNREACHABLE, GONE, nothing else`)
    t.equal(terminalsOf(fw, id).length, 1, `${id}: one terminal update`)
  }
  t.ok(Date.now() - killedAt >= UNREACHABLE_MS + GONE_MS - 500, 'GONE only after --agent-gone more')
  const failure = await fw.waitFor('a FAILURE event', () => fw.events.find((e) => e.type === 'FAILURE'), 5_000)
  t.equal(failure.type === 'FAILURE' ? failure.agentId : '', agent.agentId, 'FAILURE names the lost agent')
  await waitUntil('the agent removed from the state', async () => !(await clusterState(c.nc)).agents.some((a) => a.id === agent.agentId), 5_000, 100)
  t.pass('the master no longer lists the agent')
})

t.test('Checks that a restarted agent recovers its running containers and each task ends once with its exit code', async (t) => {
  logsOnFailure(t, c)
  const agent = await c.startAgent({ containerizer: 'docker', resources: AGENT_RESOURCES })
  const fw = await c.framework()
  diagnoseOnFailure(t, c, fw)
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  const starts = await watchContainerStarts(fw.scheduler.frameworkId)
  t.teardown(() => starts.close())
  const offer = await fw.nextOffer((o) => o.agentId === agent.agentId)
  await fw.scheduler.launch(offer, [shellTask('rec-ok', 'sleep 4; exit 0'), shellTask('rec-fail', 'sleep 5; exit 3')], { refuseSeconds: 0 })
  await fw.waitFor('both RUNNING', () => ['rec-ok', 'rec-fail'].every((id) => fw.statesOf(id).includes('RUNNING')))

  agent.kill('SIGKILL')
  await agent.exited
  t.equal((await listContainersByLabel(LABEL_AGENT, agent.agentId)).filter((x) => x.State === 'running').length, 2, 'its containers keep running without it')

  const again = await c.startAgent({ containerizer: 'docker', resources: AGENT_RESOURCES, workDir: agent.workDir })
  t.equal(again.agentId, agent.agentId, 'the restarted agent has the same id (kept in its work dir)')
  t.equal(again.count('recovered a running task'), 2, 'it recovered both tasks')

  const ok = await realTerminal(fw, 'rec-ok', 20_000)
  t.equal(ok.state, 'FINISHED', `rec-ok FINISHED${ok.message ? ` (${ok.message})` : ''}`)
  t.equal(ok.exitCode, 0)
  const failed = await realTerminal(fw, 'rec-fail', 20_000)
  t.equal(failed.state, 'FAILED', 'rec-fail FAILED')
  t.equal(failed.exitCode, 3, 'with its own exit code')
  for (const id of ['rec-ok', 'rec-fail']) {
    t.equal(terminalsOf(fw, id).length, 1, `${id}: reported once (states: ${fw.statesOf(id).join(' ')})`)
    t.notOk(fw.statesOf(id).some((s) => s === 'LOST' || s === 'GONE' || s === 'KILLED'), `${id}: never LOST, GONE or KILLED`)
    t.equal(starts.startsOf(id), 1, `${id}: ran in one container, never relaunched`)
  }
  t.same(contradictedReconciliation(fw), [], 'no reconciliation answer said a task that ran was LOST')
  await waitUntil('the recovered containers removed', async () => (await listContainersByLabel(LABEL_AGENT, agent.agentId)).length === 0, 10_000, 100)
  t.pass('the restarted agent removed the containers once they ended')
  const s = await clusterState(c.nc)
  const view = s.agents.find((a) => a.id === agent.agentId)
  t.equal(view?.state, 'active', 'the agent is active on the master')
  t.equal(view?.used.cpus ?? 0, 0, 'and holds no resources for the ended tasks')
})
