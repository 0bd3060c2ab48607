// Entry of `regatta scaler`: reads config and wires the providers and the scaler loop.
import { join, resolve } from 'node:path'
import { connectNats } from '../../../shared/nats/index.js'
import { createLogger, type Logger } from '../../../shared/log/index.js'
import type { PolicyConfig } from './policy.js'
import { Scaler } from './scaler.js'
import { ProcessProvider, type AgentNats } from './providers/process.js'
import { DockerProvider } from './providers/docker.js'
import type { Provider } from './providers/types.js'

export interface ScalerRunOptions {
  natsUrl: string
  logger?: Logger
  /** Instances' work dirs and records (default `.regatta/scaler`). */
  dataDir?: string
  /** Which providers run (default both; a pool naming another is left alone). */
  providers?: ReadonlyArray<'process' | 'docker'>
  /** Containerizer of the agents it starts (default: theirs to detect, as `regatta dev`). */
  agentContainerizer?: 'docker' | 'process'
  /** `--resources` of the agents it starts (default: detected). */
  agentResources?: string
  /** The docker provider's image (default: built locally from this host's node). */
  dockerImage?: string
  /** The image's entrypoint is `regatta` (deploy/Dockerfile), no checkout mounted. */
  dockerImageRunsRegatta?: boolean
  intervalMs?: number
  policy?: Partial<PolicyConfig>
  leaseTtlMs?: number
  replicas?: number
  id?: string
  /** Stop the agents the process provider started when the scaler stops (`regatta dev`); by default they keep running. */
  stopInstancesOnExit?: boolean
  /** A NATS user of its own for each agent the process provider starts (`regatta dev --nats-auth`). */
  agentNats?: AgentNats
}

export interface RunningScaler {
  scaler: Scaler
  providers: Provider[]
  stop(): Promise<void>
}

export async function runScaler(o: ScalerRunOptions): Promise<RunningScaler> {
  const logger = o.logger ?? createLogger('scaler')
  const dataDir = resolve(o.dataDir ?? '.regatta/scaler')
  const common = {
    natsUrl: o.natsUrl, logger,
    ...(o.agentContainerizer ? { containerizer: o.agentContainerizer } : {}),
    ...(o.agentResources ? { resources: o.agentResources } : {}),
  }
  const kinds = o.providers ?? ['process', 'docker']
  const providers: Provider[] = []
  const processProvider = kinds.includes('process') ? new ProcessProvider({ ...common, baseDir: join(dataDir, 'process'), ...(o.agentNats ? { agentNats: o.agentNats } : {}) }) : undefined
  if (processProvider) providers.push(processProvider)
  if (kinds.includes('docker')) {
    providers.push(new DockerProvider({
      ...common, baseDir: join(dataDir, 'docker'),
      ...(o.dockerImage ? { image: o.dockerImage } : {}), ...(o.dockerImageRunsRegatta ? { imageRunsRegatta: true } : {}),
    }))
  }
  const nc = await connectNats(o.natsUrl, 'regatta-scaler')
  const scaler = new Scaler({
    nc, logger, providers,
    ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}),
    ...(o.policy ? { policy: o.policy } : {}),
    ...(o.leaseTtlMs !== undefined ? { leaseTtlMs: o.leaseTtlMs } : {}),
    ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
    ...(o.id ? { id: o.id } : {}),
  })
  try {
    await scaler.start()
  } catch (err) {
    await nc.close().catch(() => undefined)
    throw err
  }
  return {
    scaler,
    providers,
    async stop() {
      await scaler.stop()
      if (o.stopInstancesOnExit) await processProvider?.stopAll()
      await nc.drain().catch(() => undefined)
    },
  }
}
