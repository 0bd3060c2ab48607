// TLS for NATS with a CA made here by openssl: the server presents a certificate the CA signed;
// a client that trusts the CA connects, one that does not is refused. With `verify`, a client
// also needs a certificate of that CA.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectNats, devUsers, natsSecurityOptions, request } from '../../../shared/nats/index.js'
import { ClusterState, Subjects } from '../../../shared/protocol/index.js'
import { startSecureNats, type SecureNats } from './secure-nats.js'

const dir = mkdtempSync(join(tmpdir(), 'regatta-nats-tls-'))
const f = (n: string): string => join(dir, n)
const ssl = (...args: string[]): void => { execFileSync('openssl', args, { stdio: 'pipe' }) }

/** A CA, and a certificate for `cn` signed by it (with SAN `san`). */
function makeCa(name: string): void {
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`))
}
function makeCert(ca: string, name: string, san: string, usage: string): void {
  writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`)
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`))
  ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.pem`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-days', '1', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`))
}

makeCa('ca')
makeCa('other-ca')
makeCert('ca', 'server', 'IP:127.0.0.1,DNS:localhost', 'serverAuth')
makeCert('ca', 'client', 'DNS:client', 'clientAuth')
makeCert('other-ca', 'stranger', 'DNS:stranger', 'clientAuth')

const users = devUsers({ agentIds: [] })
const operator = users.find((u) => u.role === 'operator')!
let plain: SecureNats
let verifying: SecureNats
t.before(async () => {
  plain = await startSecureNats(users, { certFile: f('server.pem'), keyFile: f('server.key') })
  verifying = await startSecureNats(users, { certFile: f('server.pem'), keyFile: f('server.key'), caFile: f('ca.pem'), verify: true })
})
t.teardown(async () => {
  await plain?.stop()
  await verifying?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const creds = { user: operator.user, pass: operator.password, maxReconnectAttempts: 0, timeout: 3_000 }

t.test('Checks that a client trusting the test CA connects over TLS and talks to the server', async (t) => {
  const nc = await connectNats(plain.url, 'tls-ok', { ...creds, ...natsSecurityOptions({ caFile: f('ca.pem') }) })
  const sub = nc.subscribe('tls.echo', { max: 1, callback: (_e, m) => m.respond(m.data) })
  const reply = await nc.request('tls.echo', new TextEncoder().encode('over tls'), { timeout: 2_000 })
  t.equal(new TextDecoder().decode(reply.data), 'over tls')
  t.equal(sub.getProcessed(), 1, 'the responder got the request')
  await t.rejects(request(nc, Subjects.masterState, {}, ClusterState, 300), { code: /NO_RESPONDERS|TIMEOUT/ }, 'the Requester works over TLS (nobody serves the state here)')
  await nc.close()
})

t.test('Checks that a client without the CA, or trusting another CA, is refused', async (t) => {
  await t.rejects(connectNats(plain.url, 'no-ca', creds), { message: /certificate|self.signed|unable to verify|tls/i })
  await t.rejects(connectNats(plain.url, 'other-ca', { ...creds, ...natsSecurityOptions({ caFile: f('other-ca.pem') }) }), { message: /certificate|self.signed|unable to verify|tls/i })
})

t.test('Checks that a server with verify refuses a client without a certificate of its CA, and takes one with it', async (t) => {
  await t.rejects(connectNats(verifying.url, 'no-cert', { ...creds, timeout: 1_500, ...natsSecurityOptions({ caFile: f('ca.pem') }) }))
  await t.rejects(connectNats(verifying.url, 'stranger', { ...creds, timeout: 1_500, ...natsSecurityOptions({ caFile: f('ca.pem'), certFile: f('stranger.pem'), keyFile: f('stranger.key') }) }))
  const nc = await connectNats(verifying.url, 'client', { ...creds, ...natsSecurityOptions({ caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client.key') }) })
  await nc.flush()
  t.notOk(nc.isClosed(), 'the client with the CA\'s certificate is connected')
  await nc.close()
})

t.test('Checks that the REGATTA_NATS_* environment gives connectNats the user, password and CA', async (t) => {
  const saved = { ...process.env }
  t.teardown(() => {
    for (const k of ['REGATTA_NATS_USER', 'REGATTA_NATS_PASSWORD', 'REGATTA_NATS_CA']) {
      if (saved[k] === undefined) delete process.env[k]
      else process.env[k] = saved[k]
    }
  })
  process.env.REGATTA_NATS_USER = operator.user
  process.env.REGATTA_NATS_PASSWORD = operator.password
  process.env.REGATTA_NATS_CA = f('ca.pem')
  const nc = await connectNats(plain.url, 'from-env', { maxReconnectAttempts: 0 })
  await nc.flush()
  t.notOk(nc.isClosed())
  await nc.close()
  process.env.REGATTA_NATS_PASSWORD = 'wrong-password'
  await t.rejects(connectNats(plain.url, 'from-env', { maxReconnectAttempts: 0 }), { code: 'NATS_AUTH' })
})
