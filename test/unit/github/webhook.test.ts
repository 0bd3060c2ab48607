// POST /webhooks/github through fastify.inject() (no socket): signatures are checked before
// anything else, push/tag/pull_request become Triggers, everything else is ignored, a redelivery
// starts nothing, and no payload, however odd, gets a 5xx.
import t from 'tap'
import fc from 'fast-check'
import Fastify, { type FastifyInstance } from 'fastify'
import { webhookRoutes, type WebhookOptions } from '../../../services/ci/src/github/webhook.js'
import { MemoryDeliveryLog } from '../../../services/ci/src/github/delivery-log.js'
import type { Trigger } from '../../../services/ci/src/trigger.js'
import { silentLogger } from '../../../shared/log/index.js'
import {
  fakeSha, pullRequestPayload, pushPayload, signWebhook, tagPayload, webhookHeaders, ZERO_SHA,
} from '../../helpers/github-api.js'

const SECRET = 'It\'s a Secret to Everybody'

async function server(overrides: Partial<WebhookOptions> = {}): Promise<{ app: FastifyInstance; triggers: Trigger[] }> {
  const triggers: Trigger[] = []
  const app = Fastify({ logger: false })
  await app.register(webhookRoutes, {
    secret: SECRET,
    onTrigger: (trigger) => { triggers.push(trigger) },
    logger: silentLogger(),
    ...overrides,
  })
  await app.ready()
  t.teardown(() => app.close())
  return { app, triggers }
}

interface Send {
  event?: string
  deliveryId?: string
  /** Signs with this secret instead of SECRET. */
  secret?: string
  headers?: Record<string, string | undefined>
}

function post(app: FastifyInstance, body: unknown, o: Send = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  const headers: Record<string, string> = {}
  const signed = webhookHeaders({ event: o.event ?? 'push', body: text, secret: o.secret ?? SECRET, ...(o.deliveryId ? { deliveryId: o.deliveryId } : {}) })
  for (const [k, v] of Object.entries({ ...signed, ...o.headers })) if (v !== undefined) headers[k] = v
  return app.inject({ method: 'POST', url: '/webhooks/github', payload: text, headers })
}

t.test('Checks that a signed push to a branch starts one run with the payload\'s fields', async (t) => {
  const { app, triggers } = await server()
  const body = pushPayload({
    repo: 'octo/app',
    branch: 'feature/x',
    cloneUrl: 'https://github.com/octo/app.git',
    defaultBranch: 'trunk',
    private: true,
    pusher: 'hubot',
    commits: [
      { added: ['src/a.ts'], modified: ['README.md'] },
      { modified: ['src/a.ts', 'package.json'], removed: ['old.txt'] },
    ],
  })
  const res = await post(app, body, { deliveryId: 'd-1' })
  t.equal(res.statusCode, 202, res.body)
  t.match(res.json(), { result: 'triggered', deliveryId: 'd-1', kind: 'push', ref: 'refs/heads/feature/x', sha: body.after })
  t.equal(triggers.length, 1)
  t.strictSame(triggers[0], {
    kind: 'push',
    repo: { fullName: 'octo/app', cloneUrl: 'https://github.com/octo/app.git', defaultBranch: 'trunk', private: true },
    ref: 'refs/heads/feature/x',
    sha: body.after,
    actor: 'hubot',
    deliveryId: 'd-1',
    branch: 'feature/x',
    changedFiles: ['src/a.ts', 'README.md', 'package.json', 'old.txt'],
  })
})

t.test('Checks that a push of a tag starts a run of kind tag, with no branch and unknown files', async (t) => {
  const { app, triggers } = await server()
  const body = tagPayload({ repo: 'octo/lib', tag: 'v1.2.3', sha: fakeSha('release') })
  const res = await post(app, body)
  t.equal(res.statusCode, 202, res.body)
  t.equal(triggers.length, 1)
  const [trigger] = triggers
  t.equal(trigger.kind, 'tag')
  t.equal(trigger.tag, 'v1.2.3')
  t.equal(trigger.ref, 'refs/tags/v1.2.3')
  t.equal(trigger.sha, fakeSha('release'))
  t.equal(trigger.branch, undefined)
  t.equal(trigger.changedFiles, undefined, 'a created ref with no commits listed: files unknown')
  t.equal(trigger.repo.fullName, 'octo/lib')
})

t.test('Checks when a push\'s changed files are unknown rather than empty', async (t) => {
  const { app, triggers } = await server()
  await post(app, pushPayload({ branch: 'new', created: true, commits: [] }))
  t.equal(triggers[0].changedFiles, undefined, 'new branch without commits')
  await post(app, pushPayload({ branch: 'main', commits: [] }))
  t.strictSame(triggers[1].changedFiles, [], 'an existing branch with no commits (a force-push back) changed nothing')
  const big = pushPayload({ branch: 'main' })
  big.commits = Array.from({ length: 2048 }, () => ({ added: [] }))
  t.equal((await post(app, big)).statusCode, 202)
  t.equal(triggers[2].changedFiles, undefined, '2048 commits: the list may be cut short')
  const noList = pushPayload({ branch: 'main' })
  delete noList.commits
  t.equal((await post(app, noList)).statusCode, 202)
  t.equal(triggers[3].changedFiles, undefined, 'no commit list')
})

t.test('Checks that a push deleting a branch or tag, or to another kind of ref, starts nothing', async (t) => {
  const { app, triggers } = await server()
  for (const [what, body] of [
    ['deleted branch', pushPayload({ branch: 'gone', deleted: true })],
    ['deleted tag', pushPayload({ ref: 'refs/tags/v0', deleted: true })],
    ['all-zero after without the flag', pushPayload({ branch: 'gone', after: ZERO_SHA })],
    ['a note', pushPayload({ ref: 'refs/notes/commits' })],
    ['bare refs/heads/', pushPayload({ ref: 'refs/heads/' })],
  ] as const) {
    const res = await post(app, body)
    t.equal(res.statusCode, 200, what)
    t.equal(res.json().result, 'ignored', what)
    t.type(res.json().reason, 'string')
    t.ok(res.json().reason.length > 5, `${what}: says why (${res.json().reason})`)
  }
  t.equal(triggers.length, 0)
})

t.test('Checks that pull_request opened, synchronize and reopened start runs on refs/pull/N/head', async (t) => {
  const { app, triggers } = await server()
  for (const action of ['opened', 'synchronize', 'reopened']) {
    const body = pullRequestPayload({ action, number: 42, headRef: 'feat/y', headSha: fakeSha(action), baseRef: 'main', sender: 'alice' })
    const res = await post(app, body, { event: 'pull_request' })
    t.equal(res.statusCode, 202, `${action}: ${res.body}`)
  }
  t.equal(triggers.length, 3)
  t.strictSame(triggers[1], {
    kind: 'pull_request',
    repo: { fullName: 'octo/app', cloneUrl: 'https://github.com/octo/app.git', defaultBranch: 'main', private: false },
    ref: 'refs/pull/42/head',
    sha: fakeSha('synchronize'),
    branch: 'feat/y',
    pullRequest: { number: 42, action: 'synchronize', headRef: 'feat/y', headSha: fakeSha('synchronize'), baseRef: 'main', fromFork: false },
    actor: 'alice',
    deliveryId: triggers[1].deliveryId,
  })
  t.type(triggers[1].deliveryId, 'string')
})

t.test('Checks that other pull_request actions are answered 2xx and ignored, whatever the rest holds', async (t) => {
  const { app, triggers } = await server()
  for (const action of ['closed', 'edited', 'labeled', 'assigned', 'ready_for_review', 'converted_to_draft']) {
    const res = await post(app, pullRequestPayload({ action }), { event: 'pull_request' })
    t.equal(res.statusCode, 200, action)
    t.match(res.json(), { result: 'ignored', reason: new RegExp(action) })
  }
  const res = await post(app, { action: 'closed', number: 'not a number' }, { event: 'pull_request' })
  t.equal(res.statusCode, 200, 'an ignored action needs no other valid field')
  t.equal(triggers.length, 0)
})

t.test('Checks that a pull request from a fork (or a deleted fork) is marked fromFork', async (t) => {
  const { app, triggers } = await server()
  await post(app, pullRequestPayload({ repo: 'octo/app', headRepo: 'mallory/app' }), { event: 'pull_request' })
  await post(app, pullRequestPayload({ repo: 'octo/app', headRepo: null }), { event: 'pull_request' })
  await post(app, pullRequestPayload({ repo: 'octo/app', headRepo: 'Octo/App' }), { event: 'pull_request' })
  t.equal(triggers.length, 3)
  t.equal(triggers[0].pullRequest?.fromFork, true, 'another repository')
  t.equal(triggers[0].repo.fullName, 'octo/app', 'the repository is the base one')
  t.equal(triggers[1].pullRequest?.fromFork, true, 'deleted fork')
  t.equal(triggers[2].pullRequest?.fromFork, false, 'names compare without case')
})

t.test('Checks that ping is answered 200 and every other event is 2xx and ignored, saying why', async (t) => {
  const { app, triggers } = await server()
  const ping = await post(app, { zen: 'Keep it logically awesome.', hook_id: 1 }, { event: 'ping' })
  t.equal(ping.statusCode, 200)
  t.same(ping.json(), { result: 'pong' })
  for (const event of ['issues', 'release', 'workflow_run', 'check_suite', 'create', 'delete', 'star']) {
    const res = await post(app, { action: 'created', anything: [1, 2] }, { event })
    t.equal(res.statusCode, 200, event)
    t.equal(res.json().result, 'ignored')
    t.match(res.json().reason, event)
  }
  t.equal(triggers.length, 0)
})

t.test('Checks that a missing or wrong signature gets 401, starts nothing and records nothing', async (t) => {
  const { app, triggers } = await server()
  const body = JSON.stringify(pushPayload())
  const cases: Array<[string, Send]> = [
    ['no signature', { headers: { 'x-hub-signature-256': undefined } }],
    ['only the SHA-1 signature', { headers: { 'x-hub-signature-256': undefined, 'x-hub-signature': 'sha1=' + '0'.repeat(40) } }],
    ['empty signature', { headers: { 'x-hub-signature-256': '' } }],
    ['garbage', { headers: { 'x-hub-signature-256': 'sha256=nope' } }],
    ['wrong digest', { headers: { 'x-hub-signature-256': 'sha256=' + 'a'.repeat(64) } }],
    ['another secret', { secret: 'not the secret' }],
    ['the signature of a different body', { headers: { 'x-hub-signature-256': signWebhook(SECRET, body.replace('octo/app', 'evil/app')) } }],
    ['the SHA-1 form in the SHA-256 header', { headers: { 'x-hub-signature-256': 'sha1=' + signWebhook(SECRET, body).slice(7, 47) } }],
  ]
  for (const [what, o] of cases) {
    const res = await post(app, body, { ...o, deliveryId: 'forged-1' })
    t.equal(res.statusCode, 401, what)
    t.equal(res.json().error.code, 'INVALID_SIGNATURE', what)
    t.type(res.json().error.message, 'string')
  }
  const tampered = await post(app, body.replace('refs/heads/main', 'refs/heads/evil'), {
    headers: { 'x-hub-signature-256': signWebhook(SECRET, body) },
  })
  t.equal(tampered.statusCode, 401, 'a body changed after signing')
  const empty = await app.inject({ method: 'POST', url: '/webhooks/github', headers: { 'x-github-event': 'push', 'x-hub-signature-256': signWebhook(SECRET, '') } })
  t.equal(empty.statusCode, 401, 'an empty body')
  t.equal(triggers.length, 0, 'onTrigger was never called')

  const genuine = await post(app, body, { deliveryId: 'forged-1' })
  t.equal(genuine.statusCode, 202, 'the forged attempts did not mark the delivery id as seen')
  t.equal(triggers.length, 1)
})

t.test('Checks that a bad signature is refused before the body is even parsed', async (t) => {
  const { app } = await server()
  const res = await post(app, '{ not json', { headers: { 'x-hub-signature-256': 'sha256=' + 'b'.repeat(64) } })
  t.equal(res.statusCode, 401, 'not 400: the body was not looked at')
  const noEvent = await post(app, '{}', { headers: { 'x-github-event': undefined, 'x-hub-signature-256': undefined } })
  t.equal(noEvent.statusCode, 401)
})

t.test('Checks that without a secret webhooks get 503, unless the explicit unsigned dev mode is on', async (t) => {
  const { app, triggers } = await server({ secret: undefined })
  const res = await post(app, pushPayload())
  t.equal(res.statusCode, 503)
  t.equal(res.json().error.code, 'WEBHOOKS_DISABLED')
  t.match(res.json().error.message, /REGATTA_WEBHOOK_SECRET/)
  const emptySecret = await server({ secret: '' })
  t.equal((await post(emptySecret.app, pushPayload())).statusCode, 503, 'an empty secret is no secret')
  t.equal(triggers.length, 0)

  const dev = await server({ secret: undefined, allowUnsigned: true })
  const unsigned = await post(dev.app, pushPayload(), { headers: { 'x-hub-signature-256': undefined } })
  t.equal(unsigned.statusCode, 202, 'dev mode takes unsigned webhooks')
  t.equal(dev.triggers.length, 1)

  const strict = await server({ allowUnsigned: true })
  const res2 = await post(strict.app, pushPayload(), { headers: { 'x-hub-signature-256': undefined } })
  t.equal(res2.statusCode, 401, 'with a secret set, allowUnsigned changes nothing')
})

t.test('Checks that a redelivery (same X-GitHub-Delivery) starts no second run', async (t) => {
  const seen = new MemoryDeliveryLog()
  const { app, triggers } = await server({ seen })
  const body = pushPayload()
  t.equal((await post(app, body, { deliveryId: 'abc' })).statusCode, 202)
  const again = await post(app, body, { deliveryId: 'abc' })
  t.equal(again.statusCode, 200)
  t.match(again.json(), { result: 'duplicate', deliveryId: 'abc' })
  t.equal(triggers.length, 1)
  t.equal((await post(app, body, { deliveryId: 'def' })).statusCode, 202, 'another delivery of the same push is another run')
  t.equal(triggers.length, 2)
  t.equal(seen.size, 2)
})

t.test('Checks that concurrent redeliveries start one run', async (t) => {
  const { app, triggers } = await server()
  const body = pushPayload()
  const answers = await Promise.all(Array.from({ length: 5 }, () => post(app, body, { deliveryId: 'same' })))
  t.same(answers.map((a) => a.statusCode).sort(), [200, 200, 200, 200, 202])
  t.equal(triggers.length, 1)
})

t.test('Checks that a failing onTrigger answers 500 and lets a redelivery try again', async (t) => {
  let fail = true
  const started: Trigger[] = []
  const { app } = await server({
    onTrigger: async (trigger) => {
      if (fail) throw new Error('NATS is down')
      started.push(trigger)
    },
  })
  const res = await post(app, pushPayload(), { deliveryId: 'retry-me' })
  t.equal(res.statusCode, 500)
  t.equal(res.json().error.code, 'INTERNAL')
  t.match(res.json().error.message, /NATS is down/)
  fail = false
  t.equal((await post(app, pushPayload(), { deliveryId: 'retry-me' })).statusCode, 202)
  t.equal(started.length, 1)
})

t.test('Checks that a delivery log that fails refuses the webhook rather than risking a second run', async (t) => {
  const { app, triggers } = await server({ seen: { seen: async () => { throw new Error('KV unavailable') } } })
  const res = await post(app, pushPayload(), { deliveryId: 'x' })
  t.equal(res.statusCode, 500)
  t.match(res.json().error.message, /KV unavailable/)
  t.equal(triggers.length, 0)
})

t.test('Checks that a body that is not JSON gets 400', async (t) => {
  const { app, triggers } = await server()
  for (const body of ['{ not json', 'null nope', '<xml/>', '\u0000\u0001', '{"ref": "refs/heads/main",}']) {
    const res = await post(app, body)
    t.equal(res.statusCode, 400, JSON.stringify(body))
    t.equal(res.json().error.code, 'INVALID_MESSAGE')
    t.match(res.json().error.message, /not JSON/)
  }
  t.equal(triggers.length, 0)
})

t.test('Checks that a payload with a missing field or a wrong type gets 400 naming the field', async (t) => {
  const { app, triggers } = await server()
  const cases: Array<[string, string, (p: Record<string, any>) => void, RegExp]> = [
    ['push', 'after is a number', (p) => { p.after = 123 }, /\/after/],
    ['push', 'after is not a sha', (p) => { p.after = 'HEAD' }, /\/after/],
    ['push', 'ref missing', (p) => { delete p.ref }, /\/ref/],
    ['push', 'repository missing', (p) => { delete p.repository }, /\/repository/],
    ['push', 'full_name a number', (p) => { p.repository.full_name = 7 }, /\/repository\/full_name/],
    ['push', 'full_name not owner/name', (p) => { p.repository.full_name = 'no-slash' }, /\/repository\/full_name/],
    ['push', 'private a string', (p) => { p.repository.private = 'false' }, /\/repository\/private/],
    ['push', 'clone_url missing', (p) => { delete p.repository.clone_url }, /\/repository\/clone_url/],
    ['push', 'added a string', (p) => { p.commits[0].added = 'src/a.ts' }, /\/commits\/0\/added/],
    ['push', 'a path a number', (p) => { p.commits[0].modified = [1] }, /\/commits\/0\/modified\/0/],
    ['push', 'deleted a string', (p) => { p.deleted = 'yes' }, /\/deleted/],
    ['push', 'sender without login', (p) => { p.sender = {} }, /\/sender\/login/],
    ['pull_request', 'number a string', (p) => { p.number = '7' }, /\/number/],
    ['pull_request', 'number a fraction', (p) => { p.number = 7.5 }, /\/number/],
    ['pull_request', 'head sha missing', (p) => { delete p.pull_request.head.sha }, /\/pull_request\/head\/sha/],
    ['pull_request', 'base repo missing', (p) => { delete p.pull_request.base.repo }, /\/pull_request\/base\/repo/],
    ['pull_request', 'pull_request an array', (p) => { p.pull_request = [] }, /\/pull_request/],
    ['pull_request', 'action a number', (p) => { p.action = 1 }, /\/action/],
  ]
  for (const [event, what, mutate, field] of cases) {
    const payload = (event === 'push' ? pushPayload() : pullRequestPayload()) as Record<string, any>
    mutate(payload)
    const res = await post(app, payload, { event })
    t.equal(res.statusCode, 400, `${event}: ${what}`)
    t.equal(res.json().error.code, 'INVALID_MESSAGE')
    t.match(res.json().error.message, field, `${what}: ${res.json().error.message}`)
  }
  for (const body of ['[]', '5', 'null', '"push"', 'true']) {
    const res = await post(app, body)
    t.equal(res.statusCode, 400, `top level ${body}`)
  }
  t.equal(triggers.length, 0)
})

t.test('Checks that a body over the limit gets 413 (default 1 MiB, configurable)', async (t) => {
  const { app, triggers } = await server()
  const big = pushPayload() as Record<string, unknown>
  big.padding = 'x'.repeat(1024 * 1024)
  const res = await post(app, big)
  t.equal(res.statusCode, 413)
  t.equal(res.json().error.code, 'PAYLOAD_TOO_LARGE')
  t.match(res.json().error.message, /1048576/)
  const fits = pushPayload() as Record<string, unknown>
  fits.padding = 'x'.repeat(900 * 1024)
  t.equal((await post(app, fits)).statusCode, 202, 'just under the default limit')

  const small = await server({ maxBodyBytes: 2048 })
  const res2 = await post(small.app, { ...pushPayload(), padding: 'y'.repeat(3000) })
  t.equal(res2.statusCode, 413)
  t.equal(small.triggers.length, 0)
  t.equal(triggers.length, 1)
})

t.test('Checks that deeply nested and odd JSON gets an answer, not a crash', async (t) => {
  const { app, triggers } = await server({ maxBodyBytes: 4 * 1024 * 1024 })
  const deep = '['.repeat(500_000) + ']'.repeat(500_000)
  for (const event of ['push', 'pull_request', 'issues']) {
    const res = await post(app, deep, { event })
    t.ok(res.statusCode < 500, `${event}: ${res.statusCode}`)
  }
  const nested = JSON.stringify(pushPayload()).replace('"commits":', `"commits":${'['.repeat(100_000)}${']'.repeat(100_000)},"was":`)
  t.equal((await post(app, nested)).statusCode, 400, 'commits nested 100 000 deep')
  const deepObject = JSON.stringify(pushPayload()).replace('"pusher":', `"extra":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)},"pusher":`)
  const deepAnswer = await post(app, deepObject)
  t.equal(deepAnswer.statusCode, 400, 'a field not read is refused too when nested 100 000 deep')
  t.match(deepAnswer.json().error.message, /nested deeper than 64 levels/)
  const proto = JSON.stringify(pushPayload()).replace('{', '{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}},')
  t.equal((await post(app, proto)).statusCode, 202)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
  const unicode = pushPayload({ branch: 'ünïcødé/🚀', commits: [{ added: ['docs/日本語.md'] }] })
  t.equal((await post(app, unicode)).statusCode, 202)
  t.equal(triggers.at(-1)?.branch, 'ünïcødé/🚀')
  t.strictSame(triggers.at(-1)?.changedFiles, ['docs/日本語.md'])
})

t.test('Checks the headers: a form-encoded body, no content type, a missing or bad event header', async (t) => {
  const { app, triggers } = await server()
  const json = JSON.stringify(pushPayload())
  const form = `payload=${encodeURIComponent(json)}`
  const res = await post(app, form, { headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(res.statusCode, 202, 'GitHub\'s form content type works')
  const noPayload = await post(app, 'other=1', { headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(noPayload.statusCode, 400)
  t.equal((await post(app, json, { headers: { 'content-type': undefined } })).statusCode, 202, 'no content type')
  t.equal((await post(app, json, { headers: { 'content-type': 'text/plain' } })).statusCode, 202, 'any content type: the body is JSON')
  const noEvent = await post(app, json, { headers: { 'x-github-event': undefined } })
  t.equal(noEvent.statusCode, 400)
  t.match(noEvent.json().error.message, /X-GitHub-Event/)
  t.equal((await post(app, json, { headers: { 'x-github-event': 'Push; rm -rf' } })).statusCode, 400)
  t.equal((await post(app, json, { headers: { 'x-github-delivery': 'x'.repeat(300) } })).statusCode, 400)
  const noDelivery = await post(app, json, { headers: { 'x-github-delivery': undefined } })
  t.equal(noDelivery.statusCode, 202, 'no delivery id: handled, without de-duplication')
  t.equal(triggers.length, 4)
  t.equal(triggers[3].deliveryId, undefined)
})

t.test('Checks that the raw-body parser stays inside the plugin: sibling routes still parse JSON', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(webhookRoutes, { secret: SECRET, onTrigger: () => {}, logger: silentLogger() })
  app.post('/api/v1/runs', async (request) => ({ got: request.body }))
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/api/v1/runs', payload: { a: 1 } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { got: { a: 1 } }, 'parsed as an object, not a string')
  const notFound = await app.inject({ method: 'GET', url: '/webhooks/github' })
  t.equal(notFound.statusCode, 404)
})

t.test('Checks that the in-memory delivery log is bounded, forgetting the oldest first', async (t) => {
  const log = new MemoryDeliveryLog(3)
  for (const id of ['a', 'b', 'c']) t.equal(await log.seen(id), false)
  t.equal(await log.seen('a'), true)
  t.equal(await log.seen('d'), false)
  t.equal(log.size, 3)
  t.equal(await log.seen('a'), false, 'the oldest was forgotten')
  await log.forget('a')
  t.equal(await log.seen('a'), false)
  t.throws(() => new MemoryDeliveryLog(0))
})

t.test('Checks with random bodies (correctly signed) that the answer is never a 5xx nor a throw', async (t) => {
  const { app } = await server({ onTrigger: () => {} })
  const events = fc.constantFrom('push', 'pull_request', 'ping', 'issues', 'create', 'pull_request_review')
  const valid = fc.constantFrom<Record<string, unknown>>(pushPayload(), tagPayload(), pullRequestPayload(), pullRequestPayload({ action: 'synchronize', headRepo: null }))
  // a valid payload with one field, at any depth, replaced by a random value
  const mutated = fc.tuple(valid, fc.jsonValue(), fc.nat(), fc.nat()).map(([payload, value, pick, depth]) => {
    const copy = structuredClone(payload) as Record<string, unknown>
    let node: Record<string, unknown> = copy
    for (let d = 0; d < depth % 4; d++) {
      const objects = Object.keys(node).filter((k) => typeof node[k] === 'object' && node[k] !== null)
      if (objects.length === 0) break
      node = node[objects[pick % objects.length]] as Record<string, unknown>
    }
    const keys = Object.keys(node)
    if (keys.length > 0) node[keys[pick % keys.length]] = value
    return JSON.stringify(copy)
  })
  const bodies = fc.oneof(
    fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
    fc.anything().map((v) => { try { return JSON.stringify(v) ?? '' } catch { return '' } }),
    fc.string({ unit: 'binary' }),
    mutated,
    mutated,
  )
  await fc.assert(
    fc.asyncProperty(events, bodies, async (event, body) => {
      const res = await post(app, body, { event })
      if (res.statusCode >= 500) throw new Error(`${res.statusCode} for ${event} ${body.slice(0, 200)}: ${res.body}`)
      const answer = res.json() as Record<string, unknown>
      if (res.statusCode >= 400 && typeof (answer.error as { code?: unknown })?.code !== 'string') throw new Error(`no error code: ${res.body}`)
      if (res.statusCode < 300 && typeof answer.result !== 'string') throw new Error(`no result: ${res.body}`)
    }),
    { numRuns: 600 },
  )
  t.pass('600 random bodies answered without a 5xx')
})
