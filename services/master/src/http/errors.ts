// How the master's HTTP API answers failures: always `{ error: { code, message } }`, the
// same shape errors have on NATS, with an HTTP status chosen from the code.
import type { FastifyInstance } from 'fastify'
import { RegattaError, httpStatusOf, type WireError } from '../../../../shared/errors/index.js'

/** Body of every error answer. */
export interface ErrorBody {
  error: WireError
}

/** Code of the 404 answer when no route matched. */
export const NOT_FOUND = 'NOT_FOUND'

export { httpStatusOf }

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } }
}

/** Status and body for anything a route threw. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof RegattaError) return { status: httpStatusOf(err.code), body: errorBody(err.code, err.message) }
  // fastify's own client errors (bad JSON, schema validation, body too large) carry a 4xx statusCode
  const statusCode = (err as { statusCode?: unknown } | null)?.statusCode
  const message = err instanceof Error ? err.message : String(err)
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { status: statusCode, body: errorBody('INVALID_MESSAGE', message) }
  }
  return { status: 500, body: errorBody('INTERNAL', message) }
}

/** Installs the error and 404 handlers on a fastify instance. */
export function installErrorHandlers<T extends FastifyInstance<any, any, any, any>>(app: T): void {
  app.setErrorHandler((err: unknown, request, reply) => {
    const { status, body } = errorResponse(err)
    if (status >= 500) request.log.error({ err, url: request.url, code: body.error.code }, 'HTTP request failed')
    else request.log.debug({ url: request.url, code: body.error.code }, body.error.message)
    return reply.code(status).send(body)
  })
  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).send(errorBody(NOT_FOUND, `no route ${request.method} ${request.url.split('?')[0]}`))
  })
}
