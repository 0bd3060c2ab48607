// Task output read back from JetStream (whole after the fact, and followed live) and from the
// object store once archived, with each attempt's end line.
import t from 'tap'
import { Streams, Subjects, encode } from '../../../shared/protocol/index.js'
import { ensureStreams } from '../../../shared/nats/index.js'
import { LogArchive, attemptLogText, endLine, taskOutput, taskOutputText } from '../../../services/ci/src/logs.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'

let nats: NatsServer
t.before(async () => {
  nats = await startNatsServer()
  const nc = await nats.connect()
  await ensureStreams(await nc.jetstreamManager())
})
t.teardown(() => nats.stop())

function publish(nc: Awaited<ReturnType<NatsServer['connect']>>, taskId: string, lines: string[], from = 0): void {
  lines.forEach((data, i) => nc.publish(Subjects.taskOutput('fw-1', 'agent-1', taskId), encode({ taskId, stream: i % 2 ? 'stderr' : 'stdout', seq: from + i, data })))
}

t.test('Checks that the whole output of an ended task reads back in order', async (t) => {
  const nc = await nats.connect()
  publish(nc, 'task.a', ['one\n', 'two\n', 'three\n'])
  await nc.flush()
  t.equal(await taskOutputText(nc, 'fw-1', 'task.a'), 'one\ntwo\nthree\n')
  t.equal(await taskOutputText(nc, 'fw-1', 'no-such-task'), '', 'a task with no output reads empty at once')
  t.equal(await taskOutputText(nc, 'fw-1', 'task'), '', 'another task id does not see it')
})

t.test('Checks that following a running task gets what was written before and what comes after', async (t) => {
  const nc = await nats.connect()
  publish(nc, 'task-b', ['before\n'])
  await nc.flush()
  const ac = new AbortController()
  const seen: string[] = []
  const reading = (async () => {
    for await (const c of taskOutput(nc, 'fw-1', 'task-b', { follow: true, signal: ac.signal })) {
      seen.push(c.data)
      if (seen.length === 3) ac.abort()
    }
  })()
  await new Promise((r) => setTimeout(r, 100))
  publish(nc, 'task-b', ['after-1\n', 'after-2\n'], 1)
  await reading
  t.same(seen, ['before\n', 'after-1\n', 'after-2\n'])
})

t.test('Checks that an archived log is read from the object store after JetStream has dropped it', async (t) => {
  const nc = await nats.connect()
  const archive = new LogArchive(nc)
  publish(nc, 'task-c', ['kept\n', 'forever\n'])
  await nc.flush()
  t.equal(await archive.archive('fw-1', 'task-c'), true, 'archived')
  t.equal(await archive.archive('fw-1', 'silent-task'), false, 'a task without output has nothing to archive')
  await (await nc.jetstreamManager()).streams.purge(Streams.output, { filter: Subjects.taskOutputAnyAgent('fw-1', 'task-c') })
  t.equal(await taskOutputText(nc, 'fw-1', 'task-c'), '', 'JetStream no longer has it')
  const ended = { attempt: 1, taskId: 'task-c', launchedAt: 1, startedAt: 2, finishedAt: 3, outcome: 'cancelled' as const, exitCode: null, reason: 'cancelled', message: null }
  t.equal(await attemptLogText(nc, archive, 'fw-1', 'task-c', ended), 'kept\nforever\n::regatta attempt 1 was cancelled (cancelled)\n', 'the archive has it, with the end line')
})

t.test('Checks that the end line says how an attempt ended, with exit code, reason and message', async (t) => {
  const base = { attempt: 2, taskId: 'x', launchedAt: null, startedAt: null, finishedAt: 0 }
  t.equal(endLine({ ...base, outcome: 'failed', exitCode: 3, reason: 'COMMAND_FAILED', message: 'the command exited with code 3' }),
    '::regatta attempt 2 failed (exit code 3, COMMAND_FAILED, the command exited with code 3)')
  t.equal(endLine({ ...base, outcome: 'timedOut', exitCode: null, reason: 'timeout', message: null }), '::regatta attempt 2 timed out (timeout)')
  t.equal(endLine({ ...base, outcome: 'succeeded', exitCode: 0, reason: null, message: null }), '::regatta attempt 2 succeeded (exit code 0)')
})

t.test('Checks that output stored after the log was archived (its agent could not store it in time) is in the log while JetStream keeps it, and the archive is read after', async (t) => {
  const nc = await nats.connect()
  const archive = new LogArchive(nc)
  const attempt = (taskId: string, outcome: 'lost' | 'succeeded') => ({ attempt: 1, taskId, launchedAt: 1, startedAt: 2, finishedAt: 3, outcome, exitCode: outcome === 'succeeded' ? 0 : null, reason: outcome === 'lost' ? 'AGENT_GONE' : null, message: null })
  for (const taskId of ['task-lost', 'task-ok']) {
    publish(nc, taskId, ['before the stall\n'])
    await nc.flush()
    t.equal(await archive.archive('fw-1', taskId), true, `${taskId}: archived when its end was reported`)
    // the rest arrives once the stream takes the agent's output again
    publish(nc, taskId, ['after the stall\n'], 1)
    await nc.flush()
  }
  t.equal(await archive.read('task-ok'), 'before the stall\n', 'control: the archive has only what was stored at the end')
  t.equal(await attemptLogText(nc, archive, 'fw-1', 'task-lost', attempt('task-lost', 'lost')),
    'before the stall\nafter the stall\n::regatta attempt 1 was lost (AGENT_GONE)\n', 'a lost attempt\'s log has all its output')
  t.equal(await attemptLogText(nc, archive, 'fw-1', 'task-ok', attempt('task-ok', 'succeeded')),
    'before the stall\nafter the stall\n::regatta attempt 1 succeeded (exit code 0)\n', 'so has a succeeded one\'s')
  await (await nc.jetstreamManager()).streams.purge(Streams.output, { filter: Subjects.taskOutputAnyAgent('fw-1', 'task-lost') })
  t.equal(await attemptLogText(nc, archive, 'fw-1', 'task-lost', attempt('task-lost', 'lost')),
    'before the stall\n::regatta attempt 1 was lost (AGENT_GONE)\n', 'once JetStream has dropped it, the archive')
  // an archive made before archives said how many messages they hold is read as it is
  publish(nc, 'task-old', ['old\n'])
  await nc.flush()
  const os = await nc.jetstream().views.os('regatta-logs')
  await os.putBlob({ name: 'task-old' }, new TextEncoder().encode('archived\n'))
  t.equal(await attemptLogText(nc, archive, 'fw-1', 'task-old'), 'archived\n', 'an archive without its count is read as it is')
})
