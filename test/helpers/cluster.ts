// A real cluster core for tests: a nats-server per test file, masters and agents in this
// process (each with its own NATS connection), and a framework that records its events.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import { connectNats } from '../../shared/nats/index.js'
import { isTerminal, type Offer, type TaskSpec, type TaskStatus, type FrameworkInfo } from '../../shared/protocol/index.js'
import { Scheduler, type SchedulerEvent } from '../../shared/scheduler/index.js'
import { silentLogger } from '../../shared/log/index.js'
import { parseResources } from '../../shared/resources/index.js'
import { Master, type MasterConfig } from '../../services/master/src/master.js'
import { runMaster, type RunningMaster } from '../../services/master/src/main.js'
import { httpAuthFrom, type HttpAuth, type HttpTls } from '../../shared/http/index.js'
import { Agent, type AgentOptions } from '../../services/agent/src/agent.js'
import type { Containerizer } from '../../services/agent/src/containerizer/types.js'
import type { OversubscriptionOptions } from '../../services/agent/src/oversubscription/index.js'
import { freePort, startNatsServer, type NatsServer } from './nats-server.js'

/** Short timeouts so that tests about timeouts run in seconds. */
export const fastMasterConfig: Partial<MasterConfig> = {
  heartbeatIntervalMs: 200,
  agentUnreachableMs: 1_500,
  agentGoneMs: 4_000,
  offerTimeoutMs: 10_000,
  frameworkInactiveMs: 3_000,
  allocationIntervalMs: 200,
  leaseTtlMs: 2_000,
}

export interface TestCluster {
  nats: NatsServer
  /** Started so far, in order. */
  masters: Master[]
  agents: Agent[]
  connect(name: string): Promise<NatsConnection>
  startMaster(id?: string, config?: Partial<MasterConfig>): Promise<Master>
  startAgent(o: { containerizer: Containerizer; resources?: string; pool?: string; id?: string; workDir?: string; oversubscription?: OversubscriptionOptions; options?: Partial<AgentOptions> }): Promise<Agent>
  framework(info?: Partial<FrameworkInfo>): Promise<RecordingFramework>
  stop(): Promise<void>
}

export async function startCluster(): Promise<TestCluster> {
  const nats = await startNatsServer()
  const conns: NatsConnection[] = []
  const stops: Array<() => Promise<void>> = []
  const dirs: string[] = []
  const cluster: TestCluster = {
    nats,
    masters: [],
    agents: [],
    async connect(name) {
      const nc = await connectNats(nats.url, name, { reconnectTimeWait: 100 })
      conns.push(nc)
      return nc
    },
    async startMaster(id = 'm1', config = fastMasterConfig) {
      const master = new Master({ nc: await cluster.connect(`master-${id}`), id, logger: silentLogger(), config })
      await master.start()
      cluster.masters.push(master)
      stops.push(() => master.stop())
      const deadline = Date.now() + 10_000
      // until it leads, or knows another master does (a standby)
      while (!master.isLeader && !(master.leaderInfo() && master.leaderInfo()?.id !== id) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20))
      }
      return master
    },
    async startAgent(o) {
      const workDir = o.workDir ?? await mkdtemp(join(tmpdir(), 'regatta-agent-'))
      if (!o.workDir) dirs.push(workDir)
      const agent = new Agent({
        nc: await cluster.connect('agent'), workDir, pool: o.pool ?? 'default',
        resources: parseResources(o.resources ?? 'cpus:4;mem:4096;disk:10000;ports:[31000-31100]'),
        attributes: {}, containerizer: o.containerizer, logger: silentLogger(),
        defaultImage: 'regatta/busybox:latest', sandboxRetentionMs: 0, ...(o.id ? { id: o.id } : {}),
        ...(o.oversubscription ? { oversubscription: o.oversubscription } : {}),
        ...o.options,
      })
      await agent.start()
      cluster.agents.push(agent)
      stops.push(() => agent.stop())
      return agent
    },
    async framework(info = {}) {
      const fw = new RecordingFramework(await cluster.connect('framework'), { name: 'test', roles: ['*'], ...info })
      await fw.start()
      stops.push(() => fw.scheduler.stop())
      return fw
    },
    async stop() {
      for (const s of stops.reverse()) await s().catch(() => undefined)
      for (const nc of conns) await nc.close().catch(() => undefined)
      await nats.stop()
      for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }) // an agent may still be removing a sandbox
    },
  }
  return cluster
}

/** A framework for tests: records every event and lets a test wait for offers and updates. */
export class RecordingFramework {
  readonly scheduler: Scheduler
  readonly events: SchedulerEvent[] = []
  offers: Offer[] = []
  readonly updates: TaskStatus[] = []
  autoAcknowledge = true
  private waiters: Array<() => void> = []

  constructor(nc: NatsConnection, info: FrameworkInfo) {
    this.scheduler = new Scheduler({
      nc, framework: info, logger: silentLogger(),
      onEvent: (e) => {
        this.events.push(e)
        if (e.type === 'OFFERS') this.offers.push(...e.offers)
        if (e.type === 'RESCIND') this.offers = this.offers.filter((o) => o.id !== e.offerId)
        if (e.type === 'UPDATE') {
          this.updates.push(e.status)
          if (this.autoAcknowledge) this.scheduler.acknowledge(e.status)
        }
        for (const w of this.waiters.splice(0)) w()
      },
    })
  }

  start(): Promise<void> {
    return this.scheduler.start()
  }

  /** Waits until `pred` holds (checked on every event), or fails after timeoutMs. */
  async waitFor<T>(what: string, pred: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const v = pred()
      if (v) return v
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.events.slice(-10))}`)
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200))
        this.waiters.push(() => { clearTimeout(t); r() })
      })
    }
  }

  /** Takes the next offer (removing it from the list). */
  async nextOffer(pred: (o: Offer) => boolean = () => true): Promise<Offer> {
    const offer = await this.waitFor('an offer', () => this.offers.find(pred))
    this.offers = this.offers.filter((o) => o !== offer)
    return offer
  }

  statesOf(taskId: string): string[] {
    return this.updates.filter((u) => u.taskId === taskId).map((u) => u.state)
  }

  terminal(taskId: string, timeoutMs?: number): Promise<TaskStatus> {
    return this.waitFor(`task ${taskId} to end`, () => this.updates.find((u) => u.taskId === taskId && isTerminal(u.state)), timeoutMs)
  }

  /** Launches one task on the next offer that fits it. */
  async launch(task: TaskSpec): Promise<Offer> {
    const offer = await this.nextOffer()
    await this.scheduler.launch(offer, [task])
    return offer
  }
}

export function shellTask(taskId: string, script: string, extra: Partial<TaskSpec> = {}): TaskSpec {
  return {
    taskId,
    resources: [{ name: 'cpus', scalar: 0.1 }, { name: 'mem', scalar: 32 }],
    container: { command: ['sh', '-c', script] },
    ...extra,
  }
}

/**
 * Masters run as `regatta master` runs them (runMaster: NATS, HTTP on a free port, the operator
 * token if given), stopped by stopAll(). The token never comes from the environment of whoever
 * runs the tests. Reads are open as in `regatta dev` unless `o.auth` says otherwise; `o.tls`:
 * HTTPS.
 */
export function httpMasters(cluster: () => TestCluster): { start(id: string, operatorToken?: string, o?: { auth?: HttpAuth; tls?: HttpTls }): Promise<RunningMaster & { httpUrl: string }>; started: RunningMaster[]; stopAll(): Promise<void> } {
  delete process.env.REGATTA_OPERATOR_TOKEN
  const masters: RunningMaster[] = []
  return {
    async start(id, operatorToken, o = {}) {
      const m = await runMaster({
        // a known port: the URL a standby redirects to is advertised before the server listens
        natsUrl: cluster().nats.url, id, http: { host: '127.0.0.1', port: await freePort() }, config: fastMasterConfig, logger: silentLogger(),
        ...(operatorToken ? { operatorToken } : {}),
        auth: o.auth ?? httpAuthFrom({ ...(operatorToken ? { operatorToken } : {}), openReads: true }, {}),
        ...(o.tls ? { tls: o.tls } : {}),
      })
      masters.push(m)
      if (!m.httpUrl) throw new Error('the master has no HTTP URL')
      return m as RunningMaster & { httpUrl: string }
    },
    started: masters,
    async stopAll() {
      for (const m of masters.splice(0)) await m.stop().catch(() => undefined)
    },
  }
}
