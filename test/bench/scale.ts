// Benchmark `scale`: the scaler with the `process` provider (agents as `regatta agent` child
// processes) on a real nats-server and master (default settings), driven by a framework that
// sends REQUEST for what it has queued (test/integration/scaler/queue-framework.ts).
//   from zero: a pool at zero, 20 times: a task submitted -> its command running (RUNNING), the
//              agent started for it by the scaler; the pool goes back to zero between tries
//   burst:     100 one-second tasks, pool from zero, max 5 agents of one task each: submitted ->
//              last one finished, against the ideal 100 / 5 = 20 s
// Both with the agents' Docker containerizer (what `regatta dev` uses when an engine answers)
// and with their process containerizer. Scaler: default interval (250 ms); no cooldown and a
// short idle timeout in the from-zero part so that each try starts from zero quickly.
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../shared/log/index.js'
import type { PoolPolicy } from '../../shared/protocol/pool.js'
import { Scaler } from '../../services/scaler/src/scaler.js'
import { PoolStore } from '../../services/scaler/src/pool-store.js'
import { ProcessProvider, REGATTA_BIN } from '../../services/scaler/src/providers/process.js'
import { shellTask, startCluster, type TestCluster } from '../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../helpers/docker.js'
import { clusterState } from '../helpers/processes.js'
import { QueueFramework } from '../integration/scaler/queue-framework.js'

const TRIES = Number(process.env.BENCH_TRIES ?? 20)
const BURST = Number(process.env.BENCH_BURST ?? 100)
const MAX = 5

type Containerizer = 'docker' | 'process'

interface Rig {
  cluster: TestCluster
  provider: ProcessProvider
  scaler: Scaler
  qf: QueueFramework
  stop(): Promise<void>
}

async function rig(containerizer: Containerizer, policy: PoolPolicy, cooldownMs?: number): Promise<Rig> {
  const cluster = await startCluster()
  await cluster.startMaster('bench-master', {})
  const baseDir = await mkdtemp(join(tmpdir(), 'regatta-bench-scale-'))
  const provider = new ProcessProvider({
    natsUrl: cluster.nats.url, baseDir, logger: silentLogger(), containerizer, logLevel: 'warn',
    resources: 'cpus:1;mem:512;disk:1000;ports:[31000-31010]', stopGraceMs: 2_000,
  })
  await (await PoolStore.open(await cluster.connect('bench'))).put(policy)
  const scaler = new Scaler({
    nc: await cluster.connect('scaler'), logger: silentLogger(), providers: [provider],
    ...(cooldownMs !== undefined ? { policy: { cooldownMs } } : {}),
  })
  await scaler.start()
  const fw = await cluster.framework({ name: 'bench-scale' })
  const qf = new QueueFramework(fw, {
    pool: policy.pool, resources: { cpus: 1, mem: 256 },
    task: (id) => shellTask(id, id.startsWith('burst') ? 'sleep 1' : 'true'),
  })
  qf.start()
  return {
    cluster, provider, scaler, qf,
    async stop() {
      qf.stop()
      await fw.scheduler.teardown().catch(() => undefined)
      await scaler.stop()
      await provider.stopAll()
      await cluster.stop()
      await rm(baseDir, { recursive: true, force: true })
    },
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!
}

/** Until no agent of the pool takes work and no instance runs (stopping ones may still exit). */
async function atZero(r: Rig, pool: string, timeoutMs = 30_000): Promise<void> {
  const nc = await r.cluster.connect('bench-watch')
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const running = (await r.provider.list()).filter((i) => i.state === 'running').length
    const active = (await clusterState(nc)).agents.filter((a) => a.pool === pool && (a.state === 'active' || a.state === 'recovering')).length
    if (running === 0 && active === 0) return
    if (Date.now() > deadline) throw new Error(`pool ${pool} did not go back to zero in ${timeoutMs} ms`)
    await sleep(50)
  }
}

async function fromZero(containerizer: Containerizer): Promise<number[]> {
  const pool = `zero-${containerizer}`
  const r = await rig(containerizer, { pool, min: 0, max: MAX, idleMs: 200, provider: 'process' }, 0)
  try {
    const ms: number[] = []
    for (let i = 0; i < TRIES; i++) {
      await atZero(r, pool)
      const id = `zero-${i}`
      r.qf.submit(id)
      await r.qf.until(`${id} running`, () => r.qf.runningAt.has(id), 30_000)
      ms.push(r.qf.runningAt.get(id)! - r.qf.submittedAt.get(id)!)
      await r.qf.until(`${id} to end`, () => r.qf.ended.has(id), 30_000)
      if (r.qf.ended.get(id)!.state !== 'FINISHED') throw new Error(`${id} ended ${r.qf.ended.get(id)!.state}`)
    }
    return ms
  } finally {
    await r.stop()
  }
}

async function burst(containerizer: Containerizer): Promise<{ seconds: number; maxAgents: number }> {
  const pool = `burst-${containerizer}`
  const r = await rig(containerizer, { pool, min: 0, max: MAX, idleMs: 10_000, provider: 'process' })
  try {
    let maxAgents = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        maxAgents = Math.max(maxAgents, (await r.provider.list()).filter((i) => i.state !== 'exited').length)
        await sleep(100)
      }
    })()
    const ids = Array.from({ length: BURST }, (_, i) => `burst-${i}`)
    const t0 = Date.now()
    r.qf.submit(...ids)
    await r.qf.until(`${BURST} tasks to end`, () => r.qf.ended.size === BURST, 120_000)
    const seconds = (Date.now() - t0) / 1000
    sampling = false
    await sampler
    if (r.qf.done !== BURST) throw new Error(`only ${r.qf.done} of ${BURST} finished`)
    return { seconds, maxAgents }
  } finally {
    await r.stop()
  }
}

export async function run(): Promise<void> {
  execFileSync(process.execPath, [REGATTA_BIN, '--help'], { stdio: 'ignore' }) // the CLI bundle, built once
  const containerizers: Containerizer[] = []
  if (await dockerAvailable()) {
    await ensureBusyboxImage()
    containerizers.push('docker')
  } else {
    process.stdout.write('no Docker engine answers: process containerizer only\n')
  }
  containerizers.push('process')
  const out: Record<string, number | string> = {}
  const ideal = BURST / MAX
  for (const cz of containerizers) {
    const ms = await fromZero(cz)
    process.stdout.write(`from zero (${cz} containerizer), ${ms.length} tries: p50 ${pct(ms, 0.5)} ms, p90 ${pct(ms, 0.9)} ms, min ${Math.min(...ms)} ms, max ${Math.max(...ms)} ms\n`)
    const b = await burst(cz)
    process.stdout.write(`burst (${cz} containerizer): ${BURST} one-second tasks, max ${MAX} agents: ${b.seconds.toFixed(1)} s (ideal ${ideal} s, ${(b.seconds / ideal).toFixed(2)}x), at most ${b.maxAgents} agents\n`)
    if (!('from_zero_p50_ms' in out)) {
      Object.assign(out, { from_zero_p50_ms: pct(ms, 0.5), burst100_s: Number(b.seconds.toFixed(1)), ideal_s: ideal, containerizer: cz })
    } else {
      Object.assign(out, { [`from_zero_p50_ms_${cz}`]: pct(ms, 0.5), [`burst100_s_${cz}`]: Number(b.seconds.toFixed(1)) })
    }
  }
  process.stdout.write(`${JSON.stringify({ bench: 'scale', ...out })}\n`)
}
