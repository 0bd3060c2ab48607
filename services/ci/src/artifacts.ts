// A run's artifacts in the NATS object store (bucket regatta-artifacts): one tar.gz per job
// attempt that declared `artifacts`, found by the attempt's task id.
import type { NatsConnection, ObjectStore } from 'nats'
import { Buckets } from '../../../shared/protocol/index.js'
import { artifactName } from './task-spec.js'
import type { RunDocument } from './service.js'

/** The bucket, or undefined when no task ever saved an artifact (it does not exist yet). */
export async function artifactStore(nc: NatsConnection): Promise<ObjectStore | undefined> {
  try {
    // opening a missing bucket would create it: look it up first
    await (await nc.jetstreamManager()).streams.info(`OBJ_${Buckets.artifacts}`)
    return await nc.jetstream().views.os(Buckets.artifacts)
  } catch {
    return undefined
  }
}

/** The tar.gz the latest attempt of each job saved: job id -> its size in bytes. */
export async function savedArtifacts(nc: NatsConnection, doc: RunDocument): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  const jobs = Object.entries(doc.machine.snapshot.context.jobs).filter(([id, j]) => (doc.meta.jobs[id]?.artifacts.length ?? 0) > 0 && j.context.taskId)
  if (jobs.length === 0) return out
  const store = await artifactStore(nc)
  if (!store) return out
  await Promise.all(jobs.map(async ([id, j]) => {
    const info = await store.info(artifactName(j.context.taskId!)).catch(() => null)
    if (info && !info.deleted) out[id] = info.size
  }))
  return out
}
