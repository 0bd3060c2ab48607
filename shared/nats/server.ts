// Starts a local nats-server (from PATH) with JetStream: used by `regatta dev` and by tests.
import { spawn, type ChildProcess } from 'node:child_process'
import { RegattaError } from '../errors/index.js'

export interface LocalNatsServer {
  url: string
  port: number
  process: ChildProcess
  /** SIGTERM, then SIGKILL after 3 s; resolves when it has exited. */
  stop(): Promise<void>
}

/**
 * `configFile` is a nats-server config (e.g. the `authorization` block of shared/nats/auth.ts
 * and a `tls` block) read before the flags, so host, port and store still come from here.
 */
export async function spawnNatsServer(o: { host?: string; port: number; storeDir: string; args?: string[]; inheritLogs?: boolean; configFile?: string }): Promise<LocalNatsServer> {
  const host = o.host ?? '127.0.0.1'
  let out = ''
  const child = spawn('nats-server', [...(o.configFile ? ['-c', o.configFile] : []), '-a', host, '-p', String(o.port), '-js', '-sd', o.storeDir, ...(o.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const collect = (d: Buffer): void => {
    if (out.length < 65536) out += d.toString()
    if (o.inheritLogs) process.stderr.write(d)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const spawnError = new Promise<Error>((r) => child.once('error', r))
  const deadline = Date.now() + 10_000
  for (;;) {
    const err = await Promise.race([spawnError, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20))])
    if (err) throw new RegattaError('INVALID_CONFIG', `cannot start nats-server: ${err.message} (is it installed? npm start installs it)`)
    if (out.includes('Server is ready')) break
    if (child.exitCode !== null) throw new RegattaError('INVALID_CONFIG', `nats-server exited with ${child.exitCode}: ${out.trim().split('\n').slice(-3).join(' | ')}`)
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new RegattaError('TIMEOUT', `nats-server did not become ready on ${host}:${o.port}: ${out.slice(-500)}`)
    }
  }
  return {
    url: `nats://${host}:${o.port}`,
    port: o.port,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(t)
    },
  }
}
