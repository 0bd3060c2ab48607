// deploy/nats/regatta-auth.conf is what shared/nats/auth.ts generates (so it carries today's
// permissions), and a real nats-server run with its authorization block keeps agent host1 to
// its own status update and output subjects.
import t from 'tap'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { authorizationConfig, connectNats, ensureStreams, NATS_ROLES, type NatsRole, type NatsUser } from '../../../shared/nats/index.js'
import { spawnNatsServer } from '../../../shared/nats/server.js'
import { Streams, Subjects, encode } from '../../../shared/protocol/index.js'
import { freePort } from '../../helpers/nats-server.js'
import { until, violations } from './secure-nats.js'

const confFile = new URL('../../../deploy/nats/regatta-auth.conf', import.meta.url)

/** The users the file declares: each entry's `# <role> [id]` comment, then its user and password. */
function declaredUsers(text: string): NatsUser[] {
  const users: NatsUser[] = []
  const re = /^ {4}# (\S+)(?: (\S+))?\n {4}\{ user: "([^"]+)", password: "([^"]+)"/gm
  for (const m of text.matchAll(re)) {
    const role = m[1] as NatsRole
    if (!NATS_ROLES.includes(role)) throw new Error(`unknown role ${role} in ${confFile.pathname}`)
    users.push({ role, user: m[3]!, password: m[4]!, ...(m[2] ? { id: m[2] } : {}) })
  }
  return users
}

t.test('Checks that deploy/nats/regatta-auth.conf is the generated authorization block, and its agent host1 may publish updates and output on its own subjects only', async (t) => {
  const text = await readFile(confFile, 'utf8')
  const users = declaredUsers(text)
  t.ok(users.some((u) => u.role === 'agent' && u.id === 'host1'), 'it declares agent host1')
  // the block runs to a tls block if the file has one, else to its end
  const tlsAt = text.indexOf('tls {')
  const block = text.slice(text.indexOf('authorization {'), tlsAt < 0 ? undefined : tlsAt).trimEnd() + '\n'
  t.equal(block, authorizationConfig(users), 'its authorization block is what authorizationConfig makes of its users')

  // a real server with that block (without the tls block: no certificates here)
  const dir = await mkdtemp(join(tmpdir(), 'regatta-deploy-auth-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'nats.conf'), block)
  const server = await spawnNatsServer({ port: await freePort(), storeDir: join(dir, 'store'), configFile: join(dir, 'nats.conf') })
  t.teardown(() => server.stop())
  const as = async (name: string) => {
    const u = users.find((x) => x.user === name)!
    const nc = await connectNats(server.url, name, { user: u.user, pass: u.password })
    t.teardown(() => nc.close())
    return nc
  }
  await ensureStreams(await (await as('master')).jetstreamManager())
  const agent = await as('agent-host1')
  const refused = violations(agent)
  const update = (agentId: string): Uint8Array => encode({ updates: [{ taskId: 't', frameworkId: 'regatta-ci', agentId, state: 'RUNNING', uuid: randomUUID(), source: 'agent', timestamp: Date.now() }] })
  const ack = await agent.jetstream().publish(Subjects.statusUpdate('regatta-ci', 'host1'), update('host1'))
  t.equal(ack.stream, Streams.updates, 'its own update is stored')
  agent.publish(Subjects.taskOutput('regatta-ci', 'host1', 't'), encode({ taskId: 't', stream: 'stdout', seq: 0, data: 'x' }))
  const others = [Subjects.statusUpdate('regatta-ci', 'host2'), Subjects.masterStatusUpdate('regatta-ci'), Subjects.taskOutput('regatta-ci', 'host2', 't')]
  for (const s of others) agent.publish(s, update('host2'))
  await until('the other subjects to be refused', () => others.every((s) => refused.some((v) => v.operation === 'publish' && v.subject === s)))
  await agent.flush()
  t.same(refused.map((v) => v.subject).sort(), [...others].sort(), 'refused exactly the subjects of host2 and the master')
})
