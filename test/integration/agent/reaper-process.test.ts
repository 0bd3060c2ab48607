// The agent's reaper and disk budget with the process containerizer, on a real nats-server,
// master and real processes: after a crash that lost its checkpoint, the restarted agent kills
// the task's processes (one escaped its process group with setsid), removes their cgroups and
// the sandbox, and counts them; processes that name the agent but run in another work dir, or
// name another agent, and a running task, are left alone. Sandboxes kept after their task are
// evicted least recently used first when over the disk budget.
import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, stat, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import { ClusterState, Subjects, decode, type AgentView } from '../../../shared/protocol/index.js'
import { parseResources } from '../../../shared/resources/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { Agent, type AgentOptions } from '../../../services/agent/src/agent.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { alive, readPid, recordPid } from '../../helpers/process-tasks.js'
import { waitUntil } from '../../helpers/wait.js'

const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`
let cluster: TestCluster
let fw: RecordingFramework
const cleanups: Array<() => Promise<unknown> | unknown> = []
const pids: number[] = []

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  fw = await cluster.framework()
})
t.teardown(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => undefined)
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
  await fw.scheduler.teardown().catch(() => undefined)
  await cluster.stop()
})

interface Started { agent: Agent; nc: NatsConnection }

async function startAgent(id: string, workDir: string, o: Partial<AgentOptions> = {}): Promise<Started> {
  const nc = await cluster.connect(`agent-${id}`)
  const agent = new Agent({
    nc, workDir, id, pool: id, resources: parseResources('cpus:2;mem:2048;disk:1000'), attributes: {},
    containerizer: new ProcessContainerizer({ logger: silentLogger() }), logger: silentLogger(), sandboxRetentionMs: 0, ...o,
  })
  await agent.start()
  cleanups.push(() => agent.stop())
  return { agent, nc }
}

async function workDirFor(id: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `regatta-${id}-`))
  cleanups.push(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }))
  return dir
}

async function state(): Promise<ClusterState> {
  const nc = await cluster.connect('state')
  try {
    return decode(ClusterState, (await nc.request(Subjects.masterState, new Uint8Array(), { timeout: 2_000 })).data, 'state')
  } finally {
    await nc.close()
  }
}

async function agentView(id: string, pred: (a: AgentView) => boolean): Promise<AgentView> {
  return waitUntil(`agent ${id} in the master state`, async () => (await state()).agents.find((a) => a.id === id && pred(a)), 5_000)
}

/** A process outside any agent, with the environment a task of `agentId` would have (HOME need not exist). */
async function impostor(agentId: string, home: string): Promise<number> {
  const child = spawn('sleep', ['300'], {
    detached: true, stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, REGATTA_AGENT_ID: agentId, REGATTA_TASK_ID: 'not-yours', REGATTA_FRAMEWORK_ID: 'fw-x' },
  })
  child.unref()
  pids.push(child.pid!)
  return child.pid!
}

/** The task's cgroup directories (v1, under regatta/), where this host lets the agent make them. */
async function taskCgroups(taskId: string): Promise<string[]> {
  const out: string[] = []
  for (const controller of ['memory', 'cpu', 'pids', 'cpuacct']) {
    const parent = join('/sys/fs/cgroup', controller, 'regatta')
    for (const name of await readdir(parent).catch(() => [] as string[])) if (name.startsWith(`${taskId}-`)) out.push(join(parent, name))
  }
  return out
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false)

t.test('Checks that after a crash that lost its checkpoint, the restarted agent kills the task\'s processes, removes their cgroups and sandbox, and leaves others alone', async (t) => {
  const id = `reap-proc-${RUN}`
  const taskId = `reap-p-${RUN}`
  const workDir = await workDirFor(id)
  const first = await startAgent(id, workDir)
  const pidFile = join(workDir, 'task.pid')
  const escapedFile = join(workDir, 'escaped.pid')
  const offer = await fw.nextOffer((o) => o.agentId === id)
  // one child leaves the task's process group (setsid): only its environment says whose it is
  await fw.scheduler.launch(offer, [shellTask(taskId, `setsid sleep 300 & echo $! > '${escapedFile}'; ${recordPid(pidFile, 'sleep 300')}`)], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf(taskId).includes('RUNNING'))
  const pid = await readPid(pidFile)
  const escaped = await readPid(escapedFile)
  pids.push(pid, escaped)
  const cgroups = await taskCgroups(taskId)
  const sandbox = join(workDir, 'sandboxes', encodeURIComponent(fw.scheduler.frameworkId), encodeURIComponent(taskId))
  t.ok(await exists(sandbox))

  // processes this agent must not touch: its id in another work dir, and another id in its work dir
  const elsewhere = await impostor(id, join(await workDirFor(`${id}-elsewhere`), 'sandboxes', 'fw-x', 'not-yours'))
  const otherAgent = await impostor(`${id}-other`, join(workDir, 'sandboxes', 'fw-x', 'not-yours'))

  // the agent dies before its checkpoint was written
  await first.agent.stop()
  await first.nc.close()
  await unlink(join(workDir, 'tasks.json'))
  t.ok(await alive(pid) && await alive(escaped), 'the task\'s processes outlive the agent')

  const second = await startAgent(id, workDir, { reapIntervalMs: 500 })
  await waitUntil('the task\'s processes killed', async () => !(await alive(pid)) && !(await alive(escaped)), 5_000)
  t.pass('the task\'s process and the one that left its group are gone')
  await waitUntil('its sandbox removed', async () => !(await exists(sandbox)), 5_000)
  t.pass('its sandbox is gone')
  for (const dir of cgroups) t.notOk(await exists(dir), `cgroup ${dir} removed`)
  const a = await agentView(id, (x) => (x.orphans?.reaped ?? 0) >= 2)
  t.same(a.orphans?.processes, { found: 1, reaped: 1 }, 'one task\'s processes')
  t.same(a.orphans?.sandboxes, { found: 1, reaped: 1 }, 'one sandbox')
  t.same(a.orphans?.containers, { found: 0, reaped: 0 })

  // a running task of the new agent is its own, pass after pass
  const next = await fw.nextOffer((o) => o.agentId === id)
  await fw.scheduler.launch(next, [shellTask(`${taskId}-live`, 'sleep 2; echo done')], { refuseSeconds: 0 })
  const end = await fw.terminal(`${taskId}-live`, 10_000)
  t.equal(end.state, 'FINISHED', 'a running task is never taken for an orphan (four passes ran meanwhile)')
  t.ok(await alive(elsewhere), 'a process naming this agent but living in another work dir is untouched')
  t.ok(await alive(otherAgent), 'a process of another agent id is untouched')
  t.same(second.agent.runningTasks(), [])
})

t.test('Checks that sandboxes kept after their task are evicted least recently used first when over the disk budget', async (t) => {
  const id = `budget-${RUN}`
  const workDir = await workDirFor(id)
  // 2.5 MiB: two ended tasks' 1 MiB sandboxes fit, a third does not
  await startAgent(id, workDir, { sandboxRetentionMs: 600_000, diskBudgetMb: 2.5 })
  const sandboxOf = (taskId: string): string => join(workDir, 'sandboxes', encodeURIComponent(fw.scheduler.frameworkId), encodeURIComponent(taskId))
  const tasks = ['b1', 'b2', 'b3', 'b4'].map((n) => `${n}-${RUN}`)
  const run = async (taskId: string): Promise<void> => {
    const offer = await fw.nextOffer((o) => o.agentId === id)
    await fw.scheduler.launch(offer, [shellTask(taskId, 'dd if=/dev/zero of=blob bs=1048576 count=1 2>/dev/null; echo wrote')], { refuseSeconds: 0 })
    const end = await fw.terminal(taskId, 10_000)
    t.equal(end.state, 'FINISHED', `${taskId} ran`)
  }
  await run(tasks[0]!)
  await run(tasks[1]!)
  await new Promise((r) => setTimeout(r, 300))
  t.ok(await exists(sandboxOf(tasks[0]!)) && await exists(sandboxOf(tasks[1]!)), 'two kept sandboxes fit the budget')

  await run(tasks[2]!)
  await waitUntil('the oldest evicted', async () => !(await exists(sandboxOf(tasks[0]!))), 5_000)
  t.ok(await exists(sandboxOf(tasks[1]!)) && await exists(sandboxOf(tasks[2]!)), 'the first task\'s sandbox went, the later ones stay')

  await run(tasks[3]!)
  await waitUntil('the next oldest evicted', async () => !(await exists(sandboxOf(tasks[1]!))), 5_000)
  t.ok(await exists(sandboxOf(tasks[2]!)) && await exists(sandboxOf(tasks[3]!)), 'then the second\'s; the two newest stay')

  const a = await agentView(id, (x) => x.disk?.evicted === 2)
  t.equal(a.disk?.retained, 2, 'two kept')
  t.equal(a.disk?.budgetMb, 2.5)
  t.ok((a.disk?.usedMb ?? 0) <= 2.5, `used ${a.disk?.usedMb} MiB, within the budget`)
  t.same(a.orphans?.sandboxes, { found: 0, reaped: 0 }, 'evictions are not orphans')
})
