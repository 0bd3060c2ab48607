// What starts a run: a GitHub event (push, tag, pull request) normalized, a schedule tick, or a
// manual trigger. Webhooks produce it, the pipeline planner matches pipelines' `on` against it,
// and `${{ github.* }}` expressions read it.

export type TriggerKind = 'push' | 'tag' | 'pull_request' | 'schedule' | 'manual'

export interface Repository {
  /** `owner/name` */
  fullName: string
  /** What `git clone` takes: https URL, or any URL git accepts (`file://` for local use). */
  cloneUrl: string
  defaultBranch: string
  private: boolean
}

export interface PullRequestInfo {
  number: number
  /** opened | synchronize | reopened */
  action: string
  headRef: string
  headSha: string
  baseRef: string
  /** The head is in another repository: no secrets for its jobs. */
  fromFork: boolean
}

export interface Trigger {
  kind: TriggerKind
  repo: Repository
  /** Full ref: `refs/heads/main`, `refs/tags/v1`, `refs/pull/7/head`. */
  ref: string
  sha: string
  /** Branch name for push / pull_request head / schedule / manual on a branch. */
  branch?: string
  tag?: string
  pullRequest?: PullRequestInfo
  /** Paths changed by the push (from the payload's commits), for `paths` filters; absent = unknown. */
  changedFiles?: string[]
  /** The cron expression of a schedule trigger. */
  schedule?: string
  /** Who or what caused it: the pusher's login, `schedule`, or the operator. */
  actor: string
  /** X-GitHub-Delivery of the webhook, for de-duplication. */
  deliveryId?: string
}
