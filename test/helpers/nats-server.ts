// Starts a real nats-server with JetStream on a random loopback port, in a temp dir, for one
// test file (or benchmark). Stopped (and its store removed) by `stop()`.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as natsConnect, type NatsConnection } from 'nats'

export interface NatsServer {
  url: string
  port: number
  storeDir: string
  process: ChildProcess
  /** A client connection, opened on first use and closed by stop(). */
  connect(): Promise<NatsConnection>
  /** Stops the server (SIGTERM, then SIGKILL). `keepStore` keeps the JetStream store for a restart. */
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

async function waitForPort(port: number, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nats-server exited (${child.exitCode}): ${logs()}`)
    if (logs().includes('Server is ready')) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`nats-server did not start on ${port}: ${logs()}`)
}

export async function startNatsServer(options: { args?: string[] } = {}): Promise<NatsServer> {
  const port = await freePort()
  const storeDir = await mkdtemp(join(tmpdir(), 'regatta-nats-'))
  const conns: NatsConnection[] = []
  let child: ChildProcess

  const launch = async (): Promise<ChildProcess> => {
    let out = ''
    const c = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir, ...(options.args ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    c.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    c.stderr?.on('data', (d: Buffer) => { out += d.toString() })
    await waitForPort(port, c, () => out)
    return c
  }
  child = await launch()

  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get process() { return child },
    async connect() {
      const nc = await natsConnect({ servers: server.url, name: 'test' })
      conns.push(nc)
      return nc
    },
    async stop(opts = {}) {
      for (const nc of conns.splice(0)) await nc.close().catch(() => undefined)
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 3000)
        await exited
        clearTimeout(t)
      }
      if (!opts.keepStore) await rm(storeDir, { recursive: true, force: true })
    },
    async restart() {
      child = await launch()
    },
  }
  return server
}
