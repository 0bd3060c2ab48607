// Agent recovery on a real nats-server and the real Docker engine: an agent stops while its
// container runs; a new agent with the same id and work dir (and a new NATS connection) finds
// the container by its labels, re-attaches, re-registers, and reports the exit exactly once. A
// process-containerizer task cannot be re-attached: the new agent reports it LOST.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import { ClusterState, Subjects, decode } from '../../../shared/protocol/index.js'
import { parseResources } from '../../../shared/resources/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { Agent } from '../../../services/agent/src/agent.js'
import { DockerContainerizer, LABEL_AGENT, ProcessContainerizer, type Containerizer } from '../../../services/agent/src/containerizer/index.js'
import { shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { BUSYBOX_IMAGE, dockerAvailable, ensureBusyboxImage, listContainersByLabel, removeContainersByLabel } from '../../helpers/docker.js'
import { alive, killTaskGroup, readPid, recordPid } from '../../helpers/process-tasks.js'
import { waitUntil } from '../../helpers/wait.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

let cluster: TestCluster
let fw: RecordingFramework
const cleanups: Array<() => Promise<void> | void> = []

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  fw = await cluster.framework()
})
t.teardown(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined)
  await fw.scheduler.teardown().catch(() => undefined)
  await cluster.stop()
})

async function state(): Promise<ClusterState> {
  const nc = await cluster.connect('state')
  try {
    return decode(ClusterState, (await nc.request(Subjects.masterState, new Uint8Array(), { timeout: 2_000 })).data, 'state')
  } finally {
    await nc.close()
  }
}

interface Started { agent: Agent; nc: NatsConnection }

/** An agent on its own NATS connection (a restarted agent process has a new one). */
async function startAgent(id: string, workDir: string, containerizer: Containerizer): Promise<Started> {
  const nc = await cluster.connect(`agent-${id}`)
  const agent = new Agent({
    nc, workDir, id, pool: 'default', resources: parseResources('cpus:2;mem:2048;disk:1000'), attributes: {},
    containerizer, logger: silentLogger(), defaultImage: BUSYBOX_IMAGE, sandboxRetentionMs: 0,
  })
  await agent.start()
  cleanups.push(() => agent.stop())
  return { agent, nc }
}

/** What is left of an agent process that went away: nothing that can talk. */
async function stopAgent(s: Started): Promise<void> {
  await s.agent.stop()
  await s.nc.close()
}

async function workDirFor(id: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regatta-${id}-`))
  cleanups.push(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }))
  return dir
}

t.test('Checks that a restarted Docker agent re-attaches to its running container and reports its exit exactly once', async (t) => {
  const id = `rec-docker-${randomUUID().slice(0, 8)}`
  cleanups.push(() => removeContainersByLabel(LABEL_AGENT, id).then(() => undefined))
  const workDir = await workDirFor(id)
  const first = await startAgent(id, workDir, new DockerContainerizer({ logger: silentLogger() }))
  const offer = await fw.nextOffer((o) => o.agentId === id)
  await fw.scheduler.launch(offer, [shellTask('rec-d1', 'sleep 3; exit 5')], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('rec-d1').includes('RUNNING'))
  const registeredAt = (await state()).agents.find((a) => a.id === id)?.registeredAt

  await stopAgent(first)
  const running = await listContainersByLabel(LABEL_AGENT, id)
  t.equal(running.length, 1, 'the container outlives its agent')
  t.equal(running[0]?.State, 'running')

  const second = await startAgent(id, workDir, new DockerContainerizer({ logger: silentLogger() }))
  t.same(second.agent.runningTasks().map((x) => x.taskId), ['rec-d1'], 'the new agent re-attached to the task')
  t.ok(second.agent.epoch > 0, 're-registered: it knows the leader\'s epoch')
  const s = await state()
  const agents = s.agents.filter((a) => a.id === id)
  t.equal(agents.length, 1, 'one agent with that id')
  t.equal(agents[0]?.state, 'active')
  t.equal(agents[0]?.registeredAt, registeredAt, 'the master kept it as the same agent')
  t.equal(s.tasks.find((x) => x.taskId === 'rec-d1')?.state, 'RUNNING', 'the master still has the task running')

  const end = await fw.terminal('rec-d1', 15_000)
  t.equal(end.state, 'FAILED')
  t.equal(end.exitCode, 5)
  t.equal(end.agentId, id)
  // give a duplicate (the first agent's, or a redelivery) time to show up
  await new Promise((r) => setTimeout(r, 1_500))
  const failed = fw.updates.filter((u) => u.taskId === 'rec-d1' && u.state === 'FAILED')
  t.equal(failed.length, 1, 'FAILED exactly once')
  t.notOk(fw.statesOf('rec-d1').some((x) => x === 'LOST' || x === 'UNREACHABLE'), `no LOST or UNREACHABLE on the way: ${fw.statesOf('rec-d1').join(' ')}`)
  await waitUntil('no container left', async () => (await listContainersByLabel(LABEL_AGENT, id)).length === 0, 10_000)
  t.pass('no container with the agent\'s label is left')
})

t.test('Checks that a restarted Docker agent reports a container that exited while it was away', async (t) => {
  const id = `rec-docker-${randomUUID().slice(0, 8)}`
  cleanups.push(() => removeContainersByLabel(LABEL_AGENT, id).then(() => undefined))
  const workDir = await workDirFor(id)
  const first = await startAgent(id, workDir, new DockerContainerizer({ logger: silentLogger() }))
  const offer = await fw.nextOffer((o) => o.agentId === id)
  await fw.scheduler.launch(offer, [shellTask('rec-d2', 'sleep 1; exit 3')], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('rec-d2').includes('RUNNING'))
  await stopAgent(first)
  // the container ends while no agent is there (the first agent's watcher may remove it; then the
  // new one does not find it and reports LOST: either way the framework hears exactly one end)
  await waitUntil('the container exited', async () => {
    const found = await listContainersByLabel(LABEL_AGENT, id)
    return found.every((c) => c.State !== 'running')
  }, 10_000, 100)
  await startAgent(id, workDir, new DockerContainerizer({ logger: silentLogger() }))
  const end = await fw.terminal('rec-d2', 10_000)
  t.ok(end.state === 'FAILED' || end.state === 'LOST', `ended ${end.state}`)
  if (end.state === 'FAILED') t.equal(end.exitCode, 3)
  await new Promise((r) => setTimeout(r, 1_000))
  t.equal(fw.updates.filter((u) => u.taskId === 'rec-d2' && ['FAILED', 'LOST', 'FINISHED'].includes(u.state)).length, 1, 'one terminal update')
  await waitUntil('no container left', async () => (await listContainersByLabel(LABEL_AGENT, id)).length === 0, 10_000)
  t.pass('no container left')
})

t.test('Checks that a process-containerizer task does not survive an agent restart: the new agent reports it LOST', async (t) => {
  const id = `rec-proc-${randomUUID().slice(0, 8)}`
  const workDir = await workDirFor(id)
  const first = await startAgent(id, workDir, new ProcessContainerizer({ logger: silentLogger() }))
  const pidFile = join(workDir, 'task.pid')
  const offer = await fw.nextOffer((o) => o.agentId === id)
  await fw.scheduler.launch(offer, [shellTask('rec-p1', recordPid(pidFile, 'sleep 60'))], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('rec-p1').includes('RUNNING'))
  const pid = await readPid(pidFile)
  cleanups.push(() => killTaskGroup(pid))

  await stopAgent(first)
  const second = await startAgent(id, workDir, new ProcessContainerizer({ logger: silentLogger() }))
  const end = await fw.terminal('rec-p1', 10_000)
  t.equal(end.state, 'LOST')
  t.equal(end.reason, 'CONTAINER_NOT_FOUND')
  t.equal(end.agentId, id)
  t.match(end.message, /cannot be re-attached/)
  await waitUntil('the agent to let go of the task', () => !second.agent.runningTasks().some((x) => x.taskId === 'rec-p1'), 5_000)
  const s = await waitUntil('the master to free the task', async () => {
    const st = await state()
    return (st.agents.find((a) => a.id === id)?.used.cpus ?? 0) === 0 ? st : undefined
  }, 5_000)
  t.notOk(s.tasks.some((x) => x.taskId === 'rec-p1' && x.state === 'RUNNING'), 'the master no longer has it running')

  // The task's process is detached (its own process group) and outlives the agent. The new agent
  // has its pid in the checkpoint (containerId pid:N) but only reports it LOST: the process keeps
  // running (and using the resources the master now offers again), with nobody to stop it.
  await waitUntil('the orphaned process ended', async () => !(await alive(pid)), 3_000).then(
    () => t.pass('the orphaned task process was stopped by the new agent'),
    () => t.fail(`the orphaned task process ${pid} still runs after the agent reported it LOST`),
  )
})
