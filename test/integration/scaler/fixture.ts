// The scaler's test fixture: a real nats-server and master (test/helpers/cluster), a pool
// policy in KV, the scaler with the `process` provider (agents as `regatta agent` child
// processes), and a sampler of how many agents the pool has at any moment.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import { silentLogger } from '../../../shared/log/index.js'
import type { PoolPolicy } from '../../../shared/protocol/pool.js'
import type { PolicyConfig } from '../../../services/scaler/src/policy.js'
import { Scaler } from '../../../services/scaler/src/scaler.js'
import { PoolStore } from '../../../services/scaler/src/pool-store.js'
import { ProcessProvider } from '../../../services/scaler/src/providers/process.js'
import { fastMasterConfig, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { clusterState } from '../../helpers/processes.js'

export interface ScalerFixture {
  cluster: TestCluster
  provider: ProcessProvider
  scaler: Scaler
  store: PoolStore
  nc: NatsConnection
  baseDir: string
  stop(): Promise<void>
}

export interface ScalerFixtureOptions {
  policy: PoolPolicy
  /** The started agents' --resources. */
  agentResources: string
  intervalMs?: number
  config?: Partial<PolicyConfig>
  containerizer?: 'docker' | 'process'
}

export async function startScalerFixture(o: ScalerFixtureOptions): Promise<ScalerFixture> {
  const cluster = await startCluster()
  await cluster.startMaster('m1', fastMasterConfig)
  const baseDir = await mkdtemp(join(tmpdir(), 'regatta-scaler-'))
  const provider = new ProcessProvider({
    natsUrl: cluster.nats.url, baseDir, logger: silentLogger(), containerizer: o.containerizer ?? 'process', logLevel: 'warn',
    resources: o.agentResources,
  })
  const nc = await cluster.connect('fixture')
  const store = await PoolStore.open(nc)
  await store.put(o.policy)
  const scaler = new Scaler({
    nc: await cluster.connect('scaler'), logger: silentLogger(), providers: [provider], intervalMs: o.intervalMs ?? 100, leaseTtlMs: 2_000,
    policy: { registerDeadlineMs: 20_000, agentLostMs: 5_000, cooldownMs: 500, ...o.config },
  })
  await scaler.start()
  return {
    cluster, provider, scaler, store, nc, baseDir,
    async stop() {
      await scaler.stop()
      await provider.stopAll()
      await cluster.stop()
      await rm(baseDir, { recursive: true, force: true })
    },
  }
}

/** Samples, every `everyMs`, the provider's live instances and the master's agents of the pool (not unreachable). */
export class PoolSampler {
  maxInstances = 0
  maxAgents = 0
  samples = 0
  private running = true
  private readonly loop: Promise<void>

  constructor(private readonly f: ScalerFixture, pool: string, everyMs = 50) {
    this.loop = (async () => {
      while (this.running) {
        const live = (await f.provider.list()).filter((i) => i.state !== 'exited').length
        const state = await clusterState(f.nc).catch(() => undefined)
        const agents = state?.agents.filter((a) => a.pool === pool && a.state !== 'unreachable').length ?? 0
        this.maxInstances = Math.max(this.maxInstances, live)
        this.maxAgents = Math.max(this.maxAgents, agents)
        this.samples++
        await new Promise((r) => setTimeout(r, everyMs))
      }
    })()
  }

  async stop(): Promise<void> {
    this.running = false
    await this.loop
  }
}

/** Waits until the provider has no instance left (back to min 0). */
export async function waitForNoInstances(f: ScalerFixture, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await f.provider.list()).length > 0) {
    if (Date.now() > deadline) throw new Error(`instances still running after ${timeoutMs} ms: ${JSON.stringify(await f.provider.list())}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
