// The HTTP token configuration and check (shared/http/auth.ts): httpAuthFrom from flags, env and
// a tokens file; checkAccess per route kind and token role; through plain calls, no server.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkAccess, checkSignedLink, httpAuthFrom, parseTokensFile, signedLink, type HttpAuth } from '../../../shared/http/index.js'
import { RegattaError } from '../../../shared/errors/index.js'

const OP = 'operator-token-123'
const READ = 'read-token-4567'

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn()
    return undefined
  } catch (err) {
    return (err as RegattaError).code
  }
}
const messageOf = (fn: () => unknown): string | undefined => {
  try {
    fn()
    return undefined
  } catch (err) {
    return (err as RegattaError).message
  }
}

t.test('Checks that httpAuthFrom takes flags over the environment, reads a tokens file, and opens reads only when asked to (regatta dev)', async (t) => {
  t.same(httpAuthFrom({}, {}), { tokens: [], openReads: false }, 'nothing configured: reads closed too, no operator')
  const onlyOp = httpAuthFrom({}, { REGATTA_OPERATOR_TOKEN: OP })
  t.same(onlyOp.tokens.map((x) => x.role), ['operator'])
  t.equal(onlyOp.openReads, false, 'an operator token alone: reads need it')
  const both = httpAuthFrom({ operatorToken: 'flag-operator-1' }, { REGATTA_OPERATOR_TOKEN: OP, REGATTA_READ_TOKEN: READ })
  t.same(both.tokens.map((x) => [x.role, x.token]), [['operator', 'flag-operator-1'], ['read', READ]], 'the flag wins')
  t.equal(both.openReads, false, 'a read token closes reads')
  t.equal(httpAuthFrom({ openReads: true }, { REGATTA_READ_TOKEN: READ }).openReads, true, 'regatta dev may keep them open')
  t.same(httpAuthFrom({}, { REGATTA_OPERATOR_TOKEN: '', REGATTA_READ_TOKEN: '' }).tokens, [], 'empty means unset')

  const dir = await mkdtemp(join(tmpdir(), 'regatta-tokens-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'tokens')
  await writeFile(file, `# who:role:token\nalice:operator:${OP}\n\ngrafana:read:${READ}\n`)
  const fromFile = httpAuthFrom({}, { REGATTA_TOKENS_FILE: file })
  t.same(fromFile.tokens, [{ name: 'alice', role: 'operator', token: OP }, { name: 'grafana', role: 'read', token: READ }])
  t.equal(fromFile.openReads, false)

  for (const [text, where] of [['alice:admin:' + OP, ':1: role "admin"'], ['no colons here', ':1: expected'], ['\nbob:read:short', ':2: a token must be']] as const) {
    t.throws(() => parseTokensFile(text, 'tokens.txt'), { code: 'INVALID_CONFIG', message: new RegExp(`^tokens\\.txt${where}`) }, JSON.stringify(text))
  }
  t.throws(() => httpAuthFrom({}, { REGATTA_TOKENS_FILE: join(dir, 'missing') }), { code: 'INVALID_CONFIG', message: /^REGATTA_TOKENS_FILE: cannot read .*ENOENT/ })
  t.throws(() => httpAuthFrom({}, { REGATTA_READ_TOKEN: 'has space in it' }), { code: 'INVALID_CONFIG', message: /^REGATTA_READ_TOKEN: / })
  t.throws(() => httpAuthFrom({ operatorToken: 'short' }, {}), { code: 'INVALID_CONFIG', message: /^--operator-token: / })
})

t.test('Checks that checkAccess lets each role do what it may and refuses the rest with its code', async (t) => {
  const closed: HttpAuth = httpAuthFrom({}, { REGATTA_OPERATOR_TOKEN: OP, REGATTA_READ_TOKEN: READ })
  const bearer = (x: string): string => `Bearer ${x}`
  t.equal(codeOf(() => checkAccess(closed, 'public', undefined)), undefined, 'public: nothing needed')
  t.equal(codeOf(() => checkAccess(closed, 'read', undefined)), 'UNAUTHORIZED')
  t.equal(checkAccess(closed, 'read', bearer(READ))?.role, 'read')
  t.equal(checkAccess(closed, 'read', bearer(OP))?.role, 'operator', 'an operator token reads too')
  t.equal(codeOf(() => checkAccess(closed, 'operator', bearer(READ))), 'FORBIDDEN')
  t.equal(checkAccess(closed, 'operator', `bearer  ${OP} `)?.role, 'operator', 'the scheme in any case, spaces around')
  for (const header of [undefined, '', OP, `Basic ${OP}`, `Bearer ${OP}x`, `Bearer ${OP} extra`]) {
    t.equal(codeOf(() => checkAccess(closed, 'operator', header)), 'UNAUTHORIZED', JSON.stringify(header))
  }
  const none = httpAuthFrom({}, {})
  t.equal(codeOf(() => checkAccess(none, 'read', undefined)), 'UNAUTHORIZED', 'no tokens: reads closed all the same')
  t.match(messageOf(() => checkAccess(none, 'read', undefined)), /has none configured: start it with REGATTA_READ_TOKEN/, 'saying the server has no token')
  t.equal(codeOf(() => checkAccess(httpAuthFrom({ openReads: true }, {}), 'read', undefined)), undefined, 'regatta dev: open reads')
  t.equal(codeOf(() => checkAccess(none, 'operator', bearer(OP))), 'OPERATOR_API_DISABLED', 'no operator token: writes disabled')
  const readOnly = httpAuthFrom({}, { REGATTA_READ_TOKEN: READ })
  t.equal(codeOf(() => checkAccess(readOnly, 'operator', bearer(READ))), 'OPERATOR_API_DISABLED')
})

t.test('Checks that a signed link works for its path until it expires, only with a token the server knows, and names no token', async (t) => {
  const auth = httpAuthFrom({}, { REGATTA_OPERATOR_TOKEN: OP, REGATTA_READ_TOKEN: READ })
  const path = '/api/v1/runs/r1/jobs/ci%2Fbuild%20(x%3D1)/artifacts'
  const now = 1_700_000_000_000
  const link = signedLink(auth, `Bearer ${READ}`, path, now, 60_000)
  t.equal(link.expiresAt, now + 60_000)
  t.notMatch(link.url, READ, 'the token is not in the link')
  const u = new URL(link.url, 'http://x')
  t.equal(u.pathname, path)
  const exp = u.searchParams.get('exp') ?? undefined
  const sig = u.searchParams.get('sig') ?? undefined
  t.equal(checkSignedLink(auth, path, exp, sig, now + 59_000).role, 'read', 'within its minute: the read token signed it')
  t.equal(checkSignedLink(auth, '/api/v1/runs/r1/jobs/ci/build (x=1)/artifacts', exp, sig, now).role, 'read', 'the same path encoded otherwise')
  t.match(messageOf(() => checkSignedLink(auth, path, exp, sig, now + 60_000)), /expired/)
  t.equal(codeOf(() => checkSignedLink(auth, path.replace('r1', 'r2'), exp, sig, now)), 'UNAUTHORIZED', 'another path')
  t.equal(codeOf(() => checkSignedLink(auth, path, String(Number(exp) + 1), sig, now)), 'UNAUTHORIZED', 'a changed expiry')
  t.match(messageOf(() => checkSignedLink(auth, path, exp, 'x', now)), /malformed/)
  t.equal(codeOf(() => checkSignedLink(httpAuthFrom({}, { REGATTA_READ_TOKEN: 'another-read-token' }), path, exp, sig, now)), 'UNAUTHORIZED', 'a server without that token')
  t.equal(codeOf(() => signedLink(auth, 'Bearer not-known-here', path, now)), 'UNAUTHORIZED', 'only a known token gets a link')
  t.same(signedLink(httpAuthFrom({ openReads: true }, {}), undefined, path, now), { url: path }, 'open reads: the path itself')
})
