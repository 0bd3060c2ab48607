// End to end: a signed push webhook runs the repository's pipeline on a real master, Docker
// agent and nats-server; commit statuses reach a local stand-in for GitHub's API.
import t from 'tap'
import type { RunView } from '../../services/ci/src/views.js'
import { ensureBusyboxImage } from '../helpers/docker.js'
import { pushPayload, webhookHeaders } from '../helpers/github-api.js'
import { startCiFixture, type CiFixture } from '../helpers/ci.js'

await ensureBusyboxImage()

let f: CiFixture
let ci: CiFixture['ci']
let api: CiFixture['api']
let repo: CiFixture['repo']

t.before(async () => {
  f = await startCiFixture({
    containerizer: 'docker', agentResources: 'cpus:4;mem:4096;disk:10000',
    ci: { githubToken: 'test-token', publicUrl: 'http://ci.example.test' },
  })
  ;({ ci, api, repo } = f)
})
t.teardown(() => f?.stop())

const push = (sha: string, deliveryId?: string): Promise<Response> => f.push(sha, deliveryId ? { deliveryId } : {})
const waitForRun = (sha: string, done: (state: string) => boolean, timeoutMs = 60_000): Promise<RunView> => f.waitForRun({ sha }, (r) => done(r.state), timeoutMs)

const PIPELINE = `
name: ci
on:
  push: { branches: [main] }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    cache: { key: "deps-\${{ hashFiles('src.txt') }}", paths: [deps] }
    artifacts: [out/]
    steps:
      - name: deps
        run: if [ -f deps/fetched ]; then echo deps from cache; else mkdir -p deps && echo yes > deps/fetched && echo deps fetched; fi
      - name: compile
        run: mkdir -p out && echo built > out/app.txt && echo "compiled $(cat src.txt)"
  test:
    needs: [build]
    matrix: { shard: [1, 2] }
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    services:
      web:
        image: regatta/busybox:latest
        command: [httpd, -f, -p, "9000", -h, /etc]
    steps:
      - run: echo "testing shard \${{ matrix.shard }} of $(cat src.txt)"
      - name: service
        run: for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O /dev/null http://web:9000/hostname && break; sleep 0.3; done && echo service answered
  report:
    needs: [test]
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo report for \${{ github.sha }}
`

t.test('Checks that a signed push runs the DAG with its matrix and reports pending then success per context', async (t) => {
  const sha = await repo.commit({ '.regatta/ci.yml': PIPELINE, 'src.txt': 'hello-source' })
  const res = await push(sha, 'delivery-1')
  t.equal(res.status, 202, await res.text())
  const again = await push(sha, 'delivery-1')
  t.equal(again.status, 200, 'a redelivery is accepted but starts nothing')

  const run = await waitForRun(sha, (s) => ['succeeded', 'failed', 'error', 'cancelled'].includes(s))
  t.equal(run.state, 'succeeded', JSON.stringify(run.jobs))
  t.same(run.jobs.map((j) => j.id).sort(), ['ci/build', 'ci/report', 'ci/test (shard=1)', 'ci/test (shard=2)'])

  const { runs } = await (await fetch(`${ci.url}/api/v1/runs`)).json() as { runs: Array<{ sha: string }> }
  t.equal(runs.filter((r) => r.sha === sha).length, 1, 'one run for the delivery')

  // statuses: every context went pending, then success, and links to the run
  const deadline = Date.now() + 10_000
  let statuses = api.statuses('octo/app', sha)
  while (statuses.filter((s) => s.state === 'success').length < 4 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
    statuses = api.statuses('octo/app', sha)
  }
  for (const context of ['regatta/ci/build', 'regatta/ci/test (shard=1)', 'regatta/ci/test (shard=2)', 'regatta/ci/report']) {
    const states = statuses.filter((s) => s.context === context).map((s) => s.state)
    t.equal(states[0], 'pending', `${context} starts pending`)
    t.equal(states[states.length - 1], 'success', `${context} ends success`)
  }
  t.ok(statuses.every((s) => s.authorization === 'token test-token' || s.authorization === 'Bearer test-token'), 'with the token')
  t.ok(statuses.every((s) => s.target_url?.startsWith(`http://ci.example.test/runs/${run.runId}`)), 'linking to the run')

  // the logs are complete and in order
  const buildLog = await (await fetch(`${ci.url}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent('ci/build')}/log`)).text()
  t.match(buildLog, /::regatta step 2 compile\ncompiled hello-source/)
  const shardLog = await (await fetch(`${ci.url}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent('ci/test (shard=2)')}/log`)).text()
  t.match(shardLog, /testing shard 2 of hello-source/)
  t.match(shardLog, /service answered/, 'the sidecar service answered by its name')
  t.match(buildLog, /deps fetched/, 'the first run fills the cache')

  // artifacts: the build's out/ as a tar.gz
  const art = await fetch(`${ci.url}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent('ci/build')}/artifacts`)
  t.equal(art.status, 200)
  t.equal(art.headers.get('content-type'), 'application/gzip')
  const bytes = Buffer.from(await art.arrayBuffer())
  const { gunzipSync } = await import('node:zlib')
  t.match(gunzipSync(bytes).toString('latin1'), /out\/app\.txt[\s\S]*built/, 'the archive holds out/app.txt')
  t.equal((await fetch(`${ci.url}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent('ci/report')}/artifacts`)).status, 404, 'a job without artifacts has none')

  // a second push of the same sources restores the cache
  const sha2 = await repo.commit({ 'other.txt': 'x' })
  t.equal((await push(sha2)).status, 202)
  const run2 = await waitForRun(sha2, (s) => ['succeeded', 'failed', 'error', 'cancelled'].includes(s))
  t.equal(run2.state, 'succeeded')
  const buildLog2 = await (await fetch(`${ci.url}/api/v1/runs/${run2.runId}/jobs/${encodeURIComponent('ci/build')}/log`)).text()
  t.match(buildLog2, /deps from cache/, 'the next run finds the cache restored')

  const reportLog = await (await fetch(`${ci.url}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent('ci/report')}/log`)).text()
  t.match(reportLog, new RegExp(`report for ${sha}`))
})

t.test('Checks that a failing step gives failure and its output, and its dependents are skipped', async (t) => {
  const sha = await repo.commit({
    '.regatta/ci.yml': `
name: ci
on: { push: { branches: [main] } }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - name: fine
        run: echo all good
      - name: broken
        run: echo about to fail >&2; exit 3
  after:
    needs: [build]
    image: regatta/busybox:latest
    steps: [{ run: echo never }]
`,
  })
  t.equal((await push(sha)).status, 202)
  const run = await waitForRun(sha, (s) => ['succeeded', 'failed', 'error'].includes(s))
  t.equal(run.state, 'failed')
  const build = run.jobs.find((j) => j.id === 'ci/build')!
  t.equal(build.state, 'failed')
  t.equal(build.exitCode, 3)
  t.equal(run.jobs.find((j) => j.id === 'ci/after')!.state, 'skipped')
  const log = await (await fetch(`${ci.url}/api/v1/runs/${run.runId}/jobs/ci%2Fbuild/log`)).text()
  t.match(log, /all good/)
  t.match(log, /about to fail/)
  t.match(log, /step 2 failed with exit code 3/)
  const deadline = Date.now() + 10_000
  while (!api.statuses('octo/app', sha).some((s) => s.context === 'regatta/ci/build' && s.state === 'failure') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
  }
  t.ok(api.statuses('octo/app', sha).some((s) => s.context === 'regatta/ci/build' && s.state === 'failure'), 'failure reported')
})

t.test('Checks that an invalid pipeline ends the run error with a status naming file:line', async (t) => {
  const sha = await repo.commit({ '.regatta/ci.yml': 'name: ci\non: { push: {} }\njobs:\n  a:\n    image: x\n    needs: [nope]\n    steps: [{ run: "true" }]\n' })
  t.equal((await push(sha)).status, 202)
  const run = await waitForRun(sha, (s) => ['succeeded', 'failed', 'error'].includes(s))
  t.equal(run.state, 'error')
  t.match(run.error, /\.regatta\/ci\.yml:6:\d+: .*nope/)
  const deadline = Date.now() + 10_000
  let errs = api.statuses('octo/app', sha).filter((s) => s.state === 'error')
  while (errs.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
    errs = api.statuses('octo/app', sha).filter((s) => s.state === 'error')
  }
  t.match(errs[0]?.description, /\.regatta\/ci\.yml:6/)
})

t.test('Checks that a forged signature gets 401 and starts nothing', async (t) => {
  const before = ((await (await fetch(`${ci.url}/api/v1/runs`)).json()) as { runs: unknown[] }).runs.length
  const body = JSON.stringify(pushPayload({ repo: 'octo/app', cloneUrl: repo.url, branch: 'main' }))
  const res = await fetch(`${ci.url}/webhooks/github`, { method: 'POST', headers: webhookHeaders({ event: 'push', body, secret: 'wrong' }), body })
  t.equal(res.status, 401)
  const after = ((await (await fetch(`${ci.url}/api/v1/runs`)).json()) as { runs: unknown[] }).runs.length
  t.equal(after, before)
})
