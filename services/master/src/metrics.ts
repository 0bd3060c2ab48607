// The master's Prometheus metrics: gauges set from a ClusterState snapshot, counters the
// master bumps as it works. Its own Registry, so several masters (tests) never share one.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { TASK_STATES, type ClusterState } from '../../../shared/protocol/index.js'

const PREFIX = 'regatta_master_'
const AGENT_STATES = ['active', 'recovering', 'unreachable', 'draining'] as const
/** Always reported, even at zero, so dashboards see a 0 rather than no series. */
const CORE_RESOURCES = ['cpus', 'mem', 'disk'] as const

export interface MasterMetricsOptions {
  /** Node process metrics (CPU, memory, event loop, GC) prefixed `regatta_master_`; default true. */
  processMetrics?: boolean
}

export class MasterMetrics {
  readonly registry = new Registry()

  private readonly agents: Gauge<'state'>
  private readonly frameworks: Gauge<'active'>
  private readonly tasks: Gauge<'state'>
  private readonly offersOutstanding: Gauge
  private readonly resourcesTotal: Gauge<'resource'>
  private readonly resourcesUsed: Gauge<'resource'>
  private readonly isLeader: Gauge
  private readonly epoch: Gauge
  private readonly demandTasks: Gauge<'pool'>
  private readonly demandUnmetTasks: Gauge<'pool'>

  private readonly offersTotal: Counter
  private readonly tasksLaunchedTotal: Counter
  private readonly statusUpdatesTotal: Counter<'state'>
  private readonly invalidMessagesTotal: Counter<'subject'>
  private readonly updatesRefusedTotal: Counter
  private readonly callsTotal: Counter<'type'>
  private readonly taskStartTimeoutsTotal: Counter

  private readonly allocationSeconds: Histogram

  constructor(options: MasterMetricsOptions = {}) {
    const registers = [this.registry]
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: PREFIX })

    this.agents = new Gauge({ name: `${PREFIX}agents`, help: 'Registered agents by state', labelNames: ['state'], registers })
    this.frameworks = new Gauge({ name: `${PREFIX}frameworks`, help: 'Subscribed frameworks, by whether they are connected', labelNames: ['active'], registers })
    this.tasks = new Gauge({ name: `${PREFIX}tasks`, help: 'Known tasks by state', labelNames: ['state'], registers })
    this.offersOutstanding = new Gauge({ name: `${PREFIX}offers_outstanding`, help: 'Offers made and not yet accepted, declined, rescinded or expired', registers })
    this.resourcesTotal = new Gauge({ name: `${PREFIX}resources_total`, help: 'Scalar resources of all agents (mem and disk in MiB)', labelNames: ['resource'], registers })
    this.resourcesUsed = new Gauge({ name: `${PREFIX}resources_used`, help: 'Scalar resources used by tasks (mem and disk in MiB)', labelNames: ['resource'], registers })
    this.isLeader = new Gauge({ name: `${PREFIX}is_leader`, help: '1 while this master leads, 0 on a standby', registers })
    this.epoch = new Gauge({ name: `${PREFIX}epoch`, help: 'Epoch (lease revision) of the leading master as this master knows it; 0 when none is known', registers })

    this.demandTasks = new Gauge({ name: `${PREFIX}demand_tasks`, help: 'Tasks frameworks wait for (REQUEST), by pool', labelNames: ['pool'], registers })
    this.demandUnmetTasks = new Gauge({ name: `${PREFIX}demand_unmet_tasks`, help: 'Of the tasks frameworks wait for, those no active, non-draining agent of the pool can fit now', labelNames: ['pool'], registers })

    this.offersTotal = new Counter({ name: `${PREFIX}offers_total`, help: 'Offers made to frameworks', registers })
    this.tasksLaunchedTotal = new Counter({ name: `${PREFIX}tasks_launched_total`, help: 'Tasks launched on agents', registers })
    this.statusUpdatesTotal = new Counter({ name: `${PREFIX}status_updates_total`, help: 'Task status updates received, by state', labelNames: ['state'], registers })
    this.invalidMessagesTotal = new Counter({ name: `${PREFIX}invalid_messages_total`, help: 'Messages that failed their schema, by subject', labelNames: ['subject'], registers })
    this.updatesRefusedTotal = new Counter({ name: `${PREFIX}status_updates_refused_total`, help: 'Status updates refused: their subject names another sender, or an agent spoke for another agent\'s task', registers })
    this.callsTotal = new Counter({ name: `${PREFIX}calls_total`, help: 'Scheduler and operator calls received, by type', labelNames: ['type'], registers })
    this.taskStartTimeoutsTotal = new Counter({ name: `${PREFIX}task_start_timeouts_total`, help: 'Tasks killed and reported LOST because they were still STAGING or STARTING at the task start timeout', registers })

    this.allocationSeconds = new Histogram({
      name: `${PREFIX}allocation_seconds`,
      help: 'Duration of one allocation pass',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    })
  }

  /** Sets every gauge from a snapshot; series that vanished from the snapshot drop to 0 or go away. */
  observeState(state: ClusterState): void {
    const agentCounts = countBy(state.agents, (a) => a.state, AGENT_STATES)
    for (const [s, n] of agentCounts) this.agents.set({ state: s }, n)

    let active = 0
    for (const f of state.frameworks) if (f.active) active++
    this.frameworks.set({ active: 'true' }, active)
    this.frameworks.set({ active: 'false' }, state.frameworks.length - active)

    const taskCounts = countBy(state.tasks, (t) => t.state, TASK_STATES)
    for (const [s, n] of taskCounts) this.tasks.set({ state: s }, n)

    this.offersOutstanding.set(state.offers.length)

    setAmounts(this.resourcesTotal, state.total)
    setAmounts(this.resourcesUsed, state.used)

    this.isLeader.set(state.leader !== null && state.leader.id === state.masterId ? 1 : 0)
    this.epoch.set(state.leader?.epoch ?? 0)

    // a pool whose demand went away has no series rather than a stale one
    this.demandTasks.reset()
    this.demandUnmetTasks.reset()
    for (const d of state.demand ?? []) {
      this.demandTasks.set({ pool: d.pool }, d.jobs)
      this.demandUnmetTasks.set({ pool: d.pool }, d.unmetJobs)
    }
  }

  offersMade(n = 1): void {
    if (n > 0) this.offersTotal.inc(n)
  }

  taskLaunched(n = 1): void {
    if (n > 0) this.tasksLaunchedTotal.inc(n)
  }

  statusUpdate(state: string): void {
    this.statusUpdatesTotal.inc({ state })
  }

  invalidMessage(subject: string): void {
    this.invalidMessagesTotal.inc({ subject })
  }

  updateRefused(): void {
    this.updatesRefusedTotal.inc()
  }

  call(type: string): void {
    this.callsTotal.inc({ type })
  }

  taskStartTimeout(): void {
    this.taskStartTimeoutsTotal.inc()
  }

  allocationPass(seconds: number): void {
    this.allocationSeconds.observe(seconds)
  }

  /** The Prometheus text exposition of every metric in this registry. */
  metricsText(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }
}

function countBy<T>(items: readonly T[], key: (item: T) => string, known: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>(known.map((k) => [k, 0]))
  for (const item of items) {
    const k = key(item)
    counts.set(k, (counts.get(k) ?? 0) + 1)
  }
  return counts
}

function setAmounts(gauge: Gauge<'resource'>, amounts: Record<string, number>): void {
  // reset first: a resource no agent has any more (a custom scalar) must not linger.
  gauge.reset()
  for (const r of CORE_RESOURCES) gauge.set({ resource: r }, 0)
  for (const [resource, value] of Object.entries(amounts)) gauge.set({ resource }, value)
}
