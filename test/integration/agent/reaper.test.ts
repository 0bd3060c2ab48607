// The agent's reaper on a real nats-server, master and the real Docker engine: a container left
// with the agent's labels but no task, and a sandbox no task owns, are gone within one reaper
// interval and counted (the master's state, `regatta status`, `regatta agents ls --json`); a
// container with another agent's labels, an unlabelled one and a running task's container are
// not touched; after an agent crash that lost its checkpoint, the restarted agent removes the
// task's container, its sidecar and its sandbox.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type Dockerode from 'dockerode'
import type { NatsConnection } from 'nats'
import { ClusterState, Subjects, decode, type AgentView } from '../../../shared/protocol/index.js'
import { parseResources } from '../../../shared/resources/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { Agent } from '../../../services/agent/src/agent.js'
import { DockerContainerizer, LABEL_AGENT, LABEL_FRAMEWORK, LABEL_TASK } from '../../../services/agent/src/containerizer/index.js'
import { shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { BUSYBOX_IMAGE, dockerAvailable, ensureBusyboxImage, listContainersByLabel, removeContainersByLabel, testDocker } from '../../helpers/docker.js'
import { regatta } from '../../helpers/cli.js'
import { waitUntil } from '../../helpers/wait.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`
/** Marks what this file creates outside any agent's labels, for its own cleanup only. */
const TEST_LABEL = 'test.regatta-reaper'
const REAP_INTERVAL_MS = 1_500
const docker = testDocker()
let cluster: TestCluster
let fw: RecordingFramework
const cleanups: Array<() => Promise<unknown> | unknown> = []

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  fw = await cluster.framework()
  // the first run bundles the CLI (esbuild)
  await regatta(['--help'], { timeoutMs: 60_000 })
})
t.teardown(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => undefined)
  await fw.scheduler.teardown().catch(() => undefined)
  await cluster.stop()
  const mine = await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=${RUN}`] } })
  await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)))
})

interface Started { agent: Agent; nc: NatsConnection }

async function startAgent(id: string, workDir: string): Promise<Started> {
  const nc = await cluster.connect(`agent-${id}`)
  const agent = new Agent({
    nc, workDir, id, pool: id, resources: parseResources('cpus:2;mem:2048;disk:1000'), attributes: {},
    containerizer: new DockerContainerizer({ logger: silentLogger() }), logger: silentLogger(), defaultImage: BUSYBOX_IMAGE,
    sandboxRetentionMs: 0, reapIntervalMs: REAP_INTERVAL_MS,
  })
  await agent.start()
  cleanups.push(() => agent.stop())
  cleanups.push(() => removeContainersByLabel(LABEL_AGENT, id))
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

/** A running busybox container with these labels (plus this file's own). */
async function leaveContainer(labels: Record<string, string>): Promise<Dockerode.Container> {
  const c = await docker.createContainer({
    Image: BUSYBOX_IMAGE, Cmd: ['sleep', '300'], Labels: { ...labels, [TEST_LABEL]: RUN },
    HostConfig: { NetworkMode: 'none', Init: true },
  })
  await c.start()
  return c
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false)
const containerExists = (c: Dockerode.Container): Promise<boolean> => c.inspect().then(() => true, () => false)

t.test('Checks that a labelled container with no task and a stale sandbox are gone within one reaper interval, counted, and nothing else is touched', async (t) => {
  const id = `reap-${RUN}`
  const workDir = await workDirFor(id)
  const { agent } = await startAgent(id, workDir)
  // a task of the agent runs meanwhile: its container and sandbox are its own
  const offer = await fw.nextOffer((o) => o.agentId === id)
  await fw.scheduler.launch(offer, [shellTask('reap-live', 'echo started; sleep 4; echo done')], { refuseSeconds: 0 })
  await fw.waitFor('the live task RUNNING', () => fw.statesOf('reap-live').includes('RUNNING'))
  // the agent's first pass (at start) is over: what is left now waits for the interval
  await waitUntil('the first pass', () => agent.runningTasks().length === 1 && (state().then((s) => s.agents.find((a) => a.id === id)?.orphans !== undefined)), 5_000)

  const orphan = await leaveContainer({ [LABEL_AGENT]: id, [LABEL_FRAMEWORK]: 'fw-gone', [LABEL_TASK]: 'ghost' })
  const otherAgent = await leaveContainer({ [LABEL_AGENT]: `${id}-other`, [LABEL_FRAMEWORK]: 'fw-gone', [LABEL_TASK]: 'ghost' })
  const unlabelled = await leaveContainer({})
  const stale = join(workDir, 'sandboxes', 'fw-gone', 'ghost')
  await mkdir(join(stale, 'workspace'), { recursive: true })
  await writeFile(join(stale, 'stdout'), 'output of a task nobody remembers\n')
  const left = Date.now()

  await waitUntil('the orphan container and sandbox gone', async () => !(await containerExists(orphan)) && !(await exists(stale)), 3 * REAP_INTERVAL_MS)
  const took = Date.now() - left
  t.ok(took <= REAP_INTERVAL_MS + 1_000, `gone ${took} ms after they were left (interval ${REAP_INTERVAL_MS} ms)`)
  // in the same pass, right after the sandbox in it
  await waitUntil('the framework directory gone', async () => !(await exists(join(workDir, 'sandboxes', 'fw-gone'))), 2_000)
    .then(() => t.pass('the framework directory it left empty went too'), () => t.fail('the framework directory it left empty is still there'))

  const view = await waitUntil('the counters in the master state', async () => {
    const s = await state()
    const a = s.agents.find((x) => x.id === id)
    return a?.orphans && a.orphans.reaped >= 2 ? { s, a } : undefined
  }, 5_000)
  t.same(view.a.orphans, {
    found: 2, reaped: 2, containers: { found: 1, reaped: 1 }, processes: { found: 0, reaped: 0 }, sandboxes: { found: 1, reaped: 1 },
  }, 'one container and one sandbox, found and reaped')
  t.same(view.s.orphans, { found: 2, reaped: 2 }, 'the cluster totals')
  t.ok(view.a.disk && view.a.disk.budgetMb === 1000, 'the disk budget defaults to the agent\'s disk resource')

  t.ok(await containerExists(otherAgent), 'another agent\'s container is untouched')
  t.ok(await containerExists(unlabelled), 'an unlabelled container is untouched')
  t.equal((await otherAgent.inspect()).State.Running, true, 'and still running')
  t.equal((await unlabelled.inspect()).State.Running, true)
  const live = await fw.terminal('reap-live', 15_000)
  t.equal(live.state, 'FINISHED', 'the running task was not touched and finished')

  const status = await regatta(['status', '--nats', cluster.nats.url])
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /^Orphans: {4}2 found, 2 reaped \(containers 1\/1, sandboxes 1\/1 found\/reaped\)$/m, status.stdout)
  t.match(status.stdout, /^Sandboxes: {2}[\d.]+ (KiB|MiB|GiB) used of 1000 MiB budget, \d+ kept after their task, 0 evicted$/m)
  const ls = await regatta(['agents', 'ls', '--json', '--nats', cluster.nats.url])
  t.equal(ls.code, 0, ls.stderr)
  const listed = (JSON.parse(ls.stdout) as AgentView[]).find((a) => a.id === id)
  t.same(listed?.orphans?.containers, { found: 1, reaped: 1 }, 'agents ls --json carries the counters')
})

t.test('Checks that after a crash that lost its checkpoint, the restarted agent removes the task\'s container, its sidecar and its sandbox', async (t) => {
  const id = `reap-crash-${RUN}`
  const workDir = await workDirFor(id)
  const first = await startAgent(id, workDir)
  const offer = await fw.nextOffer((o) => o.agentId === id)
  await fw.scheduler.launch(offer, [shellTask('reap-crashed', 'echo hi; sleep 300', {
    sidecars: [{ name: 'db', image: BUSYBOX_IMAGE, command: ['sleep', '300'] }],
  })], { refuseSeconds: 0 })
  await fw.waitFor('RUNNING', () => fw.statesOf('reap-crashed').includes('RUNNING'))
  t.equal((await listContainersByLabel(LABEL_AGENT, id)).length, 2, 'the task and its sidecar run')
  const sandbox = join(workDir, 'sandboxes', encodeURIComponent(fw.scheduler.frameworkId), 'reap-crashed')
  t.ok(await exists(sandbox))

  // the agent dies, and with it the checkpoint it had not written yet
  await first.agent.stop()
  await first.nc.close()
  await unlink(join(workDir, 'tasks.json'))

  const second = await startAgent(id, workDir)
  await waitUntil('the containers gone', async () => (await listContainersByLabel(LABEL_AGENT, id)).length === 0, 10_000)
  await waitUntil('the sandbox gone', async () => !(await exists(sandbox)), 5_000)
  t.pass('the task\'s container, its sidecar and its sandbox are gone')
  t.same(second.agent.runningTasks(), [], 'the new agent runs nothing')
  const a = await waitUntil('the counters', async () => (await state()).agents.find((x) => x.id === id && x.orphans && x.orphans.reaped >= 3), 5_000)
  t.same(a.orphans?.containers, { found: 2, reaped: 2 }, 'the main container and its sidecar')
  t.same(a.orphans?.sandboxes, { found: 1, reaped: 1 })
})

t.test('Checks that `regatta agent` refuses a bad reaper or disk flag with one line naming it, exit 2', async (t) => {
  for (const [args, flag] of [
    [['--reap-interval', 'soon'], '--reap-interval'],
    [['--reap-interval', '5ms'], '--reap-interval'],
    [['--disk-budget', 'lots'], '--disk-budget'],
    [['--sandbox-retention', 'a while'], '--sandbox-retention'],
  ] as const) {
    const run = await regatta(['agent', '--nats', cluster.nats.url, ...args])
    t.equal(run.code, 2, `${args.join(' ')}: exit 2`)
    const lines = run.stderr.trim().split('\n')
    t.equal(lines.length, 1, `one line: ${run.stderr.trim()}`)
    t.match(lines[0], new RegExp(`^regatta: ${flag}: `))
  }
})
