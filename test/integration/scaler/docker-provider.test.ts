// The `docker` provider on the local engine: the agent image is built here without a registry
// (this host's node and busybox-static), agents run in containers on the host network and reach
// NATS on loopback, run their tasks in sibling containers through the engine's socket, and are
// drained and removed once idle. Plus what the engine says: labels, state, cleanup.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { Scaler } from '../../../services/scaler/src/scaler.js'
import { PoolStore } from '../../../services/scaler/src/pool-store.js'
import { DockerProvider, LABEL_NAMESPACE } from '../../../services/scaler/src/providers/docker.js'
import { fastMasterConfig, shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage, listContainersByLabel, removeContainersByLabel, testDocker } from '../../helpers/docker.js'
import { clusterState } from '../../helpers/processes.js'
import { QueueFramework } from './queue-framework.js'

const POOL = 'boxes'
const NAMESPACE = `test-${process.pid}`
let cluster: TestCluster
let provider: DockerProvider
let scaler: Scaler
let baseDir: string

t.before(async () => {
  if (!(await dockerAvailable())) throw new Error('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  await ensureBusyboxImage()
  cluster = await startCluster()
  await cluster.startMaster('m1', fastMasterConfig)
  baseDir = await mkdtemp(join(tmpdir(), 'regatta-scaler-docker-'))
  provider = new DockerProvider({
    natsUrl: cluster.nats.url, baseDir, logger: silentLogger(), namespace: NAMESPACE, containerizer: 'docker', logLevel: 'warn',
    resources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]', stopGraceMs: 2_000,
  })
  await (await PoolStore.open(await cluster.connect('pool-set'))).put({ pool: POOL, min: 0, max: 2, idleMs: 1_000, provider: 'docker' })
  scaler = new Scaler({
    nc: await cluster.connect('scaler'), logger: silentLogger(), providers: [provider], intervalMs: 100, leaseTtlMs: 2_000,
    policy: { registerDeadlineMs: 30_000, agentLostMs: 5_000, cooldownMs: 500 },
  })
  await scaler.start()
})
t.teardown(async () => {
  await scaler?.stop()
  await removeContainersByLabel(LABEL_NAMESPACE, NAMESPACE).catch(() => undefined)
  await cluster?.stop()
  if (baseDir) await rm(baseDir, { recursive: true, force: true })
})

t.test('Checks that demand starts an agent container, its task runs in a container, and the idle agent container is drained and removed', async (t) => {
  const fw = await cluster.framework({ name: 'docker-provider' })
  const qf = new QueueFramework(fw, { pool: POOL, resources: { cpus: 0.5, mem: 64 }, task: (id) => shellTask(id, 'echo in a container; test -f /.dockerenv') })
  qf.start()
  t.teardown(() => qf.stop())
  qf.submit('box-1')
  await qf.until('the task to finish', () => qf.ended.has('box-1'), 60_000)
  const end = qf.ended.get('box-1')!
  t.equal(end.state, 'FINISHED', `the task ran in a container (${end.message ?? ''})`)

  const containers = await listContainersByLabel(LABEL_NAMESPACE, NAMESPACE)
  t.equal(containers.length, 1, 'one agent container')
  t.equal(containers[0]!.State, 'running')
  t.equal(containers[0]!.HostConfig.NetworkMode, 'host', 'on the host network (NATS on loopback)')
  const [instance] = await provider.list()
  t.match(instance, { pool: POOL, state: 'running' })
  const agent = (await clusterState(await cluster.connect('observer'))).agents.find((a) => a.id === end.agentId)
  t.equal(agent?.attributes.instance, instance!.id, 'the agent in the container carries its instance id')
  t.equal(agent?.containerizer, 'docker', 'and runs tasks in containers through the engine\'s socket')

  await qf.until('the agent container to be removed', () => scaler.history.some((a) => a.type === 'STOP'), 20_000)
  t.match(scaler.history.filter((a) => a.type !== 'START'), [{ type: 'DRAIN', reason: 'idle', agentId: end.agentId }, { type: 'STOP', reason: 'drained' }])
  const deadline = Date.now() + 20_000
  while ((await listContainersByLabel(LABEL_NAMESPACE, NAMESPACE)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
  t.same(await listContainersByLabel(LABEL_NAMESPACE, NAMESPACE), [], 'the container is gone')
  t.same(await provider.list(), [])
})

t.test('Checks that a container that ended by itself is listed as exited and cleaned up by stop', async (t) => {
  // an agent that cannot reach NATS exits at once
  const broken = new DockerProvider({
    natsUrl: 'nats://127.0.0.1:1', baseDir, logger: silentLogger(), namespace: `${NAMESPACE}-broken`, containerizer: 'process', stopGraceMs: 1_000,
  })
  t.teardown(() => removeContainersByLabel(LABEL_NAMESPACE, `${NAMESPACE}-broken`))
  const [i] = await broken.start('p', 1)
  const deadline = Date.now() + 20_000
  while ((await broken.list())[0]?.state !== 'exited' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
  t.match(await broken.list(), [{ id: i!.id, pool: 'p', state: 'exited' }])
  await broken.stop(i!.id)
  t.same(await broken.list(), [])
  t.same((await testDocker().listContainers({ all: true, filters: { label: [`${LABEL_NAMESPACE}=${NAMESPACE}-broken`] } })).length, 0)
})
