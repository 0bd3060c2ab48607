// A real nats-server with JetStream on a random loopback port, in a temp dir, for one test
// file (or benchmark). `stop()` stops it and removes its store.
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as natsConnect, type NatsConnection } from 'nats'
import { spawnNatsServer, type LocalNatsServer } from '../../shared/nats/server.js'

export interface NatsServer {
  url: string
  port: number
  storeDir: string
  readonly process: LocalNatsServer['process']
  /** A client connection, closed by stop(). */
  connect(): Promise<NatsConnection>
  /** Stops the server; `keepStore` keeps the JetStream store for a restart. */
  stop(options?: { keepStore?: boolean }): Promise<void>
  /** Starts the server again on the same port and store (after stop({ keepStore: true })). */
  restart(): Promise<void>
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

export async function startNatsServer(options: { args?: string[] } = {}): Promise<NatsServer> {
  const port = await freePort()
  const storeDir = await mkdtemp(join(tmpdir(), 'regatta-nats-'))
  const conns: NatsConnection[] = []
  const launch = (): Promise<LocalNatsServer> => spawnNatsServer({ port, storeDir, ...(options.args ? { args: options.args } : {}) })
  let server = await launch()
  return {
    url: server.url,
    port,
    storeDir,
    get process() { return server.process },
    async connect() {
      const nc = await natsConnect({ servers: server.url, name: 'test' })
      conns.push(nc)
      return nc
    },
    async stop(opts = {}) {
      for (const nc of conns.splice(0)) await nc.close().catch(() => undefined)
      await server.stop()
      if (!opts.keepStore) await rm(storeDir, { recursive: true, force: true })
    },
    async restart() {
      server = await launch()
    },
  }
}
