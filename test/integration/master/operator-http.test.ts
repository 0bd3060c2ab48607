// The master's operator HTTP routes (POST /api/v1/agents/:id/drain|undrain) on real masters
// (runMaster, as `regatta master` runs them) over a real nats-server, with a real agent: 403
// without a configured token, 401 with a missing or wrong one, 200 with the right one and the
// same effect as the NATS operator call; a standby redirects to the leader.
import t from 'tap'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import type { ClusterState } from '../../../shared/protocol/index.js'
import { httpMasters, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

const TOKEN = 'op-token-5f2c9a7e'

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

interface Answer { status: number; body: { ok?: true; error?: { code: string; message: string } }; headers: Headers }

async function post(base: string, path: string, authorization?: string): Promise<Answer> {
  const res = await fetch(base + path, { method: 'POST', redirect: 'manual', headers: authorization ? { authorization } : {} })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) as Answer['body'] : {}, headers: res.headers }
}

const agentState = async (base: string, id: string): Promise<string | undefined> =>
  ((await (await fetch(`${base}/api/v1/state`)).json()) as ClusterState).agents.find((a) => a.id === id)?.state

t.test('Checks that without a configured operator token the operator routes answer 403 saying how to configure one', async (t) => {
  const m = await master('m-open')
  await waitUntil('m-open to lead', () => m.master.isLeader)
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'agent-h' })
  await waitUntil('the agent to register', async () => (await agentState(m.httpUrl, 'agent-h')) === 'active')
  for (const auth of [undefined, `Bearer ${TOKEN}`]) {
    const r = await post(m.httpUrl, '/api/v1/agents/agent-h/drain', auth)
    t.equal(r.status, 403, `403 with ${auth ? 'a' : 'no'} token`)
    t.equal(r.body.error?.code, 'OPERATOR_API_DISABLED')
    t.match(r.body.error?.message, /REGATTA_OPERATOR_TOKEN/)
  }
  t.equal(await agentState(m.httpUrl, 'agent-h'), 'active', 'nothing was drained')
  await m.stop()
})

t.test('Checks that with a token configured a missing or wrong token gets 401, the right one drains and undrains, and a standby redirects to the leader', async (t) => {
  const leader = await master('m-tok', TOKEN)
  await waitUntil('m-tok to lead', () => leader.master.isLeader, 10_000)
  const standby = await master('m-standby', TOKEN)
  await waitUntil('the agent to re-register with the new leader', async () => (await agentState(leader.httpUrl, 'agent-h')) === 'active', 15_000)

  for (const [what, auth] of [['no header', undefined], ['a wrong token', 'Bearer not-the-token'], ['a basic header', `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`], ['a bare token', TOKEN]] as const) {
    const r = await post(leader.httpUrl, '/api/v1/agents/agent-h/drain', auth)
    t.equal(r.status, 401, `401 with ${what}`)
    t.equal(r.body.error?.code, 'UNAUTHORIZED')
    t.match(r.headers.get('www-authenticate') ?? '', /^Bearer/)
  }
  t.equal(await agentState(leader.httpUrl, 'agent-h'), 'active', 'refused calls changed nothing')

  const drained = await post(leader.httpUrl, '/api/v1/agents/agent-h/drain', `Bearer ${TOKEN}`)
  t.equal(drained.status, 200)
  t.same(drained.body, { ok: true })
  t.equal(await agentState(leader.httpUrl, 'agent-h'), 'draining')
  t.equal(leader.master.state().agents.find((a) => a.id === 'agent-h')?.state, 'draining', 'the master itself')

  const unknown = await post(leader.httpUrl, '/api/v1/agents/no-such-agent/drain', `Bearer ${TOKEN}`)
  t.equal(unknown.status, 404)
  t.equal(unknown.body.error?.code, 'UNKNOWN_AGENT')
  t.match(unknown.body.error?.message, /no-such-agent/)

  // a standby checks the token too, then sends the caller to the leader (307 keeps the POST)
  const fromStandby = await post(standby.httpUrl, '/api/v1/agents/agent-h/undrain', `Bearer ${TOKEN}`)
  t.equal(fromStandby.status, 307)
  t.equal(fromStandby.headers.get('location'), `${leader.httpUrl}/api/v1/agents/agent-h/undrain`)
  t.equal((await post(standby.httpUrl, '/api/v1/agents/agent-h/undrain')).status, 401, 'not without the token')

  const undrained = await post(leader.httpUrl, '/api/v1/agents/agent-h/undrain', `Bearer ${TOKEN}`)
  t.equal(undrained.status, 200)
  t.equal(await agentState(leader.httpUrl, 'agent-h'), 'active')
})
