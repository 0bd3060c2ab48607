// `regatta dev`: everything on one machine: a local nats-server, a master, an agent (Docker
// when an engine answers, else the process containerizer); CI and scaler join as they land.
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { spawnNatsServer } from '../../../shared/nats/server.js'
import { createLogger } from '../../../shared/log/index.js'
import { runMaster } from '../../master/src/main.js'
import { runAgent } from '../../agent/src/main.js'

export interface DevOptions {
  natsPort: number
  masterPort: number
  ciPort: number
  dataDir: string
  containerizer?: 'docker' | 'process'
}

export async function runDev(o: DevOptions): Promise<{ stop(): Promise<void> }> {
  const logger = createLogger('dev')
  const dataDir = resolve(o.dataDir)
  await mkdir(join(dataDir, 'nats'), { recursive: true })
  const nats = await spawnNatsServer({ port: o.natsPort, storeDir: join(dataDir, 'nats') })
  const master = await runMaster({ natsUrl: nats.url, id: 'dev-master', http: { host: '127.0.0.1', port: o.masterPort }, logger: createLogger('master') })
  const agent = await runAgent({
    natsUrl: nats.url, workDir: join(dataDir, 'agent'), logger: createLogger('agent'),
    ...(o.containerizer ? { containerizer: o.containerizer } : {}),
  })
  const lines = [
    'Regatta is running on this machine:',
    `  NATS        ${nats.url}`,
    `  master UI   ${master.httpUrl ?? '-'}/`,
    `  agent       ${agent.agent.id} (${agent.agent.info.containerizer} containerizer)`,
    '',
    'Try:  npx regatta status',
    "      npx regatta exec -- sh -c 'echo hello from a container'",
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
  logger.debug({ ciPort: o.ciPort }, 'the CI service is not part of this build yet')
  return {
    async stop() {
      await agent.stop()
      await master.stop()
      await nats.stop()
    },
  }
}
