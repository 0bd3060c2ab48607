// The CI service's HTTP interface: the GitHub webhook, the runs API (with a job's log as text
// or followed as server-sent events), manual triggers, cancel and rerun, health and metrics.
// HTTPS when given a certificate (shared/http/tls.ts).
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { Registry, Counter, collectDefaultMetrics } from 'prom-client'
import type { NatsConnection } from 'nats'
import { RegattaError, httpStatusOf } from '../../../shared/errors/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { WEBHOOK_PATH, webhookRoutes, type DeliveryLog } from './github/index.js'
import type { CiService } from './service.js'
import { runView, type StuckView } from './views.js'
import { DEFAULT_STUCK_BOUNDS, TIMEOUT_GRACE_MS, stuckItems, type StuckBounds } from './stuck.js'
import { FINAL_JOB_STATES, jobStateName } from './machines/index.js'
import { attemptLogText, endLine, taskOutput, type LogArchive } from './logs.js'
import { CI_FRAMEWORK_ID, jobAttemptsOf } from './service.js'
import { manualTrigger } from './manual.js'
import { artifactName } from './task-spec.js'
import { artifactStore, savedArtifacts } from './artifacts.js'
import { Readable } from 'node:stream'
import { Buckets } from '../../../shared/protocol/index.js'
import { httpAuthFrom, installAccessHook, signedLink, type HttpAuth, type HttpTls } from '../../../shared/http/index.js'

export interface CiHttpOptions {
  service: CiService
  nc: NatsConnection
  logger: Logger
  webhookSecret: string | undefined
  deliveries: DeliveryLog
  /** Ended tasks' logs. */
  logs: LogArchive
  /** The runs web UI (HTML) at `/`, when given. */
  page?: () => string
  /** Who may read and who may write (shared/http/auth.ts); default: httpAuthFrom(process.env). */
  auth?: HttpAuth
  /** HTTPS with this certificate and key (REGATTA_HTTP_CERT / REGATTA_HTTP_KEY); none: plain HTTP. */
  tls?: HttpTls
}

export function createCiHttp(o: CiHttpOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024, ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}) }) as unknown as FastifyInstance
  const metrics = new Registry()
  collectDefaultMetrics({ register: metrics, prefix: 'regatta_ci_' })
  const triggers = new Counter({ name: 'regatta_ci_runs_created_total', help: 'runs created, by trigger kind', labelNames: ['kind'], registers: [metrics] })

  app.setErrorHandler((err: unknown, _req, reply) => {
    const validation = (err as { validation?: unknown }).validation !== undefined
    const e = err instanceof RegattaError ? err : validation ? new RegattaError('INVALID_MESSAGE', (err as Error).message) : RegattaError.from(err)
    if (!(err instanceof RegattaError) && !validation) o.logger.error({ err }, 'request failed')
    void reply.code(httpStatusOf(e.code)).send({ error: e.toWire() })
  })
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } })
  })

  // GET routes read, other methods write (an operator token); the webhook has its own signature,
  // the UI's pages hold no data (their script sends the token)
  const auth = o.auth ?? httpAuthFrom({}, process.env)
  installAccessHook(app, auth, { public: ['/health', WEBHOOK_PATH, '/', '/runs/:id'] })
  if (!auth.openReads && auth.tokens.length === 0) o.logger.warn('no HTTP token is configured: every read but /health and the UI\'s pages answers 401 (set REGATTA_READ_TOKEN or REGATTA_OPERATOR_TOKEN)')

  void app.register(webhookRoutes, {
    secret: o.webhookSecret,
    logger: o.logger,
    seen: o.deliveries,
    onTrigger: (t) => {
      // answered at once: planning (a checkout) happens in the background, a few at a time
      triggers.inc({ kind: t.kind })
      o.service.submit(t)
    },
  })

  app.get('/health', async () => ({ status: 'ok' }))
  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.metrics()))

  const bound = Type.Optional(Type.Integer({ minimum: 1, maximum: 30 * 86_400_000, description: 'milliseconds' }))
  app.get('/api/v1/runs', {
    schema: {
      querystring: Type.Object({
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
        // ?stuck=true: what is past its bound (stuck.ts), in every stored run that has not ended
        stuck: Type.Optional(Type.Boolean()),
        maxWaitingMs: bound,
        maxStartingMs: bound,
        maxIdleMs: bound,
      }),
    },
  }, async (req) => {
    const q = req.query as { limit?: number; stuck?: boolean; maxWaitingMs?: number; maxStartingMs?: number; maxIdleMs?: number }
    if (!q.stuck) return { runs: (await o.service.list(q.limit ?? 100)).map((doc) => runView(doc)) }
    const bounds: StuckBounds = {
      maxWaitingMs: q.maxWaitingMs ?? DEFAULT_STUCK_BOUNDS.maxWaitingMs,
      maxStartingMs: q.maxStartingMs ?? DEFAULT_STUCK_BOUNDS.maxStartingMs,
      maxIdleMs: q.maxIdleMs ?? DEFAULT_STUCK_BOUNDS.maxIdleMs,
    }
    const docs = await o.service.list(1000)
    const now = Date.now()
    const stuck = stuckItems(docs, now, bounds)
    const runIds = new Set(stuck.map((x) => x.runId))
    const view: StuckView = { stuck, bounds: { ...bounds, timeoutGraceMs: TIMEOUT_GRACE_MS }, now, runs: docs.filter((d) => runIds.has(d.meta.runId)).map((doc) => runView(doc)) }
    return view
  })

  app.get('/api/v1/runs/:id', async (req) => {
    const { id } = req.params as { id: string }
    const doc = await o.service.get(id)
    if (!doc) throw new RegattaError('NOT_FOUND', `no run ${id}`)
    return runView(doc, await savedArtifacts(o.nc, doc))
  })

  app.post('/api/v1/runs', {
    schema: {
      body: Type.Object({
        repo: Type.String({ minLength: 1, maxLength: 2048, description: 'clone URL' }),
        ref: Type.String({ minLength: 1, maxLength: 1024 }),
        sha: Type.Optional(Type.String({ pattern: '^[0-9a-f]{40}$' })),
      }),
    },
  }, async (req, reply) => {
    const body = req.body as { repo: string; ref: string; sha?: string }
    const doc = await o.service.trigger(await manualTrigger(body.repo, body.ref, body.sha))
    triggers.inc({ kind: 'manual' })
    return reply.code(201).send(runView(doc))
  })

  app.post('/api/v1/runs/:id/cancel', async (req) => runView(await o.service.cancel((req.params as { id: string }).id)))
  app.post('/api/v1/runs/:id/rerun', async (req, reply) => reply.code(201).send(runView(await o.service.rerun((req.params as { id: string }).id))))

  app.get('/api/v1/runs/:id/jobs/:job/log', async (req, reply) => {
    const { id, job } = req.params as { id: string; job: string }
    const doc = await o.service.get(id)
    if (!doc || !doc.machine.snapshot.context.jobs[job]) throw new RegattaError('NOT_FOUND', `no job ${job} in run ${id}`)
    const attempts = jobAttemptsOf(doc, job)
    if (!(req.headers.accept ?? '').includes('text/event-stream')) {
      let text = ''
      for (const [i, a] of attempts.entries()) {
        if (attempts.length > 1) text += `::regatta attempt ${i + 1}\n`
        text += await attemptLogText(o.nc, o.logs, CI_FRAMEWORK_ID, a.taskId, a.ended)
      }
      return reply.type('text/plain; charset=utf-8').send(text)
    }
    // live: the ended attempts whole, then the running one followed until it ends (and the
    // next, after a retry), until the job ends
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    const ac = new AbortController()
    req.raw.on('close', () => ac.abort())
    const send = (event: string, data: unknown): void => { res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`) }
    let following: { taskId: string; ac: AbortController } | undefined
    const watch = setInterval(() => {
      void o.service.get(id).then((d) => {
        const state = d?.machine.snapshot.context.jobs[job]
        const f = following
        if (f && jobAttemptsOf(d, job).some((a) => a.taskId === f.taskId && a.ended)) {
          // let the attempt's last output arrive, then stop following it
          setTimeout(() => f.ac.abort(), 500)
        }
        if (state && FINAL_JOB_STATES.has(jobStateName(state.value))) {
          setTimeout(() => ac.abort(), 600)
          clearInterval(watch)
        }
      }).catch(() => undefined)
    }, 500)
    try {
      let seen = 0
      while (!ac.signal.aborted) {
        const now = await o.service.jobAttempts(id, job)
        for (const a of now.slice(seen)) {
          if (!a.ended && a !== now.at(-1)) break
          seen++
          if (now.length > 1) send('output', { stream: 'stdout', data: `::regatta attempt ${seen}\n` })
          if (a.ended) {
            send('output', { stream: 'stdout', data: await attemptLogText(o.nc, o.logs, CI_FRAMEWORK_ID, a.taskId, a.ended) })
            continue
          }
          following = { taskId: a.taskId, ac: new AbortController() }
          const signal = AbortSignal.any([ac.signal, following.ac.signal])
          let last = ''
          for await (const chunk of taskOutput(o.nc, CI_FRAMEWORK_ID, a.taskId, { follow: true, signal })) {
            send('output', { stream: chunk.stream, data: chunk.data })
            last = chunk.data
          }
          const ended = (await o.service.jobAttempts(id, job)).find((x) => x.taskId === a.taskId)?.ended
          if (ended) send('output', { stream: 'stdout', data: `${last && !last.endsWith('\n') ? '\n' : ''}${endLine(ended)}\n` })
        }
        if (!ac.signal.aborted) await new Promise((r) => setTimeout(r, 250))
      }
    } catch (err) {
      o.logger.warn({ err: (err as Error).message }, 'log stream ended')
    } finally {
      clearInterval(watch)
      send('end', { runId: id, job })
      res.end()
    }
  })

  // a link to a job's artifacts that a browser can follow without a header (a download cannot
  // send one): signed with the caller's token, for a minute (shared/http/auth.ts signedLink)
  app.get('/api/v1/runs/:id/jobs/:job/artifacts/link', async (req) => {
    const { id, job } = req.params as { id: string; job: string }
    return signedLink(auth, req.headers.authorization, `/api/v1/runs/${encodeURIComponent(id)}/jobs/${encodeURIComponent(job)}/artifacts`)
  })

  // a job's artifacts: the tar.gz its last attempt saved (the job's `artifacts` paths); with a
  // token, or by a signed link from the route above
  app.get('/api/v1/runs/:id/jobs/:job/artifacts', { config: { signedLinks: true } }, async (req, reply) => {
    const { id, job } = req.params as { id: string; job: string }
    const taskIds = await o.service.jobTasks(id, job)
    const taskId = taskIds[taskIds.length - 1]
    if (!taskId) throw new RegattaError('NOT_FOUND', `no job ${job} in run ${id}, or it never ran`)
    const store = await artifactStore(o.nc)
    if (!store) throw new RegattaError('NOT_FOUND', 'no artifacts were ever saved')
    const name = artifactName(taskId)
    const info = await store.info(name)
    if (!info || info.deleted) throw new RegattaError('NOT_FOUND', `job ${job} of run ${id} saved no artifacts`)
    const result = await store.get(name)
    if (!result) throw new RegattaError('NOT_FOUND', `job ${job} of run ${id} saved no artifacts`)
    const file = `${id}-${job.replace(/[^A-Za-z0-9._-]+/g, '_')}.tar.gz`
    void reply.header('content-type', 'application/gzip').header('content-disposition', `attachment; filename="${file}"`).header('content-length', String(info.size))
    return reply.send(Readable.fromWeb(result.data as unknown as import('node:stream/web').ReadableStream<Uint8Array>))
  })

  if (o.page) {
    const page = o.page
    app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(page()))
    app.get('/runs/:id', async (_req, reply) => reply.type('text/html; charset=utf-8').send(page()))
  }
  return app
}
