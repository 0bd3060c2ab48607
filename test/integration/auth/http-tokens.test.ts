// Bearer tokens on every HTTP route of a real master (runMaster) and a real CI service (runCi),
// each with an operator token and a read-only token configured (REGATTA_READ_TOKEN): each write
// with no token (401), an unknown token (401), the read token (403 FORBIDDEN) and the operator
// token (its own answer); each read without a token (401) and with either token (200); the
// public routes (health, the UI's and the master's page shells, the signed webhook) with none;
// reads closed outside `regatta dev` whatever tokens exist, open with dev's auth; artifacts by a
// signed link; and the CLI's --token.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { httpMasters, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { FIXTURE_OPERATOR_TOKEN, startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { httpAuthFrom, type HttpAuth } from '../../../shared/http/index.js'
import { runCi, type RunningCi } from '../../../services/ci/src/main.js'
import { regatta } from '../../helpers/cli.js'
import { waitUntil } from '../../helpers/wait.js'
import type { TapTest } from '../../helpers/tap-types.js'

const OPERATOR = 'master-operator-token-1'
const READ = 'read-only-token-for-both'
// closes reads on both servers (they read it when they start)
process.env.REGATTA_READ_TOKEN = READ

const PIPELINE = `
name: ci
on: { manual: {} }
jobs:
  wait:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 64 }
    steps:
      - run: echo started; sleep 60
`

let f: CiFixture
let cluster: TestCluster
const masters = httpMasters(() => cluster)
let masterUrl = ''
let sha = ''
let cwd = ''

t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', ci: { auth: httpAuthFrom({ operatorToken: FIXTURE_OPERATOR_TOKEN, readToken: READ }, {}) } })
  sha = await f.repo.commit({ '.regatta/ci.yml': PIPELINE })
  cluster = await startCluster()
  const m = await masters.start('m-auth', OPERATOR, { auth: httpAuthFrom({ operatorToken: OPERATOR }, process.env) })
  masterUrl = m.httpUrl
  await waitUntil('the master to lead', () => m.master.isLeader, 10_000)
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }), id: 'agent-auth', resources: 'cpus:4;mem:4096;disk:10000' })
  await waitUntil('the agent to register', () => m.master.state().agents.some((a) => a.id === 'agent-auth' && a.state === 'active'), 15_000)
  cwd = await mkdtemp(join(tmpdir(), 'regatta-auth-'))
})
t.teardown(async () => {
  await masters.stopAll()
  await cluster?.stop()
  await f?.stop()
  if (cwd) await rm(cwd, { recursive: true, force: true })
})

interface Answer { status: number; body: { error?: { code: string; message: string } } & Record<string, unknown>; headers: Headers }

async function call(base: string, method: string, path: string, token?: string, body?: unknown): Promise<Answer> {
  const res = await fetch(base + path, {
    method, redirect: 'manual',
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  let parsed: Answer['body'] = {}
  try {
    parsed = text ? JSON.parse(text) as Answer['body'] : {}
  } catch {
    parsed = { text }
  }
  return { status: res.status, body: parsed, headers: res.headers }
}

/** A write refused for each token that may not write; returns nothing: the caller makes the operator call. */
async function refusedWrite(t: TapTest, base: string, method: string, path: string, body?: unknown): Promise<void> {
  for (const [what, token, status, code] of [
    ['no token', undefined, 401, 'UNAUTHORIZED'],
    ['an unknown token', 'not-a-token-we-know', 401, 'UNAUTHORIZED'],
    ['the read-only token', READ, 403, 'FORBIDDEN'],
  ] as const) {
    const r = await call(base, method, path, token, body)
    t.equal(r.status, status, `${method} ${path} with ${what}: ${status}`)
    t.equal(r.body.error?.code, code, `${method} ${path} with ${what}: ${code}`)
    t.type(r.body.error?.message, 'string')
    if (status === 401) t.match(r.headers.get('www-authenticate'), /^Bearer /)
  }
}

async function guardedRead(t: TapTest, base: string, path: string, operator: string): Promise<void> {
  const none = await call(base, 'GET', path)
  t.equal(none.status, 401, `GET ${path} without a token: 401`)
  t.equal(none.body.error?.code, 'UNAUTHORIZED')
  t.match(none.body.error?.message, /Authorization: Bearer/)
  t.equal((await call(base, 'GET', path, 'not-a-token-we-know')).status, 401, `GET ${path} with an unknown token: 401`)
  t.equal((await call(base, 'GET', path, READ)).status, 200, `GET ${path} with the read token: 200`)
  t.equal((await call(base, 'GET', path, operator)).status, 200, `GET ${path} with the operator token: 200`)
}

t.test('Checks that every write route of the CI service needs the operator token, reads need a token, and health, pages and the signed webhook need none', async (t) => {
  const url = f.ci.url
  const op = f.operatorToken
  const trigger = { repo: f.repo.url, ref: 'main', sha }

  await refusedWrite(t, url, 'POST', '/api/v1/runs', trigger)
  const runs = await call(url, 'GET', '/api/v1/runs', READ) as Answer & { body: { runs: unknown[] } }
  t.equal(runs.body.runs.length, 0, 'no refused trigger made a run')
  const made = await call(url, 'POST', '/api/v1/runs', op, trigger)
  t.equal(made.status, 201, 'the operator token triggers')
  const runId = made.body.runId as string

  await refusedWrite(t, url, 'POST', `/api/v1/runs/${runId}/cancel`)
  t.not((await call(url, 'GET', `/api/v1/runs/${runId}`, READ)).body.state, 'cancelled', 'no refused cancel cancelled it')
  const cancelled = await call(url, 'POST', `/api/v1/runs/${runId}/cancel`, op)
  t.equal(cancelled.status, 200, 'the operator token cancels')
  t.equal(cancelled.body.state, 'cancelled')

  await refusedWrite(t, url, 'POST', `/api/v1/runs/${runId}/rerun`)
  const rerun = await call(url, 'POST', `/api/v1/runs/${runId}/rerun`, op)
  t.equal(rerun.status, 201, 'the operator token reruns')
  t.equal((await call(url, 'POST', `/api/v1/runs/${rerun.body.runId as string}/cancel`, op)).status, 200)

  for (const path of ['/api/v1/runs', `/api/v1/runs/${runId}`, `/api/v1/runs/${runId}/jobs/ci%2Fwait/log`, '/api/v1/runs?stuck=true', '/metrics']) {
    await guardedRead(t, url, path, op)
  }
  for (const path of ['/health', '/', `/runs/${runId}`]) t.equal((await call(url, 'GET', path)).status, 200, `GET ${path} needs no token`)
  const hook = await f.push(sha, { deliveryId: 'auth-test-1' })
  t.equal(hook.status, 202, 'a signed webhook needs no bearer token')
  t.equal((await call(url, 'GET', '/no/such/route')).status, 404, 'an unknown route is a 404, not a 401')
})

t.test('Checks that every write route of the master needs the operator token, reads need a token, and health and the page shell (no state in it) need none', async (t) => {
  const routes = [
    ['POST', '/api/v1/agents/agent-auth/drain', undefined],
    ['POST', '/api/v1/agents/agent-auth/undrain', undefined],
    ['POST', '/api/v1/reservations', { agentId: 'agent-auth', role: 'ops', resources: 'cpus:1;mem:256' }],
    ['DELETE', '/api/v1/reservations', { agentId: 'agent-auth', role: 'ops', resources: 'cpus:1;mem:256' }],
    ['PUT', '/api/v1/roles/ops', { weight: 2 }],
  ] as const
  for (const [method, path, body] of routes) {
    await refusedWrite(t, masterUrl, method, path, body)
    const r = await call(masterUrl, method, path, OPERATOR, body)
    t.equal(r.status, 200, `${method} ${path} with the operator token: 200 ${JSON.stringify(r.body)}`)
  }
  for (const path of ['/api/v1/state', '/metrics']) await guardedRead(t, masterUrl, path, OPERATOR)
  t.equal((await call(masterUrl, 'GET', '/health')).status, 200, '/health needs no token')
  // the page is a public shell: it holds no state (its script fetches /api/v1/state with the token)
  const page = await fetch(`${masterUrl}/`)
  t.equal(page.status, 200, 'the page shell needs no token')
  const html = await page.text()
  t.match(html, /<script type="application\/json" id="initial-state"><\/script>/, 'with no state embedded')
  t.notMatch(html, /agent-auth/, 'no agent id in it')
  t.match(html, /<form id="auth" hidden>/, 'with the form that asks for a token')
  t.match(html, /authorization = 'Bearer ' \+ token/, 'whose script sends the token as a header')
})

t.test('Checks that the CLI sends --token (or REGATTA_TOKEN), and says UNAUTHORIZED or FORBIDDEN on one line when the token does not fit', async (t) => {
  const url = f.ci.url
  // no token anywhere: not in the environment, no .regatta/token in this directory
  const env = { REGATTA_TOKEN: '', REGATTA_OPERATOR_TOKEN: '' }
  const none = await regatta(['runs', 'ls', '--ci', url], { cwd, env })
  t.equal(none.code, 1, none.stderr)
  t.match(none.stderr, /Authorization: Bearer/)
  t.equal(none.stderr.trim().split('\n').length, 1, 'one line')
  const read = await regatta(['runs', 'ls', '--json', '--ci', url, '--token', READ], { cwd, env })
  t.equal(read.code, 0, read.stderr)
  t.ok(Array.isArray(JSON.parse(read.stdout)), 'the runs as JSON')
  const forbidden = await regatta(['trigger', '--ci', url, '--token', READ, '--repo', f.repo.url, '--ref', 'main', '--sha', sha], { cwd, env })
  t.equal(forbidden.code, 1)
  t.match(forbidden.stderr, /read-only/)
  const byEnv = await regatta(['trigger', '--json', '--ci', url, '--repo', f.repo.url, '--ref', 'main', '--sha', sha], { cwd, env: { ...env, REGATTA_TOKEN: f.operatorToken } })
  t.equal(byEnv.code, 0, byEnv.stderr)
  const runId = (JSON.parse(byEnv.stdout) as { runId: string }).runId
  const cancel = await regatta(['runs', 'cancel', runId, '--ci', url, '--token', f.operatorToken], { cwd, env })
  t.equal(cancel.code, 0, cancel.stderr)
  const bad = await regatta(['runs', 'ls', '--ci', url, '--token', 'has space'], { cwd, env })
  t.equal(bad.code, 2, 'a malformed --token is a bad argument')
  t.match(bad.stderr, /--token: /)
})

t.test('Checks that outside regatta dev a read without a token is 401 with a JSON body that says why, whatever tokens exist, and that dev\'s auth reads without one', async (t) => {
  // more replicas of the CI service on the same NATS (standbys read the same runs), one per configuration
  const replicas: RunningCi[] = []
  t.teardown(async () => { for (const r of replicas) await r.stop() })
  const replica = async (auth: HttpAuth): Promise<string> => {
    const r = await runCi({ natsUrl: f.cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, webhookSecret: f.webhookSecret, logger: silentLogger(), auth })
    replicas.push(r)
    return r.url
  }
  const operatorOnly = await replica(httpAuthFrom({ operatorToken: f.operatorToken }, {}))
  const noTokens = await replica(httpAuthFrom({}, {}))
  const dev = await replica(httpAuthFrom({ operatorToken: f.operatorToken, openReads: true }, {}))
  for (const path of ['/api/v1/runs', '/metrics']) {
    const r = await call(operatorOnly, 'GET', path)
    t.equal(r.status, 401, `GET ${path}, only an operator token configured, none sent: 401`)
    t.equal(r.body.error?.code, 'UNAUTHORIZED')
    t.match(r.body.error?.message, /needs the header "Authorization: Bearer <token>" with a read or operator token/)
    t.match(r.headers.get('content-type'), /^application\/json/)
    t.equal((await call(operatorOnly, 'GET', path, f.operatorToken)).status, 200, `GET ${path} with the operator token: 200`)
    const none = await call(noTokens, 'GET', path)
    t.equal(none.status, 401, `GET ${path}, no token configured at all: 401 too`)
    t.match(none.body.error?.message, /has none configured: start it with REGATTA_READ_TOKEN/)
    t.equal((await call(dev, 'GET', path)).status, 200, `GET ${path} with regatta dev's auth and no token: 200`)
  }
  t.equal((await call(noTokens, 'GET', '/health')).status, 200, 'health is public everywhere')
  t.equal((await call(dev, 'POST', '/api/v1/runs/nope/cancel')).status, 401, 'dev\'s writes still need the operator token')
})

t.test('Checks that artifacts download by a short-lived signed link a token asks for, which works without a header and names no token', async (t) => {
  const path = `/api/v1/runs/${encodeURIComponent('r-none')}/jobs/${encodeURIComponent('ci/build')}/artifacts`
  t.equal((await call(f.ci.url, 'GET', path)).status, 401, 'the artifacts without a token: 401')
  t.equal((await call(f.ci.url, 'GET', `${path}/link`)).status, 401, 'a link without a token: 401')
  const link = await call(f.ci.url, 'GET', `${path}/link`, READ)
  t.equal(link.status, 200, 'the read token gets a link')
  const url = link.body.url as string
  t.match(url, /^\/api\/v1\/runs\/r-none\/jobs\/ci%2Fbuild\/artifacts\?exp=\d+&sig=[\w-]{43}$/)
  t.notMatch(url, READ, 'the token is not in the link')
  t.ok((link.body.expiresAt as number) > Date.now() && (link.body.expiresAt as number) <= Date.now() + 60_000, 'it lasts at most a minute')
  const followed = await call(f.ci.url, 'GET', url)
  t.equal(followed.status, 404, 'the link gets past the token check with no header (this run saved nothing: 404)')
  t.equal(followed.body.error?.code, 'NOT_FOUND')
  const forged = await call(f.ci.url, 'GET', url.replace(/sig=./, (m) => (m.endsWith('A') ? 'sig=B' : 'sig=A')))
  t.equal(forged.status, 401, 'a changed signature: 401')
  const elsewhere = await call(f.ci.url, 'GET', url.replace('ci%2Fbuild', 'ci%2Ftest'))
  t.equal(elsewhere.status, 401, 'the link does not open another job\'s artifacts')
  const stale = await call(f.ci.url, 'GET', url.replace(/exp=\d+/, `exp=${Date.now() - 1}`))
  t.equal(stale.status, 401)
  t.match(stale.body.error?.message, /expired/)
})
