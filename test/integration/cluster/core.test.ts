// The cluster core end to end on a real nats-server and the real Docker engine: registration,
// offers, launch, status updates with acknowledgements, kill, failure, bad messages, exec.
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { ClusterState, Subjects } from '../../../shared/protocol/index.js'
import { DockerContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { startCluster, shellTask, type TestCluster } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../../helpers/docker.js'

const run = promisify(execFile)

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

let cluster: TestCluster
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  await cluster.startAgent({ containerizer: new DockerContainerizer({ logger: silentLogger() }), id: 'agent-1' })
})
t.teardown(() => cluster.stop())

async function state(): Promise<ClusterState> {
  const nc = await cluster.connect('state')
  const m = await nc.request(Subjects.masterState, new Uint8Array(), { timeout: 2000 })
  return m.json<ClusterState>()
}

t.test('an agent registers with its resources', async (t) => {
  const s = await state()
  t.equal(s.agents.length, 1)
  t.equal(s.agents[0]!.id, 'agent-1')
  t.equal(s.agents[0]!.total.cpus, 4)
  t.equal(s.agents[0]!.total.mem, 4096)
  t.equal(s.leader?.id, 'm1')
})

t.test('a framework launches a container task and sees RUNNING then FINISHED with its exit code', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  const offer = await fw.nextOffer()
  t.equal(offer.agentId, 'agent-1')
  t.ok(offer.resources.some((r) => r.name === 'cpus' && (r.scalar ?? 0) > 0), 'the offer holds cpus')
  await fw.scheduler.launch(offer, [shellTask('ok-1', 'echo hello; exit 0')])
  const end = await fw.terminal('ok-1')
  t.equal(end.state, 'FINISHED')
  t.equal(end.exitCode, 0)
  t.same(fw.statesOf('ok-1'), ['STARTING', 'RUNNING', 'FINISHED'])
  t.ok(fw.updates.filter((u) => u.taskId === 'ok-1').every((u) => typeof u.uuid === 'string'), 'each update carries a uuid')
  // acknowledged: the master forgets the task and frees its resources
  const deadline = Date.now() + 5000
  let s = await state()
  while (s.tasks.some((x) => x.taskId === 'ok-1' && x.state !== 'FINISHED') && Date.now() < deadline) s = await state()
  t.equal(s.agents[0]!.used.cpus ?? 0, 0, 'resources are free again')
})

t.test('a failing command ends FAILED with its exit code', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  await fw.launch(shellTask('fail-1', 'echo oops >&2; exit 7'))
  const end = await fw.terminal('fail-1')
  t.equal(end.state, 'FAILED')
  t.equal(end.exitCode, 7)
  t.match(end.message, /code 7/)
})

t.test('a kill ends a running task KILLED', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  await fw.launch(shellTask('sleep-1', 'sleep 60', { killGracePeriodMs: 500 }))
  await fw.waitFor('RUNNING', () => fw.statesOf('sleep-1').includes('RUNNING'))
  const started = Date.now()
  await fw.scheduler.kill('sleep-1')
  const end = await fw.terminal('sleep-1')
  t.equal(end.state, 'KILLED')
  t.ok(Date.now() - started < 10_000, 'killed well before the command would have ended')
})

t.test('an unpullable image ends the task FAILED with the reason', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  await fw.launch(shellTask('img-1', 'true', { container: { image: '127.0.0.1:1/regatta-missing:latest', command: ['true'] } }))
  const end = await fw.terminal('img-1')
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'IMAGE_PULL_FAILED')
  t.match(end.message, /regatta-missing/)
})

t.test('unacknowledged updates are delivered again', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  fw.autoAcknowledge = false
  await fw.launch(shellTask('redeliver-1', 'exit 0'))
  const first = await fw.terminal('redeliver-1')
  // a second framework instance with the same id (a restarted framework) gets the unacked updates again
  await fw.scheduler.stop()
  const again = await cluster.framework({ id: fw.scheduler.frameworkId })
  t.teardown(() => again.scheduler.teardown().catch(() => undefined))
  const redelivered = await again.waitFor('the redelivered FINISHED', () => again.updates.find((u) => u.uuid === first.uuid), 30_000)
  t.equal(redelivered.state, 'FINISHED')
})

t.test('reconciliation answers for known and unknown tasks', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  await fw.launch(shellTask('recon-1', 'sleep 30'))
  await fw.waitFor('RUNNING', () => fw.statesOf('recon-1').includes('RUNNING'))
  const before = fw.updates.length
  await fw.scheduler.reconcile([{ taskId: 'recon-1' }, { taskId: 'never-launched' }])
  await fw.waitFor('two answers', () => fw.updates.length >= before + 2)
  const answers = fw.updates.slice(before)
  t.equal(answers.find((u) => u.taskId === 'recon-1')?.state, 'RUNNING')
  t.equal(answers.find((u) => u.taskId === 'never-launched')?.state, 'LOST')
  t.ok(answers.every((u) => u.reason === 'RECONCILIATION' && u.uuid === undefined), 'reconciliation answers need no ack')
  const implicitFrom = fw.updates.length
  await fw.scheduler.reconcile()
  await fw.waitFor('the implicit answer', () => fw.updates.slice(implicitFrom).some((u) => u.taskId === 'recon-1'))
  t.pass('implicit reconciliation names the running task')
})

t.test('a malformed message gets an error and the master keeps serving', async (t) => {
  const nc = await cluster.connect('bad')
  for (const [subject, body] of [
    [Subjects.schedulerCall, '{not json'],
    [Subjects.schedulerCall, JSON.stringify({ type: 'ACCEPT', frameworkId: 'x' })],
    [Subjects.agentRegister, JSON.stringify({ agent: { id: 'bad id!' } })],
    [Subjects.schedulerCall, JSON.stringify({ type: 'NOPE' })],
  ] as const) {
    const reply = await nc.request(subject, new TextEncoder().encode(body), { timeout: 2000 })
    const parsed = reply.json<{ error?: { code: string; message: string } }>()
    t.equal(parsed.error?.code, 'INVALID_MESSAGE', `${subject}: ${body.slice(0, 30)}`)
    t.ok((parsed.error?.message.length ?? 0) > 10, 'the error says what was wrong')
  }
  const s = await state()
  t.equal(s.leader?.id, 'm1', 'still leading and answering')
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  await fw.launch(shellTask('after-bad', 'exit 0'))
  t.equal((await fw.terminal('after-bad')).state, 'FINISHED', 'and still launching')
})

t.test('regatta exec -- sh -c "exit 3" exits 3 and streams output', async (t) => {
  const bin = new URL('../../../services/cli/bin/regatta.mjs', import.meta.url).pathname
  const err = await run('node', [bin, 'exec', '--nats', cluster.nats.url, '--', 'sh', '-c', 'echo out-line; echo err-line >&2; exit 3'])
    .then(() => undefined, (e: { code: number; stdout: string; stderr: string }) => e)
  t.ok(err, 'exec fails')
  t.equal(err?.code, 3)
  t.match(err?.stdout, /out-line/)
  t.match(err?.stderr, /err-line/)
  const ok = await run('node', [bin, 'exec', '--nats', cluster.nats.url, '--', 'echo', 'fine'])
  t.match(ok.stdout, /fine/)
})
