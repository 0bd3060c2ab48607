// Fair share between repositories on a real cluster (nats-server, master, one process agent that
// runs two jobs at a time): one repository floods the CI with a 100-job matrix, another pushes one
// job; the lone job takes the next slot that frees instead of waiting for the flood to drain.
import t from 'tap'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { waitUntil } from '../../helpers/wait.js'
import type { RunView } from '../../../services/ci/src/views.js'

const FLOOD_JOBS = 100
/** Longer than the bound on the lone job's delay: if a flood job took the freed slot instead, the delay would show it. */
const JOB_SECONDS = 1.5
/** The master's default allocation interval (the fixture runs the master with its defaults). */
const ALLOCATION_INTERVAL_MS = 1_000

const FLOOD = `
name: flood
on: { push: { branches: [flood] } }
jobs:
  shard:
    image: regatta/busybox:latest
    resources: { cpus: 1, mem: 128 }
    matrix: { x: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], y: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }
    steps:
      - run: sleep ${JOB_SECONDS}
`
const LONE = `
name: lone
on: { push: { branches: [lone] } }
jobs:
  only:
    image: regatta/busybox:latest
    resources: { cpus: 1, mem: 128 }
    steps:
      - run: echo lone job
`

let f: CiFixture
/** Reads with the operator token (which may read whether or not reads are open). */
const read = async <T>(path: string): Promise<T> => {
  const res = await fetch(`${f.ci.url}${path}`, { headers: f.authHeaders, signal: AbortSignal.timeout(15_000) })
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${await res.text()}`)
  return await res.json() as T
}
const runs = async (): Promise<RunView[]> => (await read<{ runs: RunView[] }>('/api/v1/runs')).runs
const getRun = (runId: string): Promise<RunView> => read<RunView>(`/api/v1/runs/${runId}`)
/** Polls a run (by repository, or id) until `done` holds for it. */
const waitForRun = (what: string, find: () => Promise<RunView | undefined>, done: (r: RunView) => boolean, timeoutMs: number): Promise<RunView> =>
  waitUntil(what, async () => {
    const r = await find()
    return r && done(r) ? r : undefined
  }, timeoutMs, 50)
const ended = (r: RunView): boolean => ['succeeded', 'failed', 'cancelled', 'error'].includes(r.state)
t.before(async () => {
  // two cpus: two of these one-cpu jobs at a time
  f = await startCiFixture({ containerizer: 'process', agentResources: 'cpus:2;mem:4096;disk:10000' })
})
t.teardown(() => f?.stop())

t.test('Checks that a lone job of one repository starts within one allocation interval of a slot freeing, while another repository\'s 100 older jobs wait', async (t) => {
  const sha = await f.repo.commit({ '.regatta/flood.yml': FLOOD, '.regatta/lone.yml': LONE })
  t.equal((await f.push(sha, { repo: 'octo/flood', branch: 'flood' })).status, 202)
  // the flood runs two at a time and a first pair has ended
  const flood = await waitForRun('the flood running', async () => (await runs()).find((r) => r.repo === 'octo/flood'),
    (r) => r.jobs.filter((j) => j.state === 'running').length === 2 && r.jobs.some((j) => j.finishedAt !== null), 30_000)
  t.equal(flood.jobs.length, FLOOD_JOBS, `the flood planned ${FLOOD_JOBS} jobs`)

  t.equal((await f.push(sha, { repo: 'octo/lone', branch: 'lone' })).status, 202)
  const loneId = await waitUntil('the lone run', async () => (await runs()).find((r) => r.repo === 'octo/lone')?.runId, 15_000, 50)
  // when the lone job was first seen waiting for a slot (polled every 50 ms: a little late at most)
  let queuedAt = 0
  const started = await waitUntil('the lone job to start', async () => {
    const lone = await getRun(loneId)
    const job = lone.jobs[0]!
    if (queuedAt === 0 && job.state !== 'queued') queuedAt = Date.now()
    if (job.startedAt === null) return undefined
    return { lone, floodNow: await getRun(flood.runId) }
  }, 20_000, 50)
  const loneJob = started.lone.jobs[0]!
  const loneStart = loneJob.startedAt!
  const waitingFlood = started.floodNow.jobs.filter((j) => j.state === 'waiting').length
  const startedFlood = started.floodNow.jobs.filter((j) => j.startedAt !== null).length
  // the flood job that ended first after the lone job was queued freed the slot it should get
  const freedAt = Math.min(...started.floodNow.jobs.map((j) => j.finishedAt ?? Infinity).filter((at) => at >= queuedAt))
  const delay = loneStart - freedAt
  t.comment(`lone job queued at +${queuedAt - flood.createdAt} ms, started at +${loneStart - flood.createdAt} ms; ` +
    `first flood job ending after it was queued ended at +${freedAt - flood.createdAt} ms: lone job started ${delay} ms after that slot freed; ` +
    `${startedFlood} flood jobs had started, ${waitingFlood} still waiting`)
  t.ok(Number.isFinite(freedAt), 'a flood job ended after the lone job was queued')
  t.ok(delay < ALLOCATION_INTERVAL_MS, `the lone job started ${delay} ms after a slot freed (under one allocation interval, ${ALLOCATION_INTERVAL_MS} ms)`)
  t.ok(delay < JOB_SECONDS * 1000, 'so no flood job took that slot before it')
  t.ok(waitingFlood >= FLOOD_JOBS - 10, `it started while ${waitingFlood} of ${FLOOD_JOBS} flood jobs were still waiting`)

  const lone = await waitForRun('the lone run to end', () => getRun(loneId), ended, 15_000)
  t.equal(lone.state, 'succeeded', 'the lone run succeeded')
  // the flood is not needed any further: cancelling it keeps the test short
  const cancel = await fetch(`${f.ci.url}/api/v1/runs/${flood.runId}/cancel`, { method: 'POST', headers: f.authHeaders })
  t.equal(cancel.status, 200)
  const after = await waitForRun('the flood to end', () => getRun(flood.runId), ended, 20_000)
  t.equal(after.state, 'cancelled')
  t.ok(after.jobs.filter((j) => j.state === 'succeeded').length >= 2, 'flood jobs did run (two at a time) beside the lone one')
})
