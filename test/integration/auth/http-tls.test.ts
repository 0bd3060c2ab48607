// HTTPS for the master's and the CI service's HTTP APIs, with a CA made here by openssl (as the
// NATS TLS test does): a master (runMaster) and a CI service (runCi) serving a certificate the CA
// signed answer /health and a token-guarded read over https to a client that trusts the CA; plain
// http to those ports fails; the CLI with --ca (or REGATTA_HTTP_CA) works, and without it, or with
// another CA, says so on one line. `regatta dev --http-cert/--http-key` (the real command) serves
// both APIs over https with open reads. Bad certificate flags stop a command at start (exit 2).
import t from 'tap'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { httpAuthFrom, httpRequest, httpTlsFrom } from '../../../shared/http/index.js'
import { runCi, type RunningCi } from '../../../services/ci/src/main.js'
import { httpMasters, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { freePort } from '../../helpers/nats-server.js'
import { REGATTA_BIN, regatta } from '../../helpers/cli.js'
import { waitUntil } from '../../helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'regatta-http-tls-'))
const f = (n: string): string => join(dir, n)
const ssl = (...args: string[]): void => { execFileSync('openssl', args, { stdio: 'pipe' }) }

/** A CA, and a certificate signed by it (with SAN `san`). */
function makeCa(name: string): void {
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`))
}
function makeCert(ca: string, name: string, san: string): void {
  writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`)
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`))
  ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.pem`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-days', '1', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`))
}

makeCa('ca')
makeCa('other-ca')
makeCert('ca', 'server', 'IP:127.0.0.1,DNS:localhost')

const OPERATOR = 'tls-operator-token'
const READ = 'tls-read-only-token'
const ca = readFileSync(f('ca.pem'))
const tls = httpTlsFrom({ certFile: f('server.pem'), keyFile: f('server.key') }, {})!
const env = { REGATTA_TOKEN: '', REGATTA_OPERATOR_TOKEN: '', REGATTA_HTTP_CA: '' }

let cluster: TestCluster
const masters = httpMasters(() => cluster)
let masterUrl = ''
let ci: RunningCi
let dev: ChildProcess | undefined

t.before(async () => {
  cluster = await startCluster()
  const auth = httpAuthFrom({ operatorToken: OPERATOR, readToken: READ }, {})
  const m = await masters.start('m-tls', OPERATOR, { auth, tls })
  masterUrl = m.httpUrl
  await waitUntil('the master to lead', () => m.master.isLeader, 10_000)
  ci = await runCi({ natsUrl: cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, logger: silentLogger(), auth, tls })
})
t.teardown(async () => {
  if (dev && dev.exitCode === null) {
    const exited = new Promise((resolve) => dev!.once('exit', resolve))
    dev.kill('SIGTERM')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))])
    if (dev.exitCode === null) dev.kill('SIGKILL')
  }
  await ci?.stop()
  await masters.stopAll()
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const get = async (url: string, o: { token?: string; ca?: Buffer } = {}): Promise<{ status: number; body: string }> => {
  const res = await httpRequest(url, { ...(o.ca ? { ca: o.ca } : {}), headers: o.token ? { authorization: `Bearer ${o.token}` } : {}, signal: AbortSignal.timeout(10_000) })
  return { status: res.status, body: await res.text() }
}

t.test('Checks that the master and the CI service over https answer /health and a token-guarded read to a client trusting the test CA', async (t) => {
  t.match(masterUrl, /^https:\/\/127\.0\.0\.1:\d+$/, 'the master says its URL is https')
  t.match(ci.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the CI service says its URL is https')
  for (const [what, base, read] of [['master', masterUrl, '/api/v1/state'], ['CI', ci.url, '/api/v1/runs']] as const) {
    const health = await get(`${base}/health`, { ca })
    t.equal(health.status, 200, `${what} /health over https`)
    t.match(JSON.parse(health.body), { status: 'ok' })
    t.equal((await get(`${base}${read}`, { ca })).status, 401, `${what} ${read} over https without a token: 401`)
    const ok = await get(`${base}${read}`, { ca, token: READ })
    t.equal(ok.status, 200, `${what} ${read} over https with the read token: 200`)
    t.ok(JSON.parse(ok.body), 'JSON')
    t.equal((await get(`${base}/metrics`, { ca, token: READ })).status, 200, `${what} /metrics with the read token`)
    await t.rejects(get(`${base}/health`), { cause: { code: /UNABLE_TO_VERIFY|SELF_SIGNED|CERT/ } }, `${what}: a client trusting only the system's CAs refuses the certificate`)
    await t.rejects(get(`${base}/health`, { ca: readFileSync(f('other-ca.pem')) }), { cause: { code: /UNABLE_TO_VERIFY|SELF_SIGNED|CERT/ } }, `${what}: so does one trusting another CA`)
    // plain http to the https port: the server wants a TLS handshake and drops the connection
    await t.rejects(fetch(`${base.replace('https:', 'http:')}/health`, { signal: AbortSignal.timeout(5_000) }), { name: 'TypeError' }, `${what}: plain http to the https port fails`)
  }
})

t.test('Checks that the CLI reaches an https CI service with --ca or REGATTA_HTTP_CA, and says on one line what is wrong without the CA, with another, or over http', async (t) => {
  const ok = await regatta(['runs', 'ls', '--json', '--ci', ci.url, '--ca', f('ca.pem'), '--token', READ], { env })
  t.equal(ok.code, 0, ok.stderr)
  t.same(JSON.parse(ok.stdout), [], 'no runs yet, read over https')
  const byEnv = await regatta(['runs', 'ls', '--json', '--ci', ci.url, '--token', READ], { env: { ...env, REGATTA_HTTP_CA: f('ca.pem') } })
  t.equal(byEnv.code, 0, byEnv.stderr)
  for (const [what, args] of [['no CA', []], ['another CA', ['--ca', f('other-ca.pem')]]] as const) {
    const r = await regatta(['runs', 'ls', '--ci', ci.url, '--token', READ, ...args], { env })
    t.equal(r.code, 1, `${what}: exit 1`)
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`)
    t.match(r.stderr, /^regatta: cannot trust the CI service at https:\/\/127\.0\.0\.1:\d+: its TLS certificate does not check out \((UNABLE_TO_VERIFY|SELF_SIGNED|CERT)\S*: .*\); give the PEM of the CA that signed it with --ca or REGATTA_HTTP_CA$/m, `${what}: says to give the CA`)
  }
  const plain = await regatta(['runs', 'ls', '--ci', ci.url.replace('https:', 'http:'), '--token', READ], { env })
  t.equal(plain.code, 1)
  t.equal(plain.stderr.trim().split('\n').length, 1, 'http to the https port: one line')
  t.match(plain.stderr, /does it serve HTTPS\? \(try https:\/\/\)/)
  const missing = await regatta(['runs', 'ls', '--ci', ci.url, '--ca', f('no-such.pem')], { env })
  t.equal(missing.code, 2, 'a CA file that is not there is a bad argument')
  t.match(missing.stderr, /^regatta: --ca: cannot read .*no-such\.pem \(ENOENT\)/)
})

t.test('Checks that bad certificate settings stop a service at start with one line naming the flag or variable', async (t) => {
  t.throws(() => httpTlsFrom({ certFile: f('server.pem') }, {}), { code: 'INVALID_CONFIG', message: /^--http-cert: HTTPS needs a certificate and its key; --http-key or REGATTA_HTTP_KEY is missing$/ })
  t.throws(() => httpTlsFrom({}, { REGATTA_HTTP_KEY: f('server.key') }), { code: 'INVALID_CONFIG', message: /^REGATTA_HTTP_KEY: .*REGATTA_HTTP_CERT is missing$/ })
  t.throws(() => httpTlsFrom({ certFile: f('server.pem'), keyFile: f('other-ca.key') }, {}), { code: 'INVALID_CONFIG', message: /not a PEM certificate and its key/ }, 'a key of another certificate')
  t.throws(() => httpTlsFrom({ certFile: f('server.csr'), keyFile: f('server.key') }, {}), { code: 'INVALID_CONFIG' }, 'not a certificate')
  t.equal(httpTlsFrom({}, { REGATTA_HTTP_CERT: '', REGATTA_HTTP_KEY: '' }), undefined, 'empty variables: plain HTTP')
  const master = await regatta(['master', '--nats', cluster.nats.url, '--http', '127.0.0.1:0', '--http-cert', f('server.pem')], { env })
  t.equal(master.code, 2, 'regatta master: exit 2')
  t.equal(master.stderr, 'regatta: --http-cert: HTTPS needs a certificate and its key; --http-key or REGATTA_HTTP_KEY is missing\n')
  const ciCmd = await regatta(['ci', '--nats', cluster.nats.url, '--http', '127.0.0.1:0'], { env: { ...env, REGATTA_HTTP_CERT: f('server.pem'), REGATTA_HTTP_KEY: f('missing.key') } })
  t.equal(ciCmd.code, 2, 'regatta ci: exit 2')
  t.match(ciCmd.stderr, /^regatta: REGATTA_HTTP_KEY: cannot read .*missing\.key \(ENOENT\)\n$/)
})

t.test('Checks that regatta dev --http-cert/--http-key serves both APIs over https, reads open without a token, writes still behind its token', async (t) => {
  const [natsPort, masterPort, ciPort] = [await freePort(), await freePort(), await freePort()]
  const data = f('dev-data')
  let out = ''
  const child = dev = spawn(process.execPath, [REGATTA_BIN, 'dev', '--nats-port', String(natsPort), '--master-port', String(masterPort), '--ci-port', String(ciPort),
    '--data', data, '--containerizer', 'process', '--http-cert', f('server.pem'), '--http-key', f('server.key')], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env, REGATTA_LOG_LEVEL: 'warn' },
  })
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  await waitUntil('regatta dev to start', () => {
    if (child.exitCode !== null) throw new Error(`regatta dev exited ${child.exitCode}: ${out}`)
    return out.includes('Regatta is running')
  }, 45_000, 100)
  const master = `https://127.0.0.1:${masterPort}`
  const ciUrl = `https://127.0.0.1:${ciPort}`
  t.match(out, `master UI   ${master}/`, 'it prints https URLs')
  t.match(out, `runs UI     ${ciUrl}/`)
  t.match(out, /https .*REGATTA_HTTP_CA/)
  await waitUntil('the dev master to lead', async () => (await get(`${master}/api/v1/state`, { ca })).status === 200, 15_000, 200)
  const state = JSON.parse((await get(`${master}/api/v1/state`, { ca })).body) as { masterId: string }
  t.equal(state.masterId, 'dev-master', 'the state over https with no token: dev reads are open')
  t.equal((await get(`${master}/metrics`, { ca })).status, 200, 'metrics too')
  const page = await get(`${master}/`, { ca })
  t.match(page.body, /"masterId":"dev-master"/, 'in dev the page embeds the state (anyone may read it here)')
  t.equal((await get(`${ciUrl}/api/v1/runs`, { ca })).status, 200, 'the runs over https with no token')
  const token = readFileSync(join(data, 'token'), 'utf8').trim()
  const write = (auth?: string): Promise<Response> => httpRequest(`${ciUrl}/api/v1/runs/r-none/cancel`, { method: 'POST', ca, headers: auth ? { authorization: `Bearer ${auth}` } : {} })
  t.equal((await write()).status, 401, 'a write without the token: 401')
  t.equal((await write(token)).status, 404, 'with dev\'s token it gets past the check (no such run)')
  await t.rejects(fetch(`http://127.0.0.1:${ciPort}/health`, { signal: AbortSignal.timeout(5_000) }), { name: 'TypeError' }, 'plain http to dev\'s CI port fails')
  const cli = await regatta(['runs', 'ls', '--json', '--ci', ciUrl, '--ca', f('ca.pem')], { env, cwd: dir })
  t.equal(cli.code, 0, cli.stderr)
})
