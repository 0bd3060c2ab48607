// Secrets at rest: AES-256-GCM with a key from configuration (REGATTA_SECRETS_KEY). Each
// sealed value names the repository and secret it belongs to as associated data, so a stored
// value copied under another name does not open.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { RegattaError } from '../errors/index.js'

export interface SealedSecret {
  v: 1
  iv: string
  tag: string
  data: string
}

/** A 32-byte key from its text form: base64 (44 characters) or hex (64). */
export function parseSecretsKey(text: string, what = 'REGATTA_SECRETS_KEY'): Buffer {
  const t = text.trim()
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/]{43}=$/.test(t) ? Buffer.from(t, 'base64') : undefined
  if (!key || key.length !== 32) {
    throw new RegattaError('INVALID_CONFIG', `${what}: expected 32 random bytes as base64 (44 characters) or hex (64), e.g. from \`openssl rand -base64 32\``)
  }
  return key
}

/** A new random key in the form parseSecretsKey() reads. */
export function newSecretsKey(): string {
  return randomBytes(32).toString('base64')
}

export function sealSecret(key: Buffer, context: string, value: string): SealedSecret {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(context, 'utf8'))
  const data = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()])
  return { v: 1, iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), data: data.toString('base64') }
}

export function openSecret(key: Buffer, context: string, sealed: SealedSecret): string {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'))
    decipher.setAAD(Buffer.from(context, 'utf8'))
    decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'))
    return Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]).toString('utf8')
  } catch (err) {
    throw new RegattaError('SECRETS_UNAVAILABLE', `secret ${context} does not open with the configured key (was it stored with another REGATTA_SECRETS_KEY?)`, { cause: err })
  }
}
