// NATS helpers: connect, request/reply with typed errors and retry, serving a subject with
// validation, and the JetStream streams every component relies on.
import {
  AckPolicy, connect, DeliverPolicy, ErrorCode, headers, NatsError, RetentionPolicy, StorageType,
  type ConnectionOptions, type JetStreamManager, type Msg, type NatsConnection, type Subscription,
} from 'nats'
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { RegattaError, isWireError } from '../errors/index.js'
import { decode, encode, validate } from '../protocol/codec.js'
import { Consumers, Streams, Subjects } from '../protocol/subjects.js'
import { requesterFor } from './requester.js'
export { kvKeys, openKv } from './kv.js'
import { inboxPrefixFor } from './auth.js'
import type { Logger } from '../log/index.js'

export type { NatsConnection, Msg, Subscription }

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222'

/** How a component proves who it is to NATS and checks the server: all optional (an open server needs none). */
export interface NatsSecurity {
  user?: string
  password?: string
  /** PEM file of the CA that signed the server's certificate (TLS). */
  caFile?: string
  /** PEM client certificate and key, for a server that verifies clients (TLS `verify`). */
  certFile?: string
  keyFile?: string
}

/** REGATTA_NATS_USER, REGATTA_NATS_PASSWORD, REGATTA_NATS_CA, REGATTA_NATS_CERT, REGATTA_NATS_KEY. */
export function natsSecurityFromEnv(env: NodeJS.ProcessEnv = process.env): NatsSecurity {
  const s: NatsSecurity = {}
  if (env.REGATTA_NATS_USER) s.user = env.REGATTA_NATS_USER
  if (env.REGATTA_NATS_PASSWORD) s.password = env.REGATTA_NATS_PASSWORD
  if (env.REGATTA_NATS_CA) s.caFile = env.REGATTA_NATS_CA
  if (env.REGATTA_NATS_CERT) s.certFile = env.REGATTA_NATS_CERT
  if (env.REGATTA_NATS_KEY) s.keyFile = env.REGATTA_NATS_KEY
  return s
}

/** The nats.js options for these credentials: user/pass, its own reply inbox prefix, TLS files. */
export function natsSecurityOptions(s: NatsSecurity): Partial<ConnectionOptions> {
  const o: Partial<ConnectionOptions> = {}
  if ((s.certFile === undefined) !== (s.keyFile === undefined)) {
    throw new RegattaError('INVALID_CONFIG', 'NATS TLS: a client certificate (REGATTA_NATS_CERT / --nats-cert) needs its key (REGATTA_NATS_KEY / --nats-key) and the other way round')
  }
  if (s.password !== undefined && s.user === undefined) throw new RegattaError('INVALID_CONFIG', 'a NATS password was given without a user (REGATTA_NATS_USER / --nats-user)')
  if (s.user !== undefined) {
    o.user = s.user
    o.pass = s.password ?? ''
    o.inboxPrefix = inboxPrefixFor(s.user)
  }
  if (s.caFile || s.certFile) {
    o.tls = { ...(s.caFile ? { caFile: s.caFile } : {}), ...(s.certFile ? { certFile: s.certFile, keyFile: s.keyFile! } : {}) }
  }
  return o
}

/**
 * Splits `nats://user:password@host:port` (each server of a comma-separated list) into the
 * servers and the credentials; the first server with credentials gives them.
 */
export function splitNatsUrl(url: string): { servers: string[]; user?: string; password?: string } {
  let user: string | undefined
  let password: string | undefined
  const servers = url.split(',').map((s) => {
    const m = /^([a-z]+:\/\/)?([^@/]*)@(.*)$/i.exec(s.trim())
    if (!m) return s.trim()
    const [u, p] = m[2]!.split(':', 2) as [string, string | undefined]
    if (user === undefined && u) {
      user = decodeURIComponent(u)
      if (p !== undefined) password = decodeURIComponent(p)
    }
    return `${m[1] ?? ''}${m[3]}`
  })
  return { servers, ...(user !== undefined ? { user } : {}), ...(password !== undefined ? { password } : {}) }
}

/**
 * Connects to NATS. Credentials and TLS come, by precedence, from `extra`, from the URL
 * (`nats://user:password@host:4222`) and from the environment (natsSecurityFromEnv); with a
 * user, the connection's reply inboxes are `_INBOX.<user>.…` (see shared/nats/auth.ts).
 */
export async function connectNats(url: string, name: string, extra: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  const { servers, user, password } = splitNatsUrl(url)
  const fromEnv = natsSecurityFromEnv()
  const security = natsSecurityOptions({
    ...fromEnv,
    ...(user !== undefined ? { user, password: password ?? '' } : {}),
  })
  const shown = servers.join(',')
  try {
    return await connect({
      servers,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 5_000,
      // no stack capture per request: JetStream publishes are requests, and capturing costs
      // more than the rest of a publish
      noAsyncTraces: true,
      ...security,
      ...extra,
      ...(extra.user !== undefined && extra.inboxPrefix === undefined ? { inboxPrefix: inboxPrefixFor(extra.user) } : {}),
    })
  } catch (err) {
    const e = err as NatsError
    if (e.code === ErrorCode.AuthorizationViolation || e.code === ErrorCode.AuthenticationExpired) {
      throw new RegattaError('NATS_AUTH', `NATS at ${shown} refused the credentials of ${security.user ?? extra.user ?? 'an anonymous client'}: ${e.message}`, { cause: err })
    }
    throw new RegattaError('NO_RESPONDERS', `cannot connect to NATS at ${shown}: ${e.message}`, { cause: err })
  }
}

/** True when the error is the server refusing a subject (a permissions violation). */
export function isPermissionsViolation(err: unknown): boolean {
  return err instanceof NatsError && err.code === ErrorCode.PermissionsViolation
}

function toRegattaError(err: unknown, subject: string): RegattaError {
  if (err instanceof RegattaError) return err
  if (err instanceof NatsError) {
    if (err.code === ErrorCode.NoResponders) return new RegattaError('NO_RESPONDERS', `no responders on ${subject}`, { cause: err })
    if (err.code === ErrorCode.Timeout) return new RegattaError('TIMEOUT', `no answer on ${subject} in time`, { cause: err })
  }
  return RegattaError.from(err)
}

const AnyReply = Type.Unknown()

/** Sends a request and decodes the reply; a `{ error }` reply is rebuilt as a RegattaError. */
export async function request<T extends TSchema>(
  nc: NatsConnection, subject: string, payload: unknown, replySchema: T, timeoutMs = 5_000,
): Promise<Static<T>> {
  let msg: Msg
  try {
    msg = await requesterFor(nc).request(subject, encode(payload), timeoutMs)
  } catch (err) {
    throw toRegattaError(err, subject)
  }
  // the same size and depth limits as every message a service reads
  const body = decode(AnyReply, msg.data, `reply on ${subject}`)
  if (isWireError(body)) throw RegattaError.fromWire(body.error)
  return validate(replySchema, body, `reply on ${subject}`)
}

export interface RetryOptions {
  /** Give up after this long (default 30 s). */
  deadlineMs?: number
  timeoutMs?: number
  signal?: AbortSignal
}

/** request(), retried with backoff while nobody serves the subject (e.g. during a master failover). */
export async function requestWithRetry<T extends TSchema>(
  nc: NatsConnection, subject: string, payload: unknown, replySchema: T, options: RetryOptions = {},
): Promise<Static<T>> {
  const deadline = Date.now() + (options.deadlineMs ?? 30_000)
  let delay = 50
  for (;;) {
    try {
      return await request(nc, subject, payload, replySchema, options.timeoutMs ?? 5_000)
    } catch (err) {
      const e = err as RegattaError
      const retriable = e.code === 'NO_RESPONDERS' || e.code === 'TIMEOUT' || e.code === 'NOT_LEADER'
      if (!retriable || Date.now() + delay > deadline || options.signal?.aborted || nc.isClosed()) throw e
      await new Promise((r) => setTimeout(r, delay))
      delay = Math.min(delay * 2, 1_000)
    }
  }
}

export interface ServeOptions {
  logger: Logger
  /** Called for every message that failed validation (metrics). */
  onInvalid?: (subject: string, err: RegattaError) => void
  queue?: string
}

/**
 * Serves a subject: each message is decoded against `schema` and handed to `handler`; its
 * result is the reply. A bad message or a failing handler is logged and answered with
 * `{ error: { code, message } }`; nothing a client sends can crash the service.
 */
export function serve<T extends TSchema>(
  nc: NatsConnection, subject: string, schema: T,
  handler: (msg: Static<T>, raw: Msg) => unknown | Promise<unknown>,
  options: ServeOptions,
): Subscription {
  const handle = (m: Msg): void => {
    let value: Static<T>
    try {
      value = decode(schema, m.data, `message on ${subject}`)
    } catch (err) {
      fail(m, err)
      return
    }
    try {
      const out = handler(value, m)
      if (out instanceof Promise) out.then((r) => reply(m, r ?? { ok: true }), (err) => fail(m, err))
      else reply(m, out ?? { ok: true })
    } catch (err) {
      fail(m, err)
    }
  }
  // A callback subscription handles every message of a socket read in one go, so the replies
  // leave in one write instead of one write each.
  const sub = nc.subscribe(subject, {
    ...(options.queue ? { queue: options.queue } : {}),
    callback: (err, m) => {
      if (!err) handle(m)
      // the server refused the subscription (permissions): nothing will ever arrive on it
      else if (isPermissionsViolation(err)) options.logger.error({ subject, err: err.message }, 'the NATS server refused this subscription (its user may not subscribe here)')
    },
  })
  const reply = (m: Msg, body: unknown): void => {
    if (!m.reply) return
    try {
      m.respond(encode(body))
    } catch (err) {
      options.logger.warn({ err, subject }, 'could not send a reply')
    }
  }
  const fail = (m: Msg, err: unknown): void => {
    const e = RegattaError.from(err)
    if (e.code === 'INVALID_MESSAGE') {
      options.onInvalid?.(subject, e)
      options.logger.warn({ subject, code: e.code }, e.message)
    } else if (e.code === 'INTERNAL') {
      options.logger.error({ subject, err }, 'handler failed')
    } else {
      options.logger.debug({ subject, code: e.code }, e.message)
    }
    reply(m, { error: e.toWire() })
  }
  return sub
}

/** Creates (or leaves as they are) the streams and the master's durable consumer. Idempotent. */
export async function ensureStreams(jsm: JetStreamManager, replicas = 1): Promise<void> {
  const streams = [
    {
      name: Streams.updates,
      subjects: [Subjects.statusUpdateAll],
      // Interest retention: an update is kept until the master and the framework have both acknowledged it.
      retention: RetentionPolicy.Interest,
      max_age: 7 * 24 * 3600 * 1e9,
      duplicate_window: 120 * 1e9,
    },
    {
      name: Streams.output,
      subjects: [Subjects.taskOutputAll],
      retention: RetentionPolicy.Limits,
      max_age: 24 * 3600 * 1e9,
      max_bytes: 1024 * 1024 * 1024,
    },
  ]
  for (const s of streams) {
    try {
      await jsm.streams.info(s.name)
    } catch {
      try {
        await jsm.streams.add({ ...s, storage: StorageType.File, num_replicas: replicas })
      } catch (err) {
        // another component created it at the same moment
        if (!/already in use|exists/i.test((err as Error).message)) throw err
      }
    }
  }
  // the master acknowledges in batches (AckAll); it applies updates idempotently on redelivery
  await ensureConsumer(jsm, Streams.updates, Consumers.masterUpdates, Subjects.statusUpdateAll, 30_000, AckPolicy.All)
}

/**
 * Creates a durable pull consumer unless it exists. `ackWaitMs` is how long a delivered,
 * unacknowledged message waits before it is delivered again (e.g. to a restarted framework).
 */
export async function ensureConsumer(
  jsm: JetStreamManager, stream: string, durable: string, filterSubject: string, ackWaitMs = 10_000, ackPolicy = AckPolicy.Explicit,
): Promise<void> {
  try {
    await jsm.consumers.info(stream, durable)
  } catch {
    await jsm.consumers.add(stream, {
      durable_name: durable,
      ack_policy: ackPolicy,
      deliver_policy: DeliverPolicy.All,
      filter_subject: filterSubject,
      ack_wait: ackWaitMs * 1e6,
      max_ack_pending: 50_000,
    })
  }
}

export { headers }
export { LeaderLease, type LeaseHolder, type LeaseOptions } from './lease.js'
export { JetStreamPublisher } from './publisher.js'
export { StatusUpdateSender } from './update-sender.js'
export { Requester, requesterFor } from './requester.js'
export * from './auth.js'
