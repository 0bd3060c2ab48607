// A nats-server started with the `authorization` (and optionally `tls`) block of
// shared/nats/auth.ts, on a random loopback port, for one test file.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import { authorizationConfig, connectNats, tlsConfig, type NatsTlsFiles, type NatsUser } from '../../../shared/nats/index.js'
import { spawnNatsServer, type LocalNatsServer } from '../../../shared/nats/server.js'
import { freePort } from '../../helpers/nats-server.js'

export interface SecureNats {
  url: string
  server: LocalNatsServer
  dir: string
  /** Connects as this user (closed by stop()). */
  connectAs(user: NatsUser, name?: string): Promise<NatsConnection>
  stop(): Promise<void>
}

export async function startSecureNats(users: NatsUser[], tls?: NatsTlsFiles): Promise<SecureNats> {
  const dir = await mkdtemp(join(tmpdir(), 'regatta-nats-auth-'))
  const configFile = join(dir, 'nats.conf')
  await writeFile(configFile, authorizationConfig(users) + (tls ? tlsConfig(tls) : ''), { mode: 0o600 })
  const server = await spawnNatsServer({ port: await freePort(), storeDir: join(dir, 'store'), configFile })
  const conns: NatsConnection[] = []
  return {
    url: server.url,
    server,
    dir,
    async connectAs(u, name = u.user) {
      const nc = await connectNats(server.url, name, { user: u.user, pass: u.password, reconnectTimeWait: 100 })
      conns.push(nc)
      return nc
    },
    async stop() {
      for (const nc of conns) await nc.close().catch(() => undefined)
      await server.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export interface Violation {
  operation: string
  subject: string
}

/** Collects the permissions violations the server reports on a connection. */
export function violations(nc: NatsConnection): Violation[] {
  const seen: Violation[] = []
  void (async () => {
    for await (const s of nc.status()) {
      const ctx = (s as { permissionContext?: { operation: string; subject: string } }).permissionContext
      if (ctx) seen.push({ operation: ctx.operation, subject: ctx.subject })
    }
  })()
  return seen
}

export async function until<T>(what: string, f: () => T | undefined | false, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = f()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
