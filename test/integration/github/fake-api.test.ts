// The test helper standing in for GitHub (test/helpers/github-api.ts), checked through the real
// @octokit/rest client and @octokit/webhooks, so that other tests can trust what it records.
import t from 'tap'
import { Octokit } from '@octokit/rest'
import { Webhooks } from '@octokit/webhooks'
import {
  fakeSha, pullRequestPayload, pushPayload, signWebhook, startFakeGitHubApi, tagPayload, webhookHeaders,
} from '../../helpers/github-api.js'

/** The HTTP status a request ends with (octokit throws for >= 400). */
async function statusOf(request: Promise<{ status: number }>): Promise<number> {
  try {
    return (await request).status
  } catch (err) {
    return (err as { status: number }).status
  }
}

async function setup(token?: string) {
  const api = await startFakeGitHubApi(token ? { token } : {})
  t.teardown(() => api.close())
  const octokit = new Octokit({ baseUrl: api.url, ...(token ? { auth: token } : {}), log: { debug() {}, info() {}, warn() {}, error() {} } })
  return { api, octokit }
}

t.test('Checks that the fake records statuses like GitHub and answers 201 with a status body', async (t) => {
  const { api, octokit } = await setup('tok')
  const sha = fakeSha('x')
  const res = await octokit.rest.repos.createCommitStatus({ owner: 'octo', repo: 'app', sha, state: 'success', context: 'regatta/ci/build', description: 'ok', target_url: 'http://ci/1' })
  t.equal(res.status, 201)
  t.match(res.data, { state: 'success', context: 'regatta/ci/build', description: 'ok', target_url: 'http://ci/1', id: Number })
  t.match(api.statuses('octo/app', sha), [{ repo: 'octo/app', sha, state: 'success', context: 'regatta/ci/build', authorization: 'token tok' }])
  t.same(api.statuses('octo/other'), [])
  const listed = await octokit.rest.repos.listCommitStatusesForRef({ owner: 'octo', repo: 'app', ref: sha })
  t.equal(listed.data.length, 1)

  t.equal(await statusOf(octokit.rest.repos.createCommitStatus({ owner: 'octo', repo: 'app', sha, state: 'done' as never })), 422)
  t.equal(await statusOf(octokit.rest.repos.createCommitStatus({ owner: 'octo', repo: 'app', sha, state: 'error', description: 'x'.repeat(141) })), 422)
  const anonymous = new Octokit({ baseUrl: api.url })
  t.equal(await statusOf(anonymous.rest.repos.createCommitStatus({ owner: 'octo', repo: 'app', sha, state: 'success' })), 401)
  t.equal(await statusOf(octokit.request('GET /nope')), 404)
  t.equal(api.statuses().length, 1, 'refused statuses are not recorded')
  t.ok(api.calls.length >= 6, 'every call is recorded')
})

t.test('Checks that branches and open pull requests are served, paginated, as configured', async (t) => {
  const { api, octokit } = await setup()
  const branches = Array.from({ length: 45 }, (_, i) => ({ name: `b${i}`, sha: fakeSha(`b${i}`) }))
  api.setBranches('octo/app', branches)
  const all = await octokit.paginate(octokit.rest.repos.listBranches, { owner: 'octo', repo: 'app', per_page: 20 })
  t.equal(all.length, 45, 'three pages followed through the Link header')
  t.match(all[44], { name: 'b44', commit: { sha: fakeSha('b44') }, protected: false })
  t.equal(api.calls.filter((c) => c.path === '/repos/octo/app/branches').length, 3)

  api.setPulls('octo/app', [
    { number: 1, headRef: 'a', headSha: fakeSha('a') },
    { number: 2, headRef: 'b', headSha: fakeSha('b'), state: 'closed' },
    { number: 3, headRef: 'c', headSha: fakeSha('c'), headRepo: 'fork/app' },
  ])
  const open = await octokit.paginate(octokit.rest.pulls.list, { owner: 'octo', repo: 'app', state: 'open' })
  t.same(open.map((p) => p.number), [1, 3])
  t.match(open[1], { head: { ref: 'c', sha: fakeSha('c'), repo: { full_name: 'fork/app' } }, base: { ref: 'main', repo: { full_name: 'octo/app' } } })
  t.equal((await octokit.rest.pulls.list({ owner: 'octo', repo: 'app', state: 'all' })).data.length, 3)
  t.same((await octokit.rest.repos.listBranches({ owner: 'octo', repo: 'none' })).data, [])
})

t.test('Checks the failure and delay knobs', async (t) => {
  const { api, octokit } = await setup()
  api.failNext(2, 503)
  t.equal(await statusOf(octokit.rest.repos.listBranches({ owner: 'o', repo: 'r' })), 503)
  t.equal(await statusOf(octokit.rest.repos.listBranches({ owner: 'o', repo: 'r' })), 503)
  t.equal((await octokit.rest.repos.listBranches({ owner: 'o', repo: 'r' })).status, 200)
  api.delay(300)
  const start = performance.now()
  await octokit.rest.repos.listBranches({ owner: 'o', repo: 'r' })
  t.ok(performance.now() - start >= 290, 'answers wait')
  api.delay(0)
})

t.test('Checks that signed webhooks verify with @octokit/webhooks and the payloads look like GitHub\'s', async (t) => {
  const webhooks = new Webhooks({ secret: 's' })
  const body = JSON.stringify(pushPayload({ commits: [{ added: ['a'] }, { removed: ['b'] }] }))
  t.equal(await webhooks.verify(body, signWebhook('s', body)), true)
  t.equal(await webhooks.verify(body, signWebhook('other', body)), false)
  const headers = webhookHeaders({ event: 'push', body, secret: 's', deliveryId: 'd' })
  t.match(headers, { 'x-github-event': 'push', 'x-github-delivery': 'd', 'x-hub-signature-256': /^sha256=[0-9a-f]{64}$/, 'x-hub-signature': /^sha1=[0-9a-f]{40}$/ })

  const push = JSON.parse(body)
  t.match(push, { ref: 'refs/heads/main', after: /^[0-9a-f]{40}$/, repository: { full_name: 'octo/app', clone_url: String, default_branch: 'main', private: false }, pusher: { name: 'octocat' }, sender: { login: 'octocat' } })
  t.equal(push.commits.length, 2)
  t.equal(push.head_commit.id, push.after, 'the last commit is the head')
  t.match(tagPayload({ tag: 'v2' }), { ref: 'refs/tags/v2', created: true, commits: [] })
  t.match(pullRequestPayload({ headRepo: 'fork/app' }), { action: 'opened', number: 7, pull_request: { head: { repo: { full_name: 'fork/app' } }, base: { repo: { full_name: 'octo/app' } } } })
  t.equal((pullRequestPayload({ headRepo: null }).pull_request as { head: { repo: unknown } }).head.repo, null)
})
