// What an agent offers when --resources is not given: detected from the host.
import { availableParallelism, totalmem } from 'node:os'
import { statfs } from 'node:fs/promises'
import type { Resource } from '../../../shared/protocol/index.js'
import { add, parseResources } from '../../../shared/resources/index.js'

/** Host resources: all CPUs, memory less 512 MiB for the host, 90% of the work dir's free disk, ports 31000-32000. */
export async function detectResources(workDir: string): Promise<Resource[]> {
  const cpus = availableParallelism()
  const mem = Math.max(256, Math.floor(totalmem() / 1024 / 1024) - 512)
  let disk = 10_240
  try {
    const s = await statfs(workDir)
    disk = Math.floor((Number(s.bavail) * Number(s.bsize)) / 1024 / 1024 * 0.9)
  } catch {
    // keep the default
  }
  return parseResources(`cpus:${cpus};mem:${mem};disk:${disk};ports:[31000-32000]`)
}

/** `--resources` given: parsed, with the detected values filling in scalars it does not name. */
export async function agentResources(flag: string | undefined, workDir: string): Promise<Resource[]> {
  const detected = await detectResources(workDir)
  if (!flag) return detected
  const given = parseResources(flag)
  const named = new Set(given.map((r) => r.name))
  return add(given, detected.filter((r) => !named.has(r.name)))
}
