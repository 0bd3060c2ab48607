// Oversubscription through the CI service: a job marked `revocable: true` runs on what another
// job leaves unused, is preempted when that job needs its memory back, and runs again on
// ordinary capacity without counting a failed attempt; the run succeeds.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'

// a file the steps of the plain job watch (the process containerizer runs on this host)
const GROW = `/tmp/regatta-grow-${process.pid}-${randomBytes(3).toString('hex')}`

const PIPELINE = `
name: over
on: { push: { branches: [main] } }
jobs:
  svc:
    image: regatta/busybox:latest
    priority: 90
    resources: { cpus: 1, mem: 400 }
    steps:
      - name: small, then big
        run: while [ ! -e ${GROW} ]; do sleep 0.05; done; echo growing; dd if=/dev/zero bs=300M count=1 2>/dev/null | sleep 3; echo svc done
  extra:
    image: regatta/busybox:latest
    revocable: true
    resources: { cpus: 0.5, mem: 200 }
    steps:
      - run: echo extra started; sleep 5; echo extra done
`

let f: CiFixture
t.before(async () => {
  // 450 MiB: once svc holds 400, the 200 MiB job fits only on revocable capacity
  f = await startCiFixture({ containerizer: 'process', agentResources: 'cpus:2;mem:450;disk:10000', oversubscription: { intervalMs: 250, margin: 0.1 } })
})
t.teardown(async () => {
  await f?.stop()
  await rm(GROW, { force: true })
})

t.test('Checks that a revocable job runs on unused capacity, is preempted when it is needed back, and the run still succeeds', async (t) => {
  const sha = await f.repo.commit({ '.regatta/over.yml': PIPELINE })
  t.equal((await f.push(sha)).status, 202)
  const both = await f.waitForRun({ sha }, (r) => r.jobs.every((j) => j.state === 'running'), 30_000)
  t.pass(`both jobs run at once on a 450 MiB agent: ${both.jobs.map((j) => j.id).join(', ')}`)
  const taskOf = (id: string): string => both.jobs.find((j) => j.id === id)!.taskId!

  await writeFile(GROW, '')
  const run = await f.waitForRun({ sha }, undefined, 60_000)
  t.equal(run.state, 'succeeded', `the run succeeded: ${JSON.stringify(run.jobs.map((j) => [j.id, j.state, j.attempt, j.reason]))}`)
  const extra = run.jobs.find((j) => j.id === 'over/extra')!
  t.equal(extra.attempt, 1, 'the preemption did not count as a failed attempt')
  t.not(extra.taskId, taskOf('over/extra'), 'it ran again as a new task')

  const log = await f.jobLog(run.runId, 'over/extra')
  t.match(log, /extra started\n::regatta attempt 1 was preempted \(evicted from revocable resources\) \(preempted: the agent's non-revocable tasks need their memory back/, 'the first task\'s log says it was preempted, and why')
  t.match(log, /extra done\n::regatta attempt 1 succeeded/, 'the second ran to the end')
  t.match(await f.jobLog(run.runId, 'over/svc'), /growing\nsvc done/, 'the plain job was not harmed')
})
