// Entry of `regatta agent`: reads config, detects resources and the containerizer, wires the agent.
import { resolve } from 'node:path'
import { connectNats } from '../../../shared/nats/index.js'
import { createLogger, type Logger } from '../../../shared/log/index.js'
import { parseAttributes } from '../../../shared/config/index.js'
import { Agent } from './agent.js'
import { agentResources } from './resources.js'
import Dockerode from 'dockerode'
import { BASE_IMAGE, DockerContainerizer, ProcessContainerizer, detectContainerizer, ensureBaseImage } from './containerizer/index.js'

export const DEFAULT_IMAGE = BASE_IMAGE

export interface AgentRunOptions {
  natsUrl: string
  pool?: string
  resources?: string
  attributes?: string
  containerizer?: 'docker' | 'process'
  workDir?: string
  defaultImage?: string
  id?: string
  logger?: Logger
}

export interface RunningAgent {
  agent: Agent
  stop(): Promise<void>
}

export async function runAgent(o: AgentRunOptions): Promise<RunningAgent> {
  const logger = o.logger ?? createLogger('agent')
  const workDir = resolve(o.workDir ?? '.regatta/agent')
  const kind = o.containerizer ?? await detectContainerizer()
  const defaultImage = o.defaultImage ?? DEFAULT_IMAGE
  let containerizer
  if (kind === 'docker') {
    const docker = new Dockerode()
    // the base image is built here from busybox-static when missing (no registry needed)
    if (defaultImage === BASE_IMAGE) {
      await ensureBaseImage(docker).catch((err: Error) => logger.warn({ err: err.message }, `cannot build ${BASE_IMAGE}; tasks must name an image`))
    }
    containerizer = new DockerContainerizer({ docker, logger })
  } else {
    containerizer = new ProcessContainerizer({ logger })
  }
  const resources = await agentResources(o.resources, workDir)
  const attributes = parseAttributes(o.attributes)
  const nc = await connectNats(o.natsUrl, 'regatta-agent')
  const agent = new Agent({
    nc, workDir, pool: o.pool ?? 'default', resources, attributes, containerizer, logger,
    defaultImage, ...(o.id ? { id: o.id } : {}),
  })
  await agent.start()
  logger.info({ agentId: agent.id, containerizer: kind, workDir }, 'agent started')
  return {
    agent,
    async stop() {
      await agent.stop()
      await nc.drain().catch(() => undefined)
    },
  }
}
