// Sends task status updates into JetStream, batched per subject (framework and sender): while
// one batch is being stored, the next one fills up, so a busy agent sends a few messages a moment
// instead of one per update, and a lone update leaves at once. Order per subject is kept; a batch
// is retried under the same message id (de-duplicated by JetStream) until it is stored.
// The subject names the sender: `regatta.update.<framework>.<agent>` for an agent's update (its
// `agentId`), `regatta.update.<framework>._master` for the master's (`source: 'master'`).
import { randomUUID } from 'node:crypto'
import { Subjects, encode, type TaskStatus } from '../protocol/index.js'
import { RegattaError } from '../errors/index.js'
import type { Logger } from '../log/index.js'
import { publishUntilStored, type JetStreamPublisher } from './publisher.js'

const MAX_BATCH = 500

interface Queued {
  status: TaskStatus
  resolve(): void
  reject(err: Error): void
}

export class StatusUpdateSender {
  private readonly queues = new Map<string, Queued[]>()
  private readonly busy = new Set<string>()
  private readonly flights = new Set<Promise<void>>()
  private stopped = false

  constructor(private readonly publisher: JetStreamPublisher, private readonly log: Logger) {}

  /** Resolves once the update is stored in JetStream; rejects only when the sender is closed first. */
  send(status: TaskStatus): Promise<void> {
    if (this.stopped) return Promise.reject(new RegattaError('NO_RESPONDERS', 'status update sender closed'))
    return new Promise<void>((resolve, reject) => {
      if (status.source === 'agent' && !status.agentId) {
        reject(new RegattaError('INVALID_MESSAGE', `status update of task ${status.taskId}: an agent's update needs its agentId`))
        return
      }
      const subject = status.source === 'master'
        ? Subjects.masterStatusUpdate(status.frameworkId)
        : Subjects.statusUpdate(status.frameworkId, status.agentId!)
      let q = this.queues.get(subject)
      if (!q) {
        q = []
        this.queues.set(subject, q)
      }
      q.push({ status, resolve, reject })
      if (!this.busy.has(subject)) {
        this.busy.add(subject)
        // on the next turn, so that the updates of this turn travel together
        setImmediate(() => this.track(this.drain(subject)))
      }
    })
  }

  private track(p: Promise<void>): void {
    this.flights.add(p)
    void p.finally(() => this.flights.delete(p))
  }

  private async drain(subject: string): Promise<void> {
    const q = this.queues.get(subject)
    while (q && q.length > 0 && !this.stopped) {
      const batch = q.splice(0, MAX_BATCH)
      const msgId = randomUUID()
      const data = encode({ updates: batch.map((b) => b.status) })
      // once closed, no further attempt (a deposed master's update must not land late)
      const r = await publishUntilStored(this.publisher, subject, data, msgId, {
        stopped: () => this.stopped,
        onRetry: (err) => this.log.warn({ err: err.message, subject, updates: batch.length }, 'status updates not stored yet; retrying'),
      })
      for (const b of batch) {
        if (r.stored) b.resolve()
        else b.reject(r.err)
      }
    }
    this.busy.delete(subject)
    if (q && q.length === 0) this.queues.delete(subject)
  }

  /** Waits (bounded) for batches in flight, then refuses new updates and fails what is queued. */
  async close(waitMs = 5_000): Promise<void> {
    // updates sent this turn start their flight on the next one: let them, then wait for them
    if (waitMs > 0) await new Promise((r) => setImmediate(r))
    let timer: NodeJS.Timeout | undefined
    // the timer is cleared once the flights land: left running it would keep the process alive
    await Promise.race([Promise.allSettled([...this.flights]), new Promise((r) => { timer = setTimeout(r, waitMs) })])
    clearTimeout(timer)
    this.stopped = true
    for (const q of this.queues.values()) for (const b of q.splice(0)) b.reject(new RegattaError('NO_RESPONDERS', 'status update sender closed'))
  }
}
