// NATS users with least-privilege permissions (shared/nats/auth.ts) on a real nats-server:
// each role does its job, and every subject beyond a role's rights is refused by the server.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { connect } from 'nats'
import { connectNats, request, devUsers, type NatsUser } from '../../../shared/nats/index.js'
import { Buckets, ClusterState, OperatorReply, Subjects, Streams, Consumers, encode } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { parseResources } from '../../../shared/resources/index.js'
import { Master } from '../../../services/master/src/master.js'
import { Agent } from '../../../services/agent/src/agent.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/process.js'
import { RecordingFramework, fastMasterConfig, shellTask } from '../../helpers/cluster.js'
import { LogArchive, taskOutput, taskOutputText } from '../../../services/ci/src/logs.js'
import { waitUntil } from '../../helpers/wait.js'
import { startSecureNats, until, violations, type SecureNats } from './secure-nats.js'
import { regatta } from '../../helpers/cli.js'

const users = devUsers({ agentIds: ['a1', 'a2'], frameworkIds: ['fw1', 'fw2'], ciFrameworkId: 'regatta-ci' })
const as = (name: string): NatsUser => users.find((u) => u.user === name)!
let nats: SecureNats
const stops: Array<() => Promise<void>> = []
let workDir: string

t.before(async () => {
  nats = await startSecureNats(users)
  workDir = await mkdtemp(join(tmpdir(), 'regatta-auth-agent-'))
  const master = new Master({ nc: await nats.connectAs(as('master')), id: 'm1', logger: silentLogger(), config: fastMasterConfig })
  await master.start()
  stops.push(() => master.stop())
  await until('the master to lead', () => master.isLeader, 10_000)
})
t.teardown(async () => {
  for (const s of stops.reverse()) await s().catch(() => undefined)
  await nats.stop()
  await rm(workDir, { recursive: true, force: true })
})

t.test('Checks that a master, an agent and a framework, each connected as its own NATS user, run a task to FINISHED with no permissions violation', async (t) => {
  const agentNc = await nats.connectAs(as('agent-a1'))
  const fwNc = await nats.connectAs(as('framework-fw1'))
  const agentRefused = violations(agentNc)
  const fwRefused = violations(fwNc)
  const agent = new Agent({
    nc: agentNc, id: 'a1', workDir, pool: 'default', resources: parseResources('cpus:2;mem:1024;disk:1000;ports:[31000-31010]'),
    attributes: {}, containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), logger: silentLogger(),
    defaultImage: 'regatta/busybox:latest', sandboxRetentionMs: 0,
  })
  await agent.start()
  stops.push(() => agent.stop())
  const fw = new RecordingFramework(fwNc, { id: 'fw1', name: 'auth-test', roles: ['*'] })
  await fw.start()
  stops.push(() => fw.scheduler.stop())
  // the framework reads its task's output (whatever agent runs it) under its own permissions
  const output: string[] = []
  fwNc.subscribe(Subjects.taskOutputAnyAgent('fw1', 't1'), { callback: (_e, m) => output.push(m.subject) })
  await fwNc.flush()
  await fw.launch(shellTask('t1', 'echo hello', { streamOutput: true }))
  const end = await fw.terminal('t1')
  t.equal(end.state, 'FINISHED', 'the task finished')
  t.equal(end.agentId, 'a1', 'its update came from agent a1')
  await until('the output to arrive', () => output.length > 0)
  t.same([...new Set(output)], [Subjects.taskOutput('fw1', 'a1', 't1')], 'the output came on a1\'s own output subject')
  // the agent's object stores (caches, artifacts) work under its permissions
  const os = await agentNc.jetstream().views.os(Buckets.cache)
  await os.putBlob({ name: 'k1' }, new TextEncoder().encode('cached'))
  t.equal(new TextDecoder().decode((await os.getBlob('k1'))!), 'cached', 'the agent stores and reads a cache object')
  await agentNc.flush()
  await fwNc.flush()
  t.same(agentRefused, [], 'the agent was refused nothing')
  t.same(fwRefused, [], 'the framework was refused nothing')
})

t.test('Checks that an agent is refused another agent\'s commands, the operator subject, framework events and other replies', async (t) => {
  const nc = await nats.connectAs(as('agent-a1'), 'rogue-agent')
  const refused = violations(nc)
  nc.subscribe(Subjects.agentCommand('a2'))
  await until('the subscription to a2\'s commands to be refused', () => refused.find((v) => v.subject === Subjects.agentCommand('a2')))
  t.match(refused.find((v) => v.subject === Subjects.agentCommand('a2')), { operation: 'subscription' })

  nc.subscribe('_INBOX.>')
  await until('the subscription to every inbox to be refused', () => refused.find((v) => v.subject === '_INBOX.>'))

  // impersonating the master towards another agent, or towards a framework
  nc.publish(Subjects.agentCommand('a2'), new TextEncoder().encode('{}'))
  nc.publish(Subjects.frameworkEvents('fw1'), new TextEncoder().encode('{}'))
  await until('both publishes to be refused', () =>
    refused.some((v) => v.operation === 'publish' && v.subject === Subjects.agentCommand('a2')) &&
    refused.some((v) => v.operation === 'publish' && v.subject === Subjects.frameworkEvents('fw1')))

  const call = request(nc, Subjects.masterOperator, { type: 'DRAIN', agentId: 'a2' }, OperatorReply, 1_000)
  await t.rejects(call, { code: 'TIMEOUT' }, 'the operator call never reached the master')
  t.ok(refused.some((v) => v.operation === 'publish' && v.subject === Subjects.masterOperator), 'the server refused the operator subject')
  t.notOk(nc.isClosed(), 'a refusal does not close the connection')
})

t.test('Checks that an agent may publish status updates and output on its own subjects only: another agent\'s and the master\'s are refused by the server', async (t) => {
  const nc = await nats.connectAs(as('agent-a1'), 'forging-agent')
  const refused = violations(nc)
  const js = nc.jetstream()
  const body = (agentId: string, source: 'agent' | 'master' = 'agent'): Uint8Array => encode({ updates: [{
    taskId: 'forged-1', frameworkId: 'fw1', agentId, state: 'FAILED', uuid: randomUUID(), source, timestamp: Date.now(),
  }] })
  // its own subjects: stored by JetStream, no violation
  const own = await js.publish(Subjects.statusUpdate('fw1', 'a1'), body('a1'))
  t.equal(own.stream, Streams.updates, 'its own update subject is stored in the updates stream')
  nc.publish(Subjects.taskOutput('fw1', 'a1', 'own-task'), encode({ taskId: 'own-task', stream: 'stdout', seq: 0, data: 'mine\n' }))
  await nc.flush()
  // another agent's update and output, the master's update subject, a subject of more tokens
  const forged = [
    Subjects.statusUpdate('fw1', 'a2'), Subjects.masterStatusUpdate('fw1'), `${Subjects.statusUpdate('fw1', 'a1')}.x`,
    Subjects.taskOutput('fw1', 'a2', 't1'), Subjects.taskOutput('fw2', 'a2', 't9'),
  ]
  for (const s of forged) nc.publish(s, s.startsWith('regatta.update') ? body('a2') : encode({ taskId: 't1', stream: 'stdout', seq: 0, data: 'forged\n' }))
  await until('every forged publish to be refused', () => forged.every((s) => refused.some((v) => v.operation === 'publish' && v.subject === s)))
  t.same(forged.filter((s) => !refused.some((v) => v.operation === 'publish' && v.subject === s)), [], 'each forged subject refused by the server')
  t.notOk(refused.some((v) => v.subject === Subjects.statusUpdate('fw1', 'a1') || v.subject === Subjects.taskOutput('fw1', 'a1', 'own-task')), 'its own subjects are allowed')
  // a JetStream publish there gets no ack: nothing was stored
  await t.rejects(js.publish(Subjects.statusUpdate('fw1', 'a2'), body('a2'), { timeout: 1_000 }), 'a JetStream publish on a2\'s subject is never acknowledged')
  // what the stream holds: the agent's own update and output only
  const jsm = await (await nats.connectAs(as('operator'), 'auditor')).jetstreamManager()
  await t.rejects(jsm.streams.getMessage(Streams.updates, { last_by_subj: Subjects.statusUpdate('fw1', 'a2') }), 'no update stored on a2\'s subject')
  await t.rejects(jsm.streams.getMessage(Streams.output, { last_by_subj: Subjects.taskOutput('fw1', 'a2', 't1') }), 'no output stored on a2\'s subject')
  const mine = await jsm.streams.getMessage(Streams.output, { last_by_subj: Subjects.taskOutputAnyAgent('fw1', 'own-task') })
  t.equal(mine.subject, Subjects.taskOutput('fw1', 'a1', 'own-task'), 'its own output is stored and found by the any-agent subject')
  t.notOk(nc.isClosed(), 'refusals do not close the connection')
})

t.test('Checks that the CI service, as its own NATS user, reads, follows and archives a task\'s output from the agent\'s subject without knowing the agent', async (t) => {
  const agent = await nats.connectAs(as('agent-a2'), 'ci-output-agent')
  const ci = await nats.connectAs(as('ci'))
  const refused = violations(ci)
  const chunk = (seq: number, data: string): Uint8Array => encode({ taskId: 'ci-task', stream: 'stdout', seq, data })
  agent.publish(Subjects.taskOutput('regatta-ci', 'a2', 'ci-task'), chunk(0, 'one\n'))
  await agent.flush()
  await waitUntil('the output to be stored', async () => (await taskOutputText(ci, 'regatta-ci', 'ci-task')) === 'one\n', 5_000)
  // following: what is there and what comes next
  const ac = new AbortController()
  const seen: string[] = []
  const following = (async () => {
    for await (const c of taskOutput(ci, 'regatta-ci', 'ci-task', { follow: true, signal: ac.signal })) {
      seen.push(c.data)
      if (seen.length === 2) ac.abort()
    }
  })()
  agent.publish(Subjects.taskOutput('regatta-ci', 'a2', 'ci-task'), chunk(1, 'two\n'))
  await following
  t.same(seen, ['one\n', 'two\n'], 'followed live')
  const archive = new LogArchive(ci)
  t.equal(await archive.archive('regatta-ci', 'ci-task'), true, 'archived into the log store')
  t.equal(await archive.read('ci-task'), 'one\ntwo\n', 'read back from the archive')
  await ci.flush()
  t.same(refused, [], 'the CI user was refused nothing')
})

t.test('Checks that a framework is refused another framework\'s events, updates and output, and the operator subject', async (t) => {
  const nc = await nats.connectAs(as('framework-fw2'), 'rogue-framework')
  const refused = violations(nc)
  nc.subscribe(Subjects.frameworkEvents('fw1'))
  nc.subscribe(Subjects.taskOutputAnyAgent('fw1', 't1'))
  nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${Streams.updates}.${Consumers.frameworkUpdates('fw1')}`, new TextEncoder().encode('{"batch":1}'))
  nc.publish(Subjects.masterOperator, new TextEncoder().encode('{"type":"DRAIN","agentId":"a1"}'))
  nc.publish(Subjects.statusUpdate('fw1', 'a1'), new TextEncoder().encode('{}'))
  const want = [
    ['subscription', Subjects.frameworkEvents('fw1')],
    ['subscription', Subjects.taskOutputAnyAgent('fw1', 't1')],
    ['publish', `$JS.API.CONSUMER.MSG.NEXT.${Streams.updates}.${Consumers.frameworkUpdates('fw1')}`],
    ['publish', Subjects.masterOperator],
    ['publish', Subjects.statusUpdate('fw1', 'a1')],
  ] as const
  await until('every refusal', () => want.every(([op, s]) => refused.some((v) => v.operation === op && v.subject === s)))
  t.equal(want.filter(([op, s]) => refused.some((v) => v.operation === op && v.subject === s)).length, want.length, 'each one refused by the server')
  // its own events are allowed
  nc.subscribe(Subjects.frameworkEvents('fw2'))
  await nc.flush()
  t.notOk(refused.some((v) => v.subject === Subjects.frameworkEvents('fw2')), 'its own events subject is allowed')
})

t.test('Checks that the operator (CLI) and the scaler may call the operator subject, and the scaler no framework subject', async (t) => {
  const op = await nats.connectAs(as('operator'))
  const state = await request(op, Subjects.masterState, {}, ClusterState, 3_000)
  t.ok(state.agents.some((a) => a.id === 'a1'), 'the operator reads the state')
  await t.rejects(request(op, Subjects.masterOperator, { type: 'DRAIN', agentId: 'nope' }, OperatorReply, 3_000), { code: 'UNKNOWN_AGENT' }, 'the operator call reached the master (which answered)')
  const scaler = await nats.connectAs(as('scaler'))
  const refused = violations(scaler)
  await t.rejects(request(scaler, Subjects.masterOperator, { type: 'UNDRAIN', agentId: 'nope' }, OperatorReply, 3_000), { code: 'UNKNOWN_AGENT' }, 'the scaler reaches the operator subject')
  scaler.subscribe(Subjects.frameworkEvents('fw1'))
  await until('the scaler to be refused framework events', () => refused.find((v) => v.subject === Subjects.frameworkEvents('fw1')))
  t.pass('refused')
})

t.test('Checks that a wrong password, an unknown user and no credentials are refused at connect', async (t) => {
  await t.rejects(connectNats(nats.url, 'x', { user: 'agent-a1', pass: 'wrong-password', maxReconnectAttempts: 0 }), { code: 'NATS_AUTH', message: /agent-a1/ })
  await t.rejects(connectNats(nats.url, 'x', { user: 'nobody', pass: 'whatever-pw', maxReconnectAttempts: 0 }), RegattaError)
  await t.rejects(connect({ servers: nats.url, maxReconnectAttempts: 0 }), /Authorization Violation/i)
  // credentials in the URL work too (as `regatta dev` passes them)
  const u = as('operator')
  const nc = await connectNats(nats.url.replace('nats://', `nats://${u.user}:${u.password}@`), 'url-creds')
  const state = await request(nc, Subjects.masterState, {}, ClusterState, 3_000)
  t.ok(Array.isArray(state.agents), 'connected with the URL\'s credentials')
  await nc.close()
})

t.test('Checks that an agent run with an id its NATS user was not made for stops at start, saying what to set, and never registers', async (t) => {
  // in-process: start() rejects before registering
  const nc = await nats.connectAs(as('agent-a1'), 'agent-wrong-id')
  const dir = await mkdtemp(join(tmpdir(), 'regatta-auth-wrong-id-'))
  t.teardown(async () => {
    await nc.close().catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  })
  const agent = new Agent({
    nc, id: 'a2', workDir: dir, pool: 'default', resources: parseResources('cpus:1;mem:256;disk:100'),
    attributes: {}, containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), logger: silentLogger(),
    defaultImage: 'regatta/busybox:latest',
  })
  await t.rejects(agent.start(), { code: 'INVALID_CONFIG', message: /refuses agent a2 its command subject .*--id \/ REGATTA_AGENT_ID/ })
  const op = await nats.connectAs(as('operator'))
  t.teardown(() => op.close())
  const state = await request(op, Subjects.masterState, {}, ClusterState, 3_000)
  t.notOk(state.agents.some((a) => a.id === 'a2'), 'no agent a2 registered')

  // as users run it: `regatta agent` exits 2 with the message on stderr, and does not hang
  const u = as('agent-a1')
  const run = await regatta(['agent', '--nats', nats.url, '--containerizer', 'process', '--work-dir', join(dir, 'cli'), '--resources', 'cpus:1;mem:256;disk:100'], {
    env: { REGATTA_NATS_USER: u.user, REGATTA_NATS_PASSWORD: u.password, REGATTA_AGENT_ID: 'a2' },
    timeoutMs: 30_000,
  })
  t.equal(run.code, 2, `regatta agent exited 2 (${run.code ?? run.signal}, after ${run.ms} ms)`)
  t.match(run.stderr, /^regatta: the NATS server refuses agent a2 its command subject regatta\.agent\.a2\.cmd: .*REGATTA_AGENT_ID/, 'and said why, and what to set')
})
