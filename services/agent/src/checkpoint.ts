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

  save(cp: Checkpoint): Promise<void> {
    const name = fileName(cp.task.frameworkId, cp.task.taskId)
    const data = JSON.stringify(cp)
    return this.chain(name, async () => {
      const tmp = join(this.dir, `.${name}.tmp`)
      await writeFile(tmp, data)
      await rename(tmp, join(this.dir, name))
    })
  }

  remove(frameworkId: string, taskId: string): Promise<void> {
    const name = fileName(frameworkId, taskId)
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
