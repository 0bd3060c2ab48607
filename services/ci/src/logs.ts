// A job's log. While a task runs its output is read from JetStream (stream REGATTA_OUTPUT, one
// subject per task, kept a day), followed live by the run page (server-sent events) and
// `regatta logs -f`; once the task has ended the CI service copies it into the object store
// (bucket regatta-logs, kept 30 days by default), where it is read from then on. Each attempt's
// log ends with a line saying how and why it ended, whatever ended it (exit, cancel, timeout,
// eviction, a lost agent).
import type { NatsConnection, ObjectStore } from 'nats'
import { nanos } from 'nats'
import { Buckets, OutputChunk, Streams, Subjects, decode } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import type { AttemptRecord } from './machines/index.js'

export interface ReadOptions {
  /** Keep waiting for more output until `signal` aborts. */
  follow?: boolean
  signal?: AbortSignal
}

/** The task's output chunks in order; without `follow`, ends when what is stored so far is read. */
export async function* taskOutput(nc: NatsConnection, frameworkId: string, taskId: string, o: ReadOptions = {}): AsyncGenerator<OutputChunk> {
  const js = nc.jetstream()
  // whatever agent ran it (the subject names the agent: regatta.output.<fw>.<agent>.<task>)
  const subject = Subjects.taskOutputAnyAgent(frameworkId, taskId)
  if (!o.follow && !(await hasOutput(nc, subject))) return
  // an ordered consumer starts at the stream's first message by default (2.9 refuses deliver_policy all with a start sequence)
  const consumer = await js.consumers.get(Streams.output, { filterSubjects: subject })
  const messages = await consumer.consume({ max_messages: 256 })
  const stop = (): void => void messages.close()
  o.signal?.addEventListener('abort', stop, { once: true })
  // a read of what is stored (not a follow) never waits long for the next message: while the
  // stream is unavailable (a NATS node cut off, a leader being elected) it fails rather than hang
  let stalled = false
  let idle: NodeJS.Timeout | undefined
  const arm = (): void => {
    if (o.follow) return
    clearTimeout(idle)
    idle = setTimeout(() => { stalled = true; stop() }, READ_STALL_MS)
  }
  try {
    if (o.signal?.aborted) return
    arm()
    for await (const m of messages) {
      arm()
      try {
        yield decode(OutputChunk, m.data, 'output chunk')
      } catch {
        // a bad chunk is skipped, the rest of the log still reads
      }
      if (!o.follow && m.info.pending === 0) return
    }
    if (stalled) throw new RegattaError('TIMEOUT', `the output of task ${taskId} could not be read: JetStream gave nothing for ${READ_STALL_MS / 1000} s (is the output stream available?)`)
  } finally {
    clearTimeout(idle)
    o.signal?.removeEventListener('abort', stop)
    await messages.close().catch(() => undefined)
  }
}

/** How long a read of a task's stored output waits for the next message before it fails. */
const READ_STALL_MS = 10_000

async function hasOutput(nc: NatsConnection, subject: string): Promise<boolean> {
  const jsm = await nc.jetstreamManager()
  try {
    await jsm.streams.getMessage(Streams.output, { last_by_subj: subject })
    return true
  } catch (err) {
    // none stored is no output; a stream that does not answer is not "no output"
    if (/no message found|not found/i.test((err as Error).message)) return false
    throw RegattaError.from(err)
  }
}

/** The whole output so far as text (stdout and stderr interleaved as they came). */
export async function taskOutputText(nc: NatsConnection, frameworkId: string, taskId: string): Promise<string> {
  let text = ''
  for await (const chunk of taskOutput(nc, frameworkId, taskId)) text += chunk.data
  return text
}

/** How long a job's log is kept after its task ended (REGATTA_LOG_RETENTION). */
export const DEFAULT_LOG_RETENTION_MS = 30 * 24 * 3600_000

/** Ended tasks' output, as text, in the object store. */
export class LogArchive {
  private store?: Promise<ObjectStore>

  constructor(private readonly nc: NatsConnection, private readonly o: { retentionMs?: number; replicas?: number } = {}) {}

  private bucket(): Promise<ObjectStore> {
    this.store ??= this.nc.jetstream().views.os(Buckets.logs, {
      ttl: nanos(this.o.retentionMs ?? DEFAULT_LOG_RETENTION_MS), replicas: this.o.replicas ?? 1, description: 'Regatta job logs (text by task id)',
    })
    // a failure to open is tried again next time
    this.store.catch(() => { this.store = undefined })
    return this.store
  }

  /** Copies an ended task's output from JetStream; false when it had none. */
  async archive(frameworkId: string, taskId: string): Promise<boolean> {
    let text = ''
    let chunks = 0
    for await (const chunk of taskOutput(this.nc, frameworkId, taskId)) {
      text += chunk.data
      chunks++
    }
    if (text.length === 0) return false
    // how many messages it was made of: more in JetStream later means output came after it
    await (await this.bucket()).putBlob({ name: taskId, description: `${CHUNKS}${chunks}` }, new TextEncoder().encode(text))
    return true
  }

  /** The archived output of a task, or undefined when it is not (or not yet) archived. */
  async read(taskId: string): Promise<string | undefined> {
    return (await this.readArchived(taskId))?.text
  }

  /** The archived output and how many output messages it was made of (unknown for older archives). */
  async readArchived(taskId: string): Promise<{ text: string; chunks?: number } | undefined> {
    // one lookup of the object's info (getBlob after info() would look it up again)
    const got = await (await this.bucket()).get(taskId).catch(() => null)
    if (!got || got.info.deleted) return undefined
    const text = await new Response(got.data).text().catch(() => undefined)
    if (text === undefined || await got.error) return undefined
    const { description } = got.info
    const chunks = description?.startsWith(CHUNKS) ? Number(description.slice(CHUNKS.length)) : NaN
    return { text, ...(Number.isInteger(chunks) ? { chunks } : {}) }
  }
}

/** The archived log's description: the number of output messages it holds. */
const CHUNKS = 'chunks:'

/** How many output messages JetStream keeps for a task (one stream info request). */
async function storedChunks(nc: NatsConnection, frameworkId: string, taskId: string): Promise<number> {
  const info = await (await nc.jetstreamManager()).streams.info(Streams.output, { subjects_filter: Subjects.taskOutputAnyAgent(frameworkId, taskId) })
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0)
}

/** The last line of an attempt's log: how it ended and why. */
export function endLine(a: AttemptRecord): string {
  const how: Record<AttemptRecord['outcome'], string> = {
    succeeded: 'succeeded', failed: 'failed', lost: 'was lost', preempted: 'was preempted (evicted from revocable resources)',
    timedOut: 'timed out', cancelled: 'was cancelled',
  }
  const detail = [a.exitCode !== null ? `exit code ${a.exitCode}` : '', a.reason ?? '', a.message ?? ''].filter(Boolean).join(', ')
  return `::regatta attempt ${a.attempt} ${how[a.outcome]}${detail ? ` (${detail})` : ''}`
}

/**
 * A task's log as text: archived, else from JetStream, followed by its end line once it ended.
 * Output can reach JetStream after the task's end was reported and its log archived (its agent
 * could not store it in time: a stream stalled, a host cut off from the NATS cluster, which
 * stores the rest once it is back): while JetStream keeps more messages of the task than the
 * archive was made of, the log is read from JetStream.
 */
export async function attemptLogText(nc: NatsConnection, archive: LogArchive, frameworkId: string, taskId: string, ended?: AttemptRecord): Promise<string> {
  const archived = await archive.readArchived(taskId)
  let text = archived?.text ?? await taskOutputText(nc, frameworkId, taskId)
  if (archived) {
    const later = await storedChunks(nc, frameworkId, taskId).catch(() => 0)
    if (later > (archived.chunks ?? Infinity)) text = await taskOutputText(nc, frameworkId, taskId).catch(() => archived.text)
  }
  if (ended) text += `${text.length > 0 && !text.endsWith('\n') ? '\n' : ''}${endLine(ended)}\n`
  return text
}
