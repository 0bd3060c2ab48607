// A build machine dies mid-job: the `regatta agent` process running it is killed with SIGKILL,
// and so is the job's process group (the process containerizer's "container"), as when the
// host goes away. Two agents, real processes; the CI service and the master in this process.
// The job's task goes UNREACHABLE, then GONE after the master's agent-gone timeout; the CI
// service requeues the job (without spending an attempt), it runs on the other agent, and the
// run succeeds, all within the agent timeouts and a margin. And an agent cut off (SIGSTOP:
// its job's processes go on) that comes back after it was declared gone is told to kill the
// job's old copy: the job never goes on running twice.
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { httpAuthFrom } from '../../../shared/http/index.js'
import { runCi, type RunningCi } from '../../../services/ci/src/main.js'
import { manualTrigger } from '../../../services/ci/src/manual.js'
import { runView } from '../../../services/ci/src/views.js'
import { CI_FRAMEWORK_ID } from '../../../services/ci/src/service.js'
import type { Master } from '../../../services/master/src/master.js'
import { fastMasterConfig, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { createRepo, type TestRepo } from '../../helpers/git-repo.js'
import { startAgentProcess, type AgentProcess } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'

const UNREACHABLE_MS = fastMasterConfig.agentUnreachableMs!
const GONE_MS = fastMasterConfig.agentGoneMs!
/** Detection is checked every heartbeat interval (200 ms); placement and launch take a moment more. */
const MARGIN_MS = 3_000

let cluster: TestCluster
let master: Master
let repo: TestRepo
let ci: RunningCi
let dir: string
const agents: AgentProcess[] = []
let run = 0

t.before(async () => {
  cluster = await startCluster()
  master = await cluster.startMaster('m1', fastMasterConfig)
  dir = await mkdtemp(join(tmpdir(), 'regatta-agent-loss-'))
  for (const name of ['a', 'b']) {
    agents.push(await startAgentProcess({ natsUrl: cluster.nats.url, workDir: join(dir, `agent-${name}`), containerizer: 'process', resources: 'cpus:1;mem:512;disk:2000' }))
  }
  repo = await createRepo()
  ci = await runCi({ natsUrl: cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, logger: silentLogger(), auth: httpAuthFrom({ openReads: true }, {}) })
})
t.teardown(async () => {
  await ci?.stop()
  await Promise.all(agents.map((a) => a.stop(3_000)))
  await cluster?.stop()
  await repo?.remove()
  await rm(dir, { recursive: true, force: true })
})

/** The process group of a pid (field 5 of /proc/PID/stat). */
async function processGroupOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
}

/** A run of one job whose first attempt claims a mark and hangs; any later attempt finds the mark taken and finishes. */
async function startJob(): Promise<{ runId: string; jobId: string; marks: string }> {
  const marks = join(dir, `marks-${++run}`)
  const sha = await repo.commit({
    '.regatta/ci.yml': `
name: ci
on: { manual: {} }
jobs:
  build:
    image: any
    resources: { cpus: 1, mem: 128 }
    steps:
      - run: |
          echo "on agent $REGATTA_AGENT_ID"
          mkdir -p ${marks}
          if mkdir ${marks}/first 2>/dev/null; then echo $$ > ${marks}/pid; sleep 120; fi
          echo built
`,
  })
  const doc = await ci.service.trigger(await manualTrigger(repo.url, 'main', sha))
  return { runId: doc.meta.runId, jobId: 'ci/build', marks }
}

t.test('Checks that a job whose agent and processes are killed -9 is requeued after the agent-gone timeout and the run succeeds on the other agent', async (t) => {
  const { runId, jobId, marks } = await startJob()

  const pid = Number(await waitUntil('the first attempt to run', async () => (await readFile(join(marks, 'pid'), 'utf8').catch(() => '')).trim(), 30_000, 100))
  const task = master.state().tasks.find((x) => x.frameworkId === CI_FRAMEWORK_ID && x.state === 'RUNNING')
  t.ok(task, 'the job\'s task runs')
  const victim = agents.find((a) => a.agentId === task!.agentId)!
  const survivor = agents.find((a) => a !== victim)!
  t.ok(victim && survivor, `the job runs on ${victim?.agentId}; ${survivor?.agentId} stands by`)

  // the host dies: its agent and the job's processes, at once, with no chance to report
  const group = await processGroupOf(pid)
  const killedAt = Date.now()
  victim.kill('SIGKILL')
  process.kill(-group, 'SIGKILL')
  t.equal((await victim.exited).signal, 'SIGKILL', 'the agent died of SIGKILL')

  const ended = await waitUntil('the run to end', async () => {
    const v = runView((await ci.service.get(runId))!)
    return ['succeeded', 'failed', 'error', 'cancelled'].includes(v.state) ? v : undefined
  }, UNREACHABLE_MS + GONE_MS + 30_000, 200)
  const tookMs = Date.now() - killedAt
  t.equal(ended.state, 'succeeded', `the run succeeds (${JSON.stringify(ended.jobs.map((j) => [j.id, j.state, j.description]))})`)
  const build = ended.jobs.find((j) => j.id === jobId)!
  t.equal(build.attempt, 1, 'a lost task does not spend an attempt')

  const history = (await ci.service.get(runId))!.machine.snapshot.context.jobs[jobId]!.context.history
  t.same(history.map((h) => h.outcome), ['lost', 'succeeded'], 'two tasks: the lost one, then the one that succeeded')
  t.equal(history[0]!.reason, 'AGENT_GONE', `the first was lost because its agent was gone: ${history[0]!.message ?? ''}`)
  const requeuedAfter = history[1]!.launchedAt! - killedAt
  t.ok(requeuedAfter >= UNREACHABLE_MS + GONE_MS - 500,
    `relaunched only once the agent was gone (${requeuedAfter} ms; unreachable ${UNREACHABLE_MS} + gone ${GONE_MS}): a job is never run twice at once`)
  t.ok(requeuedAfter <= UNREACHABLE_MS + GONE_MS + MARGIN_MS, `and soon after (${requeuedAfter} ms; bound ${UNREACHABLE_MS + GONE_MS + MARGIN_MS})`)
  t.comment(`kill -> relaunch ${requeuedAfter} ms, kill -> run succeeded ${tookMs} ms`)

  const finished = master.state().tasks.find((x) => x.taskId === history[1]!.taskId)
  t.equal(finished?.agentId, survivor.agentId, 'the relaunch ran on the surviving agent')
  const log = await (await fetch(`${ci.url}/api/v1/runs/${runId}/jobs/${encodeURIComponent(jobId)}/log`)).text()
  t.match(log, new RegExp(`on agent ${survivor.agentId}[\\s\\S]*built`), 'its log shows the job built on the survivor')
  t.notOk(master.state().agents.some((a) => a.id === victim.agentId), 'the master no longer lists the dead agent')
})

/** Whether a process is alive (signal 0). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('Checks that an agent cut off past the agent-gone timeout, whose job was requeued, has the job\'s old copy killed when it comes back', async (t) => {
  const spare = await startAgentProcess({ natsUrl: cluster.nats.url, workDir: join(dir, 'agent-c'), containerizer: 'process', resources: 'cpus:1;mem:512;disk:2000' })
  agents.push(spare)
  const { runId, jobId, marks } = await startJob()
  const pid = Number(await waitUntil('the first attempt to run', async () => (await readFile(join(marks, 'pid'), 'utf8').catch(() => '')).trim(), 30_000, 100))
  const task = master.state().tasks.find((x) => x.frameworkId === CI_FRAMEWORK_ID && x.state === 'RUNNING')!
  const cutOff = agents.find((a) => a.agentId === task.agentId)!
  t.ok(cutOff, `the job runs on ${task.agentId}`)

  // a partition: the agent cannot talk, the job's processes go on
  cutOff.kill('SIGSTOP')
  t.teardown(() => cutOff.kill('SIGCONT'))
  const ended = await waitUntil('the run to end', async () => {
    const v = runView((await ci.service.get(runId))!)
    return ['succeeded', 'failed', 'error', 'cancelled'].includes(v.state) ? v : undefined
  }, UNREACHABLE_MS + GONE_MS + 30_000, 200)
  t.equal(ended.state, 'succeeded', 'the requeued job succeeds on another agent')
  t.ok(alive(pid), 'the old copy still runs on the cut-off agent')

  cutOff.kill('SIGCONT')
  const resumedAt = Date.now()
  await waitUntil('the old copy to be killed', () => !alive(pid), 15_000, 100)
  t.comment(`old copy killed ${Date.now() - resumedAt} ms after the agent came back`)
  t.pass('the agent came back, re-registered, and killed the job\'s old copy')
  const history = (await ci.service.get(runId))!.machine.snapshot.context.jobs[jobId]!.context.history
  t.same(history.map((h) => h.outcome), ['lost', 'succeeded'], 'the run is unchanged: the lost copy, then the one that succeeded')
  t.equal(runView((await ci.service.get(runId))!).state, 'succeeded')
  const stale = master.state().tasks.find((x) => x.taskId === history[0]!.taskId)
  t.not(stale?.state, 'RUNNING', `the master does not count the old copy as running (${stale?.state ?? 'forgotten'})`)
  await waitUntil('the cut-off agent active again', () => master.state().agents.find((a) => a.id === cutOff.agentId && a.state === 'active'), 10_000, 100)
  t.equal(master.state().agents.find((a) => a.id === cutOff.agentId)?.tasks, 0, 'and it runs nothing')
})
