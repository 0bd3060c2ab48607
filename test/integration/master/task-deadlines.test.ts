// The start deadline on a real `regatta master --task-start-timeout 2s` process: a task whose
// checkout hangs (a git server on loopback that accepts and never answers) stays STARTING, and
// a task launched on an agent process that is stopped (SIGSTOP: it never answers the LAUNCH)
// stays STAGING. Each is killed at the deadline and reported LOST with reason
// TASK_START_TIMEOUT; the framework is not offered that agent for a while, so the task runs
// again on the other one.
import t from 'tap'
import { createServer, type Server, type Socket } from 'node:net'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import { silentLogger } from '../../../shared/log/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { clusterState, startAgentProcess, startMasterProcess, type AgentProcess, type MasterProcess } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'

const START_TIMEOUT_MS = 2_000
/** How often the master checks its timeouts (min(500 ms, the heartbeat interval)) and a margin for the update to travel. */
const CHECK_MARGIN_MS = 1_500

let cluster: TestCluster
let master: MasterProcess
let nc: NatsConnection
const cleanups: Array<() => Promise<unknown>> = []

t.before(async () => {
  cluster = await startCluster()
  master = await startMasterProcess({
    natsUrl: cluster.nats.url, id: 'm1', waitFor: 'leader', heartbeatInterval: '200ms',
    // agents stay reachable for longer than the start deadline: a stopped agent is a stuck launch here, not a lost agent
    agentUnreachable: '15s', agentGone: '30s',
    extraArgs: ['--task-start-timeout', `${START_TIMEOUT_MS}ms`],
  })
  nc = await cluster.connect('test')
})
t.teardown(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined)
  await master?.stop(3_000)
  await cluster?.stop()
})

/** A TCP server that accepts connections and never answers: `git fetch` from it waits forever. */
async function silentGitServer(): Promise<{ url: string; sockets: Set<Socket>; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => undefined)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  return {
    url: `http://127.0.0.1:${port}/octo/app.git`,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

/** Offers of `agentId` that reached the framework after event index `from`. */
const offersAfter = (fw: RecordingFramework, from: number, agentId: string): number =>
  fw.events.slice(from).filter((e) => e.type === 'OFFERS').flatMap((e) => (e.type === 'OFFERS' ? e.offers : [])).filter((o) => o.agentId === agentId).length

t.test('Checks that a task whose checkout hangs is killed at the start deadline, reported LOST (TASK_START_TIMEOUT), and runs again on another agent', async (t) => {
  const git = await silentGitServer()
  cleanups.push(() => git.close())
  const hang = await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'hangs-in-checkout', resources: 'cpus:1;mem:512;disk:1000' })
  const ok = await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'healthy', resources: 'cpus:1;mem:512;disk:1000' })
  const fw = await cluster.framework({ name: 'deadline-test' })
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))

  const offer = await fw.nextOffer((o) => o.agentId === hang.id)
  const launchedAt = Date.now()
  await fw.scheduler.launch(offer, [shellTask('stuck-in-checkout', 'echo it ran', {
    checkout: { url: git.url, sha: 'a'.repeat(40), ref: 'refs/heads/main' },
  })], { refuseSeconds: 0 })
  await waitUntil('git connected to the silent server', () => git.sockets.size > 0, 10_000)
  await fw.waitFor('STARTING', () => fw.statesOf('stuck-in-checkout').includes('STARTING'), 10_000)

  const lost = await fw.terminal('stuck-in-checkout', START_TIMEOUT_MS + 10_000)
  const tookMs = Date.now() - launchedAt
  const lostAt = fw.events.length
  t.equal(lost.state, 'LOST', `the task ends LOST (${lost.message ?? ''})`)
  t.equal(lost.reason, 'TASK_START_TIMEOUT', 'with reason TASK_START_TIMEOUT')
  t.equal(lost.source, 'master', 'reported by the master')
  t.match(lost.message ?? '', /still STARTING on agent hangs-in-checkout/, 'the message names the state and the agent')
  t.ok(tookMs >= START_TIMEOUT_MS, `not before the deadline (${tookMs} ms)`)
  t.ok(tookMs <= START_TIMEOUT_MS + CHECK_MARGIN_MS, `soon after it (${tookMs} ms; deadline ${START_TIMEOUT_MS} ms)`)

  const state = await clusterState(nc)
  t.equal(state.tasks.find((x) => x.taskId === 'stuck-in-checkout')?.state, 'LOST', 'the master shows it LOST')
  t.equal(state.agents.find((a) => a.id === hang.id)?.used.cpus ?? 0, 0, 'its resources are free again on the master')

  // the agent got the KILL: once git gives up (the server goes away), it reports KILLED, not a run
  await git.close()
  const killed = await fw.waitFor('the agent\'s KILLED', () => fw.updates.find((u) => u.taskId === 'stuck-in-checkout' && u.source === 'agent' && u.state !== 'STARTING'), 15_000)
  t.equal(killed.state, 'KILLED', `the agent killed it: ${killed.state} ${killed.message ?? ''}`)
  t.notOk(fw.statesOf('stuck-in-checkout').includes('RUNNING'), 'it never ran')
  const after = await clusterState(nc)
  t.equal(after.tasks.find((x) => x.taskId === 'stuck-in-checkout')?.state, 'LOST', 'the agent\'s late KILLED does not change what the master reported')

  // the framework is held off the agent where its task did not start: the other one runs it
  const retryOffer = await fw.nextOffer((o) => o.agentId === ok.id)
  await fw.scheduler.launch(retryOffer, [shellTask('stuck-in-checkout.retry', 'echo ran elsewhere')], { refuseSeconds: 0 })
  const done = await fw.terminal('stuck-in-checkout.retry', 15_000)
  t.equal(done.state, 'FINISHED', 'the relaunch finishes on the healthy agent')
  await new Promise((r) => setTimeout(r, 1_500))
  t.equal(offersAfter(fw, lostAt, hang.id), 0, 'no offer of the agent where it timed out reached the framework since (held for a minute)')
  t.ok(offersAfter(fw, lostAt, ok.id) > 0, 'while the healthy agent was offered again and again')
})

t.test('Checks that a task whose agent never answers the LAUNCH (the agent process is stopped) is reported LOST at the deadline, and killed when the agent wakes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'regatta-deadline-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const agent: AgentProcess = await startAgentProcess({ natsUrl: cluster.nats.url, workDir: join(dir, 'agent'), containerizer: 'process', resources: 'cpus:1;mem:512;disk:1000' })
  cleanups.push(() => agent.stop(3_000))
  const fw = await cluster.framework({ name: 'staging-test' })
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))

  const offer = await fw.nextOffer((o) => o.agentId === agent.agentId)
  agent.kill('SIGSTOP')
  t.teardown(() => agent.kill('SIGCONT'))
  const launchedAt = Date.now()
  await fw.scheduler.launch(offer, [shellTask('never-staged', `touch ${join(dir, 'it-ran')}; sleep 30`)], { refuseSeconds: 0 })
  const lost = await fw.terminal('never-staged', START_TIMEOUT_MS + 10_000)
  const tookMs = Date.now() - launchedAt
  t.equal(lost.state, 'LOST', `LOST (${lost.message ?? ''})`)
  t.equal(lost.reason, 'TASK_START_TIMEOUT')
  t.match(lost.message ?? '', new RegExp(`still STAGING on agent ${agent.agentId}`), 'the message says it never got past STAGING')
  t.ok(tookMs >= START_TIMEOUT_MS && tookMs <= START_TIMEOUT_MS + CHECK_MARGIN_MS, `at the deadline (${tookMs} ms)`)
  t.same(fw.statesOf('never-staged'), ['LOST'], 'the agent said nothing meanwhile')
  const state = await clusterState(nc)
  t.equal(state.agents.find((a) => a.id === agent.agentId)?.state, 'active', 'the agent is still active for the master (the deadline, not the agent timeout, acted)')

  // awake, the agent reads the LAUNCH and then the KILL the master sent at the deadline
  agent.kill('SIGCONT')
  const end = await fw.waitFor('the agent\'s end of the task', () => fw.updates.find((u) => u.taskId === 'never-staged' && u.source === 'agent' && u.state !== 'STARTING' && u.state !== 'RUNNING'), 15_000)
  t.equal(end.state, 'KILLED', `the agent killed the launch that came too late: ${end.message ?? ''}`)
  const view = (await clusterState(nc)).agents.find((a) => a.id === agent.agentId)
  t.equal(view?.used.cpus ?? 0, 0, 'the agent holds no resources for it on the master')
  t.equal(view?.tasks, 0, 'nor a running task')
  t.notOk(existsSync(join(dir, 'it-ran')), 'the late launch never ran its command')
})
