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

/**
 * Publishes until JetStream stores it, retrying under the same message id (de-duplicated) with a
 * doubling delay (100 ms to 5 s). Gives up, with the last error, once `stopped()` holds: no
 * attempt is made after that (a deposed master's update, a closed task's output).
 */
export async function publishUntilStored(
  publisher: JetStreamPublisher, subject: string, data: Uint8Array, msgId: string,
  o: { stopped(): boolean; onRetry(err: Error): void },
): Promise<{ stored: true } | { stored: false; err: Error }> {
  let delay = 100
  for (;;) {
    try {
      await publisher.publish(subject, data, msgId)
      return { stored: true }
    } catch (err) {
      if (o.stopped()) return { stored: false, err: err as Error }
      o.onRetry(err as Error)
      await new Promise((r) => setTimeout(r, delay))
      delay = Math.min(delay * 2, 5_000)
      if (o.stopped()) return { stored: false, err: new RegattaError('NO_RESPONDERS', `stopped before ${subject} was stored`) }
    }
  }
}
