// GitHub at the CI service's edges: webhooks in (Triggers), commit statuses out. Usage:
//
//   await app.register(webhookRoutes, { secret: env.REGATTA_WEBHOOK_SECRET, onTrigger, logger, seen })
//   const statuses = new StatusReporter({ token: env.REGATTA_GITHUB_TOKEN, baseUrl: env.REGATTA_GITHUB_API_URL, logger })
//   statuses.report({ repo: trigger.repo.fullName, sha: trigger.sha, context: 'regatta/ci/build', state: 'pending' })
export { webhookRoutes, WEBHOOK_PATH, DEFAULT_MAX_BODY_BYTES, type WebhookOptions, type WebhookAnswer } from './webhook.js'
export { MemoryDeliveryLog, type DeliveryLog } from './delivery-log.js'
export { triggerFromEvent, PULL_REQUEST_ACTIONS, MAX_PUSH_COMMITS, type EventOutcome } from './events.js'
export {
  StatusReporter, DEFAULT_GITHUB_API_URL, MAX_DESCRIPTION_CHARS, truncate,
  type CommitState, type CommitStatus, type StatusReporterOptions, type StatusReporterStats,
} from './statuses.js'
