// `POST /webhooks/github`: GitHub's webhooks in, Triggers out. Usage:
//
//   app.register(webhookRoutes, { secret: process.env.REGATTA_WEBHOOK_SECRET, onTrigger, logger })
//
// Order of work, so that nothing unauthenticated is read or done:
//   1. no secret configured → 503 WEBHOOKS_DISABLED (unless `allowUnsigned`, a dev mode);
//   2. the body is read as raw text, up to `maxBodyBytes` (413 PAYLOAD_TOO_LARGE beyond);
//   3. X-Hub-Signature-256 is verified over those exact bytes with @octokit/webhooks
//      (401 INVALID_SIGNATURE when missing or wrong), before anything is parsed;
//   4. the JSON is parsed (400 INVALID_MESSAGE when nested deeper than MAX_MESSAGE_DEPTH, 64
//      levels of [ and {; GitHub's payloads have fewer than 10) and the fields Regatta reads are
//      checked (400 INVALID_MESSAGE naming the field), the event becomes a Trigger or is
//      ignored with a reason (200);
//   5. a delivery id already seen is answered 200 "duplicate" and starts nothing; otherwise
//      `onTrigger` is called and awaited (202). It should only enqueue: GitHub waits 10 s.
//
// Size limit: 1 MiB by default. GitHub sends up to 25 MB, but the fields used here (ref, sha,
// repository, changed file names of at most 2048 commits) fit well within 1 MiB; a larger push
// is refused with 413 and shows as a failed delivery in GitHub's settings.
//
// Every answer that is not a 2xx has the body `{ error: { code, message } }`. 2xx bodies are
// `{ result: 'triggered' | 'duplicate' | 'ignored' | 'pong', ... }` with a reason when ignored.
//
// The plugin is encapsulated (registered without fastify-plugin): its raw-body parser, hooks
// and error handler apply to this route only.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Webhooks } from '@octokit/webhooks'
import { RegattaError, httpStatusOf, type ErrorCode } from '../../../../shared/errors/index.js'
import type { Logger } from '../../../../shared/log/index.js'
import { MAX_MESSAGE_DEPTH, jsonNestingBeyond } from '../../../../shared/protocol/index.js'
import type { Trigger } from '../trigger.js'
import { MemoryDeliveryLog, type DeliveryLog } from './delivery-log.js'
import { triggerFromEvent } from './events.js'

export const WEBHOOK_PATH = '/webhooks/github'
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

export interface WebhookOptions {
  /** REGATTA_WEBHOOK_SECRET. Without it every webhook gets 503, unless `allowUnsigned`. */
  secret: string | undefined
  /** Starts the run (or queues it). A throw answers 500 and lets a redelivery try again. */
  onTrigger(trigger: Trigger): Promise<void> | void
  logger: Logger
  /** Largest body accepted, in bytes (default 1 MiB). */
  maxBodyBytes?: number
  /** Delivery ids handled already (default: an in-memory log of the last 10 000). */
  seen?: DeliveryLog
  /**
   * Dev mode: with no secret configured, accept webhooks without checking any signature.
   * Off by default; ignored when a secret is set (then every webhook must be signed).
   */
  allowUnsigned?: boolean
}

/** The 2xx answers. */
export type WebhookAnswer =
  | { result: 'triggered'; deliveryId?: string; kind: Trigger['kind']; ref: string; sha: string }
  | { result: 'duplicate'; deliveryId: string; reason: string }
  | { result: 'ignored'; reason: string }
  | { result: 'pong' }

const EVENT_NAME = /^[a-z_]{1,64}$/
const MAX_DELIVERY_ID = 256

export async function webhookRoutes(fastify: FastifyInstance, options: WebhookOptions): Promise<void> {
  const log = options.logger.child({ component: 'github-webhook' })
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw new RegattaError('INVALID_CONFIG', `maxBodyBytes must be a positive integer, not ${maxBodyBytes}`)
  }
  const deliveries = options.seen ?? new MemoryDeliveryLog()
  const webhooks = options.secret ? new Webhooks({ secret: options.secret }) : undefined
  const unsigned = !webhooks && options.allowUnsigned === true
  if (unsigned) log.warn('no webhook secret: accepting UNSIGNED webhooks (dev mode); never expose this port')

  // Every body as raw text, whatever its content type: the signature covers the exact bytes.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', { parseAs: 'string', bodyLimit: maxBodyBytes }, (_req, body, done) => done(null, body))

  fastify.setErrorHandler((err: unknown, request, reply) => {
    const { status, code, message } = describe(err, maxBodyBytes)
    if (status >= 500) log.error({ err, deliveryId: deliveryIdOf(request) }, 'webhook failed')
    else log.debug({ code, deliveryId: deliveryIdOf(request) }, message)
    return reply.code(status).send({ error: { code, message } })
  })

  fastify.addHook('onRequest', async () => {
    if (!webhooks && !unsigned) {
      throw new RegattaError('WEBHOOKS_DISABLED', 'webhooks are disabled: set REGATTA_WEBHOOK_SECRET to the secret configured on the GitHub webhook')
    }
  })

  fastify.post(WEBHOOK_PATH, { bodyLimit: maxBodyBytes }, async (request: FastifyRequest, reply: FastifyReply) => {
    const raw = typeof request.body === 'string' ? request.body : ''
    if (webhooks) await checkSignature(webhooks, raw, request.headers['x-hub-signature-256'])

    const event = request.headers['x-github-event']
    if (typeof event !== 'string' || !EVENT_NAME.test(event)) {
      throw new RegattaError('INVALID_MESSAGE', 'invalid webhook: header X-GitHub-Event is missing or not an event name')
    }
    const delivery = request.headers['x-github-delivery']
    if (delivery !== undefined && (typeof delivery !== 'string' || delivery.length === 0 || delivery.length > MAX_DELIVERY_ID)) {
      throw new RegattaError('INVALID_MESSAGE', `invalid webhook: header X-GitHub-Delivery must be 1 to ${MAX_DELIVERY_ID} characters`)
    }
    const deliveryId = delivery as string | undefined
    if (event === 'ping') {
      log.info({ deliveryId }, 'webhook ping')
      return answer(reply, 200, { result: 'pong' })
    }

    const outcome = triggerFromEvent(event, parseBody(raw, request.headers['content-type'], event), deliveryId)
    if ('ignored' in outcome) {
      log.debug({ deliveryId, event, reason: outcome.ignored }, 'webhook ignored')
      return answer(reply, 200, { result: 'ignored', reason: outcome.ignored })
    }

    const { trigger } = outcome
    if (deliveryId === undefined) {
      log.warn({ event }, 'webhook without X-GitHub-Delivery: a redelivery of it cannot be recognised')
    } else {
      let duplicate: boolean
      try {
        duplicate = await deliveries.seen(deliveryId)
      } catch (err) {
        // refuse rather than risk a second run: GitHub shows the failure and can redeliver
        throw new RegattaError('INTERNAL', `the delivery log could not be read: ${messageOf(err)}`, { cause: err })
      }
      if (duplicate) {
        log.info({ deliveryId, event }, 'webhook redelivered: no second run')
        return answer(reply, 200, { result: 'duplicate', deliveryId, reason: 'this delivery was handled already' })
      }
    }

    try {
      await options.onTrigger(trigger)
    } catch (err) {
      if (deliveryId !== undefined) await deliveries.forget?.(deliveryId).catch((e: unknown) => log.warn({ err: e, deliveryId }, 'could not forget a failed delivery'))
      throw new RegattaError('INTERNAL', `the run could not be started: ${messageOf(err)}`, { cause: err })
    }
    log.info({ deliveryId, kind: trigger.kind, repo: trigger.repo.fullName, ref: trigger.ref, sha: trigger.sha }, 'webhook triggered a run')
    return answer(reply, 202, { result: 'triggered', ...(deliveryId !== undefined ? { deliveryId } : {}), kind: trigger.kind, ref: trigger.ref, sha: trigger.sha })
  })
}

async function checkSignature(webhooks: Webhooks, raw: string, header: string | string[] | undefined): Promise<void> {
  if (typeof header !== 'string' || header.length === 0) {
    throw new RegattaError('INVALID_SIGNATURE', 'missing X-Hub-Signature-256 header (set a secret on the GitHub webhook)')
  }
  // @octokit/webhooks refuses an empty payload with a TypeError: an empty body is unsigned
  let ok = false
  if (raw.length > 0) {
    try {
      ok = await webhooks.verify(raw, header)
    } catch {
      ok = false
    }
  }
  if (!ok) throw new RegattaError('INVALID_SIGNATURE', 'X-Hub-Signature-256 does not match the body and the configured secret')
}

/** The JSON of a verified body: `application/json`, or a form with a `payload` field. */
function parseBody(raw: string, contentType: string | undefined, event: string): unknown {
  let json = raw
  if (contentType !== undefined && /^application\/x-www-form-urlencoded\b/i.test(contentType)) {
    const payload = new URLSearchParams(raw).get('payload')
    if (payload === null) throw new RegattaError('INVALID_MESSAGE', `invalid ${event} payload: form body without a payload field`)
    json = payload
  }
  const deep = jsonNestingBeyond(json, MAX_MESSAGE_DEPTH)
  if (deep >= 0) {
    throw new RegattaError('INVALID_MESSAGE', `invalid ${event} payload: nested deeper than ${MAX_MESSAGE_DEPTH} levels of [ and { (at character ${deep + 1})`)
  }
  try {
    return JSON.parse(json) as unknown
  } catch (err) {
    // JSON.parse quotes the text it failed on, newlines and all: one line in the answer
    throw new RegattaError('INVALID_MESSAGE', `invalid ${event} payload: not JSON (${oneLine(messageOf(err))})`)
  }
}

function answer(reply: FastifyReply, status: number, body: WebhookAnswer): FastifyReply {
  return reply.code(status).send(body)
}

function describe(err: unknown, maxBodyBytes: number): { status: number; code: ErrorCode; message: string } {
  if (err instanceof RegattaError) return { status: httpStatusOf(err.code), code: err.code, message: err.message }
  const statusCode = (err as { statusCode?: unknown } | null)?.statusCode
  if (statusCode === 413) {
    return { status: 413, code: 'PAYLOAD_TOO_LARGE', message: `webhook body larger than ${maxBodyBytes} bytes` }
  }
  // fastify's own client errors (a body shorter than its Content-Length, a bad encoding...)
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { status: statusCode, code: 'INVALID_MESSAGE', message: messageOf(err) }
  }
  return { status: 500, code: 'INTERNAL', message: messageOf(err) }
}

function deliveryIdOf(request: FastifyRequest): string | undefined {
  const id = request.headers['x-github-delivery']
  return typeof id === 'string' ? id.slice(0, MAX_DELIVERY_ID) : undefined
}

function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
