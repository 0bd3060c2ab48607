// A task's output, read back from JetStream (stream REGATTA_OUTPUT, one subject per task): all
// of it after the task ended, or followed live while it runs (the run page's server-sent
// events and `regatta logs -f`).
import type { NatsConnection } from 'nats'
import { OutputChunk, Streams, Subjects, decode } from '../../../shared/protocol/index.js'

export interface ReadOptions {
  /** Keep waiting for more output until `signal` aborts. */
  follow?: boolean
  signal?: AbortSignal
}

/** The task's output chunks in order; without `follow`, ends when what is stored so far is read. */
export async function* taskOutput(nc: NatsConnection, frameworkId: string, taskId: string, o: ReadOptions = {}): AsyncGenerator<OutputChunk> {
  const js = nc.jetstream()
  const subject = Subjects.taskOutput(frameworkId, taskId)
  if (!o.follow && !(await hasOutput(nc, subject))) return
  // an ordered consumer starts at the stream's first message by default (2.9 refuses deliver_policy all with a start sequence)
  const consumer = await js.consumers.get(Streams.output, { filterSubjects: subject })
  const messages = await consumer.consume({ max_messages: 256 })
  const stop = (): void => void messages.close()
  o.signal?.addEventListener('abort', stop, { once: true })
  try {
    if (o.signal?.aborted) return
    for await (const m of messages) {
      try {
        yield decode(OutputChunk, m.data, 'output chunk')
      } catch {
        // a bad chunk is skipped, the rest of the log still reads
      }
      if (!o.follow && m.info.pending === 0) return
    }
  } finally {
    o.signal?.removeEventListener('abort', stop)
    await messages.close().catch(() => undefined)
  }
}

async function hasOutput(nc: NatsConnection, subject: string): Promise<boolean> {
  const jsm = await nc.jetstreamManager()
  try {
    await jsm.streams.getMessage(Streams.output, { last_by_subj: subject })
    return true
  } catch {
    return false
  }
}

/** The whole output so far as text (stdout and stderr interleaved as they came). */
export async function taskOutputText(nc: NatsConnection, frameworkId: string, taskId: string): Promise<string> {
  let text = ''
  for await (const chunk of taskOutput(nc, frameworkId, taskId)) text += chunk.data
  return text
}
