// Asynchronous JetStream publishing with acknowledgements, without a request per message:
// one reply subscription per publisher, acks matched by a sequence number, one timer for all.
// Agents and the master publish every status update through it; `js.publish()` costs several
// times more CPU per message (a request object, a timer and an Error captured for each).
import { createInbox, headers, type NatsConnection, type Subscription } from 'nats'
import { RegattaError } from '../errors/index.js'

interface Pending {
  resolve(): void
  reject(err: RegattaError): void
  deadline: number
  subject: string
}

export interface PubAck {
  stream?: string
  seq?: number
  duplicate?: boolean
  error?: { code?: number; err_code?: number; description?: string }
}

export class JetStreamPublisher {
  private readonly inbox: string
  private readonly sub: Subscription
  private readonly pending = new Map<number, Pending>()
  private seq = 0
  private readonly sweeper: NodeJS.Timeout

  constructor(private readonly nc: NatsConnection, private readonly timeoutMs = 5_000) {
    this.inbox = createInbox()
    this.sub = nc.subscribe(`${this.inbox}.*`, {
      callback: (err, m) => {
        if (err) return
        const id = Number(m.subject.slice(this.inbox.length + 1))
        const p = this.pending.get(id)
        if (!p) return
        this.pending.delete(id)
        if (m.data.length === 0 && m.headers?.code === 503) {
          p.reject(new RegattaError('NO_RESPONDERS', `no JetStream stream stores ${p.subject}`))
          return
        }
        let ack: PubAck
        try {
          ack = m.json<PubAck>()
        } catch {
          p.reject(new RegattaError('INVALID_MESSAGE', `bad JetStream ack for ${p.subject}`))
          return
        }
        if (ack.error) p.reject(new RegattaError('INTERNAL', `JetStream refused ${p.subject}: ${ack.error.description ?? 'error'}`))
        else p.resolve()
      },
    })
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.floor(timeoutMs / 5)))
    this.sweeper.unref()
  }

  private sweep(): void {
    const now = Date.now()
    for (const [id, p] of this.pending) {
      if (p.deadline <= now) {
        this.pending.delete(id)
        p.reject(new RegattaError('TIMEOUT', `no JetStream ack for ${p.subject} in time`))
      }
    }
  }

  /** Publishes and resolves once JetStream stored it; `msgId` de-duplicates retries. */
  publish(subject: string, data: Uint8Array, msgId?: string): Promise<void> {
    if (this.nc.isClosed()) return Promise.reject(new RegattaError('NO_RESPONDERS', 'the NATS connection is closed'))
    const id = ++this.seq
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + this.timeoutMs, subject })
      let h
      if (msgId) {
        h = headers()
        h.set('Nats-Msg-Id', msgId)
      }
      try {
        this.nc.publish(subject, data, { reply: `${this.inbox}.${id}`, ...(h ? { headers: h } : {}) })
      } catch (err) {
        this.pending.delete(id)
        reject(RegattaError.from(err))
      }
    })
  }

  close(): void {
    clearInterval(this.sweeper)
    this.sub.unsubscribe()
    for (const p of this.pending.values()) p.reject(new RegattaError('NO_RESPONDERS', 'publisher closed'))
    this.pending.clear()
  }
}
