// From zero with the CI service: a pool at min 0 (`elastic`, no agent), a pipeline whose job
// asks for that pool, and a signed push. The CI service tells the master what the waiting job
// needs (REQUEST), the scaler starts an agent through the `process` provider, the job runs on
// it, and after the pool's idle timeout the agent is drained and stopped.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { Scaler } from '../../../services/scaler/src/scaler.js'
import { PoolStore } from '../../../services/scaler/src/pool-store.js'
import { ProcessProvider } from '../../../services/scaler/src/providers/process.js'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'

const POOL = 'elastic'
let f: CiFixture
let provider: ProcessProvider
let scaler: Scaler
let baseDir: string

t.before(async () => {
  // the fixture's own agent is in pool `default`: the job's pool starts empty
  f = await startCiFixture({ containerizer: 'process' })
  baseDir = await mkdtemp(join(tmpdir(), 'regatta-scaler-ci-'))
  provider = new ProcessProvider({
    natsUrl: f.cluster.nats.url, baseDir, logger: silentLogger(), containerizer: 'process', logLevel: 'warn',
    resources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]', stopGraceMs: 2_000,
  })
  await (await PoolStore.open(await f.cluster.connect('pool-set'))).put({ pool: POOL, min: 0, max: 2, idleMs: 1_500, provider: 'process' })
  scaler = new Scaler({
    nc: await f.cluster.connect('scaler'), logger: silentLogger(), providers: [provider], intervalMs: 100,
    policy: { cooldownMs: 500 },
  })
  await scaler.start()
})
t.teardown(async () => {
  await scaler?.stop()
  await provider?.stopAll()
  await f?.stop()
  if (baseDir) await rm(baseDir, { recursive: true, force: true })
})

const PIPELINE = `
name: ci
on:
  push: { branches: [main] }
jobs:
  build:
    pool: ${POOL}
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo "built $(cat src.txt) on the elastic pool"
`

t.test('Checks that a signed push to a pool at zero starts an agent through the process provider, the job runs, and the idle agent is stopped', async (t) => {
  t.same(await provider.list(), [], 'the pool is at zero')
  const sha = await f.repo.commit({ '.regatta/ci.yml': PIPELINE, 'src.txt': 'from-zero' })
  const res = await f.push(sha)
  t.equal(res.status, 202, await res.text())
  const run = await f.waitForRun({ sha }, undefined, 60_000)
  t.equal(run.state, 'succeeded', `${run.error ?? ''} ${JSON.stringify(run.jobs)}`)
  t.match(await f.jobLog(run.runId, 'ci/build'), /built from-zero on the elastic pool/)
  t.match(scaler.history.filter((a) => a.type === 'START'), [{ pool: POOL, count: 1, reason: 'demand', ok: true }], 'one agent started for the waiting job')

  const deadline = Date.now() + 20_000
  while ((await provider.list()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  t.same(await provider.list(), [], 'the agent is gone after the idle timeout')
  t.match(scaler.history.filter((a) => a.type !== 'START'), [{ type: 'DRAIN', reason: 'idle' }, { type: 'STOP', reason: 'drained' }], 'drained, then stopped')
})
