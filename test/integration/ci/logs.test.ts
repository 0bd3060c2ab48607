// Task output read back from JetStream: whole after the fact, and followed live.
import t from 'tap'
import { Subjects, encode } from '../../../shared/protocol/index.js'
import { ensureStreams } from '../../../shared/nats/index.js'
import { taskOutput, taskOutputText } from '../../../services/ci/src/logs.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'

let nats: NatsServer
t.before(async () => {
  nats = await startNatsServer()
  const nc = await nats.connect()
  await ensureStreams(await nc.jetstreamManager())
})
t.teardown(() => nats.stop())

function publish(nc: Awaited<ReturnType<NatsServer['connect']>>, taskId: string, lines: string[], from = 0): void {
  lines.forEach((data, i) => nc.publish(Subjects.taskOutput('fw-1', taskId), encode({ taskId, stream: i % 2 ? 'stderr' : 'stdout', seq: from + i, data })))
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
