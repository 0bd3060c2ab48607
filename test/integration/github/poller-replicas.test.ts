// The head poller with two CI services and across restarts: two replicas polling the same
// GitHub API (the local stand-in) start each missed head's run once; a head that moved while no
// replica ran is built at the next one's start; a claim whose replica died while planning is
// taken over once stale. Real master, agent and nats-server; only GitHub's API is a stand-in.
import t from 'tap'
import { silentLogger } from '../../../shared/log/index.js'
import { httpAuthFrom } from '../../../shared/http/index.js'
import { ManualClock } from '../../../shared/clock/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { runCi, type RunningCi } from '../../../services/ci/src/main.js'
import { HeadLedger } from '../../../services/ci/src/github/index.js'
import type { Trigger } from '../../../services/ci/src/trigger.js'
import type { RunView } from '../../../services/ci/src/views.js'
import { startCluster, type TestCluster } from '../../helpers/cluster.js'
import { fakeSha, pushPayload, startFakeGitHubApi, webhookHeaders, type FakeGitHubApi } from '../../helpers/github-api.js'
import { createRepo, type TestRepo } from '../../helpers/git-repo.js'
import { waitUntil } from '../../helpers/wait.js'

const INTERVAL_MS = 500
const SECRET = 'replicas-secret'
const PIPELINE = `
name: ci
on: { push: { branches: [main, "feature/*"] } }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.1, mem: 32 }
    steps:
      - run: cat n.txt
`

let cluster: TestCluster
let api: FakeGitHubApi
let repo: TestRepo
const replicas: RunningCi[] = []

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }) })
  api = await startFakeGitHubApi({ token: 'test-token' })
  repo = await createRepo()
})
t.teardown(async () => {
  for (const r of replicas.splice(0)) await r.stop().catch(() => undefined)
  await cluster?.stop()
  await api?.close()
  await repo?.remove()
})

async function replica(): Promise<RunningCi> {
  const ci = await runCi({
    natsUrl: cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, webhookSecret: SECRET, githubApiUrl: api.url,
    githubToken: 'test-token', githubPollIntervalMs: INTERVAL_MS, logger: silentLogger(), auth: httpAuthFrom({ openReads: true }, {}),
  })
  replicas.push(ci)
  return ci
}
async function stopAll(): Promise<void> {
  for (const r of replicas.splice(0)) await r.stop()
}
const runsOf = async (ci: RunningCi, sha: string): Promise<RunView[]> =>
  ((await (await fetch(`${ci.url}/api/v1/runs?limit=1000`)).json()) as { runs: RunView[] }).runs.filter((r) => r.sha === sha)
const branchCalls = (): number => api.calls.filter((c) => c.path === '/repos/octo/app/branches' && (c.status === 200 || c.status === 304)).length
async function push(ci: RunningCi, sha: string): Promise<number> {
  const body = JSON.stringify(pushPayload({ repo: 'octo/app', cloneUrl: repo.url, after: sha, branch: 'main' }))
  return (await fetch(`${ci.url}/webhooks/github`, { method: 'POST', body, headers: webhookHeaders({ event: 'push', body, secret: SECRET }) })).status
}

t.test('Checks that two replicas polling the same API start the run of each missed head once', async (t) => {
  const [a, b] = [await replica(), await replica()]
  const s0 = await repo.commit({ '.regatta/ci.yml': PIPELINE, 'n.txt': 'zero' })
  api.setBranches('octo/app', [{ name: 'main', sha: s0 }])
  t.equal(await push(a, s0), 202, 'the repository becomes known through a webhook to one replica')
  await waitUntil('the webhook run', async () => (await runsOf(b, s0)).length > 0, 20_000)
  const before = branchCalls()
  await waitUntil('both replicas polling', () => branchCalls() >= before + 4 && a.poller!.stats().passes > 1 && b.poller!.stats().passes > 1, 10_000, 20)

  const heads: Array<{ name: string; sha: string }> = []
  for (let i = 1; i <= 6; i++) heads.push({ name: `feature/${i}`, sha: await repo.commit({ 'n.txt': `head ${i}` }) })
  api.setBranches('octo/app', [{ name: 'main', sha: s0 }, ...heads])
  await waitUntil('a run for each new head', async () => {
    for (const h of heads) if ((await runsOf(a, h.sha)).length === 0) return false
    return true
  }, 20_000, 50)
  const after = branchCalls()
  await waitUntil('more polls by both', () => branchCalls() >= after + 6, 10_000, 20)
  for (const h of heads) t.equal((await runsOf(b, h.sha)).length, 1, `one run for ${h.name}`)
  const started = a.poller!.stats().started + b.poller!.stats().started
  t.equal(started, heads.length, `the replicas started ${a.poller!.stats().started} and ${b.poller!.stats().started}: ${heads.length} in all`)
  t.equal((await runsOf(a, s0)).length, 1, 'the webhook\'s head was not built again')
  t.ok(api.calls.some((c) => c.status === 304), 'unchanged pages were answered 304 (ETag), costing no rate limit')
})

t.test('Checks that a head that moved while no replica ran is built when the next one starts', async (t) => {
  await stopAll()
  const moved = await repo.commit({ 'n.txt': 'while down' })
  api.setBranches('octo/app', [{ name: 'main', sha: moved }])
  const at = Date.now()
  const c = await replica()
  await waitUntil('the run of the moved head', async () => (await runsOf(c, moved)).length > 0, 10_000, 50)
  t.ok(Date.now() - at < 5_000, `built ${Date.now() - at} ms after starting a replica, its startup included (its first poll is at start)`)
  t.equal(c.poller!.stats().started, 1)
  t.equal((await runsOf(c, moved)).length, 1)
})

t.test('Checks that a claim whose replica died before its run existed is taken over once stale, and only then', async (t) => {
  await stopAll()
  const clock = new ManualClock(Date.now())
  const open = async (): Promise<HeadLedger> => HeadLedger.open({ nc: await cluster.connect('ledger'), logger: silentLogger(), clock, staleClaimMs: 60_000 })
  const [dead, alive] = [await open(), await open()]
  const trigger: Trigger = {
    kind: 'push', ref: 'refs/heads/feature/crash', sha: fakeSha('crash'), branch: 'feature/crash', actor: 'unknown',
    repo: { fullName: 'octo/other', cloneUrl: repo.url, defaultBranch: 'main', private: false },
  }
  t.equal(await dead.tryClaim(trigger, 'poll'), true, 'one replica claims the head, then dies while planning')
  t.equal(await alive.tryClaim(trigger, 'poll'), false, 'the claim holds while fresh')
  t.equal(await alive.claim(trigger), false, 'the webhook path is refused too')
  clock.advance(61_000)
  t.equal(await alive.tryClaim(trigger, 'poll'), true, 'stale: taken over')
  t.equal(await dead.tryClaim(trigger, 'poll'), false, 'by one only')
  await alive.markStarted(trigger, 'r-test', 'poll')
  clock.advance(3_600_000)
  t.equal(await dead.tryClaim(trigger, 'poll'), false, 'a started claim is never taken over')
  t.match(await alive.claimOf(trigger), { state: 'started', runId: 'r-test' })
  const record = (await alive.repos()).find((r) => r.record.repo.fullName === 'octo/other')
  t.equal(record?.record.heads['refs/heads/feature/crash'], trigger.sha, 'the webhook path remembered the repository; the run recorded the head')
})
