// JetStream publishing with acknowledgements over the connection's requester (one reply
// subscription, no per-message timer or Error), as agents and the master publish status updates.
import { headers, type NatsConnection } from 'nats'
import { RegattaError } from '../errors/index.js'
import { requesterFor } from './requester.js'

export interface PubAck {
  stream?: string
  seq?: number
  duplicate?: boolean
  error?: { code?: number; err_code?: number; description?: string }
}

export class JetStreamPublisher {
  constructor(private readonly nc: NatsConnection, private readonly timeoutMs = 5_000) {}

  /** Publishes and resolves once JetStream stored it; `msgId` de-duplicates retries. */
  async publish(subject: string, data: Uint8Array, msgId?: string): Promise<void> {
    let h
    if (msgId) {
      h = headers()
      h.set('Nats-Msg-Id', msgId)
    }
    let m
    try {
      m = await requesterFor(this.nc).request(subject, data, this.timeoutMs, h)
    } catch (err) {
      const e = RegattaError.from(err)
      if (e.code === 'NO_RESPONDERS') throw new RegattaError('NO_RESPONDERS', `no JetStream stream stores ${subject}`)
      throw e
    }
    let ack: PubAck
    try {
      ack = m.json<PubAck>()
    } catch {
      throw new RegattaError('INVALID_MESSAGE', `bad JetStream ack for ${subject}`)
    }
    if (ack.error) throw new RegattaError('INTERNAL', `JetStream refused ${subject}: ${ack.error.description ?? 'error'}`)
  }

  close(): void {
    // the requester belongs to the connection and ends with it
  }
}
