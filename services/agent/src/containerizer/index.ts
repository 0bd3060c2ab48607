// Containerizers: how an agent runs a task's command, in a Docker container or as a process.
//
//   const kind = await detectContainerizer()            // 'docker' when an engine answers
//   const cz = kind === 'docker'
//     ? new DockerContainerizer({ defaultImage: 'regatta/busybox:latest', logger })
//     : new ProcessContainerizer({ logger })
//   const task = await cz.launch(spec, (stream, chunk) => log[stream](chunk))
//   const { exitCode, oomKilled, killed } = await task.exited
//   await cz.remove(task.id)
import Dockerode from 'dockerode'

export type {
  Containerizer, ExitInfo, LaunchSpec, OutputSink, RecoveredContainer, RunningContainer, SidecarSpec,
} from './types.js'
export { SANDBOX_MOUNT } from './types.js'
export { LABEL_AGENT, LABEL_FRAMEWORK, LABEL_SIDECAR, LABEL_TASK } from './labels.js'
export { BUILD_CAPABILITIES, DockerContainerizer, withTag, type DockerContainerizerOptions } from './docker.js'
export { ProcessContainerizer, type ProcessContainerizerOptions } from './process.js'

/**
 * 'docker' when a Docker engine answers a ping within `timeoutMs` (default 1.5 s), else
 * 'process'. Never throws.
 */
export async function detectContainerizer(options: { docker?: Dockerode; timeoutMs?: number } = {}): Promise<'docker' | 'process'> {
  const docker = options.docker ?? new Dockerode()
  let timer: NodeJS.Timeout | undefined
  try {
    const answered = await Promise.race([
      docker.ping().then(() => true, () => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), options.timeoutMs ?? 1500) }),
    ])
    return answered ? 'docker' : 'process'
  } finally {
    clearTimeout(timer)
  }
}
export { BASE_IMAGE, ensureBaseImage } from './base-image.js'
