// A stand-in for GitHub: a local REST API server that records what Regatta sends (commit statuses)
// and serves branches and open pull requests (paginated, with ETags: a request with the page's
// If-None-Match gets 304 as on GitHub), with knobs to fail or slow it down or to enforce a rate
// limit; plus signed webhook requests and realistic webhook payloads. Loopback only: GitHub is not
// reachable here.
//
//   const api = await startFakeGitHubApi()          // api.url → REGATTA_GITHUB_API_URL
//   const body = JSON.stringify(pushPayload({ repo: 'octo/app', branch: 'main', files: ['a.ts'] }))
//   await app.inject({ method: 'POST', url: '/webhooks/github', payload: body,
//                      headers: webhookHeaders({ event: 'push', body, secret }) })
//   api.statuses('octo/app', sha)                   // [{ state: 'pending', ... }, { state: 'success', ... }]
import { createHash, createHmac, randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

// ---------------------------------------------------------------------------------------------
// The fake REST API

export interface RecordedCall {
  method: string
  /** Path without the query string. */
  path: string
  query: Record<string, string>
  headers: IncomingHttpHeaders
  /** Parsed JSON body, the raw text when not JSON, undefined when empty. */
  body: unknown
  /** The status answered. */
  status: number
  at: number
}

/** A commit status GitHub accepted (201). */
export interface RecordedStatus {
  repo: string
  sha: string
  state: string
  context: string
  description?: string
  target_url?: string
  /** The Authorization header it came with. */
  authorization?: string
  at: number
}

export interface BranchFixture {
  name: string
  sha: string
  protected?: boolean
}

export interface PullFixture {
  number: number
  headRef: string
  headSha: string
  baseRef?: string
  /** The head's repository; default: the base repository (not a fork). */
  headRepo?: string
  title?: string
  state?: 'open' | 'closed'
  draft?: boolean
  user?: string
}

export interface FakeGitHubApi {
  /** Base URL, `http://127.0.0.1:PORT`, for REGATTA_GITHUB_API_URL. */
  url: string
  /** Every request, in arrival order. */
  calls: RecordedCall[]
  /** Accepted statuses, in arrival order, optionally of one repository (`owner/name`) and commit. */
  statuses(repo?: string, sha?: string): RecordedStatus[]
  setBranches(repo: string, branches: BranchFixture[]): void
  setPulls(repo: string, pulls: PullFixture[]): void
  /** The next `n` requests are answered `status` (default 500) and change nothing. */
  failNext(n: number, status?: number): void
  /** Every request is answered `status` (e.g. 500) and changes nothing, until `failAll(false)`. */
  failAll(status: number | false): void
  /**
   * GitHub's rate limit from now on: X-RateLimit-* headers on every answer, each answer but a 304
   * uses one request, and with none left requests get 403 "API rate limit exceeded" until
   * `resetAt` (ms since the epoch; default an hour from now). `null` turns it off (the default).
   */
  setRateLimit(limit: { remaining: number; limit?: number; resetAt?: number } | null): void
  /** Every answer from now on waits `ms` first (0 to stop). */
  delay(ms: number): void
  close(): Promise<void>
}

export interface FakeGitHubApiOptions {
  /** When set, requests without `Authorization: token <token>` (or bearer) get 401 Bad credentials. */
  token?: string
}

const STATES = ['pending', 'success', 'failure', 'error']

export async function startFakeGitHubApi(options: FakeGitHubApiOptions = {}): Promise<FakeGitHubApi> {
  const calls: RecordedCall[] = []
  const accepted: RecordedStatus[] = []
  const branches = new Map<string, BranchFixture[]>()
  const pulls = new Map<string, PullFixture[]>()
  const pendingTimers = new Set<NodeJS.Timeout>()
  let failures = { left: 0, status: 500 }
  let failingAll: number | false = false
  let rate: { remaining: number; limit: number; resetAt: number } | null = null
  let delayMs = 0
  let statusIds = 1000
  let url = ''

  const server = createServer((req, res) => {
    void readBody(req).then((text) => {
      const parsed = new URL(req.url ?? '/', 'http://127.0.0.1')
      const call: RecordedCall = {
        method: req.method ?? 'GET',
        path: parsed.pathname,
        query: Object.fromEntries(parsed.searchParams),
        headers: req.headers,
        body: parseJson(text),
        status: 0,
        at: Date.now(),
      }
      calls.push(call)
      const respond = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
        call.status = status
        if (rate) {
          if (rate.resetAt <= Date.now()) rate = { ...rate, remaining: rate.limit, resetAt: Date.now() + 3_600_000 }
          if (status !== 304 && rate.remaining > 0) rate.remaining--
          Object.assign(headers, {
            'x-ratelimit-limit': String(rate.limit),
            'x-ratelimit-remaining': String(rate.remaining),
            'x-ratelimit-used': String(rate.limit - rate.remaining),
            'x-ratelimit-reset': String(Math.ceil(rate.resetAt / 1000)),
            'x-ratelimit-resource': 'core',
          })
        }
        const send = (): void => {
          if (res.destroyed) return
          // a 304 has no body, as on GitHub
          res.writeHead(status, status === 304 ? headers : { 'content-type': 'application/json; charset=utf-8', ...headers })
          res.end(status === 304 ? undefined : JSON.stringify(body))
        }
        if (delayMs <= 0) return send()
        const t = setTimeout(() => {
          pendingTimers.delete(t)
          send()
        }, delayMs)
        pendingTimers.add(t)
      }
      if (failures.left > 0 || failingAll !== false) {
        const status = failingAll !== false ? failingAll : failures.status
        if (failingAll === false) failures.left--
        return respond(status, { message: `injected failure (${status})`, documentation_url: 'https://docs.github.com/rest' })
      }
      if (rate && rate.remaining <= 0 && rate.resetAt > Date.now()) {
        return respond(403, { message: 'API rate limit exceeded for user ID 1.', documentation_url: 'https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting' })
      }
      if (options.token !== undefined) {
        const given = /^(?:token|bearer) +(.+)$/i.exec(req.headers.authorization ?? '')?.[1]
        if (given !== options.token) {
          return respond(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest' })
        }
      }
      route(call, respond)
    })
  })

  function route(call: RecordedCall, respond: (status: number, body: unknown, headers?: Record<string, string>) => void): void {
    const segs = call.path.split('/').filter(Boolean).map(decodeURIComponent)
    const [root, owner, name, what, arg, tail] = segs
    const repo = `${owner}/${name}`
    if (root !== 'repos' || !owner || !name) return respond(404, notFound())

    // POST /repos/:owner/:repo/statuses/:sha
    if (call.method === 'POST' && what === 'statuses' && arg && segs.length === 5) {
      const b = (call.body ?? {}) as Record<string, unknown>
      const errors: Array<{ resource: string; field: string; code: string }> = []
      if (typeof b.state !== 'string' || !STATES.includes(b.state)) errors.push({ resource: 'Status', field: 'state', code: 'custom' })
      if (b.description !== undefined && b.description !== null && (typeof b.description !== 'string' || Array.from(b.description).length > 140)) {
        errors.push({ resource: 'Status', field: 'description', code: 'custom' })
      }
      if (b.context !== undefined && typeof b.context !== 'string') errors.push({ resource: 'Status', field: 'context', code: 'custom' })
      if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(arg)) return respond(422, { message: `No commit found for SHA: ${arg}` })
      if (errors.length > 0) return respond(422, { message: 'Validation Failed', errors })
      const status: RecordedStatus = {
        repo,
        sha: arg,
        state: b.state as string,
        context: typeof b.context === 'string' ? b.context : 'default',
        ...(typeof b.description === 'string' ? { description: b.description } : {}),
        ...(typeof b.target_url === 'string' ? { target_url: b.target_url } : {}),
        ...(call.headers.authorization !== undefined ? { authorization: call.headers.authorization } : {}),
        at: call.at,
      }
      accepted.push(status)
      return respond(201, statusBody(url, status, ++statusIds))
    }

    // GET /repos/:owner/:repo/commits/:ref/statuses
    if (call.method === 'GET' && what === 'commits' && arg && tail === 'statuses' && segs.length === 6) {
      const list = accepted.filter((s) => s.repo === repo && s.sha === arg).reverse()
      return respond(200, list.map((s, i) => statusBody(url, s, i + 1)))
    }

    // GET /repos/:owner/:repo/branches
    if (call.method === 'GET' && what === 'branches' && segs.length === 4) {
      const list = (branches.get(repo) ?? []).map((b) => ({
        name: b.name,
        commit: { sha: b.sha, url: `${url}/repos/${repo}/commits/${b.sha}` },
        protected: b.protected ?? false,
      }))
      return page(call, list, respond)
    }

    // GET /repos/:owner/:repo/pulls?state=open|closed|all
    if (call.method === 'GET' && what === 'pulls' && segs.length === 4) {
      const state = call.query.state ?? 'open'
      const list = (pulls.get(repo) ?? [])
        .filter((p) => state === 'all' || (p.state ?? 'open') === state)
        .map((p) => pullBody(url, repo, p))
      return page(call, list, respond)
    }
    respond(404, notFound())
  }

  /** GitHub's pagination: per_page (default 30, at most 100), page, and a Link header; an ETag per page. */
  function page(call: RecordedCall, list: unknown[], respond: (status: number, body: unknown, headers?: Record<string, string>) => void): void {
    const perPage = Math.min(100, Math.max(1, Number(call.query.per_page) || 30))
    const pageNo = Math.max(1, Number(call.query.page) || 1)
    const items = list.slice((pageNo - 1) * perPage, pageNo * perPage)
    const last = Math.max(1, Math.ceil(list.length / perPage))
    const headers: Record<string, string> = {}
    if (pageNo < last) {
      const link = (p: number): string => {
        const q = new URLSearchParams({ ...call.query, per_page: String(perPage), page: String(p) })
        return `${url}${call.path}?${q}`
      }
      headers.link = `<${link(pageNo + 1)}>; rel="next", <${link(last)}>; rel="last"`
    }
    headers.etag = `W/"${createHash('sha1').update(JSON.stringify(items)).update(headers.link ?? '').digest('hex')}"`
    if (call.headers['if-none-match'] === headers.etag) return respond(304, undefined, headers)
    respond(200, items, headers)
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  return {
    url,
    calls,
    statuses: (repo, sha) => accepted.filter((s) => (repo === undefined || s.repo === repo) && (sha === undefined || s.sha === sha)),
    setBranches: (repo, list) => { branches.set(repo, [...list]) },
    setPulls: (repo, list) => { pulls.set(repo, [...list]) },
    failNext: (n, status = 500) => { failures = { left: n, status } },
    failAll: (status) => { failingAll = status },
    setRateLimit: (limit) => {
      rate = limit === null ? null : { remaining: limit.remaining, limit: limit.limit ?? 5000, resetAt: limit.resetAt ?? Date.now() + 3_600_000 }
    },
    delay: (ms) => { delayMs = ms },
    close: async () => {
      for (const t of pendingTimers) clearTimeout(t)
      pendingTimers.clear()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')))
  })
}

function parseJson(text: string): unknown {
  if (text === '') return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

function notFound(): unknown {
  return { message: 'Not Found', documentation_url: 'https://docs.github.com/rest', status: '404' }
}

function statusBody(url: string, s: RecordedStatus, id: number): unknown {
  const time = new Date(s.at).toISOString().replace(/\.\d+Z$/, 'Z')
  return {
    url: `${url}/repos/${s.repo}/statuses/${s.sha}`,
    avatar_url: 'https://avatars.githubusercontent.com/u/1?v=4',
    id,
    node_id: `SC_${id}`,
    state: s.state,
    description: s.description ?? null,
    target_url: s.target_url ?? null,
    context: s.context,
    created_at: time,
    updated_at: time,
    creator: user('regatta-bot', 9000),
  }
}

function pullBody(url: string, repo: string, p: PullFixture): unknown {
  const headRepo = p.headRepo ?? repo
  return {
    url: `${url}/repos/${repo}/pulls/${p.number}`,
    id: 100000 + p.number,
    number: p.number,
    state: p.state ?? 'open',
    locked: false,
    title: p.title ?? `Pull request ${p.number}`,
    user: user(p.user ?? 'octocat', 1),
    draft: p.draft ?? false,
    head: { label: `${headRepo.split('/')[0]}:${p.headRef}`, ref: p.headRef, sha: p.headSha, user: user(headRepo.split('/')[0], 2), repo: repository(headRepo) },
    base: { label: `${repo.split('/')[0]}:${p.baseRef ?? 'main'}`, ref: p.baseRef ?? 'main', sha: fakeSha(`${repo}:${p.baseRef ?? 'main'}`), user: user(repo.split('/')[0], 3), repo: repository(repo) },
  }
}

// ---------------------------------------------------------------------------------------------
// Webhook requests

/** GitHub's X-Hub-Signature-256 of a body: `sha256=<hex HMAC-SHA256>`. */
export function signWebhook(secret: string, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
}

/** The headers GitHub sends with a webhook, signed with `secret` (both SHA-256 and the older SHA-1). */
export function webhookHeaders(o: { event: string; body: string; secret: string; deliveryId?: string }): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': 'GitHub-Hookshot/5a5b1c2',
    'x-github-event': o.event,
    'x-github-delivery': o.deliveryId ?? randomUUID(),
    'x-github-hook-id': '421337',
    'x-github-hook-installation-target-id': '79929171',
    'x-github-hook-installation-target-type': 'repository',
    'x-hub-signature': `sha1=${createHmac('sha1', o.secret).update(o.body).digest('hex')}`,
    'x-hub-signature-256': signWebhook(o.secret, o.body),
  }
}

// ---------------------------------------------------------------------------------------------
// Webhook payloads: what GitHub sends (the fields Regatta reads, and some it does not)

/** A stable, realistic commit id made from any text. */
export function fakeSha(seed: string): string {
  return createHash('sha1').update(seed).digest('hex')
}

export const ZERO_SHA = '0000000000000000000000000000000000000000'

export interface RepoOptions {
  /** `owner/name` (default `octo/app`). */
  repo?: string
  cloneUrl?: string
  defaultBranch?: string
  private?: boolean
}

export interface CommitFixture {
  message?: string
  added?: string[]
  modified?: string[]
  removed?: string[]
}

export interface PushOptions extends RepoOptions {
  /** Branch name (default `main`), ignored when `ref` is given. */
  branch?: string
  /** Full ref, for refs that are neither branches nor tags. */
  ref?: string
  after?: string
  before?: string
  /** Commits pushed (default one commit modifying README.md). */
  commits?: CommitFixture[]
  created?: boolean
  deleted?: boolean
  forced?: boolean
  pusher?: string
}

export function pushPayload(o: PushOptions = {}): Record<string, unknown> {
  const repo = o.repo ?? 'octo/app'
  const ref = o.ref ?? `refs/heads/${o.branch ?? 'main'}`
  const deleted = o.deleted ?? false
  const after = o.after ?? (deleted ? ZERO_SHA : fakeSha(`${repo}:${ref}:after`))
  const before = o.before ?? (o.created ? ZERO_SHA : fakeSha(`${repo}:${ref}:before`))
  const pusher = o.pusher ?? 'octocat'
  const commits = deleted ? [] : (o.commits ?? [{ message: 'Update README', modified: ['README.md'] }]).map((c, i, all) =>
    commit(repo, i === all.length - 1 ? after : fakeSha(`${repo}:${ref}:${i}`), c, pusher))
  return {
    ref,
    before,
    after,
    repository: repository(repo, o, true),
    pusher: { name: pusher, email: `${pusher}@users.noreply.github.com` },
    sender: user(pusher, 583231),
    created: o.created ?? false,
    deleted,
    forced: o.forced ?? false,
    base_ref: null,
    compare: `https://github.com/${repo}/compare/${before.slice(0, 12)}...${after.slice(0, 12)}`,
    commits,
    head_commit: commits.length > 0 ? commits[commits.length - 1] : null,
  }
}

export interface TagOptions extends RepoOptions {
  tag?: string
  sha?: string
  pusher?: string
}

/** The push GitHub sends when a tag is created: no commits, `created: true`. */
export function tagPayload(o: TagOptions = {}): Record<string, unknown> {
  const repo = o.repo ?? 'octo/app'
  const tag = o.tag ?? 'v1.0.0'
  const sha = o.sha ?? fakeSha(`${repo}:tag:${tag}`)
  const payload = pushPayload({ ...o, ref: `refs/tags/${tag}`, after: sha, before: ZERO_SHA, created: true, commits: [] })
  payload.base_ref = `refs/heads/${o.defaultBranch ?? 'main'}`
  payload.head_commit = commit(repo, sha, { message: `Release ${tag}` }, o.pusher ?? 'octocat')
  return payload
}

export interface PullRequestOptions extends RepoOptions {
  action?: string
  number?: number
  headRef?: string
  headSha?: string
  baseRef?: string
  /** The head is in this repository (`owner/name`) rather than the base one; `null`: a deleted fork. */
  headRepo?: string | null
  sender?: string
  title?: string
}

export function pullRequestPayload(o: PullRequestOptions = {}): Record<string, unknown> {
  const repo = o.repo ?? 'octo/app'
  const number = o.number ?? 7
  const headRef = o.headRef ?? 'feature/thing'
  const headSha = o.headSha ?? fakeSha(`${repo}:pr:${number}:${headRef}`)
  const baseRef = o.baseRef ?? o.defaultBranch ?? 'main'
  const headRepo = o.headRepo === undefined ? repo : o.headRepo
  const sender = o.sender ?? (headRepo ? headRepo.split('/')[0] : 'ghost')
  const base = repository(repo, o)
  return {
    action: o.action ?? 'opened',
    number,
    pull_request: {
      url: `https://api.github.com/repos/${repo}/pulls/${number}`,
      id: 1_000_000 + number,
      node_id: `PR_kwDO${number}`,
      html_url: `https://github.com/${repo}/pull/${number}`,
      number,
      state: o.action === 'closed' ? 'closed' : 'open',
      locked: false,
      title: o.title ?? 'Add the thing',
      user: user(sender, 583232),
      body: 'What this pull request does.',
      created_at: '2024-05-01T10:00:00Z',
      updated_at: '2024-05-01T10:05:00Z',
      closed_at: null,
      merged_at: null,
      merge_commit_sha: null,
      draft: false,
      head: {
        label: `${headRepo ? headRepo.split('/')[0] : 'ghost'}:${headRef}`,
        ref: headRef,
        sha: headSha,
        user: user(sender, 583232),
        repo: headRepo === null ? null : headRepo === repo ? base : repository(headRepo, { private: o.private }),
      },
      base: {
        label: `${repo.split('/')[0]}:${baseRef}`,
        ref: baseRef,
        sha: fakeSha(`${repo}:${baseRef}`),
        user: user(repo.split('/')[0], 583233),
        repo: base,
      },
      merged: false,
      mergeable: null,
      commits: 1,
      additions: 10,
      deletions: 2,
      changed_files: 1,
    },
    repository: base,
    sender: user(sender, 583232),
  }
}

function commit(repo: string, id: string, c: CommitFixture, author: string): Record<string, unknown> {
  const person = { name: author, email: `${author}@users.noreply.github.com`, username: author }
  return {
    id,
    tree_id: fakeSha(`tree:${id}`),
    distinct: true,
    message: c.message ?? 'A change',
    timestamp: '2024-05-01T10:00:00+02:00',
    url: `https://github.com/${repo}/commit/${id}`,
    author: person,
    committer: person,
    added: c.added ?? [],
    removed: c.removed ?? [],
    modified: c.modified ?? [],
  }
}

function user(login: string, id: number): Record<string, unknown> {
  return {
    login,
    id,
    node_id: `MDQ6VXNlcj${id}`,
    avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
    url: `https://api.github.com/users/${login}`,
    html_url: `https://github.com/${login}`,
    type: 'User',
    site_admin: false,
  }
}

/** A repository object; push payloads carry times as numbers and an `owner.name`, others ISO text. */
function repository(fullName: string, o: RepoOptions = {}, forPush = false): Record<string, unknown> {
  const [owner, name] = fullName.split('/')
  return {
    id: parseInt(fakeSha(fullName).slice(0, 8), 16),
    node_id: `R_kgDO${name}`,
    name,
    full_name: fullName,
    private: o.private ?? false,
    owner: forPush ? { name: owner, email: null, ...user(owner, 1342004) } : user(owner, 1342004),
    html_url: `https://github.com/${fullName}`,
    description: null,
    fork: false,
    url: forPush ? `https://github.com/${fullName}` : `https://api.github.com/repos/${fullName}`,
    created_at: forPush ? 1_700_000_000 : '2023-11-14T22:13:20Z',
    updated_at: '2024-05-01T09:00:00Z',
    pushed_at: forPush ? 1_714_554_000 : '2024-05-01T09:00:00Z',
    git_url: `git://github.com/${fullName}.git`,
    ssh_url: `git@github.com:${fullName}.git`,
    clone_url: o.cloneUrl ?? `https://github.com/${fullName}.git`,
    default_branch: o.defaultBranch ?? 'main',
    ...(forPush ? { master_branch: o.defaultBranch ?? 'main' } : {}),
    visibility: o.private ? 'private' : 'public',
    size: 108,
    stargazers_count: 3,
    language: 'TypeScript',
  }
}
