// The master: leader election, the agent and scheduler APIs over NATS, status updates from
// JetStream, offers and the allocation loop. Decisions are delegated to the pure allocator;
// this module applies them and does the messaging.
import { randomUUID } from 'node:crypto'
import type { ConsumerMessages, JetStreamClient, JsMsg, NatsConnection, Subscription } from 'nats'
import {
  AgentRegistered, Call, CommandReply, type FrameworkInfo, RegisterAgent, AgentHeartbeat, UnregisterAgent, StatusUpdates, TaskStatus, Subjects, Streams, Consumers, Buckets,
  OperatorCall, decode, encode, isTerminal, updateSenderMismatch,
  type AgentCommand, type CallReply, type ClusterState, type Event, type Offer, type OperatorReply, type TaskInfo, type TaskState,
} from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { add, contains, isRevocable, normalize, subtract } from '../../../shared/resources/index.js'
import { JetStreamPublisher, LeaderLease, StatusUpdateSender, ensureConsumer, ensureStreams, request, serve } from '../../../shared/nats/index.js'
import { systemClock, type Clock, type Timer } from '../../../shared/clock/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { allocate } from './allocator/index.js'
import { Cluster, taskKey, type AgentEntry, type FrameworkEntry, type TaskEntry } from './cluster.js'
import { Registry } from './registry.js'
import { takeFromPool } from './launch.js'
import { Reservations } from './reservations.js'
import { REASON_TASK_START_TIMEOUT, StrandedTasks, overdueStarts, startTimeoutMessage } from './task-deadlines.js'
import type { MasterMetrics } from './metrics.js'

export interface MasterConfig {
  heartbeatIntervalMs: number
  /** An agent silent this long is unreachable; its tasks go UNREACHABLE. */
  agentUnreachableMs: number
  /** An agent unreachable this long is gone; its tasks go GONE. */
  agentGoneMs: number
  /** Offers held longer are rescinded. */
  offerTimeoutMs: number
  /** A framework silent this long is inactive (no offers). */
  frameworkInactiveMs: number
  /** Default failover timeout of a framework that does not set one. */
  frameworkFailoverMs: number
  allocationIntervalMs: number
  /** Changes within this window are allocated in one pass. */
  allocationBatchMs: number
  /** Under load, passes triggered by changes are at least this far apart. */
  allocationMinIntervalMs: number
  leaseTtlMs: number
  /** Default refuse time of DECLINE and of the unused part of an ACCEPT (Mesos: 5 s). */
  defaultRefuseSeconds: number
  /** After a failover, how long agents of the registry have to re-register before they count as unreachable. */
  agentReregisterMs: number
  /** JetStream stream and KV bucket replicas (3 on a NATS cluster). */
  replicas: number
  /** Ended tasks nobody acknowledged (to this leader) are forgotten after this long. */
  terminalTaskRetentionMs: number
  /**
   * A task still STAGING or STARTING this long after its launch (the agent's checkout, image
   * pull and container start happen in STARTING) is killed and reported LOST with reason
   * TASK_START_TIMEOUT (task-deadlines.ts).
   */
  taskStartTimeoutMs: number
  /** After such a timeout, the task's framework is not offered that agent for this long (retried elsewhere). */
  taskStartHoldMs: number
}

export const defaultMasterConfig: MasterConfig = {
  heartbeatIntervalMs: 1_000,
  agentUnreachableMs: 5_000,
  agentGoneMs: 60_000,
  offerTimeoutMs: 20_000,
  frameworkInactiveMs: 5_000,
  frameworkFailoverMs: 60_000,
  allocationIntervalMs: 1_000,
  allocationBatchMs: 5,
  allocationMinIntervalMs: 20,
  leaseTtlMs: 3_000,
  defaultRefuseSeconds: 5,
  agentReregisterMs: 10_000,
  replicas: 1,
  terminalTaskRetentionMs: 10 * 60_000,
  taskStartTimeoutMs: 10 * 60_000,
  taskStartHoldMs: 60_000,
}

export interface MasterOptions {
  nc: NatsConnection
  id: string
  logger: Logger
  metrics?: MasterMetrics
  clock?: Clock
  httpUrl?: string
  config?: Partial<MasterConfig>
}

const MAX_OFFERS_PER_EVENT = 500

export class Master {
  cluster = new Cluster()
  readonly config: MasterConfig
  readonly startedAt: number
  private readonly nc: NatsConnection
  private readonly js: JetStreamClient
  private readonly publisher: JetStreamPublisher
  /** The master's own updates of this term; replaced on stepping down (see stepDown). */
  private sender: StatusUpdateSender
  private readonly log: Logger
  private readonly clock: Clock
  private readonly lease: LeaderLease
  private subs: Subscription[] = []
  private updates?: ConsumerMessages
  /** The latest status update message not yet acknowledged (AckAll covers the earlier ones). */
  private pendingAck?: JsMsg
  private timers: Timer[] = []
  private allocationTimer?: Timer
  private lastAllocationAt = 0
  private leading = false
  private stopped = false
  private readonly registry: Registry
  /** Dynamic reservations, volumes, weights and quotas (ACCEPT operations and operator calls). */
  readonly reservations: Reservations
  private electedAt = 0
  /** Explicit reconciliation questions about tasks on agents that have not re-registered yet. */
  private pendingReconcile = new Map<string, Array<{ frameworkId: string; taskId: string }>>()
  /** Tasks answered UNREACHABLE after a failover: they hear GONE (or LOST) once their agent's fate is known. */
  private stranded = new StrandedTasks()

  constructor(private readonly o: MasterOptions) {
    this.nc = o.nc
    this.js = o.nc.jetstream()
    this.publisher = new JetStreamPublisher(o.nc)
    this.sender = new StatusUpdateSender(this.publisher, o.logger)
    this.log = o.logger.child({ masterId: o.id })
    this.clock = o.clock ?? systemClock
    this.config = { ...defaultMasterConfig, ...o.config }
    this.startedAt = this.clock.now()
    this.lease = new LeaderLease({
      nc: o.nc,
      bucket: Buckets.leader,
      ttlMs: this.config.leaseTtlMs,
      holderId: o.id,
      info: o.httpUrl ? { httpUrl: o.httpUrl } : {},
      clock: this.clock,
      logger: this.log,
      onElected: (epoch) => void this.lead(epoch),
      onDemoted: (reason) => this.stepDown(reason),
      replicas: this.config.replicas,
    })
    this.registry = new Registry(o.nc, this.log, () => this.lease.isLeader, this.config.replicas)
    this.reservations = new Reservations({
      cluster: () => this.cluster, registry: this.registry, log: this.log, epoch: () => this.lease.epoch,
      rescind: (id) => this.rescind(id), scheduleAllocation: () => this.scheduleAllocation(),
      command: (agentId, cmd) => void this.command(agentId, cmd),
    })
  }

  get isLeader(): boolean {
    return this.leading && this.lease.isLeader
  }

  /** Refuses to act when the lease may have passed to another master (fencing). */
  private assertLeading(): void {
    if (!this.isLeader) throw new RegattaError('NOT_LEADER', 'this master does not hold the leader lease')
  }

  get epoch(): number {
    return this.lease.epoch
  }

  /** The leader as last seen (this master or another). */
  leaderInfo(): ClusterState['leader'] {
    const cur = this.lease.current
    if (!cur) return null
    return { id: cur.id, epoch: cur.epoch, ...(cur.info.httpUrl ? { httpUrl: cur.info.httpUrl } : {}) }
  }

  async start(): Promise<void> {
    await ensureStreams(await this.nc.jetstreamManager(), this.config.replicas)
    await this.registry.open()
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect' && this.leading) this.lease.demote('lost the NATS connection')
      }
    })()
    await this.lease.start()
  }

  async stop(): Promise<void> {
    this.stopped = true
    // what this term decided is stored (bounded) while it still leads, before another may
    await this.sender.close(2_000)
    await this.lease.resign()
    this.stepDown('stopped')
    this.publisher.close()
  }

  state(): ClusterState {
    return this.cluster.view(this.o.id, this.leaderInfo(), this.startedAt, this.clock.now())
  }

  // ---- leadership -------------------------------------------------------------------------

  private async lead(epoch: number): Promise<void> {
    if (this.stopped) return
    // start from the registry, never from what this master knew before: another may have led since
    // a replicated bucket can be unavailable for seconds while NATS elects a stream leader:
    // keep trying while the lease holds, rather than hand leadership around
    for (let attempt = 1; ; attempt++) {
      try {
        await this.recoverRegistry()
        break
      } catch (err) {
        if (this.stopped || !this.lease.isLeader || attempt >= 10) {
          this.log.error({ err: (err as Error).message }, 'cannot read the registry; stepping down')
          this.lease.demote('cannot read the registry')
          return
        }
        this.log.warn({ err: (err as Error).message, attempt }, 'cannot read the registry yet; retrying')
        await new Promise((r) => setTimeout(r, 500))
      }
    }
    this.leading = true
    const serveOpts = { logger: this.log, onInvalid: (subject: string) => this.o.metrics?.invalidMessage(subject) }
    this.subs.push(
      serve(this.nc, Subjects.agentRegister, RegisterAgent, (m) => this.registerAgent(m), serveOpts),
      serve(this.nc, Subjects.agentHeartbeat, AgentHeartbeat, (m) => this.heartbeat(m), serveOpts),
      serve(this.nc, Subjects.agentUnregister, UnregisterAgent, (m) => this.unregisterAgent(m), serveOpts),
      serve(this.nc, Subjects.schedulerCall, Call, (m) => this.call(m), serveOpts),
      serve(this.nc, Subjects.masterOperator, OperatorCall, (m) => this.operator(m), serveOpts),
    )
    const stateSub = this.nc.subscribe(Subjects.masterState)
    this.subs.push(stateSub)
    void (async () => {
      for await (const m of stateSub) m.respond(encode(this.state()))
    })()
    this.timers.push(
      this.clock.setInterval(() => this.allocate(), this.config.allocationIntervalMs),
      this.clock.setInterval(() => this.checkTimeouts(), Math.min(500, this.config.heartbeatIntervalMs)),
      this.clock.setInterval(() => this.heartbeatFrameworks(), this.config.heartbeatIntervalMs * 5),
      this.clock.setInterval(() => {
        this.pendingAck?.ack()
        this.pendingAck = undefined
      }, 50),
    )
    this.nc.publish(Subjects.leaderElected, encode({ masterId: this.o.id, epoch }))
    try {
      const consumer = await this.js.consumers.get(Streams.updates, Consumers.masterUpdates)
      let sinceAck = 0
      const updates = await consumer.consume({
        max_messages: 2_000,
        // short pulls: a pull held by a NATS node that died is replaced in seconds, not 30 s
        expires: 5_000,
        callback: (m) => {
          try {
            for (const status of decode(StatusUpdates, m.data, 'status updates').updates) this.onStatusUpdate(status, m.subject)
          } catch (err) {
            this.o.metrics?.invalidMessage(m.subject)
            this.log.warn({ err: (err as Error).message, subject: m.subject }, 'dropping a bad status update')
          }
          // AckAll: one ack covers every earlier message; ack every 64, and soon when it goes quiet
          if (++sinceAck >= 64) {
            m.ack()
            sinceAck = 0
            this.pendingAck = undefined
          } else {
            this.pendingAck = m
          }
        },
      })
      this.updates = updates
    } catch (err) {
      this.log.error({ err }, 'cannot consume status updates; stepping down')
      this.lease.demote('cannot consume status updates')
    }
  }

  private async recoverRegistry(): Promise<void> {
    const now = this.clock.now()
    const r = await this.registry.load()
    this.cluster = new Cluster()
    this.pendingReconcile = new Map()
    this.stranded = new StrandedTasks()
    this.electedAt = now
    for (const a of r.agents) {
      this.cluster.agents.set(a.info.id, {
        info: a.info, state: 'recovering', draining: a.draining, registeredAt: a.registeredAt, lastHeartbeatAt: now,
        ...(a.draining ? { drainingSince: a.drainingSince ?? now } : {}),
        revocable: [], used: [], offered: [], taskKeys: new Set(), idleSince: now,
      })
    }
    for (const f of r.frameworks) {
      // offered to at once; one that does not call within frameworkInactiveMs goes inactive
      this.cluster.frameworks.set(f.info.id, {
        info: f.info, active: true, registeredAt: f.registeredAt, lastSeenAt: now,
        suppressed: new Set(), offerIds: new Set(), taskKeys: new Set(),
      })
    }
    for (const [name, cfg] of r.roles) this.cluster.roles.set(name, cfg)
    this.reservations.reset(r.reservations)
    this.log.info({ agents: r.agents.length, frameworks: r.frameworks.length }, 'recovered the registry')
  }

  private stepDown(reason: string): void {
    if (!this.leading) return
    this.leading = false
    this.log.warn({ reason }, 'no longer leading')
    for (const s of this.subs.splice(0)) s.unsubscribe()
    for (const t of this.timers.splice(0)) t.cancel()
    this.allocationTimer?.cancel()
    this.allocationTimer = undefined
    void this.updates?.close()
    this.updates = undefined
    // A deposed master publishes nothing more: its updates still waiting to be stored (a GONE
    // decided while cut off from the cluster, say) are dropped, not retried until they land
    // after the new leader has taken over. The new leader works out each task's state itself.
    const old = this.sender
    this.sender = new StatusUpdateSender(this.publisher, this.o.logger)
    void old.close(0)
  }

  // ---- agents -----------------------------------------------------------------------------

  private registerAgent(m: RegisterAgent): AgentRegistered {
    this.assertLeading()
    const now = this.clock.now()
    // what the agent has, with the reservations and volumes the master made on it
    const info = this.reservations.effective(m.agent)
    let agent = this.cluster.agents.get(info.id)
    const reported = new Set(m.tasks.map((t) => taskKey(t.task.frameworkId, t.task.taskId)))
    const killTaskIds: string[] = []
    if (agent) {
      // re-registration: tasks the master had there but the agent no longer runs are lost
      for (const key of [...agent.taskKeys]) {
        const t = this.cluster.tasks.get(key)
        if (!t || isTerminal(t.state) || reported.has(key)) continue
        this.masterUpdate(t, t.state === 'STAGING' ? 'DROPPED' : 'LOST', 'AGENT_REREGISTERED', 'the agent re-registered without this task')
      }
      for (const offerId of this.cluster.offersOfAgent(info.id)) this.rescind(offerId)
      const changed = agent.state === 'recovering' || JSON.stringify(agent.info) !== JSON.stringify(info)
      agent.info = info
      agent.state = 'active'
      if (changed) void this.registry.putAgent(this.agentRecord(agent))
      agent.lastHeartbeatAt = now
      agent.unreachableSince = undefined
      agent.used = []
      for (const key of agent.taskKeys) {
        const t = this.cluster.tasks.get(key)
        if (t?.holdsResources) agent.used = add(agent.used, t.info.resources)
      }
    } else {
      agent = {
        info, state: 'active', draining: false, registeredAt: now, lastHeartbeatAt: now,
        revocable: [], used: [], offered: [], taskKeys: new Set(), idleSince: now,
      }
      this.cluster.agents.set(info.id, agent)
      void this.registry.putAgent({ info, registeredAt: now, draining: false })
    }
    for (const { task, status } of m.tasks) {
      const key = taskKey(task.frameworkId, task.taskId)
      const known = this.cluster.tasks.get(key)
      if (!isTerminal(status.state) && this.cluster.hasEnded(key)) {
        // the master told the framework this task ended (GONE once the agent was removed, LOST
        // at its start deadline), and the framework has launched it again: this copy must stop
        killTaskIds.push(task.taskId)
        this.log.warn({ agentId: info.id, taskId: task.taskId, frameworkId: task.frameworkId, state: status.state }, 'an agent came back with a task reported ended: killing it')
        continue
      }
      if (!known) {
        if (!this.cluster.frameworks.has(task.frameworkId) && !isTerminal(status.state)) {
          // a task of a framework this master never heard of (teardown while the agent was away)
          killTaskIds.push(task.taskId)
        }
        this.cluster.addTask({ ...task, agentId: info.id }, status, now)
      } else if (known.state === 'UNREACHABLE' && !isTerminal(status.state)) {
        // the agent is back in time: the task resumes
        this.masterUpdate(known, status.state, 'AGENT_REREGISTERED', 'the agent came back')
      }
    }
    // tasks frameworks were told UNREACHABLE after a failover: back with the agent, or lost
    for (const s of this.stranded.take(info.id)) {
      const t = this.cluster.tasks.get(taskKey(s.frameworkId, s.taskId))
      if (t) this.sendEvent(s.frameworkId, { type: 'UPDATE', status: { ...t.latest, uuid: undefined, source: 'master', reason: 'RECONCILIATION', timestamp: now } })
      else this.masterStatus(s.frameworkId, s.taskId, info.id, 'LOST', 'AGENT_REREGISTERED', 'the agent re-registered without this task')
    }
    this.answerPendingReconcile(info.id)
    // still draining (after a failover, say): frameworks that have tasks there hear it again
    if (agent.draining) this.sendInverseOffers(agent)
    this.log.info({ agentId: info.id, tasks: m.tasks.length, pool: info.pool, draining: agent.draining }, 'agent registered')
    this.scheduleAllocation()
    return {
      agentId: info.id, epoch: this.lease.epoch, heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      ...(killTaskIds.length ? { killTaskIds } : {}),
    }
  }

  private heartbeat(m: AgentHeartbeat): { epoch: number } {
    this.assertLeading()
    const agent = this.cluster.agents.get(m.agentId)
    if (!agent || agent.state !== 'active') {
      // an unreachable agent must re-register so that its tasks are reconciled
      throw new RegattaError('UNKNOWN_AGENT', `agent ${m.agentId} is not registered with this master`)
    }
    agent.lastHeartbeatAt = this.clock.now()
    if (m.orphans) agent.orphans = m.orphans
    if (m.disk) agent.disk = m.disk
    if (m.revocable) {
      const before = agent.revocable
      agent.revocable = normalize(m.revocable.map((r) => ({ ...r, revocable: true })))
      // a smaller estimate: the revocable offers made from the larger one are withdrawn (a task
      // launched on them would be preempted at once) and made again from the new one
      if (!contains(agent.revocable, before)) {
        for (const offerId of this.cluster.offersOfAgent(agent.info.id)) {
          if (this.cluster.offers.get(offerId)?.offer.resources.some(isRevocable)) this.rescind(offerId)
        }
      }
    }
    return { epoch: this.lease.epoch }
  }

  private markUnreachable(agent: AgentEntry, now: number): void {
    agent.state = 'unreachable'
    agent.unreachableSince = now
    for (const offerId of this.cluster.offersOfAgent(agent.info.id)) this.rescind(offerId)
    this.log.warn({ agentId: agent.info.id }, 'agent unreachable')
    for (const key of agent.taskKeys) {
      const t = this.cluster.tasks.get(key)
      if (t && !isTerminal(t.state)) this.masterUpdate(t, 'UNREACHABLE', 'AGENT_UNREACHABLE', `agent ${agent.info.id} stopped heartbeating`)
    }
  }

  /** An agent that stops with no task left: forgotten at once, its offers rescinded. */
  private unregisterAgent(m: UnregisterAgent): { ok: true } {
    this.assertLeading()
    const agent = this.cluster.agents.get(m.agentId)
    if (!agent) return { ok: true }
    const live = [...agent.taskKeys].filter((k) => { const t = this.cluster.tasks.get(k); return t && !isTerminal(t.state) }).length
    if (live > 0) throw new RegattaError('INVALID_OPERATION', `agent ${m.agentId} still runs ${live} task(s): it cannot unregister`)
    for (const offerId of this.cluster.offersOfAgent(agent.info.id)) this.rescind(offerId)
    this.removeAgent(agent, 'agent unregistered (stopped with no task left)')
    return { ok: true }
  }

  private removeAgent(agent: AgentEntry, why = 'agent gone'): void {
    this.log.warn({ agentId: agent.info.id }, why)
    const frameworks = new Set<string>()
    for (const key of [...agent.taskKeys]) {
      const t = this.cluster.tasks.get(key)
      if (t && !isTerminal(t.state)) {
        frameworks.add(t.info.frameworkId)
        this.masterUpdate(t, 'GONE', 'AGENT_GONE', `agent ${agent.info.id} did not come back`)
      }
    }
    // tasks this master never saw (the agent did not re-register after a failover) that a
    // framework was told are UNREACHABLE: without this, it would wait for them forever
    for (const s of this.stranded.take(agent.info.id)) {
      frameworks.add(s.frameworkId)
      this.masterStatus(s.frameworkId, s.taskId, agent.info.id, 'GONE', 'AGENT_GONE', `agent ${agent.info.id} did not come back after the failover`)
    }
    this.cluster.agents.delete(agent.info.id)
    this.registry.deleteAgent(agent.info.id)
    this.answerPendingReconcile(agent.info.id)
    for (const fw of frameworks) this.sendEvent(fw, { type: 'FAILURE', agentId: agent.info.id, message: 'agent gone' })
  }

  /**
   * A task past its start deadline: killed on its agent, reported LOST (TASK_START_TIMEOUT) so
   * that its framework launches it again, and its agent held back from that framework for
   * taskStartHoldMs so that the next launch goes elsewhere.
   */
  private expireStart(t: TaskEntry, now: number): void {
    const { frameworkId, taskId, agentId } = t.info
    const message = startTimeoutMessage(t, now, this.config.taskStartTimeoutMs)
    this.log.warn({ taskId, frameworkId, agentId, state: t.state }, 'task start timeout: killing it and reporting it LOST')
    this.o.metrics?.taskStartTimeout()
    this.cluster.holds.push({ frameworkId, agentId, until: now + this.config.taskStartHoldMs })
    // the kill goes once the LOST is stored: the KILLED the agent answers with (at once, for a
    // task still in its checkout) comes after it, and the framework hears LOST first
    const epoch = this.lease.epoch
    void this.masterUpdate(t, 'LOST', REASON_TASK_START_TIMEOUT, message).then(() => {
      if (this.leading) void this.command(agentId, { type: 'KILL', epoch, frameworkId, taskId, gracePeriodMs: 0 })
    })
  }

  private checkTimeouts(): void {
    const now = this.clock.now()
    for (const agent of [...this.cluster.agents.values()]) {
      if (agent.state === 'recovering' && now - this.electedAt > this.config.agentReregisterMs) {
        this.log.warn({ agentId: agent.info.id }, 'agent did not re-register after the failover')
        agent.state = 'unreachable'
        agent.unreachableSince = now
        this.answerPendingReconcile(agent.info.id)
      } else if (agent.state === 'active' && now - agent.lastHeartbeatAt > this.config.agentUnreachableMs) this.markUnreachable(agent, now)
      else if (agent.state === 'unreachable' && now - (agent.unreachableSince ?? now) > this.config.agentGoneMs) this.removeAgent(agent)
    }
    for (const o of [...this.cluster.offers.values()]) {
      if (now - o.createdAt <= this.config.offerTimeoutMs) continue
      // an offer left unanswered counts as declined with the default filter: a framework that
      // sits on its offers does not get the agent straight back (it would, winning share ties)
      this.addFilter(o.offer.frameworkId, o.offer.agentId, o.offer.resources, this.config.defaultRefuseSeconds, now)
      this.rescind(o.offer.id)
    }
    for (const t of overdueStarts(this.cluster, now, this.config.taskStartTimeoutMs)) this.expireStart(t, now)
    // ended tasks are kept until acknowledged, or for a while when the acknowledgement went to another leader
    for (const [key, t] of this.cluster.tasks) {
      if (isTerminal(t.state) && now - t.updatedAt > this.config.terminalTaskRetentionMs) this.cluster.forgetTask(key)
    }
    for (const f of [...this.cluster.frameworks.values()]) {
      if (f.active && now - f.lastSeenAt > this.config.frameworkInactiveMs) this.deactivate(f, now)
      else if (!f.active && f.disconnectedAt !== undefined &&
        now - f.disconnectedAt > (f.info.failoverTimeoutMs ?? this.config.frameworkFailoverMs)) {
        this.log.warn({ frameworkId: f.info.id }, 'framework failover timeout passed; tearing it down')
        this.sendEvent(f.info.id, { type: 'ERROR', code: 'UNKNOWN_FRAMEWORK', message: 'the framework stayed away past its failover timeout: its tasks were killed and it was removed' })
        this.teardown(f)
      }
    }
  }

  // ---- operator calls ---------------------------------------------------------------------

  /**
   * Every operator call, from NATS (Subjects.masterOperator) and from the HTTP API alike: one
   * function per call, here. Only the leader acts.
   */
  async operator(c: OperatorCall): Promise<OperatorReply> {
    this.assertLeading()
    this.o.metrics?.call(c.type)
    switch (c.type) {
      case 'DRAIN': return this.drain(c.agentId)
      case 'UNDRAIN': return this.undrain(c.agentId)
      case 'SET_QUOTA': return this.reservations.setQuota(c.role, c.quota)
      case 'SET_WEIGHT': return this.reservations.setWeight(c.role, c.weight)
      case 'RESERVE': return this.reservations.reserve(c)
      case 'UNRESERVE': return this.reservations.unreserve(c)
      default: throw new RegattaError('UNKNOWN_CALL', `operator call ${(c as { type: string }).type} is not handled by this master`)
    }
  }

  private agentRecord(agent: AgentEntry): { info: AgentEntry['info']; registeredAt: number; draining: boolean; drainingSince?: number } {
    return {
      info: agent.info, registeredAt: agent.registeredAt, draining: agent.draining,
      ...(agent.draining && agent.drainingSince !== undefined ? { drainingSince: agent.drainingSince } : {}),
    }
  }

  private knownAgent(agentId: string): AgentEntry {
    const agent = this.cluster.agents.get(agentId)
    if (!agent) throw new RegattaError('UNKNOWN_AGENT', `agent ${agentId} is not known to the leading master (see regatta agents ls)`)
    return agent
  }

  /** Stores the agent's draining mark; the call fails when it could not be stored (a new leader would not know it). */
  private async persistDraining(agent: AgentEntry, what: string): Promise<void> {
    if (!await this.registry.putAgent(this.agentRecord(agent))) {
      throw new RegattaError('NOT_LEADER', `${what} of agent ${agent.info.id} could not be stored in the registry; try again`)
    }
  }

  /** Maintenance: no new work on the agent; running tasks go on; frameworks with tasks there are told. */
  private async drain(agentId: string): Promise<OperatorReply> {
    const agent = this.knownAgent(agentId)
    if (!agent.draining) {
      agent.draining = true
      agent.drainingSince = this.clock.now()
      this.log.info({ agentId, pool: agent.info.pool }, 'agent draining')
    }
    for (const offerId of this.cluster.offersOfAgent(agentId)) this.rescind(offerId)
    this.sendInverseOffers(agent)
    await this.persistDraining(agent, 'the drain')
    return { ok: true }
  }

  private async undrain(agentId: string): Promise<OperatorReply> {
    const agent = this.knownAgent(agentId)
    if (agent.draining) {
      agent.draining = false
      agent.drainingSince = undefined
      this.log.info({ agentId, pool: agent.info.pool }, 'agent no longer draining')
      this.scheduleAllocation()
    }
    await this.persistDraining(agent, 'the undrain')
    return { ok: true }
  }

  /** An inverse offer to each framework with live tasks on a draining agent (to `onlyFramework` when given). */
  private sendInverseOffers(agent: AgentEntry, onlyFramework?: string): void {
    const frameworks = new Set<string>()
    for (const key of agent.taskKeys) {
      const t = this.cluster.tasks.get(key)
      if (t && !isTerminal(t.state) && (onlyFramework === undefined || t.info.frameworkId === onlyFramework)) frameworks.add(t.info.frameworkId)
    }
    const startMs = agent.drainingSince ?? this.clock.now()
    for (const frameworkId of frameworks) {
      this.sendEvent(frameworkId, { type: 'INVERSE_OFFERS', inverseOffers: [{
        id: randomUUID(), agentId: agent.info.id, frameworkId, unavailability: { startMs },
      }] })
    }
    if (frameworks.size > 0) this.log.info({ agentId: agent.info.id, frameworks: frameworks.size }, 'inverse offers sent')
  }

  // ---- frameworks -------------------------------------------------------------------------

  private deactivate(f: FrameworkEntry, now: number): void {
    f.active = false
    f.disconnectedAt = now
    for (const id of [...f.offerIds]) this.rescind(id)
    this.log.warn({ frameworkId: f.info.id }, 'framework inactive')
  }

  private async call(c: Call): Promise<CallReply> {
    this.assertLeading()
    const reply = await this.handleCall(c)
    return 'ok' in reply ? { ok: true, epoch: this.lease.epoch } : reply
  }

  private async handleCall(c: Call): Promise<CallReply> {
    this.o.metrics?.call(c.type)
    if (c.type === 'SUBSCRIBE') return this.subscribe(c.framework)
    const f = this.cluster.frameworks.get(c.frameworkId)
    if (!f) throw new RegattaError('UNKNOWN_FRAMEWORK', `framework ${c.frameworkId} is not subscribed`)
    const now = this.clock.now()
    f.lastSeenAt = now
    if (!f.active && c.type !== 'TEARDOWN') {
      f.active = true
      f.disconnectedAt = undefined
      this.scheduleAllocation()
    }
    switch (c.type) {
      case 'ACCEPT': return this.accept(f, c)
      case 'DECLINE': {
        for (const id of c.offerIds) {
          const offer = this.ownOffer(f, id)
          if (!offer) continue
          this.cluster.removeOffer(id)
          this.addFilter(f.info.id, offer.agentId, offer.resources, c.filters?.refuseSeconds ?? this.config.defaultRefuseSeconds, now)
        }
        this.scheduleAllocation()
        return { ok: true }
      }
      case 'REVIVE': {
        if (c.roles?.length) for (const r of c.roles) f.suppressed.delete(r)
        else f.suppressed.clear()
        this.cluster.filters = this.cluster.filters.filter((x) => x.frameworkId !== f.info.id)
        this.scheduleAllocation()
        return { ok: true }
      }
      case 'SUPPRESS': {
        if (c.roles?.length) for (const r of c.roles) f.suppressed.add(r)
        else f.suppressed.add('*all*')
        return { ok: true }
      }
      case 'KILL': return this.kill(f, c.taskId, c.gracePeriodMs)
      case 'ACKNOWLEDGE': {
        const key = taskKey(f.info.id, c.taskId)
        const t = this.cluster.tasks.get(key)
        if (t && isTerminal(t.state) && t.latest.uuid === c.uuid) this.cluster.forgetTask(key)
        return { ok: true }
      }
      case 'RECONCILE': return this.reconcile(f, c.tasks)
      case 'TEARDOWN': this.teardown(f); return { ok: true }
      case 'KEEPALIVE': return { ok: true }
      case 'REQUEST': {
        // replaces the framework's whole demand; the scaler reads it (summed per pool) from the state
        f.demand = c.requests.length > 0 ? c.requests : undefined
        this.log.debug({ frameworkId: f.info.id, requests: c.requests.length }, 'framework demand')
        return { ok: true }
      }
    }
  }

  private async subscribe(info: FrameworkInfo): Promise<CallReply> {
    const now = this.clock.now()
    const id = info.id ?? randomUUID()
    let f = this.cluster.frameworks.get(id)
    if (f) {
      // re-subscription (failover of the framework): it keeps its tasks
      f.info = { ...info, id }
      f.active = true
      f.lastSeenAt = now
      f.disconnectedAt = undefined
      // a re-subscribing framework sends its demand again: what it asked for before may be stale
      f.demand = undefined
      for (const offerId of [...f.offerIds]) this.rescind(offerId)
    } else {
      f = { info: { ...info, id }, active: true, registeredAt: now, lastSeenAt: now, suppressed: new Set(), offerIds: new Set(), taskKeys: new Set() }
      this.cluster.frameworks.set(id, f)
    }
    this.registry.putFramework({ info: f.info, registeredAt: f.registeredAt })
    // a framework coming back with tasks on draining agents hears about them again
    const agentIds = new Set([...f.taskKeys].map((k) => this.cluster.tasks.get(k)?.info.agentId))
    for (const agentId of agentIds) {
      const agent = agentId === undefined ? undefined : this.cluster.agents.get(agentId)
      if (agent?.draining) this.sendInverseOffers(agent, id)
    }
    // the framework's durable consumer of its status updates must exist before any task runs
    await this.ensureFrameworkConsumer(id)
    this.log.info({ frameworkId: id, name: info.name, roles: info.roles }, 'framework subscribed')
    const subscribed = { type: 'SUBSCRIBED' as const, frameworkId: id, heartbeatIntervalMs: this.config.heartbeatIntervalMs, masterId: this.o.id, epoch: this.lease.epoch }
    this.scheduleAllocation()
    return subscribed
  }

  private teardown(f: FrameworkEntry): void {
    for (const id of [...f.offerIds]) this.cluster.removeOffer(id)
    const agents = new Set<string>()
    for (const key of f.taskKeys) {
      const t = this.cluster.tasks.get(key)
      if (t && !isTerminal(t.state)) agents.add(t.info.agentId)
    }
    for (const agentId of agents) {
      void this.command(agentId, { type: 'SHUTDOWN_FRAMEWORK', epoch: this.lease.epoch, frameworkId: f.info.id })
    }
    const now = this.clock.now()
    for (const key of [...f.taskKeys]) {
      const t = this.cluster.tasks.get(key)
      if (!t) continue
      if (!isTerminal(t.state)) {
        this.cluster.applyStatus(t, {
          taskId: t.info.taskId, frameworkId: f.info.id, agentId: t.info.agentId, state: 'KILLED', source: 'master',
          reason: 'FRAMEWORK_REMOVED', message: 'its framework was torn down', timestamp: now,
        }, now)
      }
      this.cluster.forgetTask(key)
    }
    this.cluster.frameworks.delete(f.info.id)
    this.registry.deleteFramework(f.info.id)
    this.cluster.filters = this.cluster.filters.filter((x) => x.frameworkId !== f.info.id)
    void this.nc.jetstreamManager()
      .then((jsm) => jsm.consumers.delete(Streams.updates, Consumers.frameworkUpdates(f.info.id)))
      .catch(() => undefined)
    this.log.info({ frameworkId: f.info.id }, 'framework torn down')
    this.scheduleAllocation()
  }

  private ownOffer(f: FrameworkEntry, offerId: string): Offer | undefined {
    const o = this.cluster.offers.get(offerId)
    return o && o.offer.frameworkId === f.info.id ? o.offer : undefined
  }

  private addFilter(frameworkId: string, agentId: string, resources: Offer['resources'], seconds: number, now: number): void {
    if (seconds <= 0 || resources.length === 0) return
    this.cluster.filters.push({ frameworkId, agentId, resources, until: now + seconds * 1000 })
  }

  private async accept(f: FrameworkEntry, c: Extract<Call, { type: 'ACCEPT' }>): Promise<CallReply> {
    const now = this.clock.now()
    const offers: Offer[] = []
    for (const id of c.offerIds) {
      const o = this.ownOffer(f, id)
      if (!o) {
        // the offer is gone (rescinded or timed out): its tasks are dropped, as in Mesos
        for (const op of c.operations) if (op.type === 'LAUNCH') for (const t of op.tasks) {
          this.masterStatus(f.info.id, t.taskId, undefined, 'DROPPED', 'INVALID_OFFERS', `offer ${id} is no longer valid`)
        }
        for (const other of offers) this.cluster.removeOffer(other.id)
        for (const rest of c.offerIds) if (this.ownOffer(f, rest)) this.cluster.removeOffer(rest)
        this.scheduleAllocation()
        return { ok: true }
      }
      offers.push(o)
    }
    const agentId = offers[0]!.agentId
    if (offers.some((o) => o.agentId !== agentId)) {
      throw new RegattaError('INVALID_OPERATION', 'ACCEPT: all offers must be on the same agent')
    }
    // reservation operations that do not fit the offers are refused before anything changes
    this.reservations.check(f, offers, c.operations)
    for (const o of offers) this.cluster.removeOffer(o.id)
    const agent = this.cluster.agents.get(agentId)
    let pool = offers.reduce((acc, o) => add(acc, o.resources), [] as Offer['resources'])
    const launched: TaskInfo[] = []
    const stores: Array<Promise<boolean>> = []
    for (const [index, op] of c.operations.entries()) {
      if (op.type !== 'LAUNCH') {
        if (agent) {
          const applied = this.reservations.apply(f, offers, op, index, pool)
          pool = applied.pool
          stores.push(applied.stored)
        }
        continue
      }
      for (const spec of op.tasks) {
        const role = offers.find((o) => takeFromPool(pool, spec.resources, o.role))?.role ?? offers[0]!.role
        const key = taskKey(f.info.id, spec.taskId)
        const existing = this.cluster.tasks.get(key)
        if (existing && !isTerminal(existing.state)) {
          this.masterStatus(f.info.id, spec.taskId, agentId, 'ERROR', 'TASK_INVALID', `task id ${spec.taskId} is already in use`)
          continue
        }
        const taken = takeFromPool(pool, spec.resources, role)
        if (!taken || !agent) {
          this.masterStatus(f.info.id, spec.taskId, agentId, 'ERROR', 'TASK_INVALID',
            agent ? `task ${spec.taskId} asks for more than its offers hold` : `agent ${agentId} is gone`)
          continue
        }
        pool = subtract(pool, taken)
        const info: TaskInfo = { ...spec, resources: taken, frameworkId: f.info.id, agentId, role }
        if (existing) this.cluster.forgetTask(key)
        this.cluster.addTask(info, { taskId: spec.taskId, frameworkId: f.info.id, agentId, state: 'STAGING', source: 'master', timestamp: now }, now)
        launched.push(info)
      }
    }
    if (pool.length > 0) this.addFilter(f.info.id, agentId, pool, c.filters?.refuseSeconds ?? this.config.defaultRefuseSeconds, now)
    if (launched.length > 0) {
      this.o.metrics?.taskLaunched(launched.length)
      void this.launch(agentId, launched)
    }
    this.scheduleAllocation()
    if (stores.length > 0) await this.reservations.acceptStored(stores, agentId)
    return { ok: true }
  }

  private async launch(agentId: string, tasks: TaskInfo[]): Promise<void> {
    try {
      await this.command(agentId, { type: 'LAUNCH', epoch: this.lease.epoch, tasks }, true)
    } catch (err) {
      const e = RegattaError.from(err)
      // "no responders": the agent is not there, the tasks never reached it. A timeout is
      // ambiguous (the agent may run them): those stay STAGING until the agent reports them,
      // re-registers, or the task start timeout passes.
      if (e.code !== 'TIMEOUT') {
        for (const info of tasks) {
          const t = this.cluster.tasks.get(taskKey(info.frameworkId, info.taskId))
          if (t && t.state === 'STAGING') this.masterUpdate(t, 'DROPPED', 'AGENT_UNREACHABLE', `launch failed: ${e.message}`)
        }
      } else {
        this.log.warn({ agentId, tasks: tasks.length }, 'launch command timed out; waiting for the agent to report')
      }
    }
  }

  private async command(agentId: string, cmd: AgentCommand, raise = false): Promise<void> {
    try {
      await request(this.nc, Subjects.agentCommand(agentId), cmd, CommandReply, 10_000)
    } catch (err) {
      this.log.warn({ agentId, type: cmd.type, err: (err as Error).message }, 'agent command failed')
      if (raise) throw err
    }
  }

  private kill(f: FrameworkEntry, taskId: string, gracePeriodMs?: number): CallReply {
    const t = this.cluster.tasks.get(taskKey(f.info.id, taskId))
    if (!t || isTerminal(t.state)) {
      // Mesos answers a kill of an unknown task with a status update, not an error
      this.sendEvent(f.info.id, { type: 'UPDATE', status: {
        taskId, frameworkId: f.info.id, state: t?.state ?? 'LOST', source: 'master', reason: 'RECONCILIATION',
        message: t ? 'the task already ended' : 'unknown task', timestamp: this.clock.now(),
        ...(t ? { agentId: t.info.agentId } : {}),
      } })
      return { ok: true }
    }
    void this.command(t.info.agentId, {
      type: 'KILL', epoch: this.lease.epoch, frameworkId: f.info.id, taskId,
      ...(gracePeriodMs !== undefined ? { gracePeriodMs } : {}),
    })
    return { ok: true }
  }

  private reconcile(f: FrameworkEntry, tasks: Array<{ taskId: string; agentId?: string }>): CallReply {
    const now = this.clock.now()
    const send = (t: TaskEntry): void => this.sendEvent(f.info.id, { type: 'UPDATE', status: { ...t.latest, uuid: undefined, source: 'master', reason: 'RECONCILIATION', timestamp: now } })
    if (tasks.length === 0) {
      // implicit: every task the master knows for the framework
      for (const key of f.taskKeys) {
        const t = this.cluster.tasks.get(key)
        if (t) send(t)
      }
      return { ok: true }
    }
    for (const q of tasks) {
      const t = this.cluster.tasks.get(taskKey(f.info.id, q.taskId))
      if (t) send(t)
      else if (this.awaitingAgent(q.agentId)) {
        // its agent has not re-registered since the failover: answer when it does (or does not)
        const k = q.agentId ?? '*'
        const list = this.pendingReconcile.get(k) ?? []
        list.push({ frameworkId: f.info.id, taskId: q.taskId })
        this.pendingReconcile.set(k, list)
      } else {
        this.sendEvent(f.info.id, { type: 'UPDATE', status: {
          taskId: q.taskId, frameworkId: f.info.id, state: 'LOST', source: 'master', reason: 'RECONCILIATION',
          message: 'unknown task', timestamp: now, ...(q.agentId ? { agentId: q.agentId } : {}),
        } })
      }
    }
    return { ok: true }
  }

  /** Whether an answer about a task on this agent (any agent, when not named) must wait for re-registration. */
  private awaitingAgent(agentId: string | undefined): boolean {
    if (agentId !== undefined) return this.cluster.agents.get(agentId)?.state === 'recovering'
    for (const a of this.cluster.agents.values()) if (a.state === 'recovering') return true
    return false
  }

  /** Answers the reconciliation questions that waited for this agent (and, once none is recovering, the unnamed ones). */
  private answerPendingReconcile(agentId: string): void {
    const now = this.clock.now()
    const keys = [agentId, ...(this.awaitingAgent(undefined) ? [] : ['*'])]
    for (const k of keys) {
      const list = this.pendingReconcile.get(k)
      if (!list) continue
      this.pendingReconcile.delete(k)
      const agent = k === '*' ? undefined : this.cluster.agents.get(k)
      for (const q of list) {
        const t = this.cluster.tasks.get(taskKey(q.frameworkId, q.taskId))
        const status: TaskStatus = t
          ? { ...t.latest, uuid: undefined, source: 'master', reason: 'RECONCILIATION', timestamp: now }
          : {
            taskId: q.taskId, frameworkId: q.frameworkId, source: 'master', reason: 'RECONCILIATION', timestamp: now,
            state: agent?.state === 'unreachable' ? 'UNREACHABLE' : 'LOST',
            message: agent?.state === 'unreachable' ? 'its agent did not come back after the failover' : 'unknown task',
            ...(k !== '*' ? { agentId: k } : {}),
          }
        if (!t && agent?.state === 'unreachable') this.stranded.add(k, q.frameworkId, q.taskId)
        this.sendEvent(q.frameworkId, { type: 'UPDATE', status })
      }
    }
  }

  private heartbeatFrameworks(): void {
    for (const f of this.cluster.frameworks.values()) if (f.active) this.sendEvent(f.info.id, { type: 'HEARTBEAT' })
  }

  // ---- status updates ---------------------------------------------------------------------

  /**
   * The framework's durable consumer of its updates, `regatta.update.<fw>.*`. One made before
   * the subjects named the agent (filter `regatta.update.<fw>`) would get nothing: it is made again.
   */
  private async ensureFrameworkConsumer(frameworkId: string): Promise<void> {
    const jsm = await this.nc.jetstreamManager()
    const durable = Consumers.frameworkUpdates(frameworkId)
    const filter = Subjects.frameworkStatusUpdates(frameworkId)
    const had = await jsm.consumers.info(Streams.updates, durable).catch(() => undefined)
    if (had && had.config.filter_subject !== filter) {
      this.log.warn({ frameworkId, filter: had.config.filter_subject }, 'replacing a framework update consumer with an old subject filter')
      await jsm.consumers.delete(Streams.updates, durable).catch(() => undefined)
    }
    await ensureConsumer(jsm, Streams.updates, durable, filter)
  }

  /** An update that did not come from whom it claims, or about another agent's task: logged, counted, never applied. */
  private refuseUpdate(s: TaskStatus, subject: string, why: string): void {
    this.o.metrics?.updateRefused()
    this.log.warn({ subject, taskId: s.taskId, frameworkId: s.frameworkId, agentId: s.agentId, state: s.state, why }, 'refusing a status update')
  }

  private onStatusUpdate(s: TaskStatus, subject: string): void {
    this.o.metrics?.statusUpdate(s.state)
    // the subject names the sender, and the server lets an agent publish on its own only
    const mismatch = updateSenderMismatch(subject, s)
    if (mismatch) return this.refuseUpdate(s, subject, mismatch)
    // the master's own updates are applied when it makes them; some are about launches that
    // never happened (a task id in use, a void offer) and must not touch a live task of that id
    if (s.source === 'master') return
    const key = taskKey(s.frameworkId, s.taskId)
    const t = this.cluster.tasks.get(key)
    if (!t) return
    // an agent speaks for its own tasks only
    if (t.info.agentId !== s.agentId) return this.refuseUpdate(s, subject, `task ${s.taskId} runs on agent ${t.info.agentId}`)
    if (t.latest.uuid === s.uuid && t.state === s.state) return // our own update, applied already
    const wasHolding = t.holdsResources
    if (!this.cluster.applyStatus(t, s, this.clock.now())) return
    if (wasHolding && !t.holdsResources) this.scheduleAllocation()
  }

  /** A status update the master makes itself (task dropped, agent lost...), acknowledged like any other. */
  /** Applies and publishes an update of the master's own; resolves once stored (or given up). */
  private masterUpdate(t: TaskEntry, state: TaskState, reason: string, message: string): Promise<void> {
    const status: TaskStatus = {
      taskId: t.info.taskId, frameworkId: t.info.frameworkId, agentId: t.info.agentId, state,
      uuid: randomUUID(), source: 'master', reason, message, timestamp: this.clock.now(),
    }
    const wasHolding = t.holdsResources
    this.cluster.applyStatus(t, status, this.clock.now())
    if (wasHolding && !t.holdsResources) this.scheduleAllocation()
    return this.publishUpdate(status)
  }

  private masterStatus(frameworkId: string, taskId: string, agentId: string | undefined, state: TaskState, reason: string, message: string): void {
    this.publishUpdate({
      taskId, frameworkId, state, uuid: randomUUID(), source: 'master', reason, message, timestamp: this.clock.now(),
      ...(agentId ? { agentId } : {}),
    })
  }

  private publishUpdate(status: TaskStatus): Promise<void> {
    return this.sender.send(status).catch((err: Error) => {
      this.log.warn({ err: err.message, taskId: status.taskId, state: status.state }, 'a status update of the master was not stored')
    })
  }

  // ---- offers and allocation --------------------------------------------------------------

  private sendEvent(frameworkId: string, event: Event): void {
    this.nc.publish(Subjects.frameworkEvents(frameworkId), encode(event))
  }

  private rescind(offerId: string): void {
    const offer = this.cluster.removeOffer(offerId)
    if (!offer) return
    this.sendEvent(offer.frameworkId, { type: 'RESCIND', offerId })
    this.scheduleAllocation()
  }

  /** Runs an allocation pass soon, batching the changes that come in the meantime. */
  scheduleAllocation(): void {
    if (!this.leading || this.allocationTimer) return
    // soon after a quiet spell (a lone job starts at once); under load at most one pass per
    // allocationMinIntervalMs, so that passes stay cheap and offers grow larger
    const sinceLast = this.clock.now() - this.lastAllocationAt
    const delay = Math.max(this.config.allocationBatchMs, this.config.allocationMinIntervalMs - sinceLast)
    this.allocationTimer = this.clock.setTimeout(() => {
      this.allocationTimer = undefined
      this.allocate()
    }, delay)
  }

  private allocate(): void {
    if (!this.leading) return
    const now = this.clock.now()
    this.lastAllocationAt = now
    const started = performance.now()
    const planned = allocate(this.cluster.snapshot(now))
    this.o.metrics?.allocationPass((performance.now() - started) / 1000)
    if (planned.length === 0) return
    const byFramework = new Map<string, Offer[]>()
    for (const p of planned) {
      const agent = this.cluster.agents.get(p.agentId)
      if (!agent) continue
      const offer: Offer = {
        id: randomUUID(), frameworkId: p.frameworkId, agentId: p.agentId, hostname: agent.info.hostname,
        pool: agent.info.pool, attributes: agent.info.attributes, role: p.role, resources: p.resources,
      }
      this.cluster.addOffer(offer, now)
      const list = byFramework.get(p.frameworkId) ?? []
      list.push(offer)
      byFramework.set(p.frameworkId, list)
    }
    this.o.metrics?.offersMade(planned.length)
    for (const [frameworkId, offers] of byFramework) {
      for (let i = 0; i < offers.length; i += MAX_OFFERS_PER_EVENT) {
        this.sendEvent(frameworkId, { type: 'OFFERS', offers: offers.slice(i, i + MAX_OFFERS_PER_EVENT), epoch: this.lease.epoch })
      }
    }
  }
}
