// A task's output reaches JetStream whole and in order even when the output stream is briefly
// unavailable (a stream leader being elected, a NATS node cut off: the multi-host test saw jobs'
// logs come back empty after such a stall while output was published without acknowledgement).
// The stream is made unavailable for the task's subject by narrowing its subjects, on a real
// nats-server.
import t from 'tap'
import { JetStreamPublisher } from '../../../shared/nats/publisher.js'
import { ensureStreams } from '../../../shared/nats/index.js'
import { OutputChunk, Streams, Subjects, decode } from '../../../shared/protocol/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { OutputPublisher } from '../../../services/agent/src/task-output.js'
import { startNatsServer } from '../../helpers/nats-server.js'

const server = await startNatsServer()
t.teardown(() => server.stop())
const nc = await server.connect()
t.teardown(() => nc.close())
const jsm = await nc.jetstreamManager()
await ensureStreams(jsm)
const original = (await jsm.streams.info(Streams.output)).config

async function stored(subject: string): Promise<OutputChunk[]> {
  const out: OutputChunk[] = []
  const info = await jsm.streams.info(Streams.output, { subjects_filter: subject })
  const n = info.state.subjects?.[subject] ?? 0
  if (n === 0) return out
  const consumer = await nc.jetstream().consumers.get(Streams.output, { filterSubjects: subject })
  const messages = await consumer.fetch({ max_messages: n, expires: 2_000 })
  for await (const m of messages) out.push(decode(OutputChunk, m.data, 'output chunk'))
  return out
}

t.test('Checks that output pushed while the stream refuses it is stored once the stream is back: all of it, in order, once', async (t) => {
  const subject = Subjects.taskOutput('fw-1', 'agent-1', 'task-1')
  let seq = 0
  const out = new OutputPublisher(new JetStreamPublisher(nc, 1_000), subject, 'task-1', () => seq++, silentLogger())
  await jsm.streams.update(Streams.output, { ...original, subjects: ['regatta.output.nobody.>'] })
  const lines = Array.from({ length: 500 }, (_, i) => `line ${i}\n`)
  for (const [i, l] of lines.entries()) out.push(i % 10 === 9 ? 'stderr' : 'stdout', l)
  t.equal(await out.flush(800), false, 'not stored while the stream refuses the subject')
  t.same(await stored(subject), [], 'nothing stored yet')

  await jsm.streams.update(Streams.output, original)
  t.equal(await out.flush(15_000), true, 'stored once the stream takes it again')
  const chunks = await stored(subject)
  t.equal(chunks.map((c) => c.data).join(''), lines.join(''), 'the whole output, in order')
  t.same(chunks.map((c) => c.seq), chunks.map((_, i) => i), 'sequence numbers without a gap or a repeat')
  t.ok(chunks.length < lines.length, `what waited went in fewer messages (${chunks.length} for ${lines.length} pushes)`)
  const wrongStream = chunks.filter((c) => c.data.split('\n').filter(Boolean).some((l) => (Number(l.slice(5)) % 10 === 9) !== (c.stream === 'stderr')))
  t.same(wrongStream, [], 'each line in a message of its own stream')
})

t.test('Checks that a large chunk goes in messages of at most 64 KiB, none splitting a character', async (t) => {
  const subject = Subjects.taskOutput('fw-1', 'agent-1', 'task-2')
  let seq = 0
  const out = new OutputPublisher(new JetStreamPublisher(nc, 1_000), subject, 'task-2', () => seq++, silentLogger())
  const text = `${'a'.repeat(64 * 1024 - 1)}😀${'b'.repeat(100_000)}`
  out.push('stdout', text)
  t.equal(await out.flush(10_000), true)
  const chunks = await stored(subject)
  t.ok(chunks.every((c) => c.data.length <= 64 * 1024), `${chunks.length} messages, each at most 64 KiB`)
  t.equal(chunks.map((c) => c.data).join(''), text, 'the same text, the emoji whole')
})

t.test('Checks that a closed publisher stops retrying and its flush returns', async (t) => {
  const subject = Subjects.taskOutput('fw-1', 'agent-1', 'task-3')
  const out = new OutputPublisher(new JetStreamPublisher(nc, 500), subject, 'task-3', () => 0, silentLogger())
  await jsm.streams.update(Streams.output, { ...original, subjects: ['regatta.output.nobody.>'] })
  t.teardown(() => jsm.streams.update(Streams.output, original))
  out.push('stdout', 'lost\n')
  out.close()
  const started = Date.now()
  t.equal(await out.flush(5_000), false, 'its flush returns once its attempt ends, saying that not everything was stored')
  t.ok(Date.now() - started < 2_000, `returned in ${Date.now() - started} ms`)
})
