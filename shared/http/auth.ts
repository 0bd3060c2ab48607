// Bearer tokens of the HTTP APIs (master and CI service): who may read, who may act. Each token
// has a role: `read` (GET routes) or `operator` (GET routes and every write). One onRequest hook
// per server decides by route: public (health, webhooks with their own signature), read, operator.
// Reads need a token everywhere but in `regatta dev` (openReads).
//
//   const auth = httpAuthFrom({ operatorToken: flag }, process.env)
//   installAccessHook(app, auth, { public: ['/health', '/webhooks/github'] })
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { RegattaError } from '../errors/index.js'

export type TokenRole = 'read' | 'operator'
/** What a route needs: nothing, a read or operator token, or an operator token. */
export type RouteAccess = 'public' | 'read' | 'operator'

export interface ApiToken {
  /** Who holds it (logged, never the token). */
  name: string
  role: TokenRole
  token: string
}

export interface HttpAuth {
  tokens: readonly ApiToken[]
  /** GET routes answer without a token: only in `regatta dev` (and tests not about tokens). */
  openReads: boolean
}

/** Where tokens come from; flags win over the environment. */
export interface HttpAuthSources {
  /** REGATTA_OPERATOR_TOKEN */
  operatorToken?: string
  /** REGATTA_READ_TOKEN */
  readToken?: string
  /** REGATTA_TOKENS_FILE: lines `name:role:token` (role read|operator), `#` comments. */
  tokensFile?: string
  /** Reads need no token (`regatta dev` only); otherwise every read needs a read or operator token. */
  openReads?: boolean
}

const TOKEN_RE = /^[\x21-\x7e]{8,512}$/

/** A token as it travels in an `Authorization` header: 8 to 512 printable ASCII, no spaces. */
export function checkTokenText(token: string, where: string): string {
  if (!TOKEN_RE.test(token)) throw new RegattaError('INVALID_CONFIG', `${where}: a token must be 8 to 512 printable ASCII characters without spaces`)
  return token
}

/** Parses a tokens file: one `name:role:token` per line; blank lines and `#` comments skipped. */
export function parseTokensFile(text: string, path: string): ApiToken[] {
  const tokens: ApiToken[] = []
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const where = `${path}:${i + 1}`
    const m = /^([A-Za-z0-9._@-]{1,64}):([a-z]+):(.*)$/.exec(line)
    if (!m) throw new RegattaError('INVALID_CONFIG', `${where}: expected "name:role:token" (name of letters, digits, . _ @ -)`)
    const [, name, role, token] = m as unknown as [string, string, string, string]
    if (role !== 'read' && role !== 'operator') throw new RegattaError('INVALID_CONFIG', `${where}: role "${role}" is not read or operator`)
    tokens.push({ name, role, token: checkTokenText(token, where) })
  }
  return tokens
}

/**
 * The HTTP auth configuration from flags and environment (REGATTA_OPERATOR_TOKEN,
 * REGATTA_READ_TOKEN, REGATTA_TOKENS_FILE); an empty variable counts as unset. Reads need a read
 * or operator token unless `openReads` is asked for (`regatta dev`): an API left without
 * tokens by mistake shows nothing rather than everything.
 */
export function httpAuthFrom(src: HttpAuthSources = {}, env: NodeJS.ProcessEnv = process.env): HttpAuth {
  const pick = (flag: string | undefined, name: string): [string, string] | undefined => {
    if (flag !== undefined && flag !== '') return [flag, name.replace(/^REGATTA_/, '--').toLowerCase().replace(/_/g, '-')]
    const v = env[name]
    return v === undefined || v === '' ? undefined : [v, name]
  }
  const tokens: ApiToken[] = []
  const op = pick(src.operatorToken, 'REGATTA_OPERATOR_TOKEN')
  if (op) tokens.push({ name: 'operator', role: 'operator', token: checkTokenText(op[0], op[1]) })
  const read = pick(src.readToken, 'REGATTA_READ_TOKEN')
  if (read) tokens.push({ name: 'read', role: 'read', token: checkTokenText(read[0], read[1]) })
  const file = pick(src.tokensFile, 'REGATTA_TOKENS_FILE')
  if (file) {
    let text: string
    try {
      text = readFileSync(file[0], 'utf8')
    } catch (err) {
      throw new RegattaError('INVALID_CONFIG', `${file[1]}: cannot read ${file[0]} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    }
    tokens.push(...parseTokensFile(text, file[0]))
  }
  return { tokens, openReads: src.openReads === true }
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** The configured token a bearer header carries, compared in constant time; undefined: none matches. */
function tokenOf(auth: HttpAuth, authorization: string | undefined): ApiToken | undefined | 'malformed' {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')
  if (!m) return 'malformed'
  const given = digest(m[1]!)
  let found: ApiToken | undefined
  // every token compared, so the time says nothing about which one matched
  for (const t of auth.tokens) if (timingSafeEqual(given, digest(t.token)) && !found) found = t
  return found
}

/**
 * Checks a request's `Authorization` header for what a route needs. Throws UNAUTHORIZED (401)
 * for a missing, malformed or unknown token, FORBIDDEN (403) for a read-only token on a write,
 * OPERATOR_API_DISABLED (403) for a write when no operator token is configured at all.
 * Returns the token used (undefined for open reads and public routes).
 */
export function checkAccess(auth: HttpAuth, need: RouteAccess, authorization: string | undefined): ApiToken | undefined {
  if (need === 'public') return undefined
  if (need === 'read' && auth.openReads) return undefined
  if (need === 'operator' && !auth.tokens.some((t) => t.role === 'operator')) {
    throw new RegattaError('OPERATOR_API_DISABLED', 'writes over HTTP are disabled: no operator token is configured; start with --operator-token or REGATTA_OPERATOR_TOKEN (or an operator line in REGATTA_TOKENS_FILE)')
  }
  if (need === 'read' && auth.tokens.length === 0) {
    throw new RegattaError('UNAUTHORIZED', 'reads over HTTP need a token, and this server has none configured: start it with REGATTA_READ_TOKEN (or REGATTA_OPERATOR_TOKEN, or REGATTA_TOKENS_FILE) and send "Authorization: Bearer <token>"')
  }
  const token = tokenOf(auth, authorization)
  const wanted = need === 'operator' ? 'an operator token' : 'a read or operator token'
  if (token === 'malformed') throw new RegattaError('UNAUTHORIZED', `this call needs the header "Authorization: Bearer <token>" with ${wanted}`)
  if (!token) throw new RegattaError('UNAUTHORIZED', 'the bearer token is not one this server knows')
  if (need === 'operator' && token.role !== 'operator') throw new RegattaError('FORBIDDEN', `token "${token.name}" is read-only: this call needs an operator token`)
  return token
}

/** What a route needs when nothing says otherwise: GET and HEAD read, every other method writes. */
export function accessOf(method: string): RouteAccess {
  return method === 'GET' || method === 'HEAD' ? 'read' : 'operator'
}

export interface AccessHookOptions {
  /** Route paths (as registered, e.g. `/webhooks/github`) anyone may call. */
  public?: readonly string[]
}

/** How long a signed download link (signedLink) works. */
export const SIGNED_LINK_TTL_MS = 60_000

/** A path compared by what it names: `%2F` and `/` alike (browsers may re-encode a link). */
function canonicalPath(path: string): string {
  try {
    return decodeURIComponent(path)
  } catch {
    return path
  }
}

const linkSignature = (token: ApiToken, path: string, expiresAt: number): Buffer =>
  createHmac('sha256', token.token).update(`GET\n${canonicalPath(path)}\n${expiresAt}`).digest()

/**
 * A link to a GET `path` that works without an `Authorization` header for `ttlMs` (a browser
 * download cannot send one): `path?exp=<ms>&sig=<HMAC of the path and expiry keyed by the
 * caller's token>`. It names no token, and dies with the token (or its expiry). Open reads
 * (no token used): the path itself.
 */
export function signedLink(auth: HttpAuth, authorization: string | undefined, path: string, now = Date.now(), ttlMs = SIGNED_LINK_TTL_MS): { url: string; expiresAt?: number } {
  const token = checkAccess(auth, 'read', authorization)
  if (!token) return { url: path }
  const expiresAt = now + ttlMs
  return { url: `${path}${path.includes('?') ? '&' : '?'}exp=${expiresAt}&sig=${linkSignature(token, path, expiresAt).toString('base64url')}`, expiresAt }
}

/** The token a signed link was made with, if `sig` fits `path` and `exp` has not passed; throws UNAUTHORIZED otherwise. */
export function checkSignedLink(auth: HttpAuth, path: string, exp: string | undefined, sig: string | undefined, now = Date.now()): ApiToken {
  const expiresAt = Number(exp)
  if (!Number.isSafeInteger(expiresAt) || typeof sig !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(sig)) {
    throw new RegattaError('UNAUTHORIZED', 'this download link is malformed: ask the API for a new one (or send "Authorization: Bearer <token>")')
  }
  if (expiresAt <= now) throw new RegattaError('UNAUTHORIZED', 'this download link has expired: ask the API for a new one')
  const given = Buffer.from(sig, 'base64url')
  let found: ApiToken | undefined
  for (const t of auth.tokens) if (timingSafeEqual(given, linkSignature(t, path, expiresAt)) && !found) found = t
  if (!found) throw new RegattaError('UNAUTHORIZED', 'this download link is not valid here (its token is not one this server knows)')
  return found
}

/**
 * Checks every routed request before anything else runs (body parsing included): a route's
 * `config.access` if it sets one, else `accessOf(method)`. Unrouted requests get their 404.
 * A route with `config.signedLinks` also takes a signed link (`?exp=&sig=`, signedLink) instead
 * of a token.
 */
export function installAccessHook(app: FastifyInstance<any, any, any, any>, auth: HttpAuth, o: AccessHookOptions = {}): void {
  const open = new Set(o.public ?? [])
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const url = request.routeOptions.url
    if (url === undefined) return
    const config = request.routeOptions.config as { access?: RouteAccess; signedLinks?: boolean } | undefined
    const need = config?.access ?? (open.has(url) ? 'public' : accessOf(request.method))
    try {
      const q = request.query as { exp?: string; sig?: string } | undefined
      if (config?.signedLinks && q?.sig !== undefined && request.headers.authorization === undefined) {
        checkSignedLink(auth, request.url.split('?')[0]!, q.exp, q.sig)
        return
      }
      checkAccess(auth, need, request.headers.authorization)
    } catch (err) {
      if ((err as RegattaError).code === 'UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="regatta"')
      throw err
    }
  })
}
