// Oversubscription on an agent, every `intervalMs`: sample the usage of its tasks (through their
// containers) and of the host, estimate the revocable capacity (estimator.ts) for the next
// heartbeats, and preempt revocable tasks when the non-revocable ones need their resources back
// (qos.ts). The agent is reached through a small port, so this runs and is tested without one.
import type { Resource } from '../../../../shared/protocol/index.js'
import { systemClock, type Clock, type Timer } from '../../../../shared/clock/index.js'
import { silentLogger, type Logger } from '../../../../shared/log/index.js'
import {
  UsageHistory, ZERO, allocationOf, estimateRevocable, shrank, sum, toRevocableResources, unusedOf,
  type CpuMem, type TaskUsage, type UsageReading,
} from './estimator.js'
import { decideEvictions, hostPressure, type Eviction, type HostState, type RevocableTask } from './qos.js'
import { HostCpuSampler, readHostMemory } from './procfs.js'

export interface OversubscriptionOptions {
  /** How often usage is sampled, the estimate renewed and the QoS decision taken (default 2 s). */
  intervalMs?: number
  /** Fraction (0..1) of the non-revocable allocation kept back from the estimate (default 0.2). */
  margin?: number
  /** Samples a task's usage is smoothed over (its peak counts), and taken before it counts at all (default 5). */
  window?: number
  /** The host is under memory pressure below this much MemAvailable, MiB (default 5% of its memory). */
  memMinFreeMb?: number
  /** The host is under CPU pressure at or above this busy fraction (0..1); default: not acted on. */
  cpuMaxBusy?: number
}

export const OVERSUBSCRIPTION_DEFAULTS = { intervalMs: 2_000, margin: 0.2, window: 5, memMinFreeFraction: 0.05 } as const

/** A task as the controller sees it. */
export interface ObservedTask {
  /** Names the task (framework and task id). */
  key: string
  resources: readonly Resource[]
  /** When the agent got it (ms): the newest revocable tasks are preempted first. */
  launchedAt: number
  /** Its container once started; sampled when it can say its usage. */
  container?: { usage?(): Promise<UsageReading | undefined> }
  /** Being killed, or its command has ended: no longer sampled or preempted. */
  ending: boolean
}

/** What the controller needs of the agent. */
export interface OversubscriptionPort {
  tasks(): ObservedTask[]
  /** Kill this revocable task: state KILLED, reason PREEMPTED, this message. */
  preempt(key: string, message: string): void
  /** The estimate shrank: tell the master now rather than at the next heartbeat. */
  estimateShrank(): void
}

export interface HostSamplers {
  memory(): Promise<{ availableMb: number; totalMb: number } | undefined>
  cpuBusy(): Promise<number | undefined>
}

/** What one round saw and did (for logs and tests). */
export interface Round {
  estimate: CpuMem
  evictions: Eviction[]
  unused: CpuMem
  host: HostState
}

export class OversubscriptionController {
  private readonly intervalMs: number
  private readonly margin: number
  private readonly history: UsageHistory
  private readonly clock: Clock
  private readonly log: Logger
  private readonly host: HostSamplers
  private estimate: CpuMem = { ...ZERO }
  /** Until when (ms) a dimension under host pressure is estimated as zero. */
  private readonly holdUntil = { mem: 0, cpus: 0 }
  private timer?: Timer
  private round?: Promise<Round | undefined>
  private stopped = true

  constructor(
    private readonly port: OversubscriptionPort,
    private readonly o: OversubscriptionOptions = {},
    deps: { clock?: Clock; logger?: Logger; host?: HostSamplers } = {},
  ) {
    this.intervalMs = o.intervalMs ?? OVERSUBSCRIPTION_DEFAULTS.intervalMs
    this.margin = o.margin ?? OVERSUBSCRIPTION_DEFAULTS.margin
    this.history = new UsageHistory(o.window ?? OVERSUBSCRIPTION_DEFAULTS.window)
    this.clock = deps.clock ?? systemClock
    this.log = deps.logger ?? silentLogger()
    const cpu = new HostCpuSampler()
    this.host = deps.host ?? { memory: () => readHostMemory(), cpuBusy: () => cpu.sample() }
  }

  /** The current estimate, as the heartbeat's `revocable` resources. */
  revocable(): Resource[] {
    return toRevocableResources(this.estimate)
  }

  current(): CpuMem {
    return { ...this.estimate }
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    await this.round?.catch(() => undefined)
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = this.clock.setTimeout(() => {
      void this.tick().finally(() => this.schedule())
    }, this.intervalMs)
  }

  /** One round: sample, decide, estimate. Rounds never overlap; errors are logged, never thrown. */
  tick(): Promise<Round | undefined> {
    this.round ??= this.runRound().catch((err: unknown) => {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'oversubscription round failed')
      return undefined
    }).finally(() => { this.round = undefined })
    return this.round
  }

  private async runRound(): Promise<Round> {
    const tasks = this.port.tasks()
    this.history.retain(new Set(tasks.map((t) => t.key)))
    await Promise.all(tasks.map(async (t) => {
      if (t.ending || !t.container?.usage) return
      const reading = await this.bounded(t.container.usage())
      if (reading) this.history.record(t.key, this.clock.now(), reading)
    }))
    const host = await this.sampleHost()
    const now = this.clock.now()
    const pressure = hostPressure(host)
    const hold = this.intervalMs * this.history.window
    if (pressure.mem) this.holdUntil.mem = now + hold
    if (pressure.cpus) this.holdUntil.cpus = now + hold

    const nonRevocable: Array<{ allocated: CpuMem; key: string }> = []
    const revocable: RevocableTask[] = []
    for (const t of tasks) {
      const a = allocationOf(t.resources)
      if (!a.revocable) nonRevocable.push({ allocated: a.allocated, key: t.key })
      else if (!t.ending) {
        const used = this.history.latest(t.key)
        revocable.push({ key: t.key, launchedAt: t.launchedAt, allocated: a.allocated, ...(used ? { used } : {}) })
      }
    }
    const latest = (x: { allocated: CpuMem; key: string }): TaskUsage => {
      const used = this.history.latest(x.key)
      return { allocated: x.allocated, ...(used ? { used } : {}) }
    }
    const unused = sum(nonRevocable.map((x) => unusedOf(latest(x))))
    const evictions = decideEvictions({ unused, revocable, host })
    for (const e of evictions) this.port.preempt(e.key, e.message)

    const peaks: TaskUsage[] = nonRevocable.map((x) => {
      const used = this.history.peak(x.key)
      return { allocated: x.allocated, ...(used ? { used } : {}) }
    })
    const before = this.estimate
    this.estimate = estimateRevocable(peaks, {
      margin: this.margin,
      pressure: { mem: now < this.holdUntil.mem, cpus: now < this.holdUntil.cpus },
    })
    if (this.estimate.cpus !== before.cpus || this.estimate.memMb !== before.memMb) {
      this.log.debug({ revocable: this.estimate, unused }, 'revocable estimate changed')
    }
    if (shrank(this.estimate, before)) this.port.estimateShrank()
    return { estimate: this.current(), evictions, unused, host }
  }

  private async sampleHost(): Promise<HostState> {
    const host: HostState = {}
    const mem = await this.host.memory().catch(() => undefined)
    if (mem) {
      host.memAvailableMb = mem.availableMb
      host.memMinFreeMb = this.o.memMinFreeMb ?? mem.totalMb * OVERSUBSCRIPTION_DEFAULTS.memMinFreeFraction
    }
    if (this.o.cpuMaxBusy !== undefined) {
      const busy = await this.host.cpuBusy().catch(() => undefined)
      if (busy !== undefined) {
        host.cpuBusy = busy
        host.cpuMaxBusy = this.o.cpuMaxBusy
      }
    }
    return host
  }

  /** A sample that takes longer than an interval (an engine that hangs) is skipped this round. */
  private bounded<T>(p: Promise<T>): Promise<T | undefined> {
    let timer: Timer | undefined
    return Promise.race([
      p.catch(() => undefined),
      new Promise<undefined>((resolve) => { timer = this.clock.setTimeout(() => resolve(undefined), Math.max(this.intervalMs, 1_000)) }),
    ]).finally(() => timer?.cancel())
  }
}
