// Task checkpoints in the agent's work dir: what the agent needs after a restart to find its
// tasks again (the task, its latest status, its container and sandbox). One file holds every
// task of the agent; changes made in the same turn of the event loop are written together
// (write to a temp file, then rename), so a burst of status changes costs one write.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { TaskInfo, TaskStatus, validate } from '../../../shared/protocol/index.js'
import { Type, type Static } from '@sinclair/typebox'

export const Checkpoint = Type.Object({
  task: TaskInfo,
  status: TaskStatus,
  containerId: Type.Optional(Type.String()),
  sandbox: Type.String(),
  /** The task's cache key was restored before it ran (so its cache is not saved again). */
  cacheRestored: Type.Optional(Type.Boolean()),
})
export type Checkpoint = Static<typeof Checkpoint>

const key = (frameworkId: string, taskId: string): string => `${frameworkId}\u0000${taskId}`

export class CheckpointStore {
  private readonly file: string
  private readonly tasks = new Map<string, Checkpoint>()
  private dirty = false
  private writing?: Promise<void>

  constructor(private readonly workDir: string) {
    this.file = join(workDir, 'tasks.json')
  }

  async init(): Promise<void> {
    await mkdir(this.workDir, { recursive: true })
  }

  /** Records the task's latest state; resolves once it is on disk. */
  save(cp: Checkpoint): Promise<void> {
    this.tasks.set(key(cp.task.frameworkId, cp.task.taskId), cp)
    return this.schedule()
  }

  /** Forgets a task; resolves once that is on disk. */
  remove(frameworkId: string, taskId: string): Promise<void> {
    if (!this.tasks.delete(key(frameworkId, taskId))) return Promise.resolve()
    return this.schedule()
  }

  private schedule(): Promise<void> {
    this.dirty = true
    if (!this.writing) {
      this.writing = (async () => {
        try {
          while (this.dirty) {
            // the next turn: every change of this turn goes into one write
            await new Promise((r) => setImmediate(r))
            this.dirty = false
            const tmp = `${this.file}.tmp`
            await writeFile(tmp, JSON.stringify([...this.tasks.values()]))
            await rename(tmp, this.file)
          }
        } finally {
          this.writing = undefined
        }
      })()
    }
    return this.writing
  }

  /** Every task of the checkpoint file; an unreadable file or entry is reported, not fatal. */
  async load(): Promise<{ checkpoints: Checkpoint[]; broken: string[] }> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch {
      return { checkpoints: [], broken: [] }
    }
    let entries: unknown[]
    try {
      const parsed: unknown = JSON.parse(text)
      entries = Array.isArray(parsed) ? parsed : []
      if (!Array.isArray(parsed)) return { checkpoints: [], broken: [`${this.file}: not a list`] }
    } catch (err) {
      return { checkpoints: [], broken: [`${this.file}: ${(err as Error).message}`] }
    }
    const checkpoints: Checkpoint[] = []
    const broken: string[] = []
    entries.forEach((e, i) => {
      try {
        const cp = validate(Checkpoint, e, `checkpoint ${i}`)
        checkpoints.push(cp)
        this.tasks.set(key(cp.task.frameworkId, cp.task.taskId), cp)
      } catch (err) {
        broken.push(`${this.file}[${i}]: ${(err as Error).message}`)
      }
    })
    return { checkpoints, broken }
  }
}
