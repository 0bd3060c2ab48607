// StatusReporter against the local fake GitHub API over real HTTP: statuses arrive in order with
// the right body and token, failures are retried in the background, a slow API never blocks
// report(), and retries stop after their bound.
import t from 'tap'
import { pino } from 'pino'
import { StatusReporter, MAX_DESCRIPTION_CHARS, type StatusReporterOptions } from '../../../services/ci/src/github/statuses.js'
import { silentLogger, type Logger } from '../../../shared/log/index.js'
import { fakeSha, startFakeGitHubApi, type FakeGitHubApi } from '../../helpers/github-api.js'
import { waitUntil } from '../../helpers/wait.js'

const TOKEN = 'ghp_test0123456789'
const REPO = 'octo/app'
const SHA = fakeSha('commit-1')

async function setup(options: Partial<StatusReporterOptions> = {}): Promise<{ api: FakeGitHubApi; reporter: StatusReporter }> {
  const api = await startFakeGitHubApi({ token: TOKEN })
  const reporter = new StatusReporter({ token: TOKEN, baseUrl: api.url, logger: silentLogger(), retryDelayMs: 20, maxRetryDelayMs: 200, ...options })
  t.teardown(async () => {
    await reporter.close()
    await api.close()
  })
  return { api, reporter }
}

/** A logger whose lines the test reads. */
function recordingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const logger: Logger = pino({ level: 'debug' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>) } })
  return { logger, lines }
}

const statusCalls = (api: FakeGitHubApi) => api.calls.filter((c) => c.method === 'POST' && c.path.includes('/statuses/'))

t.test('Checks that statuses arrive in order with state, context, description, target_url and the token', async (t) => {
  const { api, reporter } = await setup()
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'pending', description: 'queued', targetUrl: 'http://ci.local/runs/1/jobs/build' })
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/test', state: 'pending', description: 'queued', targetUrl: 'http://ci.local/runs/1/jobs/test' })
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'success', description: 'passed in 3s', targetUrl: 'http://ci.local/runs/1/jobs/build' })
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/test', state: 'failure', description: 'step "unit" exited 1', targetUrl: 'http://ci.local/runs/1/jobs/test' })
  t.equal(await reporter.flush(10_000), true)

  const recorded = api.statuses(REPO, SHA)
  t.equal(recorded.length, 4)
  const build = recorded.filter((s) => s.context === 'regatta/ci/build')
  const test = recorded.filter((s) => s.context === 'regatta/ci/test')
  t.same(build.map((s) => s.state), ['pending', 'success'], 'pending, then success')
  t.same(test.map((s) => s.state), ['pending', 'failure'])
  t.match(build[1], { repo: REPO, sha: SHA, state: 'success', context: 'regatta/ci/build', description: 'passed in 3s', target_url: 'http://ci.local/runs/1/jobs/build' })
  t.equal(test[1].description, 'step "unit" exited 1')
  for (const s of recorded) t.equal(s.authorization, `token ${TOKEN}`)
  const call = statusCalls(api)[0]
  t.equal(call.path, `/repos/${REPO}/statuses/${SHA}`)
  t.match(call.headers['user-agent'], /regatta/)
  t.match(reporter.stats(), { sent: 4, failed: 0, retries: 0, queued: 0 })
})

t.test('Checks that a description is cut to 140 characters and targetUrl is optional', async (t) => {
  const { api, reporter } = await setup()
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/long', state: 'error', description: 'é'.repeat(100) + '🚀'.repeat(100) })
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/short', state: 'success' })
  await reporter.flush(10_000)
  const [long] = api.statuses(REPO, SHA).filter((s) => s.context === 'regatta/ci/long')
  t.ok(long, 'accepted (GitHub refuses over 140)')
  t.equal(Array.from(long.description ?? '').length, MAX_DESCRIPTION_CHARS)
  t.ok(long.description?.endsWith('…'))
  t.notOk(long.description?.includes('\uFFFD'), 'no emoji cut in half')
  const [short] = api.statuses(REPO, SHA).filter((s) => s.context === 'regatta/ci/short')
  t.equal(short.target_url, undefined)
  t.equal(short.description, undefined)
})

t.test('Checks that an API failing twice then answering gets the status delivered', async (t) => {
  const { api, reporter } = await setup()
  api.failNext(2, 502)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'pending', description: 'queued' })
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'success', description: 'passed' })
  t.equal(await reporter.flush(10_000), true)
  t.same(api.statuses(REPO, SHA).map((s) => s.state), ['pending', 'success'], 'both, in order, after the retries')
  t.same(statusCalls(api).map((c) => c.status), [502, 502, 201, 201])
  t.match(reporter.stats(), { sent: 2, failed: 0, retries: 2 })
})

t.test('Checks that connection failures are retried too (API down, then up)', async (t) => {
  const api = await startFakeGitHubApi()
  const url = api.url
  await api.close()
  const reporter = new StatusReporter({ token: TOKEN, baseUrl: url, logger: silentLogger(), retryDelayMs: 20, maxRetryDelayMs: 50, maxAttempts: 3 })
  t.teardown(() => reporter.close())
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/down', state: 'pending' })
  await reporter.flush(10_000)
  t.match(reporter.stats(), { sent: 0, failed: 1, retries: 2 }, 'connection refused: retried, then given up')
})

t.test('Checks that a slow API does not block report(), and a request past its timeout is retried', async (t) => {
  const { api, reporter } = await setup({ requestTimeoutMs: 300, maxAttempts: 3 })
  api.delay(2_000)
  const started = performance.now()
  for (let i = 0; i < 50; i++) {
    reporter.report({ repo: REPO, sha: fakeSha(`slow-${i}`), context: 'regatta/ci/build', state: 'pending', description: `job ${i}` })
  }
  const elapsed = performance.now() - started
  // queued, not awaited: 50 calls in series to an API taking 2 s would take 100 s
  t.ok(elapsed < 1_000, `50 reports took ${elapsed.toFixed(1)} ms with an API taking 2 s`)
  await waitUntil('the first requests', () => statusCalls(api).length >= 4)
  t.equal(reporter.stats().queued, 50)
  api.delay(0)
  t.equal(await reporter.flush(20_000), true)
  t.equal(new Set(api.statuses(REPO).map((s) => s.sha)).size, 50, 'every status arrived once the API was fast again')
  t.ok(reporter.stats().retries >= 4, `the timed-out requests were retried (${reporter.stats().retries} retries)`)
})

t.test('Checks that one slow context does not hold up the others', async (t) => {
  const { api, reporter } = await setup({ concurrency: 4 })
  api.delay(1_500)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/slow', state: 'pending' })
  await waitUntil('the slow request', () => statusCalls(api).length === 1)
  api.delay(0)
  const before = performance.now()
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/fast', state: 'success' })
  await waitUntil('the fast status', () => api.statuses(REPO, SHA).some((s) => s.context === 'regatta/ci/fast'), 5_000, 5)
  t.ok(performance.now() - before < 1_000, 'the fast context was sent while the slow one waited')
  t.equal(await reporter.flush(10_000), true)
  t.same(api.statuses(REPO, SHA).map((s) => s.context).sort(), ['regatta/ci/fast', 'regatta/ci/slow'], 'both recorded')
})

t.test('Checks that retries give up after the bound, log it, and the queue moves on', async (t) => {
  const { logger, lines } = recordingLogger()
  const { api, reporter } = await setup({ maxAttempts: 3, logger })
  api.failNext(1_000, 503)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'failure', description: 'broke' })
  t.equal(await reporter.flush(10_000), true, 'flush returns once it is given up')
  t.equal(statusCalls(api).length, 3, 'exactly maxAttempts requests')
  t.equal(api.statuses().length, 0)
  t.match(reporter.stats(), { sent: 0, failed: 1, retries: 2, queued: 0 })
  const gaveUp = lines.find((l) => l.level === 50 && /gave up after 3 attempts/.test(String(l.msg)))
  t.ok(gaveUp, 'an error line says it gave up')
  t.match(gaveUp, { repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'failure', code: 'GITHUB_API_ERROR' })
  t.ok(lines.filter((l) => l.level === 40 && /retrying/.test(String(l.msg))).length === 2, 'a warning for each retry')

  api.failNext(0)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'success' })
  t.equal(await reporter.flush(10_000), true)
  t.same(api.statuses().map((s) => s.state), ['success'], 'the next status of the same context goes through')
})

t.test('Checks that a refusal (4xx other than rate limits) is not retried', async (t) => {
  const { api, reporter } = await setup()
  api.failNext(1, 422)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'pending' })
  await reporter.flush(10_000)
  t.equal(statusCalls(api).length, 1)
  t.match(reporter.stats(), { failed: 1, retries: 0 })

  api.failNext(1, 429)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'success' })
  await reporter.flush(10_000)
  t.equal(api.statuses().length, 1, '429 is retried')

  const wrong = new StatusReporter({ token: 'wrong', baseUrl: api.url, logger: silentLogger(), retryDelayMs: 10 })
  t.teardown(() => wrong.close())
  wrong.report({ repo: REPO, sha: SHA, context: 'regatta/ci/x', state: 'pending' })
  await wrong.flush(10_000)
  t.match(wrong.stats(), { failed: 1, retries: 0 }, 'bad credentials: 401, not retried')
})

t.test('Checks that queued statuses of a context are coalesced: at most a pending then a final state', async (t) => {
  const { api, reporter } = await setup()
  api.delay(300)
  const ctx = 'regatta/ci/build'
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'pending', description: 'queued' })
  await waitUntil('the first request', () => statusCalls(api).length === 1)
  // while "queued" is in flight:
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'pending', description: 'waiting for resources' })
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'pending', description: 'running' })
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'failure', description: 'failed' })
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'error', description: 'cancelled' })
  t.equal(await reporter.flush(10_000), true)
  t.same(api.statuses(REPO, SHA).map((s) => `${s.state}:${s.description}`), ['pending:queued', 'pending:running', 'error:cancelled'])
  t.match(reporter.stats(), { sent: 3, superseded: 2 })

  // a rerun: a new pending replaces the queued final state of the earlier run
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'pending', description: 'queued again' })
  await waitUntil('the rerun request', () => statusCalls(api).length === 4)
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'failure', description: 'old run' })
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'pending', description: 'rerun' })
  reporter.report({ repo: REPO, sha: SHA, context: ctx, state: 'success', description: 'passed' })
  await reporter.flush(10_000)
  t.same(api.statuses(REPO, SHA).slice(3).map((s) => `${s.state}:${s.description}`), ['pending:queued again', 'pending:rerun', 'success:passed'])
})

t.test('Checks that a status failing while a newer one is queued is dropped, not retried', async (t) => {
  const { api, reporter } = await setup()
  api.delay(200)
  api.failNext(1, 500)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'pending', description: 'queued' })
  await waitUntil('the first request', () => statusCalls(api).length === 1)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/build', state: 'pending', description: 'running' })
  api.delay(0)
  await reporter.flush(10_000)
  t.same(api.statuses().map((s) => s.description), ['running'])
  t.match(reporter.stats(), { retries: 0, superseded: 1 })
})

t.test('Checks that report() never throws: a bad status is logged and dropped', async (t) => {
  const { logger, lines } = recordingLogger()
  const { api, reporter } = await setup({ logger })
  const bad: unknown[] = [
    { repo: 'no-slash', sha: SHA, context: 'c', state: 'pending' },
    { repo: REPO, sha: 'HEAD', context: 'c', state: 'pending' },
    { repo: REPO, sha: SHA, context: '', state: 'pending' },
    { repo: REPO, sha: SHA, context: 'c', state: 'done' },
    { repo: REPO, sha: SHA, context: 'c', state: 'pending', description: 5 },
    null,
  ]
  for (const status of bad) t.doesNotThrow(() => reporter.report(status as never), JSON.stringify(status))
  await reporter.flush(1_000)
  t.equal(api.calls.length, 0)
  t.equal(reporter.stats().failed, bad.length)
  t.equal(lines.filter((l) => l.level === 50 && /status not sent/.test(String(l.msg))).length, bad.length)
})

t.test('Checks close(): requests in flight are aborted, the queue dropped, later reports ignored', async (t) => {
  const { api, reporter } = await setup()
  api.delay(5_000)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/a', state: 'pending' })
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/a', state: 'success' })
  await waitUntil('the request', () => statusCalls(api).length === 1)
  const flushing = reporter.flush()
  const before = performance.now()
  await reporter.close()
  t.equal(await flushing, false, 'a pending flush ends, saying not everything was sent')
  t.ok(performance.now() - before < 1_000, 'close does not wait for the slow API')
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/a', state: 'failure' })
  t.equal(reporter.stats().queued, 0)
  t.equal(await reporter.flush(), false)
})

t.test('Checks that flush(timeout) answers false when the API is too slow', async (t) => {
  const { api, reporter } = await setup()
  api.delay(2_000)
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/a', state: 'pending' })
  t.equal(await reporter.flush(100), false)
  t.equal(await reporter.flush(10_000), true)
})

t.test('Checks that the API URL comes from REGATTA_GITHUB_API_URL when not given', async (t) => {
  const api = await startFakeGitHubApi()
  t.teardown(() => api.close())
  const saved = process.env.REGATTA_GITHUB_API_URL
  process.env.REGATTA_GITHUB_API_URL = `${api.url}/`
  t.teardown(() => {
    if (saved === undefined) delete process.env.REGATTA_GITHUB_API_URL
    else process.env.REGATTA_GITHUB_API_URL = saved
  })
  const reporter = new StatusReporter({ token: TOKEN, logger: silentLogger() })
  t.teardown(() => reporter.close())
  reporter.report({ repo: REPO, sha: SHA, context: 'regatta/ci/env', state: 'success' })
  t.equal(await reporter.flush(10_000), true)
  t.equal(api.statuses(REPO, SHA).length, 1)
  t.throws(() => new StatusReporter({ baseUrl: 'ftp://nope', logger: silentLogger() }), { code: 'INVALID_CONFIG' })
  t.throws(() => new StatusReporter({ baseUrl: api.url, logger: silentLogger(), maxAttempts: 0 }), { code: 'INVALID_CONFIG' })
})
