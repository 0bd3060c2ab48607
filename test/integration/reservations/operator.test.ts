// Operator reservations and role settings on real masters (runMaster, as `regatta master` runs
// them) over a real nats-server, with a real agent: the HTTP routes need the operator token (403
// when none is configured, 401 when missing or wrong), reserve and unreserve resources that only
// the role is then offered, and set weights; `regatta roles set|ls` (a real CLI process) changes
// the roles the master reports, and the settings survive a master failover.
import t from 'tap'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { scalar } from '../../../shared/resources/index.js'
import type { ClusterState, Resource } from '../../../shared/protocol/index.js'
import { httpMasters, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { regatta } from '../../helpers/cli.js'
import { waitUntil } from '../../helpers/wait.js'

const TOKEN = 'reservations-token-8d1e'

let cluster: TestCluster
const masters = httpMasters(() => cluster)
const master = (id: string, operatorToken?: string): ReturnType<typeof masters.start> => masters.start(id, operatorToken)
t.before(async () => {
  cluster = await startCluster()
})
t.teardown(async () => {
  await masters.stopAll()
  await cluster.stop()
})

interface Answer { status: number; body: { ok?: true; error?: { code: string; message: string } } }

async function call(base: string, method: string, path: string, body: unknown, authorization?: string): Promise<Answer> {
  const res = await fetch(base + path, {
    method, redirect: 'manual',
    headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
    body: JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) as Answer['body'] : {} }
}

const state = async (base: string): Promise<ClusterState> => (await (await fetch(`${base}/api/v1/state`)).json()) as ClusterState
const reservedOf = async (base: string, agentId: string): Promise<Resource[]> =>
  ((await state(base)).agents.find((a) => a.id === agentId)?.resources ?? []).filter((r) => r.role !== undefined)

const BEARER = `Bearer ${TOKEN}`
const reservation = { agentId: 'agent-op', role: 'ops', resources: 'cpus:1;mem:256' }

t.test('Checks that without a configured operator token the reservation and role routes answer 403', async (t) => {
  const m = await master('m-open')
  await waitUntil('m-open to lead', () => m.master.isLeader)
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'agent-op', resources: 'cpus:4;mem:4096;disk:10000' })
  await waitUntil('the agent to register', async () => (await state(m.httpUrl)).agents.some((a) => a.id === 'agent-op' && a.state === 'active'))
  for (const [method, path, body] of [
    ['POST', '/api/v1/reservations', reservation],
    ['DELETE', '/api/v1/reservations', reservation],
    ['PUT', '/api/v1/roles/ops', { weight: 2 }],
  ] as const) {
    for (const auth of [undefined, BEARER]) {
      const r = await call(m.httpUrl, method, path, body, auth)
      t.equal(r.status, 403, `${method} ${path} with ${auth ? 'a' : 'no'} token: 403`)
      t.equal(r.body.error?.code, 'OPERATOR_API_DISABLED')
    }
  }
  t.same(await reservedOf(m.httpUrl, 'agent-op'), [], 'nothing was reserved')
  t.equal((await state(m.httpUrl)).roles.find((r) => r.name === 'ops'), undefined, 'no role was set')
  await m.stop()
})

t.test('Checks that with the token an operator reserves resources over HTTP, only the role is offered them, and unreserving gives them back; without it 401', async (t) => {
  const m = await master('m-tok', TOKEN)
  await waitUntil('m-tok to lead', () => m.master.isLeader, 10_000)
  await waitUntil('the agent to re-register', async () => (await state(m.httpUrl)).agents.some((a) => a.id === 'agent-op' && a.state === 'active'), 15_000)

  for (const auth of [undefined, 'Bearer not-the-token', TOKEN]) {
    const r = await call(m.httpUrl, 'POST', '/api/v1/reservations', reservation, auth)
    t.equal(r.status, 401, `401 with ${auth ?? 'no Authorization header'}`)
    t.equal(r.body.error?.code, 'UNAUTHORIZED')
  }
  t.same(await reservedOf(m.httpUrl, 'agent-op'), [], 'nothing was reserved without the token')

  // bad requests, with the token: what is wrong, and nothing changes
  const bad: Array<[string, unknown, number, string, RegExp]> = [
    ['POST', { agentId: 'agent-op', role: 'ops' }, 400, 'INVALID_MESSAGE', /resources/],
    ['POST', { ...reservation, role: '*' }, 400, 'INVALID_MESSAGE', /\/role/],
    ['POST', { ...reservation, resources: 'cpus:abc' }, 400, 'INVALID_RESOURCES', /bad value "abc"/],
    ['POST', { ...reservation, agentId: 'no-such-agent' }, 404, 'UNKNOWN_AGENT', /no-such-agent/],
    ['POST', { ...reservation, resources: 'cpus:64' }, 409, 'INVALID_OPERATION', /does not have cpus:64 free/],
    ['DELETE', reservation, 409, 'INVALID_OPERATION', /role "ops" has no dynamic reservation of cpus:1;mem:256/],
  ]
  for (const [method, body, status, code, message] of bad) {
    const r = await call(m.httpUrl, method, '/api/v1/reservations', body, BEARER)
    t.equal(r.status, status, `${method} ${JSON.stringify(body)}: ${status}`)
    t.equal(r.body.error?.code, code)
    t.match(r.body.error?.message, message)
  }
  t.same(await reservedOf(m.httpUrl, 'agent-op'), [], 'none of them reserved anything')

  // a framework of another role holds an offer of the agent: the reservation takes it back first
  const other = await cluster.framework({ name: 'other', roles: ['other'] })
  await other.nextOffer((o) => o.agentId === 'agent-op')
  const ok = await call(m.httpUrl, 'POST', '/api/v1/reservations', { ...reservation, resources: [{ name: 'cpus', scalar: 3 }, { name: 'mem', scalar: 256 }] }, BEARER)
  t.same(ok, { status: 200, body: { ok: true } })
  t.same(await reservedOf(m.httpUrl, 'agent-op'), [{ name: 'cpus', scalar: 3, role: 'ops' }, { name: 'mem', scalar: 256, role: 'ops' }])
  const after = await other.nextOffer((o) => o.agentId === 'agent-op')
  t.same(after.resources.filter((r) => r.role !== undefined), [], 'the other role is offered none of it')
  t.equal(scalar(after.resources, 'cpus'), 1, 'just the unreserved cpu')
  const ops = await cluster.framework({ name: 'ops', roles: ['ops'] })
  const opsOffer = await ops.nextOffer((o) => o.agentId === 'agent-op')
  t.same(opsOffer.resources.filter((r) => r.role !== undefined), [{ name: 'cpus', scalar: 3, role: 'ops' }, { name: 'mem', scalar: 256, role: 'ops' }], 'the role is offered its reservation')

  // unreserve part of it while the ops framework holds it in an offer: the offer is rescinded
  const r = await call(m.httpUrl, 'DELETE', '/api/v1/reservations', { ...reservation, resources: 'cpus:2' }, BEARER)
  t.same(r, { status: 200, body: { ok: true } })
  t.same(await reservedOf(m.httpUrl, 'agent-op'), [{ name: 'cpus', scalar: 1, role: 'ops' }, { name: 'mem', scalar: 256, role: 'ops' }], '2 cpus are given back')
  await ops.waitFor('the offer holding them to be rescinded', () => ops.events.some((e) => e.type === 'RESCIND' && e.offerId === opsOffer.id))

  const w = await call(m.httpUrl, 'PUT', `/api/v1/roles/${encodeURIComponent('ci/main')}`, { weight: 3, quota: { cpus: 1 } }, BEARER)
  t.same(w, { status: 200, body: { ok: true } })
  t.same((await state(m.httpUrl)).roles.find((x) => x.name === 'ci/main'), { name: 'ci/main', weight: 3, quota: { cpus: 1 }, allocated: {} }, 'ci/main has its weight and quota')
  const empty = await call(m.httpUrl, 'PUT', '/api/v1/roles/ops', {}, BEARER)
  t.equal(empty.status, 400)
  t.match(empty.body.error?.message, /give "weight" and\/or "quota"/)
  const negative = await call(m.httpUrl, 'PUT', '/api/v1/roles/ops', { weight: -1 }, BEARER)
  t.equal(negative.status, 400)
  t.match(negative.body.error?.message, /\/weight/)
  await other.scheduler.teardown()
  await ops.scheduler.teardown()
})

t.test('Checks that a weight and quota set with regatta roles set change the roles the master reports and survive a master failover', async (t) => {
  const nats = ['--nats', cluster.nats.url]
  const set = await regatta(['roles', 'set', 'ci', '--weight', '2.5', '--quota', 'cpus:2;mem:1024', ...nats])
  t.equal(set.code, 0, set.stderr)
  t.match(set.stdout, 'Role ci: weight 2.5, quota cpus 2, mem 1 GiB.')
  const ls = await regatta(['roles', 'ls', '--json', ...nats])
  t.equal(ls.code, 0, ls.stderr)
  const rows = JSON.parse(ls.stdout) as Array<{ name: string; weight: number; quota?: Record<string, number>; reserved: Record<string, number> }>
  t.match(rows.find((r) => r.name === 'ci'), { weight: 2.5, quota: { cpus: 2, mem: 1024 } })
  t.match(rows.find((r) => r.name === 'ops'), { weight: 1, reserved: { cpus: 1, mem: 256 } }, 'roles ls shows what is reserved for a role')
  const human = await regatta(['roles', 'ls', ...nats])
  t.match(human.stdout, /ROLE\s+WEIGHT\s+QUOTA\s+ALLOCATED\s+RESERVED/)
  t.match(human.stdout, /ci\s+2\.5\s+cpus 2, mem 1 GiB/)

  // the leader goes; the next one starts from the registry
  const leader = masters.started.find((m) => m.master.isLeader)!
  const next = await master('m-next', TOKEN)
  await leader.stop()
  await waitUntil('m-next to lead', () => next.master.isLeader, 15_000)
  const after = (await state(next.httpUrl)).roles
  t.same(after.find((r) => r.name === 'ci'), { name: 'ci', weight: 2.5, quota: { cpus: 2, mem: 1024 }, allocated: {} }, 'the new leader has the weight and quota')
  t.match(after.find((r) => r.name === 'ci/main'), { weight: 3, quota: { cpus: 1 } })
  await waitUntil('the agent to re-register', async () => (await state(next.httpUrl)).agents.some((a) => a.id === 'agent-op' && a.state === 'active'), 15_000)
  t.same(await reservedOf(next.httpUrl, 'agent-op'), [{ name: 'cpus', scalar: 1, role: 'ops' }, { name: 'mem', scalar: 256, role: 'ops' }], 'and the operator\'s reservation')

  const cleared = await regatta(['roles', 'set', 'ci', '--quota', 'none', '--json', ...nats])
  t.equal(cleared.code, 0, cleared.stderr)
  t.same(JSON.parse(cleared.stdout), { name: 'ci', weight: 2.5, allocated: {}, reserved: {} }, '--quota none removes the quota')

  for (const [args, message] of [
    [['roles', 'set', 'ci'], /give --weight N and\/or --quota/],
    [['roles', 'set', 'ci', '--weight', '0'], /--weight: "0" is not a number above 0/],
    [['roles', 'set', 'ci', '--quota', 'cpus:x'], /--quota: bad value "x"/],
    [['roles', 'set', '*', '--weight', '1'], /ROLE: "\*"/],
    [['roles', 'set', 'a//b', '--weight', '1'], /ROLE: "a\/\/b" is not a role name/],
  ] as const) {
    const bad = await regatta([...args, ...nats])
    t.equal(bad.code, 2, `${args.join(' ')}: exit 2`)
    t.match(bad.stderr, message)
    t.equal(bad.stderr.trim().split('\n').length, 1, 'one line')
  }
})
