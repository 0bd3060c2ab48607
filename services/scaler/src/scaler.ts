// The scaler loop: every `intervalMs`, while it holds the scaler lease, it reads the pool
// policies (watched in KV), the providers' instances and the cluster state (with demand) from
// the leading master, asks the pure policy what to do for each pool, and does it through the
// providers (START, STOP) and the master's operator calls (DRAIN, UNDRAIN). Several replicas
// may run: only the lease holder acts.
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { NatsConnection } from 'nats'
import { Buckets, ClusterState, OperatorReply, Subjects, type OperatorCall } from '../../../shared/protocol/index.js'
import type { PoolPolicy } from '../../../shared/protocol/pool.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { LeaderLease, request } from '../../../shared/nats/index.js'
import { systemClock, type Clock, type Timer } from '../../../shared/clock/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { decide, defaultPolicyConfig, emptyMemory, type Action, type PolicyConfig, type PoolMemory, type PoolSummary } from './policy.js'
import { PoolStore } from './pool-store.js'
import type { Instance, Provider } from './providers/types.js'

/** What the scaler needs from the master: the state, and the two maintenance calls. */
export interface ClusterControl {
  state(): Promise<ClusterState>
  drain(agentId: string): Promise<void>
  undrain(agentId: string): Promise<void>
}

/** ClusterControl over NATS: `regatta.master.state` and `regatta.master.operator` (leader only). */
export function natsClusterControl(nc: NatsConnection, timeoutMs = 3_000): ClusterControl {
  const operator = async (call: OperatorCall): Promise<void> => {
    await request(nc, Subjects.masterOperator, call, OperatorReply, timeoutMs)
  }
  return {
    state: () => request(nc, Subjects.masterState, {}, ClusterState, timeoutMs),
    drain: (agentId) => operator({ type: 'DRAIN', agentId }),
    undrain: (agentId) => operator({ type: 'UNDRAIN', agentId }),
  }
}

export interface ScalerOptions {
  nc: NatsConnection
  logger: Logger
  providers: readonly Provider[]
  /** How often it decides (default 250 ms): the larger share of a scale-from-zero's latency. */
  intervalMs?: number
  policy?: Partial<PolicyConfig>
  /** The scaler lease's TTL (default 5 s): a dead leader's replica takes over after about this long. */
  leaseTtlMs?: number
  id?: string
  /** KV replicas (3 on a NATS cluster). */
  replicas?: number
  clock?: Clock
  control?: ClusterControl
}

/** One pool as the last decision saw it (for logs, tests and `regatta dev`). */
export interface PoolStatus {
  policy: PoolPolicy
  summary: PoolSummary
  at: number
}

export class Scaler {
  readonly id: string
  private readonly log: Logger
  private readonly clock: Clock
  private readonly control: ClusterControl
  private readonly providers = new Map<string, Provider>()
  private readonly config: PolicyConfig
  private readonly memory = new Map<string, PoolMemory>()
  private readonly lease: LeaderLease
  private watcher?: { policies: Map<string, PoolPolicy>; stop(): void }
  private timer?: Timer
  private busy = false
  private stopped = false
  private readonly stops = new Set<Promise<void>>()
  private readonly warned = new Set<string>()
  /** The last decision's view of each pool. */
  readonly status = new Map<string, PoolStatus>()
  /** Every action taken, newest last (bounded): what tests and `regatta dev` look at. */
  readonly history: Array<Action & { at: number; ok: boolean; error?: string }> = []

  constructor(private readonly o: ScalerOptions) {
    this.id = o.id ?? `scaler-${hostname().replace(/[^A-Za-z0-9-]/g, '-').slice(0, 40)}-${randomBytes(3).toString('hex')}`
    this.log = o.logger.child({ scalerId: this.id })
    this.clock = o.clock ?? systemClock
    this.control = o.control ?? natsClusterControl(o.nc)
    this.config = { ...defaultPolicyConfig, ...o.policy }
    for (const p of o.providers) this.providers.set(p.name, p)
    this.lease = new LeaderLease({
      nc: o.nc, bucket: Buckets.scalerLeader, ttlMs: o.leaseTtlMs ?? 5_000, holderId: this.id, clock: this.clock,
      replicas: o.replicas ?? 1, logger: this.log,
      onElected: () => this.log.info('this scaler leads: it sizes the pools'),
      // what it remembered may be stale once another replica has acted
      onDemoted: () => this.memory.clear(),
    })
  }

  get isLeader(): boolean {
    return this.lease.isLeader
  }

  async start(): Promise<void> {
    const store = await PoolStore.open(this.o.nc, this.o.replicas ?? 1)
    this.watcher = await store.watch(this.log)
    await this.lease.start()
    this.timer = this.clock.setInterval(() => void this.tick(), this.o.intervalMs ?? 250)
    this.log.info({ providers: [...this.providers.keys()], intervalMs: this.o.intervalMs ?? 250 }, 'scaler started')
    void this.tick()
  }

  /** Stops deciding and hands the lease over; instances keep running (see ProcessProvider.stopAll). */
  async stop(): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    this.watcher?.stop()
    await this.lease.resign()
    await Promise.allSettled([...this.stops])
    for (const p of this.providers.values()) await p.close?.()
  }

  /** One round of decisions (also run by the timer). */
  async tick(): Promise<void> {
    if (this.busy || this.stopped || !this.lease.isLeader || !this.watcher) return
    const policies = [...this.watcher.policies.values()]
    if (policies.length === 0) return
    this.busy = true
    try {
      // instances first, then the state: an instance that is not in the state yet is starting
      const instances = new Map<string, Instance[]>()
      for (const name of new Set(policies.map((p) => p.provider))) {
        const provider = this.providers.get(name)
        if (!provider) continue
        instances.set(name, await provider.list())
      }
      const state = await this.control.state()
      const now = this.clock.now()
      for (const policy of policies) {
        const provider = this.providers.get(policy.provider)
        if (!provider) {
          this.warnOnce(`provider:${policy.pool}:${policy.provider}`, { pool: policy.pool, provider: policy.provider, have: [...this.providers.keys()] },
            'the pool names a provider this scaler does not run: left as it is')
          continue
        }
        const decision = decide({
          now, masterNow: state.now, policy, config: this.config,
          instances: (instances.get(provider.name) ?? []).filter((i) => i.pool === policy.pool),
          agents: state.agents.filter((a) => a.pool === policy.pool),
          memory: this.memory.get(policy.pool) ?? emptyMemory(),
          ...(provider.instanceResources ? { instanceResources: provider.instanceResources } : {}),
          ...(() => { const d = state.demand.find((x) => x.pool === policy.pool); return d ? { demand: d } : {} })(),
        })
        this.memory.set(policy.pool, decision.memory)
        this.status.set(policy.pool, { policy, summary: decision.summary, at: now })
        for (const action of decision.actions) {
          if (!this.lease.isLeader || this.stopped) return
          await this.act(provider, action)
        }
      }
    } catch (err) {
      const e = RegattaError.from(err)
      // no leading master during a failover: try again on the next tick
      this.log[e.code === 'NO_RESPONDERS' || e.code === 'TIMEOUT' ? 'debug' : 'warn']({ code: e.code }, `scaler round failed: ${e.message}`)
    } finally {
      this.busy = false
    }
  }

  private async act(provider: Provider, action: Action): Promise<void> {
    const fields = { ...action, type: undefined, action: action.type }
    const record = (ok: boolean, error?: string): void => {
      this.history.push({ ...action, at: this.clock.now(), ok, ...(error ? { error } : {}) })
      if (this.history.length > 1_000) this.history.splice(0, this.history.length - 1_000)
    }
    try {
      switch (action.type) {
        case 'START': {
          const started = await provider.start(action.pool, action.count)
          this.log.info({ ...fields, instances: started.map((i) => i.id) }, `starting ${action.count} agent(s) of pool ${action.pool} (${action.reason})`)
          break
        }
        case 'DRAIN':
          await this.control.drain(action.agentId)
          this.log.info(fields, `draining agent ${action.agentId} of pool ${action.pool} (${action.reason})`)
          break
        case 'UNDRAIN':
          await this.control.undrain(action.agentId)
          this.log.info(fields, `undraining agent ${action.agentId} of pool ${action.pool} (${action.reason})`)
          break
        case 'STOP': {
          this.log.info(fields, `stopping instance ${action.instanceId} of pool ${action.pool} (${action.reason})`)
          // in the background: the provider lists it as stopping meanwhile, so no round stops it twice
          const p = provider.stop(action.instanceId)
            .catch((err: unknown) => this.log.warn({ ...fields, err: (err as Error).message }, 'stopping an instance failed'))
            .finally(() => this.stops.delete(p))
          this.stops.add(p)
          break
        }
      }
      record(true)
    } catch (err) {
      const e = RegattaError.from(err)
      record(false, e.message)
      this.log.warn({ ...fields, code: e.code }, `${action.type} failed: ${e.message}`)
    }
  }

  private warnOnce(key: string, fields: object, msg: string): void {
    if (this.warned.has(key)) return
    this.warned.add(key)
    this.log.warn(fields, msg)
  }
}
