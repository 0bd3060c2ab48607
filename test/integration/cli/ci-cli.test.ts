// The run commands of `regatta` as users run them (`node services/cli/bin/regatta.mjs ...`, real
// processes) against a real CI service on a real cluster (process containerizer, no Docker) and
// a local git repository: trigger, runs ls/show (human and --json), logs (whole and -f),
// cancel, rerun, pipeline validate, and bad arguments.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { RunView } from '../../../services/ci/src/views.js'
import { FINAL_RUN_STATES as FINAL, startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { REGATTA_BIN as BIN, regatta } from '../../helpers/cli.js'
import { freePort } from '../../helpers/nats-server.js'
import { waitUntil } from '../../helpers/wait.js'

/** The non-empty lines of a text. */
const lines = (s: string): string[] => s.split('\n').filter((l) => l.trim() !== '')


const PIPELINE = `
name: ci
on:
  push: { branches: [main] }
  manual: {}
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - name: compile
        run: echo "compiled $(cat src.txt)"
  test:
    needs: [build]
    matrix: { shard: [1, 2] }
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - name: unit
        run: echo "testing shard \${{ matrix.shard }}"
`

const SLOW = `
name: slow
on: { manual: {} }
jobs:
  talk:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - name: talk slowly
        run: echo first line; sleep 4; echo last line
`

const STUCK = `
name: stuck
on: { manual: {} }
jobs:
  wait:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo waiting; sleep 120
`

let f: CiFixture
let ci: CiFixture['ci']
let cluster: CiFixture['cluster']
let repo: CiFixture['repo']
let api: CiFixture['api']
let mainSha: string

t.before(async () => {
  f = await startCiFixture({ containerizer: 'process' })
  ;({ ci, cluster, repo, api } = f)
  mainSha = await repo.commit({ '.regatta/ci.yml': PIPELINE, 'src.txt': 'hello-source' })
  // the first run bundles the CLI (esbuild)
  await regatta(['--help'], { timeoutMs: 60_000 })
})
t.teardown(() => f?.stop())

const getRun = (runId: string): Promise<RunView> => f.getRun(runId)
const waitForRun = (runId: string, done: (r: RunView) => boolean, timeoutMs = 60_000): Promise<RunView> => f.waitForRun({ runId }, done, timeoutMs)

/** Starts a run with `regatta trigger` and returns its id (from the human output). */
async function trigger(sha: string): Promise<string> {
  const r = await regatta(['trigger', '--ci', ci.url, '--repo', repo.url, '--ref', 'main', '--sha', sha])
  if (r.code !== 0) throw new Error(`trigger failed: ${r.stderr}`)
  const id = /Started run (\S+)/.exec(r.stdout)?.[1]
  if (!id) throw new Error(`no run id in ${r.stdout}`)
  return id
}

let firstRun = ''

t.test('Checks that `regatta trigger` starts a run and prints its id, and --json gives the run', async (t) => {
  const r = await regatta(['trigger', '--ci', ci.url, '--repo', repo.url, '--ref', 'main'])
  t.equal(r.code, 0, r.stderr)
  t.equal(lines(r.stdout).length, 1, r.stdout)
  const id = /^Started run (r[0-9a-z]+) /.exec(r.stdout)?.[1]
  t.ok(id, `the id in: ${r.stdout}`)
  t.match(r.stdout, /3 jobs/)
  t.match(r.stdout, `${ci.url}/runs/${id}`, 'a link to its page')
  firstRun = id!
  const run = await waitForRun(firstRun, (x) => FINAL.includes(x.state))
  t.equal(run.state, 'succeeded', JSON.stringify(run.jobs))
  t.equal(run.sha, mainSha, 'the ref resolved to the commit')

  const json = await regatta(['trigger', '--json', '--ci', ci.url, '--repo', repo.url, '--ref', 'main', '--sha', mainSha])
  t.equal(json.code, 0, json.stderr)
  const view = JSON.parse(json.stdout) as RunView
  t.match(view.runId, /^r/)
  t.equal(view.sha, mainSha)
  t.equal(view.ref, 'refs/heads/main')
  t.same(view.jobs.map((j) => j.id), ['ci/build', 'ci/test (shard=1)', 'ci/test (shard=2)'])
  await waitForRun(view.runId, (x) => FINAL.includes(x.state))
})

t.test('Checks that `regatta runs ls` and `runs show` show the run, in human form and --json', async (t) => {
  const ls = await regatta(['runs', 'ls', '--ci', ci.url])
  t.equal(ls.code, 0, ls.stderr)
  const header = lines(ls.stdout)[0]!
  for (const col of ['RUN', 'REPO', 'REF', 'SHA', 'STATE', 'JOBS', 'AGE', 'DURATION']) t.match(header, col)
  const row = lines(ls.stdout).find((l) => l.startsWith(firstRun))
  t.ok(row, `a row for ${firstRun}: ${ls.stdout}`)
  t.match(row, /\bmain\b/)
  t.match(row, mainSha.slice(0, 7))
  t.notMatch(row, mainSha.slice(0, 8), 'the short sha')
  t.match(row, /succeeded/)
  t.match(row, /3\/3/, 'jobs ok/total')

  const lsJson = await regatta(['runs', 'ls', '--json', '--limit', '1', '--ci', ci.url])
  t.equal(lsJson.code, 0, lsJson.stderr)
  const runs = JSON.parse(lsJson.stdout) as RunView[]
  t.equal(runs.length, 1, '--limit 1')

  const show = await regatta(['runs', 'show', firstRun, '--ci', ci.url])
  t.equal(show.code, 0, show.stderr)
  t.match(show.stdout, new RegExp(`Run:\\s+${firstRun}`))
  t.match(show.stdout, /State:\s+succeeded/)
  t.match(show.stdout, mainSha)
  const jobRow = lines(show.stdout).find((l) => l.startsWith('ci/test (shard=2)'))
  t.ok(jobRow, show.stdout)
  t.match(jobRow, /succeeded\s+1\s+0\s/, 'state, attempt, exit code')
  t.match(jobRow, /success: /, 'the status and its description')

  const showJson = await regatta(['runs', 'show', firstRun, '--json', '--ci', ci.url])
  t.equal(showJson.code, 0, showJson.stderr)
  const view = JSON.parse(showJson.stdout) as RunView
  t.equal(view.runId, firstRun)
  t.equal(view.jobs.find((j) => j.id === 'ci/build')?.exitCode, 0)

  const missing = await regatta(['runs', 'show', 'rnope', '--ci', ci.url])
  t.equal(missing.code, 1)
  t.equal(lines(missing.stderr).length, 1, missing.stderr)
  t.match(missing.stderr, /^regatta: no run rnope/)
})

t.test('Checks that `regatta logs RUN/JOB` prints the job\'s output, a job id with / and spaces included, and RUN prints every job', async (t) => {
  const build = await regatta(['logs', `${firstRun}/ci/build`, '--ci', ci.url])
  t.equal(build.code, 0, build.stderr)
  t.match(build.stdout, /::regatta step 1 compile\ncompiled hello-source\n/)

  const shard = await regatta(['logs', `${firstRun}/ci/test (shard=2)`, '--ci', ci.url])
  t.equal(shard.code, 0, shard.stderr)
  t.match(shard.stdout, /testing shard 2/)
  t.notMatch(shard.stdout, /testing shard 1/)

  const all = await regatta(['logs', firstRun, '--ci', ci.url])
  t.equal(all.code, 0, all.stderr)
  const heads = lines(all.stdout).filter((l) => l.startsWith('==> '))
  t.same(heads, ['==> ci/build <==', '==> ci/test (shard=1) <==', '==> ci/test (shard=2) <=='], 'each job in order, headed by its id')
  t.match(all.stdout, /==> ci\/build <==\n::regatta step 1 compile\ncompiled hello-source/)
  t.match(all.stdout, /==> ci\/test \(shard=1\) <==\n::regatta step 1 unit\ntesting shard 1/)

  const json = await regatta(['logs', firstRun, '--json', '--ci', ci.url])
  t.equal(json.code, 0, json.stderr)
  const docs = lines(json.stdout).map((l) => JSON.parse(l) as { job: string; log: string })
  t.same(docs.map((d) => d.job), ['ci/build', 'ci/test (shard=1)', 'ci/test (shard=2)'])
  t.match(docs[0]!.log, /compiled hello-source/)

  const wrong = await regatta(['logs', `${firstRun}/ci/tset`, '--ci', ci.url])
  t.equal(wrong.code, 1)
  t.equal(lines(wrong.stderr).length, 1, wrong.stderr)
  t.match(wrong.stderr, /no job "ci\/tset".*ci\/test \(shard=1\)/, 'names the jobs there are')
})

t.test('Checks that `regatta logs -f` follows a running job live until it ends', async (t) => {
  const sha = await repo.commit({ '.regatta/slow.yml': SLOW })
  const runId = await trigger(sha)
  // the run holds every pipeline of the commit: wait for the slow one's job
  const talking = (r: { jobs: Array<{ id: string; state: string }> }): boolean => ['running', 'starting'].includes(r.jobs.find((j) => j.id === 'slow/talk')?.state ?? '')
  await waitForRun(runId, talking, 60_000)
  let firstAt = 0
  const r = await regatta(['logs', `${runId}/slow/talk`, '-f', '--ci', ci.url], {
    timeoutMs: 30_000,
    onStdout: (text) => { if (!firstAt && text.includes('first line')) firstAt = Date.now() },
  })
  const endedAt = Date.now()
  t.equal(r.code, 0, r.stderr)
  t.equal(r.signal, null, 'it ended by itself')
  t.match(r.stdout, /::regatta step 1 talk slowly\nfirst line\nlast line\n/)
  t.ok(firstAt > 0, 'the first line came')
  t.ok(endedAt - firstAt >= 1_000, `the first line came while the job was still running (${endedAt - firstAt} ms before the end)`)
  const run = await getRun(runId)
  t.equal(run.jobs[0]?.state, 'succeeded', 'the job had ended when logs -f did')

  // a job that ended long ago: -f prints it all and ends
  const again = await regatta(['logs', `${runId}/slow/talk`, '--follow', '--json', '--ci', ci.url])
  t.equal(again.code, 0, again.stderr)
  const chunks = lines(again.stdout).map((l) => JSON.parse(l) as { job: string; stream: string; data: string })
  t.ok(chunks.every((c) => c.job === 'slow/talk' && (c.stream === 'stdout' || c.stream === 'stderr')))
  t.match(chunks.map((c) => c.data).join(''), /first line\nlast line/)
})

t.test('Checks that `regatta runs cancel` ends a running run cancelled, and `runs rerun` makes a new run', async (t) => {
  const sha = await repo.commit({ '.regatta/stuck.yml': STUCK }, 'stuck')
  const runId = await trigger(sha)
  await waitForRun(runId, (r) => r.jobs.find((j) => j.id === 'stuck/wait')?.state === 'running', 60_000)
  await waitUntil('the job\'s first output', async () => /waiting/.test(await f.jobLog(runId, 'stuck/wait')), 20_000, 100)
  const r = await regatta(['runs', 'cancel', runId, '--ci', ci.url])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, new RegExp(`Cancel(led|ling) run ${runId}`))
  const run = await waitForRun(runId, (x) => FINAL.includes(x.state), 30_000)
  t.equal(run.state, 'cancelled')
  t.equal(run.jobs.find((j) => j.id === 'stuck/wait')?.state, 'cancelled')
  // the output written before the cancel stays, and the log says why it ended
  const log = await regatta(['logs', `${runId}/stuck/wait`, '--ci', ci.url])
  t.match(log.stdout, /waiting\n[^]*::regatta attempt 1 was cancelled/, log.stdout)

  const ended = await regatta(['runs', 'cancel', runId, '--ci', ci.url])
  t.equal(ended.code, 1, 'cancelling an ended run fails')
  t.equal(lines(ended.stderr).length, 1, ended.stderr)
  t.match(ended.stderr, /has ended/)

  const rerun = await regatta(['runs', 'rerun', firstRun, '--ci', ci.url])
  t.equal(rerun.code, 0, rerun.stderr)
  const newId = /^Started run (\S+) \(rerun of /.exec(rerun.stdout)?.[1]
  t.ok(newId, rerun.stdout)
  t.not(newId, firstRun, 'a new run')
  const again = await waitForRun(newId!, (x) => FINAL.includes(x.state))
  t.equal(again.sha, mainSha, 'of the same commit')
  t.equal(again.state, 'succeeded')
})

t.test('Checks that `regatta pipeline validate` exits 0 on a good file and 1 with file:line:col lines on a bad one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'regatta-validate-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'good.yml'), PIPELINE)
  await writeFile(join(dir, 'bad.yml'), 'name: bad\non: { push: {} }\njobs:\n  a:\n    image: x\n    needs: [nope]\n    steps: [{ run: "true" }]\n')

  const good = await regatta(['pipeline', 'validate', join(dir, 'good.yml')])
  t.equal(good.code, 0, good.stdout + good.stderr)
  t.match(good.stdout, /1 pipeline file checked: no errors/)

  const bad = await regatta(['pipeline', 'validate', join(dir, 'bad.yml'), join(dir, 'good.yml')])
  t.equal(bad.code, 1)
  t.match(bad.stdout, new RegExp(`^${join(dir, 'bad.yml').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:6:\\d+: .*nope`, 'm'), bad.stdout)
  t.match(bad.stdout, /2 pipeline files checked: 1 error in 1 file/)

  // no path: the current directory's .regatta/*.yml
  const here = await regatta(['pipeline', 'validate'], { cwd: repo.dir })
  t.equal(here.code, 0, here.stdout)
  t.match(here.stdout, /pipeline files checked: no errors/)
})

t.test('Checks that bad arguments exit 2 with a one-line message', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['runs', 'ls', '--limit', 'many', '--ci', ci.url], /--limit/],
    [['runs', 'ls', '--ci', 'not a url'], /--ci/],
    [['runs', 'show'], /id/],
    [['trigger', '--ref', 'main', '--ci', ci.url], /--repo/],
    [['trigger', '--repo', repo.url, '--ref', 'main', '--sha', 'abc', '--ci', ci.url], /--sha/],
    [['logs', '/ci/build', '--ci', ci.url], /RUN\/JOB/],
    [['runs', 'frobnicate'], /frobnicate/],
    [['ci', '--http', 'nowhere'], /--http/],
    [['ci', '--repo-weights', 'acme=2'], /--repo-weights: "acme=2" is not owner\/repo=<weight above 0>/],
    [['ci', '--repo-weights', 'acme/web=0'], /--repo-weights/],
    [['ci', '--reconcile-interval', 'soon'], /--reconcile-interval: "soon" is not a duration/],
    [['ci', '--cache-volume-ttl', 'x'], /--cache-volume-ttl/],
    [['ci', '--lease-ttl', '100ms'], /--lease-ttl: "100ms" is too short/],
  ]
  for (const [args, reason] of cases) {
    const r = await regatta(args)
    t.equal(r.code, 2, `${args.join(' ')}: exit ${r.code} ${r.stderr}`)
    t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr)}`)
    t.match(r.stderr, reason, args.join(' '))
    t.equal(r.stdout, '')
  }
})

t.test('Checks that `regatta ci` serves the runs API and UI on --http and stops on SIGTERM', async (t) => {
  const port = await freePort()
  const child = spawn(process.execPath, [BIN, 'ci', '--nats', cluster.nats.url, '--http', `127.0.0.1:${port}`, '--public-url', 'http://ci.example.test'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // reads need a token outside regatta dev: the fixture's, which the CLI finds in REGATTA_TOKEN
    env: { ...process.env, REGATTA_LOG_LEVEL: 'warn', REGATTA_WEBHOOK_SECRET: 'cli-secret', REGATTA_GITHUB_API_URL: api.url, REGATTA_OPERATOR_TOKEN: f.operatorToken },
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const url = `http://127.0.0.1:${port}`
  await waitUntil('regatta ci to answer', () => fetch(`${url}/health`).then((r) => r.ok, () => false), 60_000, 100)
    .catch((err: Error) => { throw new Error(`${err.message}: ${out}`) })
  const ls = await regatta(['runs', 'ls', '--json', '--ci', url])
  t.equal(ls.code, 0, ls.stderr)
  t.ok((JSON.parse(ls.stdout) as RunView[]).some((r) => r.runId === firstRun), 'the same runs (they live in NATS KV)')
  const page = await fetch(`${url}/runs/${firstRun}`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /text\/html/)
  t.match(await page.text(), /<title>Regatta CI<\/title>/)
  const hook = await fetch(`${url}/webhooks/github`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-github-event': 'ping' }, body: '{}' })
  t.equal(hook.status, 401, 'the webhook secret from REGATTA_WEBHOOK_SECRET is required')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exits 0 on SIGTERM')
})

t.test('Checks that the run commands fail with a one-line reason when no CI service answers', async (t) => {
  const r = await regatta(['runs', 'ls', '--ci', `http://127.0.0.1:${await freePort()}`])
  t.equal(r.code, 1)
  t.equal(lines(r.stderr).length, 1, r.stderr)
  t.match(r.stderr, /^regatta: cannot reach the CI service at http:\/\/127\.0\.0\.1:\d+ \(connection refused\)/)
})
