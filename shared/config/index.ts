// Configuration from flags and environment, validated at start. Defaults make `regatta dev`
// work with no configuration at all.
import { RegattaError } from '../errors/index.js'
import { DEFAULT_NATS_URL } from '../nats/index.js'

export function natsUrl(flag?: string): string {
  const url = flag ?? process.env.REGATTA_NATS_URL ?? DEFAULT_NATS_URL
  for (const part of url.split(',')) {
    if (!/^(nats|tls|ws|wss):\/\/[^\s/]+$/.test(part.trim())) {
      throw new RegattaError('INVALID_CONFIG', `--nats: "${part}" is not a NATS URL (expected nats://HOST:PORT)`)
    }
  }
  return url
}

export interface HostPort {
  host: string
  port: number
}

export function parseHostPort(text: string, what: string): HostPort {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(text.trim())
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) throw new RegattaError('INVALID_CONFIG', `${what}: "${text}" is not HOST:PORT`)
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port }
}

export function parseIntArg(text: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^\s*-?\d+\s*$/.test(text) ? Number(text) : NaN
  if (!Number.isInteger(n) || n < min || n > max) throw new RegattaError('INVALID_CONFIG', `${what}: "${text}" is not a whole number from ${min} to ${max}`)
  return n
}

export function parseNumberArg(text: string, what: string, min = 0): number {
  const n = /^\s*-?(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN
  if (!Number.isFinite(n) || n < min) throw new RegattaError('INVALID_CONFIG', `${what}: "${text}" is not a number >= ${min}`)
  return n
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** "500ms", "30s", "5m", "1h30m", or a bare number of seconds. */
export function parseDuration(text: string, what: string): number {
  const t = text.trim()
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000)
  let total = 0
  let rest = t
  const re = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/
  while (rest.length > 0) {
    const m = re.exec(rest)
    if (!m) throw new RegattaError('INVALID_CONFIG', `${what}: "${text}" is not a duration (e.g. 30s, 5m, 1h)`)
    total += Number(m[1]) * UNITS[m[2]!]!
    rest = rest.slice(m[0].length)
  }
  if (t.length === 0) throw new RegattaError('INVALID_CONFIG', `${what}: empty duration`)
  return Math.round(total)
}

/** "k:v;k2:v2" (the agent's --attributes). */
export function parseAttributes(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (!text) return out
  for (const raw of text.split(';')) {
    const part = raw.trim()
    if (!part) continue
    const i = part.indexOf(':')
    if (i <= 0) throw new RegattaError('INVALID_CONFIG', `--attributes: "${part}" is not key:value`)
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim()
  }
  return out
}
