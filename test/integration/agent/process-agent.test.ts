// The whole path with the process containerizer, on a real nats-server: a framework launches on
// an agent's offer, the agent runs the command as a process in the task's sandbox, writes its
// output to the sandbox's stdout/stderr files (and streams it when asked), reports the exit
// code, kills on request, and removes the sandbox after its retention time.
import t from 'tap'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { OutputChunk, Subjects, decode } from '../../../shared/protocol/index.js'
import { parseResources } from '../../../shared/resources/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { Agent } from '../../../services/agent/src/agent.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { alive, killTaskGroup, readPid, recordPid } from '../../helpers/process-tasks.js'
import { waitUntil } from '../../helpers/wait.js'

const RETENTION_MS = 1_500
let cluster: TestCluster
let fw: RecordingFramework
const dirs: string[] = []
const agents: Agent[] = []
const pids: number[] = []

async function startAgent(id: string, sandboxRetentionMs: number): Promise<{ agent: Agent; workDir: string }> {
  const workDir = await mkdtemp(join(tmpdir(), `regatta-${id}-`))
  dirs.push(workDir)
  const agent = new Agent({
    nc: await cluster.connect(id), workDir, pool: 'default', id,
    resources: parseResources('cpus:2;mem:2048;disk:1000'), attributes: {},
    containerizer: new ProcessContainerizer({ logger: silentLogger() }), logger: silentLogger(), sandboxRetentionMs,
  })
  await agent.start()
  agents.push(agent)
  return { agent, workDir }
}

let keep: { agent: Agent; workDir: string }
let brief: { agent: Agent; workDir: string }

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  keep = await startAgent('proc-keep', 10 * 60_000) // keeps sandboxes for the test to read
  brief = await startAgent('proc-brief', RETENTION_MS)
  fw = await cluster.framework()
})
t.teardown(async () => {
  for (const pid of pids) killTaskGroup(pid)
  await fw.scheduler.teardown().catch(() => undefined)
  for (const a of agents) await a.stop().catch(() => undefined)
  await cluster.stop()
  for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined)
})

const sandboxOf = (workDir: string, taskId: string): string =>
  join(workDir, 'sandboxes', encodeURIComponent(fw.scheduler.frameworkId), encodeURIComponent(taskId))

/** Launches on an offer of `agentId`, leaving the rest of the offer free for the next task. */
async function launchOn(agentId: string, ...tasks: Parameters<typeof shellTask>): Promise<void> {
  const offer = await fw.nextOffer((o) => o.agentId === agentId)
  await fw.scheduler.launch(offer, [shellTask(...tasks)], { refuseSeconds: 0 })
}

/** A sandbox file's content once it holds `pattern` (written beside the status, it may trail it a little). */
function fileWith(path: string, pattern: RegExp): Promise<string> {
  return waitUntil(`${path} to match ${pattern}`, async () => {
    const text = await readFile(path, 'utf8').catch(() => '')
    return pattern.test(text) ? text : undefined
  }, 3_000)
}

t.test('Checks that the agent registers with the process containerizer', async (t) => {
  const s = await cluster.connect('state').then((nc) => nc.request(Subjects.masterState, new Uint8Array(), { timeout: 2_000 }))
  const state = s.json<{ agents: Array<{ id: string; containerizer: string; total: { cpus: number } }> }>()
  const a = state.agents.find((x) => x.id === 'proc-keep')
  t.equal(a?.containerizer, 'process')
  t.equal(a?.total.cpus, 2)
})

t.test('Checks that a command that exits 0 ends FINISHED, its output in the sandbox stdout file', async (t) => {
  await launchOn('proc-keep', 'ok-1', 'echo hello from a process; echo to stderr >&2; exit 0')
  const end = await fw.terminal('ok-1')
  t.equal(end.state, 'FINISHED')
  t.equal(end.exitCode, 0)
  t.equal(end.agentId, 'proc-keep')
  t.same(fw.statesOf('ok-1'), ['STARTING', 'RUNNING', 'FINISHED'])
  const sandbox = sandboxOf(keep.workDir, 'ok-1')
  t.equal(await fileWith(join(sandbox, 'stdout'), /hello/), 'hello from a process\n')
  t.equal(await fileWith(join(sandbox, 'stderr'), /stderr/), 'to stderr\n')
})

t.test('Checks that a failing command ends FAILED with its exit code', async (t) => {
  await launchOn('proc-keep', 'fail-1', 'echo about to fail; exit 7')
  const end = await fw.terminal('fail-1')
  t.equal(end.state, 'FAILED')
  t.equal(end.exitCode, 7)
  t.equal(end.reason, 'COMMAND_FAILED')
  t.match(end.message, /code 7/)
  t.match(await fileWith(join(sandboxOf(keep.workDir, 'fail-1'), 'stdout'), /about to fail/), /about to fail/)
})

t.test('Checks that the task runs in its sandbox with REGATTA_TASK_ID, REGATTA_FRAMEWORK_ID, REGATTA_AGENT_ID and its own env', async (t) => {
  await launchOn('proc-keep', 'env-1', 'echo "task=$REGATTA_TASK_ID fw=$REGATTA_FRAMEWORK_ID agent=$REGATTA_AGENT_ID mine=$MINE pwd=$(pwd)"', {
    container: { command: ['sh', '-c', 'echo "task=$REGATTA_TASK_ID fw=$REGATTA_FRAMEWORK_ID agent=$REGATTA_AGENT_ID mine=$MINE pwd=$(pwd)"'], env: { MINE: 'yes' } },
  })
  t.equal((await fw.terminal('env-1')).state, 'FINISHED')
  const sandbox = sandboxOf(keep.workDir, 'env-1')
  const out = await fileWith(join(sandbox, 'stdout'), /task=/)
  t.equal(out.trim(), `task=env-1 fw=${fw.scheduler.frameworkId} agent=proc-keep mine=yes pwd=${sandbox}`)
})

t.test('Checks that output is streamed to the framework when the task asks for it', async (t) => {
  const nc = await cluster.connect('output')
  const chunks: OutputChunk[] = []
  const sub = nc.subscribe(Subjects.taskOutputAnyAgent(fw.scheduler.frameworkId, 'stream-1'), {
    callback: (_err, m) => { chunks.push(decode(OutputChunk, m.data)) },
  })
  t.teardown(() => sub.unsubscribe())
  await nc.flush()
  await launchOn('proc-keep', 'stream-1', 'echo line-one; echo line-two >&2', { streamOutput: true })
  t.equal((await fw.terminal('stream-1')).state, 'FINISHED')
  await waitUntil('both lines', () => chunks.length >= 2, 3_000)
  t.equal(chunks.filter((c) => c.stream === 'stdout').map((c) => c.data).join(''), 'line-one\n')
  t.equal(chunks.filter((c) => c.stream === 'stderr').map((c) => c.data).join(''), 'line-two\n')
  t.ok(chunks.every((c) => c.taskId === 'stream-1'))
})

t.test('Checks that a kill ends a running task KILLED and its process is gone', async (t) => {
  const pidFile = join(keep.workDir, 'kill-1.pid')
  await launchOn('proc-keep', 'kill-1', recordPid(pidFile, 'sleep 60'), { killGracePeriodMs: 500 })
  await fw.waitFor('RUNNING', () => fw.statesOf('kill-1').includes('RUNNING'))
  const pid = await readPid(pidFile)
  pids.push(pid)
  t.ok(await alive(pid), 'the process runs')
  const started = Date.now()
  await fw.scheduler.kill('kill-1')
  const end = await fw.terminal('kill-1')
  t.equal(end.state, 'KILLED')
  t.equal(end.reason, 'KILLED')
  t.ok(Date.now() - started < 5_000, 'killed well before the command would have ended')
  await waitUntil('the process gone', async () => !(await alive(pid)), 3_000)
  t.pass('the process is gone')
})

t.test('Checks that a command that does not exist fails the launch with the reason', async (t) => {
  await launchOn('proc-keep', 'nocmd-1', 'unused', { container: { command: ['/no/such/binary-regatta'] } })
  const end = await fw.terminal('nocmd-1')
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'CONTAINER_LAUNCH_FAILED')
  t.match(end.message, /no-such|binary-regatta|ENOENT/)
})

t.test('Checks that the output is in the sandbox stdout file when the task ends, and the sandbox goes after its retention', async (t) => {
  await launchOn('proc-brief', 'brief-1', 'echo kept for a while')
  const end = await fw.terminal('brief-1')
  // from the agent's stamp on the update (it reaches the framework some ms later)
  const endedAt = end.timestamp
  t.equal(end.state, 'FINISHED')
  const sandbox = sandboxOf(brief.workDir, 'brief-1')
  t.equal(await fileWith(join(sandbox, 'stdout'), /kept/), 'kept for a while\n', 'the output is there when FINISHED arrives')
  await waitUntil('the sandbox removed', () => stat(sandbox).then(() => false, () => true), RETENTION_MS + 5_000)
  const after = Date.now() - endedAt
  t.ok(after >= RETENTION_MS, `removed ${after} ms after the end, not before the retention (${RETENTION_MS} ms)`)
})
