// The master's HTTP server through fastify.inject(): no socket, no NATS.
import t from 'tap'
import { createHash } from 'node:crypto'
import vm from 'node:vm'
import { createMasterHttp, type MasterHttpOptions } from '../../../services/master/src/http/index.js'
import { MasterMetrics } from '../../../services/master/src/metrics.js'
import { RegattaError } from '../../../shared/errors/index.js'
import type { ClusterState } from '../../../shared/protocol/index.js'
import { clusterState } from './fixtures.js'
import { httpAuthFrom } from '../../../shared/http/index.js'

function server(overrides: Partial<MasterHttpOptions> = {}, state: ClusterState = clusterState()) {
  const metrics = overrides.metrics ?? new MasterMetrics({ processMetrics: false })
  const app = createMasterHttp({
    getState: () => state,
    metrics,
    isLeader: () => true,
    leaderHttpUrl: () => undefined,
    // reads open as in regatta dev (the page then embeds the state); tokens: test/integration/auth
    auth: httpAuthFrom({ openReads: true }, {}),
    ...overrides,
  })
  t.teardown(() => app.close())
  return { app, metrics }
}

const standby = (leaderUrl?: string): Partial<MasterHttpOptions> => ({ isLeader: () => false, leaderHttpUrl: () => leaderUrl })

/** The page's own (non-JSON) script element. */
function pageScript(html: string): string {
  const m = /<script>([\s\S]*?)<\/script>/.exec(html)
  if (!m) throw new Error('the page has no inline script')
  return m[1]
}

t.test('Checks that /health answers ok and whether this master leads', async (t) => {
  const leader = await server().app.inject({ url: '/health' })
  t.equal(leader.statusCode, 200)
  t.same(leader.json(), { status: 'ok', leader: true })

  const stand = await server(standby()).app.inject({ url: '/health' })
  t.equal(stand.statusCode, 200, 'a standby is healthy too')
  t.same(stand.json(), { status: 'ok', leader: false })
})

t.test('Checks that /api/v1/state answers the cluster state as built', async (t) => {
  const state = clusterState()
  const res = await server({}, state).app.inject({ url: '/api/v1/state' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  t.strictSame(res.json(), state, 'serialized through the schema without losing or changing fields')

  const noLeader = clusterState({ leader: null, agents: [], tasks: [], offers: [] })
  const res2 = await server({}, noLeader).app.inject({ url: '/api/v1/state' })
  t.strictSame(res2.json(), noLeader, 'a null leader and empty lists survive')

  const withUrl = clusterState({ leader: { id: 'master-a', epoch: 9, httpUrl: 'http://10.0.0.1:5050' } })
  t.strictSame((await server({}, withUrl).app.inject({ url: '/api/v1/state' })).json(), withUrl)
})

t.test('Checks that a standby redirects the API and the page to the leader with 307', async (t) => {
  const { app } = server(standby('http://10.0.0.2:5050/'))
  const api = await app.inject({ url: '/api/v1/state?pretty=1' })
  t.equal(api.statusCode, 307)
  t.equal(api.headers.location, 'http://10.0.0.2:5050/api/v1/state?pretty=1', 'same path and query on the leader')

  const page = await app.inject({ url: '/' })
  t.equal(page.statusCode, 307)
  t.equal(page.headers.location, 'http://10.0.0.2:5050/')

  const health = await app.inject({ url: '/health' })
  t.equal(health.statusCode, 200, 'health is answered locally, not redirected')
})

t.test('Checks that a standby with no known leader answers 503 NOT_LEADER', async (t) => {
  const { app } = server(standby(undefined))
  const res = await app.inject({ url: '/api/v1/state' })
  t.equal(res.statusCode, 503)
  t.strictSame(res.json(), { error: { code: 'NOT_LEADER', message: 'no leading master is known yet' } })
  t.equal(res.headers['retry-after'], '1')

  const page = await app.inject({ url: '/' })
  t.equal(page.statusCode, 200, 'a browser still gets a page that waits for a leader')
  t.match(page.body, /no leading master is known yet/)
  t.match(page.body, /<script type="application\/json" id="initial-state"><\/script>/, 'with no state embedded')
})

t.test('Checks that /metrics reports the gauges of the state and the counters', async (t) => {
  const { app, metrics } = server()
  metrics.offersMade(3)
  metrics.taskLaunched()
  metrics.statusUpdate('RUNNING')
  metrics.statusUpdate('RUNNING')
  metrics.invalidMessage('regatta.master.call')
  metrics.call('ACCEPT')
  metrics.allocationPass(0.004)

  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain/)
  const text = res.body
  const has = (line: string) => t.ok(text.split('\n').includes(line), line)
  has('regatta_master_agents{state="active"} 2')
  has('regatta_master_agents{state="draining"} 1')
  has('regatta_master_agents{state="unreachable"} 0')
  has('regatta_master_frameworks{active="true"} 1')
  has('regatta_master_frameworks{active="false"} 1')
  has('regatta_master_tasks{state="RUNNING"} 1')
  has('regatta_master_tasks{state="STAGING"} 1')
  has('regatta_master_tasks{state="FAILED"} 0')
  has('regatta_master_offers_outstanding 1')
  has('regatta_master_resources_total{resource="cpus"} 8')
  has('regatta_master_resources_used{resource="mem"} 2048')
  has('regatta_master_is_leader 1')
  has('regatta_master_epoch 7')
  has('regatta_master_offers_total 3')
  has('regatta_master_tasks_launched_total 1')
  has('regatta_master_status_updates_total{state="RUNNING"} 2')
  has('regatta_master_invalid_messages_total{subject="regatta.master.call"} 1')
  has('regatta_master_calls_total{type="ACCEPT"} 1')
  has('regatta_master_allocation_seconds_count 1')
  has('regatta_master_allocation_seconds_bucket{le="0.005"} 1')
  has('regatta_master_allocation_seconds_bucket{le="0.0025"} 0')
})

t.test('Checks that observeState follows the state: gone resources vanish, a standby reports 0', async (t) => {
  const metrics = new MasterMetrics({ processMetrics: false })
  metrics.observeState(clusterState({ total: { cpus: 8, gpus: 2 } }))
  t.match(await metrics.metricsText(), /regatta_master_resources_total\{resource="gpus"\} 2/)

  metrics.observeState(clusterState({ masterId: 'master-b', total: { cpus: 8 }, agents: [] }))
  const text = await metrics.metricsText()
  t.notMatch(text, /resource="gpus"/, 'a resource no agent has any more is dropped')
  t.match(text, /regatta_master_resources_total\{resource="disk"\} 0/, 'the core resources stay at 0')
  t.match(text, /regatta_master_agents\{state="active"\} 0/)
  t.match(text, /regatta_master_is_leader 0/, 'master-b is not the leader master-a')
  t.match(text, /regatta_master_epoch 7/, 'the epoch of the known leader')
})

t.test('Checks that process metrics are included with the regatta_master_ prefix', async (t) => {
  const metrics = new MasterMetrics()
  const text = await metrics.metricsText()
  t.match(text, /^regatta_master_process_cpu_seconds_total /m)
  t.notMatch(text, /^process_cpu_seconds_total /m, 'nothing unprefixed')
  t.match(metrics.contentType, /^text\/plain/)
})

t.test('Checks that the page is self-contained HTML that escapes what agents report', async (t) => {
  const hostile = '<script>alert(1)</script>'
  const base = clusterState()
  const state = clusterState({
    agents: base.agents.map((a, i) => (i === 0 ? { ...a, hostname: hostile, pool: '"><img src=x onerror=alert(2)>' } : a)),
    frameworks: base.frameworks.map((f, i) => (i === 0 ? { ...f, name: 'ci & <b>co</b>' } : f)),
  })
  const res = await server({}, state).app.inject({ url: '/' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/html/)
  const html = res.body
  t.match(html, /^<!doctype html>/i)

  t.notMatch(html, /https?:\/\//, 'no absolute URL anywhere (no CDN, no external asset)')
  const markup = html.replace(/<script type="application\/json"[\s\S]*?<\/script>/, '')
  t.notMatch(markup, /\s(src|href)\s*=/i, 'no src or href attribute outside the state data: nothing to load')
  t.notMatch(html, /<link\b/i)
  t.notOk(html.includes(hostile), 'the hostname never appears as markup')
  t.notOk(html.includes('<img'), 'nor does the pool')

  // the embedded state reads back exactly
  const embedded = /<script type="application\/json" id="initial-state">([\s\S]*?)<\/script>/.exec(html)
  t.ok(embedded)
  t.strictSame(JSON.parse(embedded![1]), state)

  // the script the page serves is allowed by the CSP hash
  const script = pageScript(html)
  const hash = createHash('sha256').update(script).digest('base64')
  t.match(res.headers['content-security-policy'], `'sha256-${hash}'`)
  t.match(res.headers['content-security-policy'], "default-src 'none'")

  // run the page's renderer as the browser would, and look at what it makes
  const rendered = vm.runInNewContext(`${script}\nrenderCluster(state)`, { state }) as string
  t.ok(rendered.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), 'hostname escaped in the agents table')
  t.notOk(rendered.includes('<script'), 'no script element produced')
  t.notOk(rendered.includes('<img'), 'no element from the pool')
  t.ok(rendered.includes('&quot;&gt;&lt;img'), 'attribute-breaking quotes escaped')
  t.ok(rendered.includes('ci &amp; &lt;b&gt;co&lt;/b&gt;'), 'framework name escaped')
})

t.test('Checks that the page renders leader, totals, agents, frameworks and tasks', async (t) => {
  const state = clusterState()
  const html = (await server({}, state).app.inject({ url: '/' })).body
  const rendered = vm.runInNewContext(`${pageScript(html)}\nrenderCluster(state)`, { state }) as string
  t.match(rendered, /<b>master-a<\/b> epoch 7 \(this master\)/)
  t.match(rendered, /1\.5 \/ 8 \(19%\)/, 'cpus used / total with a percentage')
  t.match(rendered, /2 GiB \/ 16 GiB \(13%\)/, 'mem in GiB')
  t.match(rendered, /<progress max="100" value="18\.8"><\/progress>/, 'a bar per resource')
  for (const text of ['build-1', 'build-2', 'build-3', 'regatta-ci', 'ci/main, ci/pr', 't-1', 't-2', 't-0']) {
    t.ok(rendered.includes(text), text)
  }
  t.match(rendered, /2m 5s/, "agent-2's idle time")
  t.match(rendered, /4s ago/, "agent-1's last heartbeat")
  const at = (id: string) => rendered.indexOf(`<code>${id}</code>`)
  t.ok(at('t-2') < at('t-1') && at('t-1') < at('t-0'),
    'active tasks first, most recent first; finished last')

  const empty = clusterState({ leader: null, agents: [], frameworks: [], tasks: [], offers: [], roles: [] })
  const renderedEmpty = vm.runInNewContext(`${pageScript(html)}\nrenderCluster(state)`, { state: empty }) as string
  t.match(renderedEmpty, /no leading master/)
  t.match(renderedEmpty, /No agents registered\./)
})

t.test('Checks that unknown routes and failures answer { error: { code, message } }', async (t) => {
  const { app } = server()
  app.get('/boom/regatta', async () => { throw new RegattaError('UNKNOWN_TASK', 'no task t-9') })
  app.get('/boom/plain', async () => { throw new Error('disk on fire') })

  const missing = await app.inject({ url: '/nope?x=1' })
  t.equal(missing.statusCode, 404)
  t.strictSame(missing.json(), { error: { code: 'NOT_FOUND', message: 'no route GET /nope' } })

  const post = await app.inject({ method: 'POST', url: '/api/v1/state' })
  t.equal(post.statusCode, 404)
  t.equal(post.json().error.code, 'NOT_FOUND')

  const known = await app.inject({ url: '/boom/regatta' })
  t.equal(known.statusCode, 404)
  t.strictSame(known.json(), { error: { code: 'UNKNOWN_TASK', message: 'no task t-9' } })

  const unknown = await app.inject({ url: '/boom/plain' })
  t.equal(unknown.statusCode, 500)
  t.strictSame(unknown.json(), { error: { code: 'INTERNAL', message: 'disk on fire' } })
})

t.test('Checks that a failing getState answers 500 INTERNAL rather than crashing', async (t) => {
  const { app } = server({ getState: () => { throw new Error('registry not loaded') } })
  const res = await app.inject({ url: '/api/v1/state' })
  t.equal(res.statusCode, 500)
  t.strictSame(res.json(), { error: { code: 'INTERNAL', message: 'registry not loaded' } })
})
