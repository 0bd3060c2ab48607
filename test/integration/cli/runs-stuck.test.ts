// `regatta runs ls --stuck` as users run it (a real process) against a real CI service on a real
// cluster (process containerizer): a job asking for more CPUs than any agent has waits for
// resources forever; once past the waiting bound it is listed, naming the bound, in human
// output and --json; a job that ran is not. Bad bounds are refused in one line (exit 2).
import t from 'tap'
import { manualTrigger } from '../../../services/ci/src/manual.js'
import type { StuckItem } from '../../../services/ci/src/views.js'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { regatta } from '../../helpers/cli.js'

const lines = (s: string): string[] => s.split('\n').filter((l) => l.trim() !== '')

let f: CiFixture
t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', agentResources: 'cpus:2;mem:1024;disk:2000;ports:[31000-31010]' })
})
t.teardown(() => f?.stop())

const PIPELINE = `
name: big
on: { manual: {} }
jobs:
  huge:
    image: any
    resources: { cpus: 64, mem: 128 }
    steps:
      - run: echo no agent has 64 CPUs
  small:
    image: any
    resources: { cpus: 0.5, mem: 64 }
    steps:
      - run: echo fits
`

t.test('Checks that regatta runs ls --stuck lists a job waiting for resources no agent has, with the bound it passed, and --json', async (t) => {
  const sha = await f.repo.commit({ '.regatta/big.yml': PIPELINE })
  const runId = (await f.ci.service.trigger(await manualTrigger(f.repo.url, 'main', sha))).meta.runId
  t.teardown(() => f.ci.service.cancel(runId).catch(() => undefined))
  await f.waitForRun({ runId }, (r) => r.jobs.find((j) => j.id === 'big/small')?.state === 'succeeded' && r.jobs.find((j) => j.id === 'big/huge')?.state === 'waiting', 30_000)

  const calm = await regatta(['runs', 'ls', '--stuck', '--ci', f.ci.url])
  t.equal(calm.code, 0, calm.stderr)
  t.match(calm.stdout, /^Nothing is past its bound \(bounds: waiting 10m, starting 11m, running: each job's timeout \+ 1m, no progress 5m\)\.$/m,
    'within the default bounds nothing is listed, and the bounds are named')

  await new Promise((r) => setTimeout(r, 1_200))
  const human = await regatta(['runs', 'ls', '--stuck', '--max-waiting', '1s', '--ci', f.ci.url])
  t.equal(human.code, 0, human.stderr)
  const out = lines(human.stdout)
  t.match(out[0], /^RUN\s+JOB\s+STATE\s+FOR\s+BOUND PASSED\s+COMMIT$/, 'a table')
  const row = out.find((l) => l.includes('big/huge'))
  t.ok(row, `the waiting job is listed:\n${human.stdout}`)
  t.match(row!, new RegExp(`^${runId}\\s+big/huge\\s+waiting\\s+\\d+s\\s+waiting for resources > 1s\\s+\\S+ main ${sha.slice(0, 7)}$`), 'run, job, state, how long, the bound passed, the commit')
  t.notOk(out.some((l) => l.includes('big/small')), 'the job that ran is not')
  t.match(human.stdout, /1 past its bound \(bounds: waiting 1s, /, 'the count and the bounds applied')

  const json = await regatta(['runs', 'ls', '--stuck', '--max-waiting', '1s', '--json', '--ci', f.ci.url])
  t.equal(json.code, 0, json.stderr)
  const items = JSON.parse(json.stdout) as StuckItem[]
  t.equal(items.length, 1, json.stdout)
  t.match(items[0], { runId, jobId: 'big/huge', state: 'waiting', bound: 'waiting', boundMs: 1_000, sha })
  t.ok(items[0]!.forMs > 1_000, `waiting for ${items[0]!.forMs} ms`)
  t.match(items[0]!.description, /waiting for resources for \d+s \(bound 1s\)/)

  // the same through the API, with the runs concerned
  const api = await (await fetch(`${f.ci.url}/api/v1/runs?stuck=true&maxWaitingMs=1000`)).json() as { stuck: StuckItem[]; runs: Array<{ runId: string }>; bounds: Record<string, number> }
  t.same(api.stuck.map((x) => x.jobId), ['big/huge'])
  t.same(api.runs.map((r) => r.runId), [runId], 'with the run it belongs to')
  t.match(api.bounds, { maxWaitingMs: 1_000, maxStartingMs: 11 * 60_000, maxIdleMs: 5 * 60_000, timeoutGraceMs: 60_000 })
})

t.test('Checks that bad --stuck bounds are refused in one line with exit 2, and a bad stuck query with 400', async (t) => {
  for (const [args, why] of [
    [['--stuck', '--max-waiting', 'soon'], /--max-waiting: "soon" is not a duration/],
    [['--max-waiting', '1m'], /--max-waiting: only with --stuck/],
    [['--stuck', '--max-idle', '0s'], /--max-idle: "0s" must be from 1ms to 30d/],
  ] as const) {
    const r = await regatta(['runs', 'ls', ...args, '--ci', f.ci.url])
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.equal(lines(r.stderr).length, 1, r.stderr)
    t.match(r.stderr, why)
  }
  const res = await fetch(`${f.ci.url}/api/v1/runs?stuck=maybe`)
  t.equal(res.status, 400)
  const body = await res.json() as { error: { code: string; message: string } }
  t.equal(body.error.code, 'INVALID_MESSAGE')
  t.match(body.error.message, /stuck/, 'the message names the parameter')
})
