// A framework for the scaler's tests and bench, built on test/helpers/cluster's
// RecordingFramework: it keeps a queue of tasks, tells the master what it waits for (REQUEST:
// the queued tasks, one shape, one pool), places queued tasks on the offers it gets (as many as
// fit), and puts back a task whose launch was DROPPED (its offer went away, e.g. the agent was
// drained meanwhile). What the CI service does for its jobs, reduced to what the scaler sees.
import { isTerminal, type Offer, type TaskSpec, type TaskStatus } from '../../../shared/protocol/index.js'
import type { RecordingFramework } from '../../helpers/cluster.js'

export interface QueueFrameworkOptions {
  pool: string
  /** Scalars of every task. */
  resources: { cpus: number; mem: number }
  /** The task to launch for an id (its resources are set from `resources`). */
  task(taskId: string): TaskSpec
  /** How often it looks at offers and updates (default 5 ms). */
  pollMs?: number
}

export class QueueFramework {
  readonly queue: string[] = []
  /** taskId -> when it was submitted (ms since the epoch). */
  readonly submittedAt = new Map<string, number>()
  /** taskId -> when it was first seen RUNNING. */
  readonly runningAt = new Map<string, number>()
  readonly ended = new Map<string, TaskStatus>()
  /** Tasks dropped before they ran and put back in the queue. */
  readonly requeued: string[] = []
  /** Every update that ended a task other than FINISHED or DROPPED: what must never happen. */
  readonly casualties: TaskStatus[] = []
  /** Launched task id -> the queued task it runs (a dropped task is launched again under a new id). */
  private readonly logical = new Map<string, string>()
  private readonly attempts = new Map<string, number>()
  /** ACCEPTs the master refused, with why (their tasks end DROPPED and come back to the queue). */
  readonly launchErrors: string[] = []
  private seen = 0
  private timer?: NodeJS.Timeout
  private lastRequest = -1
  private busy = false

  constructor(readonly fw: RecordingFramework, private readonly o: QueueFrameworkOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.step(), this.o.pollMs ?? 5)
  }

  stop(): void {
    clearInterval(this.timer)
  }

  submit(...taskIds: string[]): void {
    const now = Date.now()
    for (const id of taskIds) {
      this.queue.push(id)
      this.submittedAt.set(id, now)
    }
    void this.step()
  }

  get done(): number {
    return [...this.ended.values()].filter((s) => s.state === 'FINISHED').length
  }

  private spec(id: string): TaskSpec {
    const attempt = (this.attempts.get(id) ?? 0) + 1
    this.attempts.set(id, attempt)
    const taskId = attempt === 1 ? id : `${id}.retry${attempt}`
    this.logical.set(taskId, id)
    return { ...this.o.task(id), taskId, resources: [{ name: 'cpus', scalar: this.o.resources.cpus }, { name: 'mem', scalar: this.o.resources.mem }] }
  }

  private fits(offer: Offer): number {
    const amount = (name: string): number => offer.resources.filter((r) => r.name === name && !r.revocable).reduce((n, r) => n + (r.scalar ?? 0), 0)
    return Math.floor(Math.min(amount('cpus') / this.o.resources.cpus, amount('mem') / this.o.resources.mem) + 1e-9)
  }

  private async step(): Promise<void> {
    if (this.busy) return
    this.busy = true
    try {
      for (; this.seen < this.fw.updates.length; this.seen++) this.note(this.fw.updates[this.seen]!)
      const launches: Array<Promise<void>> = []
      for (const offer of [...this.fw.offers]) {
        if (this.queue.length === 0) break
        const n = Math.min(this.fits(offer), this.queue.length)
        if (n === 0) continue
        this.fw.offers = this.fw.offers.filter((o) => o !== offer)
        const ids = this.queue.splice(0, n)
        // the rest of the offer comes back at once (the default would refuse it for 5 s)
        // a refused ACCEPT (the offer is gone) ends its tasks DROPPED: they come back to the queue then
        const specs = ids.map((id) => this.spec(id))
        launches.push(this.fw.scheduler.launch(offer, specs, { refuseSeconds: 0 }).catch((err: Error) => {
          this.launchErrors.push(`${specs.map((x) => x.taskId).join(',')} on ${offer.agentId}: ${err.message}`)
        }))
      }
      await Promise.all(launches)
      if (this.queue.length !== this.lastRequest) {
        this.lastRequest = this.queue.length
        await this.fw.scheduler.request(this.queue.length === 0 ? [] : [{ pool: this.o.pool, resources: { ...this.o.resources }, count: this.queue.length }])
      }
    } catch {
      this.lastRequest = -1 // send it again on the next step
    } finally {
      this.busy = false
    }
  }

  private note(s: TaskStatus): void {
    const id = this.logical.get(s.taskId)
    if (id === undefined) return
    if (s.state === 'RUNNING' && !this.runningAt.has(id)) this.runningAt.set(id, Date.now())
    if (!isTerminal(s.state) || this.ended.has(id)) return
    if (s.state === 'DROPPED') {
      this.requeued.push(s.taskId)
      this.queue.push(id)
      return
    }
    this.ended.set(id, s)
    if (s.state !== 'FINISHED') this.casualties.push(s)
  }

  /** Waits until `pred` holds, checking every 20 ms. */
  async until(what: string, pred: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!pred()) {
      if (Date.now() > deadline) {
        const open = [...this.logical].filter(([, id]) => !this.ended.has(id)).map(([taskId]) => `${taskId}: ${this.fw.statesOf(taskId).join(' ') || 'no update'}`)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (queued ${this.queue.length}, finished ${this.done}, ended ${this.ended.size}; not ended: ${open.join('; ')}; refused launches: ${this.launchErrors.join('; ') || 'none'})`)
      }
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}
