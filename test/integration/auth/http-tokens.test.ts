// Bearer tokens on every HTTP route of a real master (runMaster) and a real CI service (runCi),
// each with an operator token and a read-only token configured (REGATTA_READ_TOKEN): each write
// with no token (401), an unknown token (401), the read token (403 FORBIDDEN) and the operator
// token (its own answer); each read without a token (401) and with either token (200); the
// public routes (health, the UI's pages, the signed webhook) with none; and the CLI's --token.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { httpMasters, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { FIXTURE_OPERATOR_TOKEN, startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { httpAuthFrom } from '../../../shared/http/index.js'
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
  const m = await masters.start('m-auth', OPERATOR)
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

t.test('Checks that every write route of the master needs the operator token, reads need a token, and health needs none', async (t) => {
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
  for (const path of ['/api/v1/state', '/metrics', '/']) await guardedRead(t, masterUrl, path, OPERATOR)
  t.equal((await call(masterUrl, 'GET', '/health')).status, 200, '/health needs no token')
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
