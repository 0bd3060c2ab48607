// GitHub webhook payloads to Triggers: the schemas of the fields Regatta reads (only those; GitHub
// sends many more) and the pure decision of which events start a run. No HTTP here: webhook.ts
// checks the signature and calls `triggerFromEvent` with the parsed body.
import { Type, type Static } from '@sinclair/typebox'
import { validate } from '../../../../shared/protocol/index.js'
import type { Repository, Trigger } from '../trigger.js'

/** A commit id: 40 hex digits (SHA-1 repositories) or 64 (SHA-256 repositories). */
const CommitSha = Type.String({ pattern: '^[0-9a-f]{40}(?:[0-9a-f]{24})?$' })

const RepositorySchema = Type.Object({
  full_name: Type.String({ pattern: '^[^/\\s]+/[^/\\s]+$', maxLength: 512 }),
  clone_url: Type.String({ minLength: 1, maxLength: 4096 }),
  default_branch: Type.String({ minLength: 1, maxLength: 1024 }),
  private: Type.Boolean(),
})

const Paths = Type.Array(Type.String({ maxLength: 4096 }))

const CommitSchema = Type.Object({
  added: Type.Optional(Paths),
  modified: Type.Optional(Paths),
  removed: Type.Optional(Paths),
})

const Sender = Type.Object({ login: Type.String({ maxLength: 256 }) })

export const PushPayload = Type.Object({
  ref: Type.String({ minLength: 1, maxLength: 4096 }),
  after: CommitSha,
  deleted: Type.Optional(Type.Boolean()),
  created: Type.Optional(Type.Boolean()),
  commits: Type.Optional(Type.Array(CommitSchema)),
  repository: RepositorySchema,
  pusher: Type.Optional(Type.Object({ name: Type.Optional(Type.String({ maxLength: 256 })) })),
  sender: Type.Optional(Sender),
})
export type PushPayload = Static<typeof PushPayload>

/** Read first, so that an action we ignore needs nothing else to be valid. */
const PullRequestAction = Type.Object({ action: Type.String({ maxLength: 256 }) })

const RepoName = Type.Object({ full_name: Type.String({ maxLength: 512 }) })

export const PullRequestPayload = Type.Object({
  action: Type.String(),
  number: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  pull_request: Type.Object({
    head: Type.Object({
      ref: Type.String({ minLength: 1, maxLength: 4096 }),
      sha: CommitSha,
      // null when the fork the pull request came from has been deleted
      repo: Type.Union([RepoName, Type.Null()]),
    }),
    base: Type.Object({
      ref: Type.String({ minLength: 1, maxLength: 4096 }),
      repo: RepoName,
    }),
  }),
  repository: RepositorySchema,
  sender: Type.Optional(Sender),
})
export type PullRequestPayload = Static<typeof PullRequestPayload>

/** The pull_request actions that start a run: new code to build. */
export const PULL_REQUEST_ACTIONS: readonly string[] = ['opened', 'synchronize', 'reopened']

/**
 * GitHub lists at most this many commits in a push payload; a push with that many may have
 * more, so its changed files are unknown.
 */
export const MAX_PUSH_COMMITS = 2048

/** What an event comes to: a run to start, or a reason it starts none. */
export type EventOutcome = { trigger: Trigger } | { ignored: string }

/**
 * The Trigger an event starts, or why it starts none. Throws RegattaError INVALID_MESSAGE naming
 * the first bad field when a field Regatta reads is missing or has the wrong type.
 */
export function triggerFromEvent(event: string, payload: unknown, deliveryId?: string): EventOutcome {
  switch (event) {
    case 'push':
      return fromPush(validate(PushPayload, payload, 'push payload'), deliveryId)
    case 'pull_request': {
      const { action } = validate(PullRequestAction, payload, 'pull_request payload')
      if (!PULL_REQUEST_ACTIONS.includes(action)) {
        return { ignored: `pull_request action "${clip(action)}" starts no run (only ${PULL_REQUEST_ACTIONS.join(', ')})` }
      }
      return fromPullRequest(validate(PullRequestPayload, payload, 'pull_request payload'), deliveryId)
    }
    default:
      return { ignored: `event "${clip(event)}" starts no run (only push and pull_request)` }
  }
}

const ZERO_SHA = /^0+$/

function fromPush(p: PushPayload, deliveryId: string | undefined): EventOutcome {
  if (p.deleted === true || ZERO_SHA.test(p.after)) return { ignored: `push deleted ${clip(p.ref)}` }
  const base = {
    repo: repositoryOf(p.repository),
    ref: p.ref,
    sha: p.after,
    actor: p.sender?.login || p.pusher?.name || 'unknown',
    ...(deliveryId !== undefined ? { deliveryId } : {}),
  }
  const changedFiles = changedFilesOf(p)
  const files = changedFiles ? { changedFiles } : {}
  const branch = nameUnder(p.ref, 'refs/heads/')
  if (branch !== undefined) return { trigger: { kind: 'push', ...base, branch, ...files } }
  const tag = nameUnder(p.ref, 'refs/tags/')
  if (tag !== undefined) return { trigger: { kind: 'tag', ...base, tag, ...files } }
  return { ignored: `push to ${clip(p.ref)}, which is neither a branch nor a tag` }
}

function fromPullRequest(p: PullRequestPayload, deliveryId: string | undefined): EventOutcome {
  const { head, base } = p.pull_request
  // a deleted fork (head.repo null) is as untrusted as a live one
  const fromFork = head.repo === null || head.repo.full_name.toLowerCase() !== base.repo.full_name.toLowerCase()
  return {
    trigger: {
      kind: 'pull_request',
      repo: repositoryOf(p.repository),
      ref: `refs/pull/${p.number}/head`,
      sha: head.sha,
      branch: head.ref,
      pullRequest: {
        number: p.number,
        action: p.action,
        headRef: head.ref,
        headSha: head.sha,
        baseRef: base.ref,
        fromFork,
      },
      actor: p.sender?.login || 'unknown',
      ...(deliveryId !== undefined ? { deliveryId } : {}),
    },
  }
}

function repositoryOf(r: Static<typeof RepositorySchema>): Repository {
  return { fullName: r.full_name, cloneUrl: r.clone_url, defaultBranch: r.default_branch, private: r.private }
}

/** `feature/x` for `refs/heads/feature/x` and prefix `refs/heads/`; undefined for another prefix. */
function nameUnder(ref: string, prefix: string): string | undefined {
  return ref.startsWith(prefix) && ref.length > prefix.length ? ref.slice(prefix.length) : undefined
}

/**
 * Files added, modified or removed by the pushed commits, each once, in first-seen order.
 * Undefined (unknown) when the payload has no commit list, may have cut it short, or lists no
 * commit for a newly created ref (a branch made from an existing commit changed nothing by itself,
 * but its paths filters should not read that as "no file changed").
 */
function changedFilesOf(p: PushPayload): string[] | undefined {
  const commits = p.commits
  if (!commits || commits.length >= MAX_PUSH_COMMITS) return undefined
  if (commits.length === 0 && p.created === true) return undefined
  const files = new Set<string>()
  for (const c of commits) {
    for (const f of c.added ?? []) files.add(f)
    for (const f of c.modified ?? []) files.add(f)
    for (const f of c.removed ?? []) files.add(f)
  }
  return [...files]
}

/** Text from a payload, shortened for an answer or a log line. */
function clip(s: string, max = 200): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`
}
