// One stream (stdout or stderr) of a task's output as text: bytes decoded as UTF-8 without
// splitting a character across chunks, and the task's secrets masked, even when split; and the
// publisher that stores a task's output in JetStream, in order, without losing any.
import { StringDecoder } from 'node:string_decoder'
import { SecretMasker } from '../../../shared/secrets/index.js'
import { encode } from '../../../shared/protocol/index.js'
import { publishUntilStored, type JetStreamPublisher } from '../../../shared/nats/publisher.js'
import type { Logger } from '../../../shared/log/index.js'

export class TaskText {
  private readonly decoder = new StringDecoder('utf8')
  private readonly masker: SecretMasker

  constructor(secrets: Iterable<string>) {
    this.masker = new SecretMasker(secrets)
  }

  /** The text of a chunk that is safe to pass on now. */
  push(chunk: Buffer): string {
    return this.masker.push(this.decoder.write(chunk))
  }

  /** What is still held, at the end of the stream. */
  end(): string {
    return this.masker.push(this.decoder.end()) + this.masker.flush()
  }
}

/** At most this much text goes in one output message (chunks waiting for a flight are joined up to it). */
const MAX_JOINED = 64 * 1024

/**
 * A task's output into JetStream: each message is stored (acknowledged) before the next goes, so
 * nothing is lost while JetStream is briefly unavailable (a stream leader being elected, a NATS
 * node cut off): a message is retried, under the same message id (de-duplicated), until stored.
 * Output arriving meanwhile waits, joined into fewer, larger messages, so a busy task costs a few
 * messages a moment. The task's end is reported once its output is stored (`flush`).
 */
export class OutputPublisher {
  private readonly queue: Array<{ stream: 'stdout' | 'stderr'; data: string }> = []
  private flight?: Promise<void>
  private closed = false

  constructor(
    private readonly publisher: JetStreamPublisher,
    private readonly subject: string,
    private readonly taskId: string,
    private readonly nextSeq: () => number,
    private readonly log: Logger,
  ) {}

  push(stream: 'stdout' | 'stderr', data: string): void {
    if (this.closed || data.length === 0) return
    if (data.length > MAX_JOINED) {
      // in pieces, none ending between the two halves of a surrogate pair
      let at = MAX_JOINED
      const code = data.charCodeAt(at - 1)
      if (code >= 0xd800 && code <= 0xdbff) at--
      this.push(stream, data.slice(0, at))
      this.push(stream, data.slice(at))
      return
    }
    // never into the message in flight (the head of the queue while one flies)
    const last = this.queue.length > (this.flight ? 1 : 0) ? this.queue[this.queue.length - 1] : undefined
    if (last && last.stream === stream && last.data.length + data.length <= MAX_JOINED) last.data += data
    else this.queue.push({ stream, data })
    this.flight ??= this.drain()
  }

  private async drain(): Promise<void> {
    try {
      await this.send()
    } finally {
      this.flight = undefined
    }
  }

  private async send(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const m = this.queue[0]!
      const seq = this.nextSeq()
      const body = encode({ taskId: this.taskId, stream: m.stream, seq, data: m.data })
      const r = await publishUntilStored(this.publisher, this.subject, body, `${this.taskId}:${seq}`, {
        stopped: () => this.closed,
        onRetry: (err) => this.log.warn({ err: err.message, taskId: this.taskId, waiting: this.queue.length }, 'task output not stored yet; retrying'),
      })
      if (!r.stored) return
      this.queue.shift()
    }
  }

  /** Resolves once everything pushed so far is stored (true), or after `waitMs` or at close (false). */
  async flush(waitMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    // the wait alone never keeps the process alive (a stopping agent)
    const timeout = new Promise<false>((r) => { timer = setTimeout(() => r(false), waitMs); timer.unref() })
    try {
      for (;;) {
        const f = this.flight
        if (!f) return this.queue.length === 0
        if (await Promise.race([f.then(() => true as const), timeout]) === false) return false
      }
    } finally {
      clearTimeout(timer)
    }
  }

  /** Stops publishing; what is not stored yet stays in the task's sandbox files only. */
  close(): void {
    this.closed = true
  }
}
