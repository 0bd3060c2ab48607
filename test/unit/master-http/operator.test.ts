// The master's operator HTTP routes and their bearer token (services/master/src/http/operator.ts),
// the token's configuration (operatorTokenFrom), and the pending demand on the web page: through
// fastify.inject(), no socket, no NATS.
import t from 'tap'
import vm from 'node:vm'
import { createMasterHttp, type MasterHttpOptions } from '../../../services/master/src/http/index.js'
import { checkOperatorToken } from '../../../services/master/src/http/operator.js'
import { operatorTokenFrom } from '../../../services/master/src/main.js'
import { renderPage } from '../../../services/master/src/http/page.js'
import { MasterMetrics } from '../../../services/master/src/metrics.js'
import { RegattaError } from '../../../shared/errors/index.js'
import type { OperatorCall } from '../../../shared/protocol/index.js'
import { clusterState } from './fixtures.js'

const TOKEN = 'a-long-operator-token'

function server(overrides: Partial<MasterHttpOptions> = {}) {
  const calls: OperatorCall[] = []
  const app = createMasterHttp({
    getState: () => clusterState(),
    metrics: new MasterMetrics({ processMetrics: false }),
    isLeader: () => true,
    leaderHttpUrl: () => undefined,
    operatorToken: TOKEN,
    operator: async (call) => {
      calls.push(call)
      if ('agentId' in call && call.agentId === 'missing') throw new RegattaError('UNKNOWN_AGENT', `agent ${call.agentId} is not known`)
      return { ok: true }
    },
    ...overrides,
  })
  t.teardown(() => app.close())
  return { app, calls }
}

const codeOf = (fn: () => void): string | undefined => {
  try {
    fn()
    return undefined
  } catch (err) {
    return (err as RegattaError).code
  }
}

t.test('Checks that the token check refuses with 403 when none is configured and 401 for a missing, malformed or wrong token', async (t) => {
  t.equal(codeOf(() => checkOperatorToken(undefined, `Bearer ${TOKEN}`)), 'OPERATOR_API_DISABLED')
  t.equal(codeOf(() => checkOperatorToken('', `Bearer ${TOKEN}`)), 'OPERATOR_API_DISABLED')
  for (const header of [undefined, '', 'Bearer', 'Bearer ', TOKEN, `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Bearer ${TOKEN} extra`]) {
    t.equal(codeOf(() => checkOperatorToken(TOKEN, header)), 'UNAUTHORIZED', `refuses ${JSON.stringify(header)}`)
  }
  for (const header of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `Bearer  ${TOKEN} `]) {
    t.equal(codeOf(() => checkOperatorToken(TOKEN, header)), undefined, `accepts ${JSON.stringify(header)}`)
  }
})

t.test('Checks that drain and undrain routes carry out the operator call only with the right token', async (t) => {
  const { app, calls } = server()
  const none = await app.inject({ method: 'POST', url: '/api/v1/agents/agent-1/drain' })
  t.equal(none.statusCode, 401)
  t.equal(none.json().error.code, 'UNAUTHORIZED')
  t.match(none.headers['www-authenticate'], /^Bearer realm=/)
  const wrong = await app.inject({ method: 'POST', url: '/api/v1/agents/agent-1/drain', headers: { authorization: 'Bearer nope' } })
  t.equal(wrong.statusCode, 401)
  t.same(calls, [], 'nothing was called')

  const auth = { authorization: `Bearer ${TOKEN}` }
  const drain = await app.inject({ method: 'POST', url: '/api/v1/agents/agent-1/drain', headers: auth })
  t.equal(drain.statusCode, 200)
  t.same(drain.json(), { ok: true })
  const undrain = await app.inject({ method: 'POST', url: '/api/v1/agents/agent%2F2/undrain', headers: auth })
  t.equal(undrain.statusCode, 200)
  t.same(calls, [{ type: 'DRAIN', agentId: 'agent-1' }, { type: 'UNDRAIN', agentId: 'agent/2' }], 'ids are URL-decoded')

  const missing = await app.inject({ method: 'POST', url: '/api/v1/agents/missing/drain', headers: auth })
  t.equal(missing.statusCode, 404)
  t.same(missing.json(), { error: { code: 'UNKNOWN_AGENT', message: 'agent missing is not known' } })
  const get = await app.inject({ method: 'GET', url: '/api/v1/agents/agent-1/drain', headers: auth })
  t.equal(get.statusCode, 404, 'only POST')
})

t.test('Checks that without a configured token every operator route answers 403 and calls nothing', async (t) => {
  const { app, calls } = server({ operatorToken: undefined })
  for (const url of ['/api/v1/agents/agent-1/drain', '/api/v1/agents/agent-1/undrain']) {
    const r = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${TOKEN}` } })
    t.equal(r.statusCode, 403)
    t.equal(r.json().error.code, 'OPERATOR_API_DISABLED')
    t.match(r.json().error.message, /--operator-token or REGATTA_OPERATOR_TOKEN/)
  }
  t.same(calls, [])
})

t.test('Checks that a standby sends an authorized operator call to the leader, or answers 503 while it knows none', async (t) => {
  const { app, calls } = server({ isLeader: () => false, leaderHttpUrl: () => 'http://10.0.0.9:5050/' })
  const r = await app.inject({ method: 'POST', url: '/api/v1/agents/a-1/drain', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(r.statusCode, 307)
  t.equal(r.headers.location, 'http://10.0.0.9:5050/api/v1/agents/a-1/drain')
  const lost = server({ isLeader: () => false, leaderHttpUrl: () => undefined })
  const r2 = await lost.app.inject({ method: 'POST', url: '/api/v1/agents/a-1/drain', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(r2.statusCode, 503)
  t.equal(r2.json().error.code, 'NOT_LEADER')
  t.same(calls, [])
  t.same(lost.calls, [])
})

t.test('Checks that the operator token comes from the flag, else the environment, and a bad one is a config error naming its source', async (t) => {
  t.equal(operatorTokenFrom(undefined, {}), undefined)
  t.equal(operatorTokenFrom(undefined, { REGATTA_OPERATOR_TOKEN: '' }), undefined, 'empty means none')
  t.equal(operatorTokenFrom(undefined, { REGATTA_OPERATOR_TOKEN: TOKEN }), TOKEN)
  t.equal(operatorTokenFrom('flag-token-123', { REGATTA_OPERATOR_TOKEN: TOKEN }), 'flag-token-123', 'the flag wins')
  for (const [flag, env, where] of [['short', undefined, '--operator-token'], ['with space inside', undefined, '--operator-token'], [undefined, 'tab\there-and-more', 'REGATTA_OPERATOR_TOKEN']] as const) {
    try {
      operatorTokenFrom(flag, env === undefined ? {} : { REGATTA_OPERATOR_TOKEN: env })
      t.fail('accepted a bad token')
    } catch (err) {
      t.equal((err as RegattaError).code, 'INVALID_CONFIG')
      t.match((err as Error).message, new RegExp(`^${where}: `))
    }
  }
})

t.test('Checks that the web page lists pending demand per pool, unmet tasks marked', async (t) => {
  const state = clusterState({
    demand: [
      { pool: 'ci', requested: { cpus: 4, mem: 2048 }, unmet: { cpus: 2, mem: 1024 }, jobs: 4, unmetJobs: 2 },
      { pool: '<gpu>', requested: { cpus: 1 }, unmet: {}, jobs: 1, unmetJobs: 0 },
    ],
  })
  const html = renderPage(state)
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]
  const rendered = vm.runInNewContext(`${script}\nrenderCluster(state)`, { state }) as string
  t.match(rendered, /<h2>Pending demand<\/h2>/)
  t.match(rendered, /<td>ci<\/td><td>4<\/td><td><span class="warn">2<\/span><\/td><td>cpus 4, mem 2 GiB<\/td><td>cpus 2, mem 1 GiB<\/td>/)
  t.match(rendered, /<td>&lt;gpu&gt;<\/td><td>1<\/td><td>0<\/td><td>cpus 1<\/td><td>-<\/td>/, 'escaped, nothing unmet')
  const none = vm.runInNewContext(`${script}\nrenderCluster(state)`, { state: clusterState() }) as string
  t.match(none, /No pending demand\./)
})

t.test('Checks that /metrics reports demanded and unmet tasks per pool, and drops a pool whose demand went', async (t) => {
  let state = clusterState({ demand: [{ pool: 'ci', requested: { cpus: 3 }, unmet: { cpus: 1 }, jobs: 3, unmetJobs: 1 }] })
  const { app } = server({ getState: () => state })
  const first = (await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).body
  t.match(first, /^regatta_master_demand_tasks\{pool="ci"\} 3$/m)
  t.match(first, /^regatta_master_demand_unmet_tasks\{pool="ci"\} 1$/m)
  state = clusterState()
  const second = (await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).body
  t.notMatch(second, /pool="ci"/)
})
