// TLS of the HTTP APIs (master and CI service), and the client side the CLI uses: a server's
// certificate and key from --http-cert/--http-key or REGATTA_HTTP_CERT/REGATTA_HTTP_KEY (PEM
// files), given to fastify as its `https` option; a client trusts the CA in REGATTA_HTTP_CA
// (or --ca) beside the system's. As NATS TLS does with REGATTA_NATS_CA/CERT/KEY.
//
//   const tls = httpTlsFrom({ certFile: opts.httpCert, keyFile: opts.httpKey }, process.env)
//   Fastify({ ...(tls ? { https: { cert: tls.cert, key: tls.key } } : {}) })
//   const res = await httpRequest('https://127.0.0.1:8080/health', { ca: httpCaFrom(opts.ca) })
import { readFileSync } from 'node:fs'
import { request as httpPlain, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createSecureContext, rootCertificates } from 'node:tls'
import { Readable } from 'node:stream'
import { RegattaError } from '../errors/index.js'

/** A server's certificate (chain) and key, PEM. */
export interface HttpTls {
  cert: Buffer
  key: Buffer
}

export interface HttpTlsSources {
  /** --http-cert (else REGATTA_HTTP_CERT): the server's certificate chain, PEM. */
  certFile?: string
  /** --http-key (else REGATTA_HTTP_KEY): its private key, PEM. */
  keyFile?: string
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new RegattaError('INVALID_CONFIG', `${what}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
}

/**
 * The HTTP server's TLS from flags, else the environment; undefined: plain HTTP. Both or
 * neither; the pair is checked here (readable, PEM, key fits the certificate), so that a bad
 * file stops the service at start with a line naming it.
 */
export function httpTlsFrom(src: HttpTlsSources = {}, env: NodeJS.ProcessEnv = process.env): HttpTls | undefined {
  const pick = (flag: string | undefined, name: string, flagName: string): [string, string] | undefined => {
    if (flag !== undefined && flag !== '') return [flag, flagName]
    const v = env[name]
    return v === undefined || v === '' ? undefined : [v, name]
  }
  const cert = pick(src.certFile, 'REGATTA_HTTP_CERT', '--http-cert')
  const key = pick(src.keyFile, 'REGATTA_HTTP_KEY', '--http-key')
  if (!cert && !key) return undefined
  if (!cert || !key) {
    const [have, missing] = cert ? [cert[1], '--http-key or REGATTA_HTTP_KEY'] : [key![1], '--http-cert or REGATTA_HTTP_CERT']
    throw new RegattaError('INVALID_CONFIG', `${have}: HTTPS needs a certificate and its key; ${missing} is missing`)
  }
  const tls = { cert: readPem(cert[0], cert[1]), key: readPem(key[0], key[1]) }
  try {
    createSecureContext(tls)
  } catch (err) {
    throw new RegattaError('INVALID_CONFIG', `${cert[1]} ${cert[0]} / ${key[1]} ${key[0]}: not a PEM certificate and its key (${(err as Error).message.split('\n')[0]})`)
  }
  return tls
}

/** The CA a client trusts for the HTTP APIs (beside the system's): --ca, else REGATTA_HTTP_CA; undefined: the system's only. */
export function httpCaFrom(flag?: string, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  if (flag !== undefined && flag !== '') return readPem(flag, '--ca')
  const v = env.REGATTA_HTTP_CA
  return v === undefined || v === '' ? undefined : readPem(v, 'REGATTA_HTTP_CA')
}

/** The scheme of a server with or without TLS. */
export const schemeOf = (tls: HttpTls | undefined): 'http' | 'https' => (tls ? 'https' : 'http')

export interface HttpRequestInit {
  method?: string
  headers?: Record<string, string>
  body?: string
  signal?: AbortSignal
  /** PEM of a CA trusted for https URLs, beside the system's. */
  ca?: Buffer
}

/**
 * fetch(), for http and https URLs, trusting `ca` (Node's global fetch cannot be given a CA).
 * Resolves with a web Response whose body streams; rejects as fetch does (the socket's error,
 * e.g. a certificate the CA did not sign, with its `code`, is the rejection's `cause`).
 */
export function httpRequest(url: string, init: HttpRequestInit = {}): Promise<Response> {
  const u = new URL(url)
  const https = u.protocol === 'https:'
  const send = https ? httpsRequest : httpPlain
  return new Promise<Response>((resolve, reject) => {
    const fail = (err: Error): void => {
      const e = new TypeError(`request to ${u.origin} failed: ${err.message}`, { cause: err })
      if (err.name === 'AbortError' || err.name === 'TimeoutError') e.name = (init.signal?.reason as Error | undefined)?.name ?? err.name
      reject(e)
    }
    const req = send(u, {
      method: init.method ?? 'GET',
      headers: { ...init.headers, ...(init.body !== undefined ? { 'content-length': String(Buffer.byteLength(init.body)) } : {}) },
      ...(init.signal ? { signal: init.signal } : {}),
      // beside the system's CAs, not instead of them
      ...(https && init.ca ? { ca: [...rootCertificates, init.ca.toString('utf8')] } : {}),
    }, (res: IncomingMessage) => {
      const status = res.statusCode ?? 0
      const headers = new Headers()
      for (const [k, v] of Object.entries(res.headers)) {
        if (v === undefined) continue
        for (const one of Array.isArray(v) ? v : [v]) headers.append(k, one)
      }
      const empty = status === 204 || status === 205 || status === 304 || (init.method ?? 'GET') === 'HEAD'
      if (empty) res.resume()
      resolve(new Response(empty ? null : Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>, { status, statusText: res.statusMessage ?? '', headers }))
    })
    req.on('error', fail)
    req.end(init.body)
  })
}
