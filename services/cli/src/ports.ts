// Whether an HTTP address is free, checked before a service starts on it: a service that
// fails to listen after connecting to NATS would leave its connection (and the command) running.
import { createServer } from 'node:net'
import { RegattaError } from '../../../shared/errors/index.js'
import type { HostPort } from '../../../shared/config/index.js'

/** Throws INVALID_CONFIG naming `what` when nothing may listen on `at` (in use, or not an address here). */
export async function assertListenable(at: HostPort, what: string): Promise<void> {
  if (at.port === 0) return
  await new Promise<void>((resolve, reject) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'is in use' : err.code === 'EADDRNOTAVAIL' ? 'is not an address of this machine' : `cannot be listened on (${err.code ?? err.message})`
      reject(new RegattaError('INVALID_CONFIG', `${what}: ${at.host}:${at.port} ${why}`))
    })
    server.listen({ host: at.host, port: at.port, exclusive: true }, () => server.close(() => resolve()))
  })
}
