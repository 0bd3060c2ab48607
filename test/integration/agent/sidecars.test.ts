// Sidecar containers (a pipeline's services), on a real nats-server, master, agents and the
// Docker engine: they share the task's network namespace (reachable on 127.0.0.1, nothing else),
// their output goes into the task's stderr as `[service name]` lines, they go when the task ends
// (or is killed), a sidecar image that cannot be had fails the task, the process containerizer
// refuses them, and an agent restart never takes a sidecar for a task.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Subjects, decode, type TaskSpec } from '../../../shared/protocol/index.js'
import { Type } from '@sinclair/typebox'
import { RegattaError } from '../../../shared/errors/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import {
  DockerContainerizer, LABEL_AGENT, LABEL_FRAMEWORK, LABEL_SIDECAR, LABEL_TASK, ProcessContainerizer, type LaunchSpec,
} from '../../../services/agent/src/containerizer/index.js'
import { startCluster, shellTask, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import {
  BUSYBOX_IMAGE, dockerAvailable, ensureBusyboxImage, listContainersByLabel, removeContainersByLabel, startBrokenRegistry, testDocker,
} from '../../helpers/docker.js'
import { waitUntil } from '../../helpers/wait.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`
let cluster: TestCluster
let fw: RecordingFramework

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  await cluster.startAgent({ containerizer: new DockerContainerizer({ logger: silentLogger() }), id: `sc-docker-${RUN}`, pool: 'docker' })
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: `sc-process-${RUN}`, pool: 'process' })
  fw = await cluster.framework()
})
t.teardown(async () => {
  await fw.scheduler.teardown().catch(() => undefined)
  await cluster.stop()
  await removeContainersByLabel(LABEL_AGENT, `sc-docker-${RUN}`)
})

async function launchOn(pool: string, task: TaskSpec): Promise<void> {
  const offer = await fw.nextOffer((o) => o.pool === pool)
  await fw.scheduler.launch(offer, [task])
}

// A web server on 127.0.0.1:9000, and a second service that copies its page and serves it on
// 9001: the second reaches the first, and the task reaches the second.
const WEB = {
  name: 'web',
  image: BUSYBOX_IMAGE,
  command: ['sh', '-c', 'mkdir -p /tmp/www && echo "$GREETING" > /tmp/www/index.html && echo web-ready && exec httpd -f -p 127.0.0.1:9000 -h /tmp/www'],
  env: { GREETING: 'hi-from-web' },
}
const MIRROR = {
  name: 'mirror',
  image: BUSYBOX_IMAGE,
  command: ['sh', '-c', 'mkdir -p /tmp/m; until wget -qO /tmp/m/index.html http://127.0.0.1:9000/; do sleep 0.05; done; exec httpd -f -p 127.0.0.1:9001 -h /tmp/m'],
}
const FETCH_MIRROR = 'i=0; until page=$(wget -qO- http://127.0.0.1:9001/); do i=$((i+1)); [ $i -gt 100 ] && exit 7; sleep 0.05; done; [ "$page" = hi-from-web ] || exit 8'

t.test('Checks that the main container reaches its sidecars over 127.0.0.1 with network none, and their output comes into stderr as [service name] lines', async (t) => {
  const nc = await cluster.connect('output')
  const output: Array<{ stream: string; data: string }> = []
  const OutputMsg = Type.Object({ stream: Type.String(), data: Type.String() }, { additionalProperties: true })
  nc.subscribe(Subjects.taskOutputAnyAgent(fw.scheduler.frameworkId, 'sc-reach'), {
    callback: (_err, m) => output.push(decode(OutputMsg, m.data, 'output')),
  })
  await nc.flush()
  // exit 9: an interface other than loopback (the network is `none` for every container)
  const script = `${FETCH_MIRROR}; [ -z "$(ip -o link | grep -v ': lo:')" ] || exit 9; echo main-done`
  await launchOn('docker', shellTask('sc-reach', script, { sidecars: [WEB, MIRROR], streamOutput: true }))
  const end = await fw.terminal('sc-reach')
  t.equal(end.state, 'FINISHED', `exit ${end.exitCode}: ${end.message ?? ''}`)
  await waitUntil('the output', () => output.some((o) => o.data.includes('main-done')))
  const stderr = output.filter((o) => o.stream === 'stderr').map((o) => o.data).join('')
  t.match(stderr, /^\[service web\] web-ready$/m, 'the sidecar\'s output is in stderr, prefixed')
  t.notMatch(output.filter((o) => o.stream === 'stdout').map((o) => o.data).join(''), /web-ready/, 'and not in stdout')
})

t.test('Checks that sidecars are removed after the task: no container with the task label is left', async (t) => {
  await launchOn('docker', shellTask('sc-gone', `${FETCH_MIRROR}; sleep 1`, { sidecars: [WEB, MIRROR] }))
  await fw.waitFor('sc-gone to run', () => fw.statesOf('sc-gone').includes('RUNNING'))
  const during = await listContainersByLabel(LABEL_TASK, 'sc-gone')
  t.equal(during.length, 3, 'the main container and two sidecars while it runs')
  t.same(during.map((c) => c.Labels[LABEL_SIDECAR]).filter(Boolean).sort(), ['mirror', 'web'], 'sidecars carry their name in a label')
  const end = await fw.terminal('sc-gone')
  t.equal(end.state, 'FINISHED', end.message ?? '')
  await waitUntil('no container of sc-gone', async () => (await listContainersByLabel(LABEL_TASK, 'sc-gone')).length === 0)
  t.pass('none left')
})

t.test('Checks that sidecars are removed when the task is killed', async (t) => {
  await launchOn('docker', shellTask('sc-killed', 'sleep 60', { sidecars: [WEB] }))
  await fw.waitFor('sc-killed to run', () => fw.statesOf('sc-killed').includes('RUNNING'))
  t.equal((await listContainersByLabel(LABEL_TASK, 'sc-killed')).length, 2)
  await fw.scheduler.kill('sc-killed', { gracePeriodMs: 0 })
  const end = await fw.terminal('sc-killed')
  t.equal(end.state, 'KILLED')
  await waitUntil('no container of sc-killed', async () => (await listContainersByLabel(LABEL_TASK, 'sc-killed')).length === 0)
  t.pass('none left')
})

t.test('Checks that a sidecar image that cannot be pulled fails the task with IMAGE_PULL_FAILED naming the service, leaving no container', async (t) => {
  // a registry on loopback that fails half-way: nothing leaves the host
  const registry = await startBrokenRegistry()
  t.teardown(() => registry.close())
  const image = `${registry.host}/regatta-missing-service:1`
  await launchOn('docker', shellTask('sc-bad-image', 'true', { sidecars: [WEB, { name: 'db', image }] }))
  const end = await fw.terminal('sc-bad-image')
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'IMAGE_PULL_FAILED')
  t.match(end.message, `service "db": image ${image}`)
  t.same(await listContainersByLabel(LABEL_TASK, 'sc-bad-image'), [], 'nothing was left behind')
})

t.test('Checks that the process containerizer refuses a task with sidecars at launch (CONTAINER_ERROR)', async (t) => {
  await launchOn('process', shellTask('sc-process', 'true', { sidecars: [WEB] }))
  const end = await fw.terminal('sc-process')
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'CONTAINER_LAUNCH_FAILED')
  t.equal(end.message, 'sidecars need the Docker containerizer')
  // the containerizer itself refuses too, whoever calls it
  const sandbox = await mkdtemp(join(tmpdir(), 'regatta-sc-'))
  t.teardown(() => rm(sandbox, { recursive: true, force: true }))
  const spec: LaunchSpec = {
    taskId: 'sc-direct', frameworkId: 'fw', agentId: 'a', command: ['true'], env: {}, sandbox, network: 'none', mounts: [], labels: {},
    sidecars: [{ name: 'web', image: BUSYBOX_IMAGE, env: {} }],
  }
  const err = await new ProcessContainerizer({ limits: false }).launch(spec, () => undefined).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof RegattaError && err.code === 'CONTAINER_ERROR', 'CONTAINER_ERROR')
  t.match((err as Error).message, 'sidecars need the Docker containerizer')
})

t.test('Checks that two sidecars of one name make the task an ERROR (TASK_INVALID) before anything starts', async (t) => {
  await launchOn('docker', shellTask('sc-twice', 'true', { sidecars: [WEB, { ...MIRROR, name: 'web' }] }))
  const end = await fw.terminal('sc-twice')
  t.equal(end.state, 'ERROR')
  t.equal(end.reason, 'TASK_INVALID')
  t.match(end.message, 'two sidecars are named "web"')
  t.same(await listContainersByLabel(LABEL_TASK, 'sc-twice'), [])
})

t.test('Checks that recover() after an agent restart reports main containers only (one never started says so): sidecars go with their task, or at once when it is gone', async (t) => {
  const agentId = `sc-recover-${RUN}`
  t.teardown(() => removeContainersByLabel(LABEL_AGENT, agentId).then(() => undefined))
  const sandbox = await mkdtemp(join(tmpdir(), 'regatta-sc-'))
  t.teardown(() => rm(sandbox, { recursive: true, force: true }))
  const spec = (taskId: string, command: string): LaunchSpec => ({
    taskId, frameworkId: 'fw-recover', agentId, image: BUSYBOX_IMAGE, command: ['sh', '-c', command], env: {}, sandbox, network: 'none', mounts: [], labels: {},
    sidecars: [{ name: 'web', image: BUSYBOX_IMAGE, command: WEB.command, env: WEB.env }],
  })
  const before = new DockerContainerizer({ logger: silentLogger() })
  await before.launch(spec('rec-running', 'sleep 60'), () => undefined)
  const gone = await before.launch(spec('rec-gone', 'sleep 60'), () => undefined)
  // the second task's main container disappears while the agent is away
  await testDocker().getContainer(gone.id).remove({ force: true })

  // and a third task's container was created, but the agent died before starting it
  const created = await testDocker().createContainer({
    Image: BUSYBOX_IMAGE, Cmd: ['true'], Labels: { [LABEL_AGENT]: agentId, [LABEL_TASK]: 'rec-created', [LABEL_FRAMEWORK]: 'fw-recover' },
  })

  const after = new DockerContainerizer({ logger: silentLogger() })
  const recovered = await after.recover(agentId, () => () => undefined)
  t.same(recovered.map((r) => r.taskId).sort(), ['rec-created', 'rec-running'], 'two tasks; no sidecar reported as a task')
  const neverStarted = recovered.find((r) => r.taskId === 'rec-created')!
  t.equal(neverStarted.neverStarted, true)
  t.match(await neverStarted.container.exited, { exitCode: null, neverStarted: true }, 'a container never started says so (the agent reports the task LOST)')
  await after.remove(created.id)
  recovered.splice(recovered.indexOf(neverStarted), 1)
  // (the first containerizer, still in this process, removes sidecars too: one of two removals
  // may answer 409 "in progress" before the engine is done, hence the waits)
  await waitUntil('the sidecar of rec-gone to go', async () => (await listContainersByLabel(LABEL_TASK, 'rec-gone')).length === 0)
  t.pass('the sidecar of the task that is gone was removed')
  t.equal((await listContainersByLabel(LABEL_TASK, 'rec-running')).length, 2, 'the running task keeps its sidecar')
  await recovered[0]!.container.kill(0)
  await after.remove(recovered[0]!.container.id)
  await waitUntil('the sidecar of rec-running to go', async () => (await listContainersByLabel(LABEL_TASK, 'rec-running')).length === 0)
  t.pass('its sidecar went with it')
})
