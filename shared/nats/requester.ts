// Request/reply over one reply subscription per connection: replies are matched by a number,
// and one timer sweeps every request's deadline. nats.js's own `request()` allocates a timer
// and two Errors (with stack traces) per request, which at thousands of requests a second
// costs more CPU than the messaging itself.
import { createInbox, type MsgHdrs, type Msg, type NatsConnection, type Subscription } from 'nats'
import { RegattaError } from '../errors/index.js'

interface Pending {
  resolve(m: Msg): void
  reject(err: RegattaError): void
  deadline: number
  subject: string
}

const SWEEP_MS = 50

export class Requester {
  // the connection's inbox prefix: with NATS users, each may subscribe only to its own inboxes
  private readonly inbox: string
  private readonly sub: Subscription
  private readonly pending = new Map<number, Pending>()
  private seq = 0
  private sweeper?: NodeJS.Timeout
  private closed = false

  constructor(private readonly nc: NatsConnection) {
    this.inbox = createInbox((nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix)
    this.sub = nc.subscribe(`${this.inbox}.*`, {
      callback: (err, m) => {
        if (err) return
        const id = Number(m.subject.slice(this.inbox.length + 1))
        const p = this.pending.get(id)
        if (!p) return
        this.pending.delete(id)
        if (m.data.length === 0 && m.headers?.code === 503) p.reject(new RegattaError('NO_RESPONDERS', `no responders on ${p.subject}`))
        else p.resolve(m)
      },
    })
    void nc.closed().then(() => this.close())
  }

  private sweep(): void {
    const now = Date.now()
    for (const [id, p] of this.pending) {
      if (p.deadline <= now) {
        this.pending.delete(id)
        p.reject(new RegattaError('TIMEOUT', `no answer on ${p.subject} in time`))
      }
    }
    if (this.pending.size === 0 && this.sweeper) {
      clearInterval(this.sweeper)
      this.sweeper = undefined
    }
  }

  request(subject: string, data: Uint8Array, timeoutMs: number, headers?: MsgHdrs): Promise<Msg> {
    if (this.closed || this.nc.isClosed()) return Promise.reject(new RegattaError('NO_RESPONDERS', 'the NATS connection is closed'))
    const id = ++this.seq
    return new Promise<Msg>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs, subject })
      if (!this.sweeper) {
        this.sweeper = setInterval(() => this.sweep(), SWEEP_MS)
        this.sweeper.unref()
      }
      try {
        this.nc.publish(subject, data, { reply: `${this.inbox}.${id}`, ...(headers ? { headers } : {}) })
      } catch (err) {
        this.pending.delete(id)
        reject(RegattaError.from(err))
      }
    })
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.sweeper) clearInterval(this.sweeper)
    try {
      this.sub.unsubscribe()
    } catch {
      // the connection is gone already
    }
    for (const p of this.pending.values()) p.reject(new RegattaError('NO_RESPONDERS', 'the NATS connection is closed'))
    this.pending.clear()
  }
}

const byConnection = new WeakMap<NatsConnection, Requester>()

/** The connection's requester, made on first use. */
export function requesterFor(nc: NatsConnection): Requester {
  let r = byConnection.get(nc)
  if (!r) {
    r = new Requester(nc)
    byConnection.set(nc, r)
  }
  return r
}
