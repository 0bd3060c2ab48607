// A lost webhook still builds: the CI service (on a real master, agent and nats-server) polls the
// local stand-in for GitHub's REST API for branch heads and open pull requests, starts the run a
// webhook never started, and starts nothing more when that webhook arrives late. The only fake is
// GitHub's API (test/helpers/github-api.ts); the repository is a real git repository.
import t from 'tap'
import type { RunView } from '../../../services/ci/src/views.js'
import { ciEnv, pollInterval } from '../../../services/ci/src/main.js'
import { decideHeads, HeadLedger, triggerFromEvent, type RepoHeads, type RepoListing } from '../../../services/ci/src/github/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { fakeSha, pullRequestPayload, webhookHeaders, type RecordedCall } from '../../helpers/github-api.js'
import { waitUntil } from '../../helpers/wait.js'
import type { TapTest } from '../../helpers/tap-types.js'

const INTERVAL_MS = 500
const PIPELINE = `
name: ci
on:
  push: { branches: [main, "feature/*"] }
  pull_request: {}
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.25, mem: 64 }
    steps:
      - run: echo built $(cat n.txt)
`

let f: CiFixture
let ledger: HeadLedger
t.before(async () => {
  f = await startCiFixture({
    containerizer: 'process',
    ci: { githubToken: 'test-token', githubPollIntervalMs: INTERVAL_MS, headPoller: { maxBackoffMs: 2_000 } },
  })
  ledger = await HeadLedger.open({ nc: await f.cluster.nats.connect(), logger: silentLogger() })
})
t.teardown(() => f?.stop())

const runs = async (): Promise<RunView[]> => ((await (await fetch(`${f.ci.url}/api/v1/runs?limit=1000`)).json()) as { runs: RunView[] }).runs
const runsOf = async (sha: string, ref?: string): Promise<RunView[]> => (await runs()).filter((r) => r.sha === sha && (ref === undefined || r.ref === ref))
const branchCalls = (): number => f.api.calls.filter((c) => c.path === '/repos/octo/app/branches').length
/** Resolves once the poller has listed the branches `n` more times (whole passes after now). */
const passes = async (n: number): Promise<void> => {
  const from = branchCalls()
  await waitUntil(`${n} more polls`, () => branchCalls() >= from + n, 20_000, 20)
}
async function pullWebhook(o: Parameters<typeof pullRequestPayload>[0]): Promise<Response> {
  const body = JSON.stringify(pullRequestPayload({ repo: 'octo/app', cloneUrl: f.repo.url, ...o }))
  return fetch(`${f.ci.url}/webhooks/github`, { method: 'POST', body, headers: webhookHeaders({ event: 'pull_request', body, secret: f.webhookSecret }) })
}
/** A push webhook to another branch, after `late`: once its run exists, the webhook before it was handled (one plan queue). */
async function barrier(t: TapTest, name: string): Promise<void> {
  const sha = await f.repo.commit({ 'n.txt': name })
  t.equal((await f.push(sha, { branch: `feature/${name}` })).status, 202)
  await f.waitForRun({ sha }, () => true, 20_000)
}

t.test('Checks that REGATTA_GITHUB_POLL_INTERVAL reads a duration, 0 or off, and refuses the rest', async (t) => {
  t.equal(ciEnv({ REGATTA_GITHUB_POLL_INTERVAL: '2m' }).githubPollIntervalMs, 120_000)
  t.equal(ciEnv({ REGATTA_GITHUB_POLL_INTERVAL: 'off' }).githubPollIntervalMs, 0)
  t.equal(pollInterval('0'), 0)
  t.equal(pollInterval('0s'), 0)
  t.equal(ciEnv({}).githubPollIntervalMs, undefined, 'unset: the default (60 s)')
  t.throws(() => pollInterval('soon'), /REGATTA_GITHUB_POLL_INTERVAL: "soon" is not a duration/)
  t.throws(() => pollInterval('10ms'), /REGATTA_GITHUB_POLL_INTERVAL: "10ms" is too short/)
})

t.test('Checks that decideHeads takes a new repository as it is, builds what moved, and forgets only what a complete listing lacks', async (t) => {
  const repo = { fullName: 'octo/app', cloneUrl: 'https://github.com/octo/app.git', defaultBranch: 'main', private: false }
  const [a, b, c] = [fakeSha('a'), fakeSha('b'), fakeSha('c')]
  const listing: RepoListing = {
    branches: [{ name: 'main', sha: b }, { name: 'old', sha: a }, { name: 'bad', sha: 'not-a-sha' }],
    pulls: [{ number: 3, headRef: 'x', headSha: c, headRepo: 'fork/app', baseRef: 'main', baseRepo: 'octo/app', author: 'someone' }],
    branchesComplete: true, pullsComplete: false, invalid: [],
  }
  const fresh: RepoHeads = { repo, seenAt: 1, heads: { 'refs/heads/main': a, 'refs/heads/gone': a, 'refs/pull/9/head': a } }
  const first = decideHeads(fresh, listing)
  t.same(first.start.map((tr) => [tr.kind, tr.ref, tr.sha]), [['push', 'refs/heads/main', b]], 'before the baseline, only a head built before and moved since starts')
  t.same(first.baseline, { 'refs/heads/old': a, 'refs/heads/bad': 'not-a-sha', 'refs/pull/3/head': c }, 'the rest is taken as it is')
  t.same(first.gone, ['refs/heads/gone'], 'a branch no longer listed is forgotten; a pull request is not, the list was cut')

  const later = decideHeads({ ...fresh, baselinedAt: 2, heads: { 'refs/heads/main': b } }, listing)
  t.same(later.start.map((tr) => [tr.kind, tr.ref, tr.sha]), [['push', 'refs/heads/old', a], ['pull_request', 'refs/pull/3/head', c]], 'after it, every head not built starts')
  t.match(later.invalid, [/branch "bad" of octo\/app: invalid push payload: \/after/], 'a bad sha is named, not built')
  const pr = later.start[1]!
  const outcome = triggerFromEvent('pull_request', pullRequestPayload({ number: 3, headRef: 'x', headSha: c, headRepo: 'fork/app', baseRef: 'main', sender: 'someone' }))
  t.ok('trigger' in outcome)
  if ('trigger' in outcome) {
    const { repo: _r1, ...fromWebhook } = outcome.trigger
    const { repo: _r2, ...fromPoll } = pr
    t.same(fromPoll, fromWebhook, 'the same Trigger as the pull request webhook (opened, from a fork)')
  }
  t.equal(pr.pullRequest?.fromFork, true)
})

t.test('Checks that a push whose webhook never came runs within the interval, once, even when the webhook comes late', async (t) => {
  const s1 = await f.repo.commit({ '.regatta/ci.yml': PIPELINE, 'n.txt': 'one' })
  f.api.setBranches('octo/app', [{ name: 'main', sha: s1 }, { name: 'feature/old', sha: s1 }])
  // the repository becomes known through a webhook
  t.equal((await f.push(s1)).status, 202)
  t.equal((await f.waitForRun({ sha: s1 })).state, 'succeeded')
  await passes(2)
  t.equal((await runsOf(s1, 'refs/heads/feature/old')).length, 0, 'a branch that existed when the repository became known is not built')

  const s2 = await f.repo.commit({ 'n.txt': 'two' })
  const at = Date.now()
  f.api.setBranches('octo/app', [{ name: 'main', sha: s2 }, { name: 'feature/old', sha: s1 }])
  const started = await f.waitForRun({ sha: s2 }, () => true, 10_000)
  const latency = Date.now() - at
  t.ok(latency < INTERVAL_MS + 3_000, `the run started ${latency} ms after GitHub showed the head (interval ${INTERVAL_MS} ms)`)
  t.match(started, { kind: 'push', ref: 'refs/heads/main', sha: s2, repo: 'octo/app' })
  const done = await f.waitForRun({ runId: started.runId })
  t.equal(done.state, 'succeeded')
  t.match(await f.jobLog(done.runId, 'ci/build'), /built two/)

  // the lost webhook arrives after all
  t.equal((await f.push(s2)).status, 202, 'the late webhook is accepted')
  await barrier(t, 'after-late-push')
  await passes(2)
  t.equal((await runsOf(s2)).length, 1, 'and starts no second run')
  const polled = (await f.ci.service.get(started.runId))!.meta.trigger
  t.match(await ledger.claimOf(polled), { state: 'started', by: 'poll', runId: started.runId }, 'the head was claimed by the poller, and stays so')

  // a new branch after the repository became known is built; a deleted one starts nothing
  const s3 = await f.repo.commit({ 'n.txt': 'three' })
  f.api.setBranches('octo/app', [{ name: 'main', sha: s2 }, { name: 'feature/new', sha: s3 }])
  const onNew = await f.waitForRun({ sha: s3 }, (r) => r.state === 'succeeded', 20_000)
  t.equal(onNew.ref, 'refs/heads/feature/new')
  await passes(2)
  const record = (await ledger.repos()).find((r) => r.record.repo.fullName === 'octo/app')?.record
  t.equal(record?.heads['refs/heads/feature/old'], undefined, 'the deleted branch is forgotten')
  t.equal(record?.heads['refs/heads/main'], s2, 'the last commit built on main is kept')
  t.equal((await runsOf(s1)).length, 1, 'nothing ran for the deleted branch')
})

t.test('Checks that a pull request head from a fork, with no webhook, runs once, and again when it moves', async (t) => {
  const s4 = await f.repo.commit({ 'n.txt': 'four' })
  const pull = { number: 7, headRef: 'feature/thing', headRepo: 'someone/app', baseRef: 'main', user: 'someone' }
  f.api.setPulls('octo/app', [{ ...pull, headSha: s4 }])
  const run = await f.waitForRun({ sha: s4 }, () => true, 10_000)
  t.match(run, { kind: 'pull_request', ref: 'refs/pull/7/head', actor: 'someone' })
  const doc = await f.ci.service.get(run.runId)
  t.same(doc?.meta.trigger.pullRequest, { number: 7, action: 'opened', headRef: 'feature/thing', headSha: s4, baseRef: 'main', fromFork: true })
  t.equal((await f.waitForRun({ runId: run.runId })).state, 'succeeded')

  t.equal((await pullWebhook({ number: 7, action: 'opened', headRef: 'feature/thing', headSha: s4, headRepo: 'someone/app' })).status, 202)
  await barrier(t, 'after-late-pull')
  await passes(2)
  t.equal((await runsOf(s4)).length, 1, 'the late pull_request webhook starts no second run')

  const s5 = await f.repo.commit({ 'n.txt': 'five' })
  f.api.setPulls('octo/app', [{ ...pull, headSha: s5 }])
  const moved = await f.waitForRun({ sha: s5 }, () => true, 10_000)
  t.equal((await f.ci.service.get(moved.runId))?.meta.trigger.pullRequest?.action, 'synchronize', 'a head that moved is a synchronize')
  t.equal((await f.waitForRun({ runId: moved.runId })).state, 'succeeded')
})

t.test('Checks that a failing GitHub API stops nothing: webhooks still build, polling backs off and recovers', async (t) => {
  f.api.failAll(500)
  const failedFrom = f.api.calls.length
  await waitUntil('failing polls', () => f.api.calls.slice(failedFrom).filter((c) => c.path === '/repos/octo/app/branches' && c.status === 500).length >= 3, 10_000, 20)
  const s6 = await f.repo.commit({ 'n.txt': 'six' })
  t.equal((await f.push(s6, { branch: 'feature/during-outage' })).status, 202)
  t.equal((await f.waitForRun({ sha: s6 }, undefined, 20_000)).state, 'succeeded', 'a webhook builds while the API fails')
  t.equal((await fetch(`${f.ci.url}/health`)).status, 200, 'the service is up')
  // backing off: fewer polls than one per interval
  const windowStart = f.api.calls.length
  await new Promise((r) => setTimeout(r, 3_000))
  const polls = f.api.calls.slice(windowStart).filter((c) => c.path === '/repos/octo/app/branches').length
  t.ok(polls <= 3, `${polls} polls in 3 s while failing (every ${INTERVAL_MS} ms when it answers)`)

  const s7 = await f.repo.commit({ 'n.txt': 'seven' })
  f.api.setBranches('octo/app', [{ name: 'main', sha: s7 }])
  await new Promise((r) => setTimeout(r, 500))
  t.equal((await runsOf(s7)).length, 0, 'nothing is known while the API fails')
  const healed = Date.now()
  f.api.failAll(false)
  await f.waitForRun({ sha: s7 }, () => true, 10_000)
  t.ok(Date.now() - healed < 2_000 + 3_000, `the head was built ${Date.now() - healed} ms after the API answered again (backoff at most 2 s)`)
})

t.test('Checks that an exhausted rate limit pauses polling until its reset, then polling goes on', async (t) => {
  const s8 = await f.repo.commit({ 'n.txt': 'eight' })
  const from = f.api.calls.length
  const resetAt = Date.now() + 5_000
  f.api.setRateLimit({ remaining: 0, resetAt })
  f.api.setBranches('octo/app', [{ name: 'main', sha: s8 }])
  // a poll lists branches, then pull requests: either may be the one refused
  const polls = (): RecordedCall[] => f.api.calls.slice(from).filter((c) => /^\/repos\/octo\/app\/(branches|pulls)$/.test(c.path))
  await waitUntil('a refused poll', () => polls().some((c) => c.status === 403), 4_000, 20)
    .catch((err: Error) => { throw new Error(`${err.message}; poller: ${JSON.stringify(f.ci.poller?.stats())}`) })
  await new Promise((r) => setTimeout(r, Math.max(0, resetAt - Date.now() - 500)))
  const refused = polls().filter((c) => c.status === 403).length
  t.equal(refused, 1, `${refused} request refused before the reset: a refused poll waits for X-RateLimit-Reset`)
  t.equal((await runsOf(s8)).length, 0)
  const run = await f.waitForRun({ sha: s8 }, () => true, 10_000)
  t.ok(run.createdAt >= resetAt - 1_000, 'the head is built after the reset')
  f.api.setRateLimit(null)
})
