// Repository secrets of the CI service: sealed with its key (REGATTA_SECRETS_KEY) in the KV
// bucket `regatta-secrets`, set and listed over NATS (`regatta secrets`), opened only when a job
// that names them is launched. A value never leaves this module except into a task's secretEnv.
import type { KV, NatsConnection, Subscription } from 'nats'
import { Buckets, SecretsCall, Subjects, idToken, type SecretList } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { serve } from '../../../shared/nats/index.js'
import { openSecret, sealSecret, type SealedSecret } from '../../../shared/secrets/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { openKv } from '../../../shared/nats/kv.js'

interface StoredSecret {
  sealed: SealedSecret
  updatedAt: number
}

/** What a job gets: the values found, and the names no secret exists for. */
export interface ResolvedSecrets {
  values: Record<string, string>
  missing: string[]
}

const keyOf = (repo: string, name: string): string => `${idToken(repo)}.${name}`
/** Sealed under this name: a value moved to another key does not open. */
const contextOf = (repo: string, name: string): string => `${repo}/${name}`

export class SecretStore {
  private kv?: KV
  private sub?: Subscription

  constructor(private readonly o: { nc: NatsConnection; key?: Buffer; replicas?: number; logger: Logger }) {}

  /** Opens the bucket and answers `regatta secrets` calls (one CI replica answers each). */
  async start(): Promise<void> {
    this.kv = await openKv(this.o.nc, Buckets.secrets, { history: 1, replicas: this.o.replicas ?? 1 })
    this.sub = serve(this.o.nc, Subjects.ciSecrets, SecretsCall, (call) => this.handle(call), { queue: 'regatta-ci', logger: this.o.logger })
  }

  stop(): void {
    this.sub?.unsubscribe()
  }

  private async handle(call: SecretsCall): Promise<{ ok: true } | SecretList> {
    switch (call.type) {
      case 'SET':
        await this.set(call.repo, call.name, call.value)
        this.o.logger.info({ repo: call.repo, name: call.name }, 'secret set')
        return { ok: true }
      case 'LIST':
        return { repo: call.repo, secrets: await this.list(call.repo) }
      case 'DELETE':
        await this.remove(call.repo, call.name)
        this.o.logger.info({ repo: call.repo, name: call.name }, 'secret deleted')
        return { ok: true }
    }
  }

  private key(): Buffer {
    if (!this.o.key) throw new RegattaError('SECRETS_UNAVAILABLE', 'this CI service has no secrets key: set REGATTA_SECRETS_KEY (32 random bytes, base64) to store secrets')
    return this.o.key
  }

  private bucket(): KV {
    if (!this.kv) throw new RegattaError('INTERNAL', 'the secret store is not started')
    return this.kv
  }

  async set(repo: string, name: string, value: string): Promise<void> {
    const stored: StoredSecret = { sealed: sealSecret(this.key(), contextOf(repo, name), value), updatedAt: Date.now() }
    await this.bucket().put(keyOf(repo, name), JSON.stringify(stored))
  }

  async remove(repo: string, name: string): Promise<void> {
    const kv = this.bucket()
    const e = await kv.get(keyOf(repo, name))
    if (!e || e.operation !== 'PUT') throw new RegattaError('NOT_FOUND', `${repo} has no secret ${name}`)
    await kv.delete(keyOf(repo, name))
  }

  async list(repo: string): Promise<Array<{ name: string; updatedAt: number }>> {
    const kv = this.bucket()
    const prefix = `${idToken(repo)}.`
    const out: Array<{ name: string; updatedAt: number }> = []
    // the keys first, then their values: awaiting inside the keys() iteration ends it early
    const keys: string[] = []
    for await (const k of await kv.keys(`${prefix}*`)) keys.push(k)
    for (const k of keys) {
      const e = await kv.get(k)
      if (!e || e.operation !== 'PUT') continue
      out.push({ name: k.slice(prefix.length), updatedAt: e.json<StoredSecret>().updatedAt })
    }
    return out.sort((a, b) => a.name.localeCompare(b.name))
  }

  /** The values of these secrets of a repository, for a job about to launch. */
  async resolve(repo: string, names: Iterable<string>): Promise<ResolvedSecrets> {
    const out: ResolvedSecrets = { values: {}, missing: [] }
    for (const name of new Set(names)) {
      const e = await this.bucket().get(keyOf(repo, name)).catch(() => null)
      if (!e || e.operation !== 'PUT') {
        out.missing.push(name)
        continue
      }
      out.values[name] = openSecret(this.key(), contextOf(repo, name), e.json<StoredSecret>().sealed)
    }
    return out
  }
}
