// Typed errors with stable codes: one registry, each code documented. Errors cross NATS
// as { code, message } and are rebuilt by code on the other side.

export const ErrorCodes = {
  INVALID_MESSAGE: 'a message read from NATS or HTTP failed its schema; the message names the field',
  UNKNOWN_CALL: 'a call type the receiver does not know',
  UNKNOWN_FRAMEWORK: 'the framework id is not subscribed (subscribe again)',
  UNKNOWN_AGENT: 'the agent id is not registered with the leading master (register again)',
  UNKNOWN_OFFER: 'the offer was rescinded, expired or already used',
  UNKNOWN_TASK: 'no task with that id is known',
  INVALID_OPERATION: 'an ACCEPT operation does not fit its offers (resources, roles, principal, volume ids; the message names the operation and field), or an operator reservation does not fit the agent (resources not free, no such dynamic reservation)',
  STALE_EPOCH: 'a command carried the epoch of a master that no longer leads (fencing)',
  NOT_LEADER: 'this master is a standby; talk to the leader',
  NO_RESPONDERS: 'nobody serves the subject (no leading master, or the agent is gone)',
  TIMEOUT: 'a request got no answer in time',
  INVALID_SIGNATURE: 'a webhook\'s X-Hub-Signature-256 is missing or does not match its body and the configured secret',
  PAYLOAD_TOO_LARGE: 'an HTTP request body is larger than the route accepts; the message says the limit',
  WEBHOOKS_DISABLED: 'no webhook secret is configured (REGATTA_WEBHOOK_SECRET), so webhooks are refused',
  GITHUB_API_ERROR: 'the GitHub API refused or failed a request (commit statuses, head polling); the message has its status',
  INVALID_RESOURCES: 'a resource string or list could not be parsed, or is inconsistent',
  INVALID_CONFIG: 'a flag or environment variable has a bad value',
  CONTAINER_ERROR: 'the containerizer could not create, start or watch a container',
  IMAGE_PULL_FAILED: 'the image is not present locally and could not be pulled',
  CHECKOUT_FAILED: 'the agent could not check the task\'s git commit out into its workspace',
  INVALID_TASK: 'a task the agent refuses as described: duplicate sidecar names, a cache, artifact or mount path outside its workspace or sandbox',
  WORKSPACE_STORE_FAILED: 'a cache or artifact could not be saved to (or restored from) the NATS object store',
  NOT_FOUND: 'no such HTTP route or resource',
  INVALID_PIPELINE: 'a pipeline file (.regatta/*.yml) is not valid; the message lists each error as file:line:column',
  INVALID_EXPRESSION: 'a ${{ }} expression could not be parsed or evaluated; the message gives its column',
  SECRETS_UNAVAILABLE: 'no secrets key is configured (REGATTA_SECRETS_KEY), or a stored secret does not open with it',
  OPERATOR_API_DISABLED: 'a write over HTTP (drain, reservations, roles; trigger, cancel, rerun on the CI service) reached a server with no operator token configured (--operator-token / REGATTA_OPERATOR_TOKEN / REGATTA_TOKENS_FILE), so it is refused (HTTP 403)',
  UNAUTHORIZED: 'an HTTP call that needs a token carried no `Authorization: Bearer <token>` header, or a token the server does not know (HTTP 401)',
  FORBIDDEN: 'an HTTP write carried a read-only token; writes need an operator token (HTTP 403)',
  NATS_AUTH: 'the NATS server refused the connection\'s user or password (REGATTA_NATS_USER / REGATTA_NATS_PASSWORD, or user:password in the NATS URL)',
  PROVIDER_FAILED: 'a scaler provider could not start or stop an agent (the process did not spawn, the container or its image could not be made); the message names the pool and the cause',
  INTERNAL: 'an unexpected failure; the message says where',
} as const

export type ErrorCode = keyof typeof ErrorCodes

/** The HTTP status of each code an HTTP API answers with; any other code is 500 (our fault). */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_MESSAGE: 400,
  INVALID_RESOURCES: 400,
  INVALID_CONFIG: 400,
  UNKNOWN_CALL: 400,
  INVALID_SIGNATURE: 401,
  UNAUTHORIZED: 401,
  OPERATOR_API_DISABLED: 403,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  UNKNOWN_FRAMEWORK: 404,
  UNKNOWN_AGENT: 404,
  UNKNOWN_OFFER: 404,
  UNKNOWN_TASK: 404,
  INVALID_OPERATION: 409,
  STALE_EPOCH: 409,
  PAYLOAD_TOO_LARGE: 413,
  CHECKOUT_FAILED: 422,
  NOT_LEADER: 503,
  NO_RESPONDERS: 503,
  WEBHOOKS_DISABLED: 503,
  SECRETS_UNAVAILABLE: 503,
  TIMEOUT: 504,
}

/** The HTTP status for an error code; codes that mean "our fault" are 500. */
export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS[code] ?? 500
}

export class RegattaError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = 'RegattaError'
  }

  toWire(): WireError {
    return { code: this.code, message: this.message }
  }

  static fromWire(w: WireError): RegattaError {
    const code = (Object.hasOwn(ErrorCodes, w.code) ? w.code : 'INTERNAL') as ErrorCode
    return new RegattaError(code, w.message)
  }

  /** Wraps anything thrown into a RegattaError, keeping a RegattaError as it is. */
  static from(err: unknown, code: ErrorCode = 'INTERNAL'): RegattaError {
    if (err instanceof RegattaError) return err
    const message = err instanceof Error ? err.message : String(err)
    return new RegattaError(code, message, { cause: err })
  }
}

export interface WireError {
  code: string
  message: string
}

export function isWireError(v: unknown): v is { error: WireError } {
  return typeof v === 'object' && v !== null && 'error' in v &&
    typeof (v as { error: unknown }).error === 'object' && (v as { error: WireError | null }).error !== null &&
    typeof (v as { error: WireError }).error.code === 'string'
}
