// `regatta secrets set|ls|rm`: a repository's secrets, through a CI service over NATS (only the
// CI service holds the key that seals them). A value is read from stdin, never from an argument
// (arguments show in `ps` and shell history).
import type { NatsConnection } from 'nats'
import { Value } from '@sinclair/typebox/value'
import { MAX_SECRET_BYTES, RepoName, SecretName, SecretsReply, Subjects, type SecretList, type SecretsCall } from '../../../shared/protocol/index.js'
import { requestWithRetry } from '../../../shared/nats/index.js'
import { RegattaError } from '../../../shared/errors/index.js'

/** Checks the REPO and NAME arguments before anything is read or sent. */
export function checkSecretArgs(repo: string, name?: string): void {
  if (!Value.Check(RepoName, repo)) throw new RegattaError('INVALID_CONFIG', `REPO: "${repo}" is not owner/name (e.g. acme/web)`)
  if (name !== undefined && !Value.Check(SecretName, name)) {
    throw new RegattaError('INVALID_CONFIG', `NAME: "${name}" is not an environment variable name (letters, digits and _, not starting with a digit)`)
  }
}

/** The value from stdin: everything up to its end, without one trailing newline (`echo x |`). */
export async function readSecretValue(stdin: NodeJS.ReadableStream & { isTTY?: boolean }): Promise<string> {
  if (stdin.isTTY) process.stderr.write('value (end with Ctrl-D): ')
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stdin) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk))
    size += b.length
    if (size > MAX_SECRET_BYTES) throw new RegattaError('INVALID_CONFIG', `the value on stdin is longer than ${MAX_SECRET_BYTES} bytes`)
    chunks.push(b)
  }
  const value = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
  if (value.length === 0) throw new RegattaError('INVALID_CONFIG', 'no value on stdin (e.g. `printf %s "$TOKEN" | regatta secrets set acme/web NPM_TOKEN`)')
  return value
}

async function call(nc: NatsConnection, c: SecretsCall): Promise<SecretsReply> {
  try {
    return await requestWithRetry(nc, Subjects.ciSecrets, c, SecretsReply, { deadlineMs: 10_000, timeoutMs: 5_000 })
  } catch (err) {
    const e = RegattaError.from(err)
    if (e.code === 'NO_RESPONDERS' || e.code === 'TIMEOUT') throw new RegattaError(e.code, 'no CI service answers on NATS (is `regatta ci` running?)')
    throw e
  }
}

export async function setSecret(nc: NatsConnection, repo: string, name: string, value: string): Promise<void> {
  await call(nc, { type: 'SET', repo, name, value })
}

export async function deleteSecret(nc: NatsConnection, repo: string, name: string): Promise<void> {
  await call(nc, { type: 'DELETE', repo, name })
}

export async function listSecrets(nc: NatsConnection, repo: string): Promise<SecretList> {
  const reply = await call(nc, { type: 'LIST', repo })
  if (!('secrets' in reply)) throw new RegattaError('INVALID_MESSAGE', 'the CI service answered LIST without a list')
  return reply
}

export function formatSecrets(list: SecretList): string {
  if (list.secrets.length === 0) return `${list.repo} has no secrets`
  const width = Math.max(4, ...list.secrets.map((s) => s.name.length))
  return [`${'NAME'.padEnd(width)}  UPDATED`, ...list.secrets.map((s) => `${s.name.padEnd(width)}  ${new Date(s.updatedAt).toISOString()}`)].join('\n')
}
