// Entry of `regatta agent`: reads config, detects resources and the containerizer, wires the agent.
import { resolve } from 'node:path'
import { connectNats } from '../../../shared/nats/index.js'
import { createLogger, type Logger } from '../../../shared/log/index.js'
import { parseAttributes, parseDuration, parseNumberArg } from '../../../shared/config/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { Agent } from './agent.js'
import { agentResources } from './resources.js'
import Dockerode from 'dockerode'
import { BASE_IMAGE, DockerContainerizer, ProcessContainerizer, detectContainerizer, ensureBaseImage } from './containerizer/index.js'
import type { OversubscriptionOptions } from './oversubscription/index.js'

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
  /** Offer what tasks leave unused as revocable, and preempt revocable tasks under pressure (absent: off). */
  oversubscription?: OversubscriptionOptions
  /** The reaper's interval, the sandboxes' disk budget and retention (absent: the defaults). */
  disk?: DiskOptions
}

/** How the agent bounds what it leaves on disk (see disk-budget.ts and reaper.ts). */
export interface DiskOptions {
  reapIntervalMs?: number
  diskBudgetMb?: number
  sandboxRetentionMs?: number
}

/** The agent's reaper and disk flags as the CLI takes them (text, validated here). */
export interface DiskFlags {
  reapInterval?: string
  diskBudget?: string
  sandboxRetention?: string
}

/**
 * `--reap-interval`, `--disk-budget` and `--sandbox-retention` as options. Throws INVALID_CONFIG
 * naming the flag for a bad value (a reap interval under 100ms, a negative budget, not a duration).
 */
export function diskFromFlags(f: DiskFlags): DiskOptions {
  const o: DiskOptions = {}
  if (f.reapInterval !== undefined) {
    o.reapIntervalMs = parseDuration(f.reapInterval, '--reap-interval')
    if (o.reapIntervalMs < 100) throw new RegattaError('INVALID_CONFIG', `--reap-interval: "${f.reapInterval}" is shorter than 100ms`)
  }
  if (f.diskBudget !== undefined) o.diskBudgetMb = parseNumberArg(f.diskBudget, '--disk-budget')
  if (f.sandboxRetention !== undefined) o.sandboxRetentionMs = parseDuration(f.sandboxRetention, '--sandbox-retention')
  return o
}

/** The agent's oversubscription flags as the CLI takes them (text, validated here). */
export interface OversubscriptionFlags {
  oversubscribe?: boolean
  revocableMargin?: string
  qosInterval?: string
  qosMinFreeMem?: string
  qosMaxCpuBusy?: string
}

/**
 * `--oversubscribe` and its settings as options (undefined: off). Throws INVALID_CONFIG naming
 * the flag for a bad value, or for a setting given without `--oversubscribe`.
 */
export function oversubscriptionFromFlags(f: OversubscriptionFlags): OversubscriptionOptions | undefined {
  const given = ([
    ['--revocable-margin', f.revocableMargin], ['--qos-interval', f.qosInterval],
    ['--qos-min-free-mem', f.qosMinFreeMem], ['--qos-max-cpu-busy', f.qosMaxCpuBusy],
  ] as const).filter(([, v]) => v !== undefined)
  if (!f.oversubscribe) {
    if (given.length > 0) throw new RegattaError('INVALID_CONFIG', `${given[0]![0]} needs --oversubscribe`)
    return undefined
  }
  const fraction = (text: string, flag: string): number => {
    const n = parseNumberArg(text, flag)
    if (n > 1) throw new RegattaError('INVALID_CONFIG', `${flag}: "${text}" is not a fraction from 0 to 1`)
    return n
  }
  const o: OversubscriptionOptions = {}
  if (f.revocableMargin !== undefined) o.margin = fraction(f.revocableMargin, '--revocable-margin')
  if (f.qosInterval !== undefined) {
    o.intervalMs = parseDuration(f.qosInterval, '--qos-interval')
    if (o.intervalMs < 100) throw new RegattaError('INVALID_CONFIG', `--qos-interval: "${f.qosInterval}" is shorter than 100ms`)
  }
  if (f.qosMinFreeMem !== undefined) o.memMinFreeMb = parseNumberArg(f.qosMinFreeMem, '--qos-min-free-mem')
  if (f.qosMaxCpuBusy !== undefined) o.cpuMaxBusy = fraction(f.qosMaxCpuBusy, '--qos-max-cpu-busy')
  return o
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
    ...(o.oversubscription ? { oversubscription: o.oversubscription } : {}),
    ...o.disk,
  })
  try {
    await agent.start()
  } catch (err) {
    // nothing registered yet: leave no connection holding the process open
    await nc.close().catch(() => undefined)
    throw err
  }
  logger.info({ agentId: agent.id, containerizer: kind, workDir, oversubscription: o.oversubscription ?? false, disk: o.disk ?? {} }, 'agent started')
  return {
    agent,
    async stop() {
      await agent.stop()
      await nc.drain().catch(() => undefined)
    },
  }
}
