// A provider instance left behind that never registered an agent (a machine that booted
// without its agent, a process another scaler started and forgot) is terminated by the scaler
// within its register deadline and one interval: nothing keeps running, and paying, unseen.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { Scaler } from '../../../services/scaler/src/scaler.js'
import { PoolStore } from '../../../services/scaler/src/pool-store.js'
import { ProcessProvider } from '../../../services/scaler/src/providers/process.js'
import { fastMasterConfig, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

const REGISTER_DEADLINE_MS = 1_500
const INTERVAL_MS = 200

let cluster: TestCluster
let baseDir: string
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster('m1', fastMasterConfig)
  baseDir = await mkdtemp(join(tmpdir(), 'regatta-scaler-stale-'))
})
t.teardown(async () => {
  await cluster?.stop()
  await rm(baseDir, { recursive: true, force: true })
})

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('Checks that an instance that never registered an agent is stopped once past its register deadline, within a few scaler intervals', async (t) => {
  // the instance a previous scaler recorded: a process that will never register an agent
  const id = 'stale-0001'
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)', `instance:${id}`], { detached: true, stdio: 'ignore' })
  child.unref()
  t.teardown(() => { if (alive(child.pid!)) process.kill(-child.pid!, 'SIGKILL') })
  await mkdir(join(baseDir, id))
  const startedAt = Date.now()
  await writeFile(join(baseDir, id, 'instance.json'), JSON.stringify({ id, pool: 'stale', startedAt, pid: child.pid }))

  const provider = new ProcessProvider({ natsUrl: cluster.nats.url, baseDir, logger: silentLogger(), containerizer: 'process', logLevel: 'warn' })
  const store = await PoolStore.open(await cluster.connect('store'))
  await store.put({ pool: 'stale', min: 0, max: 2, idleMs: 60_000, provider: 'process' })
  const scaler = new Scaler({
    nc: await cluster.connect('scaler'), logger: silentLogger(), providers: [provider], intervalMs: INTERVAL_MS, leaseTtlMs: 2_000,
    policy: { registerDeadlineMs: REGISTER_DEADLINE_MS, agentLostMs: 5_000, cooldownMs: 500 },
  })
  t.teardown(async () => {
    await scaler.stop()
    await provider.stopAll()
  })
  await scaler.start()

  t.same((await provider.list()).map((i) => i.id), [id], 'the scaler found the recorded instance')
  await waitUntil('the stale instance to be stopped', () => !alive(child.pid!), REGISTER_DEADLINE_MS + 10 * INTERVAL_MS + 5_000, 50)
  const tookMs = Date.now() - startedAt
  t.ok(tookMs <= REGISTER_DEADLINE_MS + 10 * INTERVAL_MS + 5_000, `its process is gone ${tookMs} ms after it started (deadline ${REGISTER_DEADLINE_MS} ms)`)
  t.ok(tookMs >= REGISTER_DEADLINE_MS, 'not before its register deadline')
  t.match(scaler.history.find((a) => a.type === 'STOP'), { instanceId: id, reason: 'never-registered', ok: true }, 'stopped for never registering')
  await waitUntil('the provider to forget it', async () => (await provider.list()).length === 0, 5_000, 50)
  t.pass('and the provider lists nothing')
  t.notOk(scaler.history.some((a) => a.type === 'START'), 'nothing was started in its place (min 0, no demand)')
})
