// Task checkpoints in the agent's work dir: what the agent needs after a restart to find its
// tasks again (the task, its latest status, its container and sandbox).
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TaskInfo, TaskStatus, validate } from '../../../shared/protocol/index.js'
import { Type, type Static } from '@sinclair/typebox'

export const Checkpoint = Type.Object({
  task: TaskInfo,
  status: TaskStatus,
  containerId: Type.Optional(Type.String()),
  sandbox: Type.String(),
  /** Whether the latest status is stored in JetStream already. */
  published: Type.Boolean(),
})
export type Checkpoint = Static<typeof Checkpoint>

const fileName = (frameworkId: string, taskId: string): string =>
  `${encodeURIComponent(frameworkId)}__${encodeURIComponent(taskId)}.json`

export class CheckpointStore {
  private readonly dir: string
  /** Writes per task are serialized so that an older write never lands after a newer one. */
  private readonly chains = new Map<string, Promise<void>>()
  /** The newest checkpoint of a task waiting to be written. */
  private readonly pending = new Map<string, Checkpoint>()

  constructor(workDir: string) {
    this.dir = join(workDir, 'checkpoints')
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true })
  }

  private chain(key: string, op: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(key) ?? Promise.resolve()).then(op, op)
    this.chains.set(key, next)
    void next.finally(() => { if (this.chains.get(key) === next) this.chains.delete(key) })
    return next
  }

  /** Saves the task's checkpoint; while a write is in flight, only the newest pending one is written after it. */
  save(cp: Checkpoint): Promise<void> {
    const name = fileName(cp.task.frameworkId, cp.task.taskId)
    const queued = this.pending.get(name)
    this.pending.set(name, cp)
    if (queued) return this.chains.get(name) ?? Promise.resolve()
    // written on the next turn of the event loop, so that a burst of status changes of one
    // task (STARTING, RUNNING, FINISHED of a short task) costs one write
    return this.chain(name, async () => {
      await new Promise((r) => setImmediate(r))
      const latest = this.pending.get(name)
      this.pending.delete(name)
      if (!latest) return
      const tmp = join(this.dir, `.${name}.tmp`)
      await writeFile(tmp, JSON.stringify(latest))
      await rename(tmp, join(this.dir, name))
    })
  }

  remove(frameworkId: string, taskId: string): Promise<void> {
    const name = fileName(frameworkId, taskId)
    this.pending.delete(name)
    return this.chain(name, () => rm(join(this.dir, name), { force: true }))
  }

  /** Every readable checkpoint; unreadable ones are returned by name so the caller can log them. */
  async load(): Promise<{ checkpoints: Checkpoint[]; broken: string[] }> {
    const checkpoints: Checkpoint[] = []
    const broken: string[] = []
    let names: string[] = []
    try {
      names = await readdir(this.dir)
    } catch {
      return { checkpoints, broken }
    }
    for (const name of names) {
      if (!name.endsWith('.json') || name.startsWith('.')) continue
      try {
        checkpoints.push(validate(Checkpoint, JSON.parse(await readFile(join(this.dir, name), 'utf8')), `checkpoint ${name}`))
      } catch {
        broken.push(name)
      }
    }
    return { checkpoints, broken }
  }
}
