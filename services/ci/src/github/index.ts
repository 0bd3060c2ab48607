// GitHub at the CI service's edges: webhooks in (Triggers), commit statuses out. Usage:
//
//   await app.register(webhookRoutes, { secret: env.REGATTA_WEBHOOK_SECRET, onTrigger, logger, seen })
//   const statuses = new StatusReporter({ token: env.REGATTA_GITHUB_TOKEN, baseUrl: env.REGATTA_GITHUB_API_URL, logger })
//   statuses.report({ repo: trigger.repo.fullName, sha: trigger.sha, context: 'regatta/ci/build', state: 'pending' })
//   const poller = new HeadPoller({ ledger: await HeadLedger.open({ nc, logger }), client, start: (t) => service.trigger(t), logger })
export { webhookRoutes, WEBHOOK_PATH, DEFAULT_MAX_BODY_BYTES, type WebhookOptions, type WebhookAnswer } from './webhook.js'
export { MemoryDeliveryLog, type DeliveryLog } from './delivery-log.js'
export { triggerFromEvent, PULL_REQUEST_ACTIONS, MAX_PUSH_COMMITS, type EventOutcome } from './events.js'
export { createGitHubClient, githubApiUrl, classifyGitHubError, type GitHubClientOptions, type GitHubFailure } from './client.js'
export { HeadLedger, HEADS_BUCKET, CLAIMS_BUCKET, type HeadClaims, type HeadLedgerOptions, type RepoHeads, type Claim } from './heads.js'
export {
  HeadPoller, decideHeads, DEFAULT_POLL_INTERVAL_MS, DEFAULT_MAX_REPOS, DEFAULT_MAX_BRANCHES, DEFAULT_MAX_PULLS,
  type HeadPollerOptions, type HeadPollerStats, type RepoListing, type HeadPlan, type BranchHead, type PullHead,
} from './poller.js'
export {
  StatusReporter, DEFAULT_GITHUB_API_URL, MAX_DESCRIPTION_CHARS, truncate,
  type CommitState, type CommitStatus, type StatusReporterOptions, type StatusReporterStats,
} from './statuses.js'
