// POST /webhooks/github (fastify inject, bodies signed with the secret as GitHub signs them) on
// generated input: push and pull_request payloads made from the schemas of the fields Regatta
// reads (their answer predicted from GitHub's rules), the same with one field broken, any
// other event, nesting of every depth in any field, bodies around the size limit. The answer is
// always a 2xx or a 4xx with { error: { code, message } }, never a 5xx nor a crash, each within
// the CPU-time hang guard (fuzz.ts). test/unit/github/webhook.test.ts holds the route's
// example-based tests and a random-body property.
import t from 'tap'
import fc from 'fast-check'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { webhookRoutes, type WebhookOptions } from '../../../services/ci/src/github/webhook.js'
import { PullRequestPayload, PushPayload } from '../../../services/ci/src/github/events.js'
import type { Trigger } from '../../../services/ci/src/trigger.js'
import { silentLogger } from '../../../shared/log/index.js'
import { pullRequestPayload, pushPayload, tagPayload, webhookHeaders } from '../../helpers/github-api.js'
import { HANG_GUARD_MS, SEED, cpuTimedAsync, fuzz } from './fuzz.js'
import { arbitraryOf, mutate, type Mutation } from './schema-arbitrary.js'

t.comment(`fuzz seed ${SEED} (REGATTA_FUZZ_SEED to change it)`)

const SECRET = 'It\'s a Secret to Everybody'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

async function server(overrides: Partial<WebhookOptions> = {}): Promise<{ app: FastifyInstance; triggers: Trigger[] }> {
  const triggers: Trigger[] = []
  const app = Fastify({ logger: false })
  await app.register(webhookRoutes, { secret: SECRET, onTrigger: (trigger) => { triggers.push(trigger) }, logger: silentLogger(), ...overrides })
  await app.ready()
  t.teardown(() => app.close())
  return { app, triggers }
}

let deliveries = 0

/** Posts a body signed as GitHub signs it; fails on a 5xx, an answer without its shape, or a hang. */
async function post(app: FastifyInstance, event: string, body: string, contentType = 'application/json'): Promise<LightMyRequestResponse> {
  const headers = { ...webhookHeaders({ event, body, secret: SECRET, deliveryId: `fuzz-${++deliveries}` }), 'content-type': contentType }
  const { value: res, ms } = await cpuTimedAsync(() => app.inject({ method: 'POST', url: '/webhooks/github', payload: body, headers }))
  const what = `${event} ${JSON.stringify(body.slice(0, 150))}: ${res.statusCode} ${res.body.slice(0, 300)}`
  if (ms > HANG_GUARD_MS) throw new Error(`${what}: ${Math.round(ms)} ms of CPU`)
  if (res.statusCode >= 500) throw new Error(`a 5xx: ${what}`)
  const answer = res.json() as { result?: unknown; error?: { code?: unknown; message?: unknown } }
  if (res.statusCode >= 400) {
    if (typeof answer.error?.code !== 'string' || typeof answer.error.message !== 'string' || answer.error.message.includes('\n')) throw new Error(`no clear error: ${what}`)
  } else if (typeof answer.result !== 'string') throw new Error(`no result: ${what}`)
  return res
}

/** What GitHub's rules say a valid payload comes to: a run (kind, ref) or nothing. */
function expected(event: string, p: Record<string, any>): { kind: string; ref: string; sha: string } | 'ignored' {
  if (event === 'push') {
    if (p.deleted === true || /^0+$/.test(p.after)) return 'ignored'
    if (/^refs\/heads\/./.test(p.ref)) return { kind: 'push', ref: p.ref, sha: p.after }
    if (/^refs\/tags\/./.test(p.ref)) return { kind: 'tag', ref: p.ref, sha: p.after }
    return 'ignored'
  }
  if (!['opened', 'synchronize', 'reopened'].includes(p.action)) return 'ignored'
  return { kind: 'pull_request', ref: `refs/pull/${p.number}/head`, sha: p.pull_request.head.sha }
}

// Payloads from the schemas (any value of the fields read), and GitHub's own shapes (with the
// many fields not read), with refs and actions that matter more often than chance would give.
const refs = fc.constantFrom('refs/heads/main', 'refs/heads/feature/ü🚀', 'refs/tags/v1.0.0', 'refs/pull/1/head', 'refs/heads/', 'refs/tags/', 'main')
const fromSchema = fc.oneof(
  fc.tuple(arbitraryOf(PushPayload), refs, fc.boolean()).map(([p, ref, realRef]) => ['push', { ...(p as object), ...(realRef ? { ref } : {}) }] as const),
  fc.tuple(arbitraryOf(PullRequestPayload), fc.constantFrom('opened', 'synchronize', 'reopened', 'closed', 'labeled')).map(([p, action]) => ['pull_request', { ...(p as object), action }] as const),
)
const realistic = fc.oneof(
  fc.record({ branch: fc.string({ minLength: 1, maxLength: 20 }), deleted: fc.boolean(), created: fc.boolean(), files: fc.array(fc.string({ maxLength: 30 }), { maxLength: 5 }) })
    .map(({ branch, deleted, created, files }) => ['push', pushPayload({ branch, deleted, created, commits: [{ added: files }] })] as const),
  fc.string({ minLength: 1, maxLength: 20 }).map((tag) => ['push', tagPayload({ tag })] as const),
  fc.record({ action: fc.constantFrom('opened', 'synchronize', 'reopened', 'closed', 'edited'), number: fc.integer({ min: 1, max: 1e6 }), fork: fc.constantFrom<string | null | undefined>(undefined, 'evil/app', null) })
    .map(({ action, number, fork }) => ['pull_request', pullRequestPayload({ action, number, headRepo: fork })] as const),
)
const payloads = fc.oneof(fromSchema, realistic) as fc.Arbitrary<readonly [string, Record<string, any>]>

t.test('Checks (property) that valid push and pull_request payloads get the answer GitHub\'s rules predict, and start that run', async (t) => {
  const { app, triggers } = await server()
  let started = 0
  await fc.assert(fc.asyncProperty(payloads, async ([event, payload]) => {
    const before = triggers.length
    const res = await post(app, event, JSON.stringify(payload))
    const want = expected(event, payload)
    if (want === 'ignored') {
      if (res.statusCode !== 200 || res.json().result !== 'ignored' || triggers.length !== before) throw new Error(`${event} not ignored: ${res.body}`)
    } else {
      const got = res.json()
      if (res.statusCode !== 202 || got.kind !== want.kind || got.ref !== want.ref || got.sha !== want.sha) throw new Error(`${event}: ${res.body}, expected ${JSON.stringify(want)}`)
      const run = triggers.at(-1)!
      if (triggers.length !== before + 1 || run.kind !== want.kind || run.ref !== want.ref || run.sha !== want.sha) throw new Error('not the run started')
      started++
    }
  }), fuzz(300))
  t.ok(started > 0, `${started} runs started`)
})

const BAD: Json[] = ['', 'x'.repeat(5000), -1, 1.5, null, true, [], {}, 'HEAD', '0'.repeat(40), 'no-slash', { login: 7 }]

t.test('Checks (property) that a payload with one field broken gets a 2xx or a 400 naming that field', async (t) => {
  const { app } = await server()
  let refused = 0
  await fc.assert(fc.asyncProperty(payloads, fc.nat(), fc.constantFrom<Mutation>('replace', 'delete', 'add'), fc.oneof(fc.constantFrom(...BAD), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>),
    async ([event, payload], pick, kind, by) => {
      const { value, at } = mutate(payload as Json, pick, kind, by)
      const res = await post(app, event, JSON.stringify(value))
      if (res.statusCode === 400) {
        refused++
        const m = /^invalid (push|pull_request) payload: (\(root\)|\/[^:]*): /.exec(res.json().error.message)
        const where = m?.[2] === '(root)' ? '' : m?.[2]
        if (res.json().error.code !== 'INVALID_MESSAGE' || where === undefined) throw new Error(`unclear: ${res.body}`)
        if (!(where === at || where.startsWith(`${at}/`) || at.startsWith(`${where}/`) || where === '' || at === '')) throw new Error(`changed ${at}, refused naming ${where}`)
      } else if (res.statusCode !== 200 && res.statusCode !== 202) throw new Error(`${res.statusCode}: ${res.body}`)
    }), fuzz(400))
  t.ok(refused > 0, `${refused} refused, each naming its field`)
})

t.test('Checks (property) that any event name and any body, correctly signed, gets a 2xx or a 4xx with { error: { code, message } }', async (t) => {
  const { app } = await server()
  const events = fc.oneof(fc.constantFrom('push', 'pull_request', 'ping', 'issues', 'create', 'delete', 'release', 'workflow_run'), fc.stringMatching(/^[a-z_]{1,64}$/))
  const bodies = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.tuple(payloads, fc.nat(400)).map(([[, p], cut]) => JSON.stringify(p).slice(0, cut)),
  )
  await fc.assert(fc.asyncProperty(events, bodies, fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'text/plain'), async (event, body, type) => {
    await post(app, event, type === 'application/x-www-form-urlencoded' ? `payload=${encodeURIComponent(body)}` : body, type)
  }), fuzz(400))
  t.pass('held for every generated input')
})

// ---------------------------------------------------------------- depth and size

function nestedIn(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array' ? `${'['.repeat(depth)}1${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`
}

t.test('Checks (property) that a payload nested deeper than 64 levels, in any field, read or not, gets 400 saying so; 64 or less is read', async (t) => {
  const { app } = await server()
  await fc.assert(fc.asyncProperty(
    fc.oneof(fc.integer({ min: 1, max: 130 }), fc.integer({ min: 1, max: 100_000 })),
    fc.constantFrom<'array' | 'object'>('array', 'object'),
    fc.constantFrom('top', 'repository', 'commits', 'whole'),
    fc.constantFrom('push', 'pull_request', 'issues'),
    fc.boolean(),
    async (anyDepth, kind, where, event, form) => {
      // form-encoded, 30 000 levels already take 400 KB of the 1 MiB
      const depth = form ? Math.min(anyDepth, 30_000) : anyDepth
      const payload = JSON.stringify(event === 'pull_request' ? pullRequestPayload() : pushPayload())
      const inner = nestedIn(depth, kind)
      const body = where === 'whole' ? inner
        : where === 'top' ? payload.replace(/^\{/, `{"extra":${inner},`)
          : where === 'repository' ? payload.replace('"repository":{', `"repository":{"extra":${inner},`)
            : payload.replace('"sender":', `"deep":[{"x":${inner}}],"sender":`)
      const levels = where === 'whole' ? depth : where === 'top' ? depth + 1 : where === 'repository' ? depth + 2 : depth + 3
      const res = await post(app, event, form ? `payload=${encodeURIComponent(body)}` : body, form ? 'application/x-www-form-urlencoded' : 'application/json')
      if (levels > 64) {
        if (res.statusCode !== 400 || !/^invalid [a-z_]+ payload: nested deeper than 64 levels of \[ and \{ \(at character \d+\)$/.test(res.json().error.message)) {
          throw new Error(`${levels} levels (${where}): ${res.statusCode} ${res.body.slice(0, 200)}`)
        }
      } else if (/nested deeper/.test(res.body)) throw new Error(`${levels} levels refused`)
      else if (where !== 'whole' && res.statusCode >= 300) throw new Error(`${levels} levels (${where}): ${res.statusCode} ${res.body.slice(0, 200)}`)
    },
  ), fuzz(150))
  t.pass('held for every generated input')
})

t.test('Checks (property) that a body over the limit, counted in bytes, gets 413 and one at the limit is read (default 1 MiB and smaller limits)', async (t) => {
  const limits = [1024 * 1024, 8192, 20_000]
  const apps = await Promise.all(limits.map((maxBodyBytes) => server(maxBodyBytes === 1024 * 1024 ? {} : { maxBodyBytes })))
  const base = JSON.stringify({ ...pushPayload(), padding: '' })
  await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: limits.length - 1 }), fc.integer({ min: -4, max: 4 }), fc.constantFrom('x', 'é', '日', '😀'), async (which, delta, char) => {
    const limit = limits[which]
    const size = limit + delta
    const room = size - Buffer.byteLength(base)
    const unit = Buffer.byteLength(char)
    const body = base.replace('"padding":""', `"padding":"${char.repeat(Math.floor(room / unit))}${'x'.repeat(room % unit)}"`)
    if (Buffer.byteLength(body) !== size) throw new Error(`built ${Buffer.byteLength(body)} bytes`)
    const res = await post(apps[which].app, 'push', body)
    if (size > limit) {
      if (res.statusCode !== 413 || res.json().error.code !== 'PAYLOAD_TOO_LARGE' || !res.json().error.message.includes(String(limit))) throw new Error(`${size} > ${limit}: ${res.statusCode} ${res.body}`)
    } else if (res.statusCode !== 202) throw new Error(`${size} <= ${limit}: ${res.statusCode} ${res.body.slice(0, 200)}`)
  }), fuzz(40))
  t.pass('held for every generated input')
})
