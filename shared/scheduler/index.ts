// The scheduler library: what a framework (the CI service, `regatta exec`, a benchmark) uses
// to talk to the master. It subscribes, keeps the framework alive, turns NATS messages into
// events, and delivers status updates from JetStream until the framework acknowledges them.
//
//   const s = new Scheduler({ nc, framework: { name: 'ci', roles: ['ci/main'] }, logger, onEvent })
//   await s.start()
//   // on OFFERS: await s.accept([offer.id], [task]); on UPDATE: await s.acknowledge(status)
import { randomUUID } from 'node:crypto'
import type { ConsumerMessages, JsMsg, NatsConnection, Subscription } from 'nats'
import {
  CallReply, Consumers, Event, LeaderElected, StatusUpdates, Streams, Subjects, decode, encode, isTerminal, updateSenderMismatch, type TaskStatus,
  type Call, type Filters, type FrameworkInfo, type Offer, type Operation, type ResourceRequest, type TaskSpec,
} from '../protocol/index.js'
import { RegattaError } from '../errors/index.js'
import { requestWithRetry } from '../nats/index.js'
import type { Logger } from '../log/index.js'

export type SchedulerEvent = Event | { type: 'DISCONNECTED'; message: string }

export interface SchedulerOptions {
  nc: NatsConnection
  framework: FrameworkInfo
  logger: Logger
  onEvent(event: SchedulerEvent): void
  /** How long calls retry while no master answers (default 30 s). */
  callDeadlineMs?: number
}

type CallBody<T extends Call['type']> = Omit<Extract<Call, { type: T }>, 'type' | 'frameworkId'>

export class Scheduler {
  readonly frameworkId: string
  private readonly nc: NatsConnection
  private readonly log: Logger
  private events?: Subscription
  private leader?: Subscription
  private updates?: ConsumerMessages
  /** Updates delivered but not yet acknowledged, with the JetStream message that carried them. */
  private readonly unacked = new Map<string, { m: JsMsg; left: Set<string> }>()
  /** Recently acknowledged uuids, so that a redelivered batch does not deliver them again. */
  private readonly acked = new Set<string>()
  private keepalive?: NodeJS.Timeout
  private subscribing?: Promise<void>
  private stopped = false
  heartbeatIntervalMs = 1_000
  /** The epoch of the leader that answered last; a higher one means a failover happened. */
  private epoch = 0
  /** Offers held, by id, with their agent and the epoch of the leader that made them. */
  private readonly heldOffers = new Map<string, { agentId: string; epoch: number }>()
  /** Tasks launched and not ended yet, with their agent: what to reconcile after a failover. */
  private readonly liveTasks = new Map<string, string | undefined>()
  /** Tasks whose ACCEPT has not been answered: its answer (or a DROPPED) tells their fate. */
  private readonly launching = new Set<string>()
  /** The demand last sent (REQUEST), sent again to a master that may not know it. */
  private demand: ResourceRequest[] = []

  constructor(private readonly o: SchedulerOptions) {
    this.frameworkId = o.framework.id ?? randomUUID()
    this.nc = o.nc
    this.log = o.logger.child({ frameworkId: this.frameworkId })
  }

  async start(): Promise<void> {
    this.events = this.nc.subscribe(Subjects.frameworkEvents(this.frameworkId), {
      callback: (err, m) => {
        if (err) return
        let e: Event
        try {
          e = decode(Event, m.data, 'framework event')
        } catch (error) {
          this.log.warn({ err: (error as Error).message }, 'ignoring a bad event')
          return
        }
        this.deliver(e)
      },
    })
    // a new leader announces itself: held offers are void, tasks in flight get reconciled
    this.leader = this.nc.subscribe(Subjects.leaderElected, {
      callback: (err, m) => {
        if (err) return
        try {
          this.noteEpoch(decode(LeaderElected, m.data, 'leader announcement').epoch)
        } catch {
          // not worth more than ignoring
        }
      },
    })
    await this.subscribe()
    this.keepalive = setInterval(() => void this.sendKeepalive(), this.heartbeatIntervalMs)
    this.keepalive.unref()
  }

  private deliver(e: SchedulerEvent): void {
    if (e.type === 'OFFERS') {
      this.noteEpoch(e.epoch)
      for (const o of e.offers) this.heldOffers.set(o.id, { agentId: o.agentId, epoch: e.epoch ?? this.epoch })
    }
    else if (e.type === 'RESCIND') this.heldOffers.delete(e.offerId)
    else if (e.type === 'UPDATE' && isTerminal(e.status.state)) this.liveTasks.delete(e.status.taskId)
    else if (e.type === 'SUBSCRIBED') this.noteEpoch(e.epoch)
    try {
      this.o.onEvent(e)
    } catch (err) {
      this.log.error({ err, type: e.type }, 'event handler failed')
    }
  }

  private subscribe(): Promise<void> {
    if (this.subscribing) return this.subscribing
    this.subscribing = (async () => {
      const reply = await requestWithRetry(this.nc, Subjects.schedulerCall, {
        type: 'SUBSCRIBE', framework: { ...this.o.framework, id: this.frameworkId },
      }, CallReply, { deadlineMs: this.o.callDeadlineMs ?? 30_000 })
      if (!('type' in reply)) throw new RegattaError('INVALID_MESSAGE', 'SUBSCRIBE was not answered with SUBSCRIBED')
      this.heartbeatIntervalMs = reply.heartbeatIntervalMs
      if (!this.updates) await this.consumeUpdates()
      this.deliver(reply)
      // the master forgets the demand of a framework that subscribes again
      if (this.demand.length > 0) this.resendDemand()
    })().finally(() => { this.subscribing = undefined })
    return this.subscribing
  }

  private async consumeUpdates(): Promise<void> {
    const consumer = await this.nc.jetstream().consumers.get(Streams.updates, Consumers.frameworkUpdates(this.frameworkId))
    this.updates = await consumer.consume({
      max_messages: 1_000,
      // short pulls: a pull held by a NATS node that died is replaced in seconds, not 30 s
      expires: 5_000,
      callback: (m) => {
        let batch: TaskStatus[]
        try {
          batch = decode(StatusUpdates, m.data, 'status updates').updates
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'dropping a bad status update message')
          m.term()
          return
        }
        // an update not from whom it claims (or an agent's about another agent's task) is dropped
        batch = batch.filter((s) => {
          const why = this.forged(s, m.subject)
          if (why) this.log.warn({ subject: m.subject, taskId: s.taskId, agentId: s.agentId, state: s.state, why }, 'refusing a status update')
          return why === undefined
        })
        // the message is acknowledged to JetStream once every update in it is acknowledged
        const fresh = batch.filter((s) => s.uuid === undefined || !this.acked.has(s.uuid))
        const waiting = { m, left: new Set(fresh.map((s) => s.uuid).filter((u): u is string => u !== undefined)) }
        for (const uuid of waiting.left) this.unacked.set(uuid, waiting)
        if (waiting.left.size === 0) m.ack()
        for (const status of fresh) this.deliver({ type: 'UPDATE', status })
      },
    })
  }

  /** Why an update may not be taken from the subject it came on (see updateSenderMismatch), or undefined. */
  private forged(s: TaskStatus, subject: string): string | undefined {
    if (s.frameworkId !== this.frameworkId) return `an update of framework ${s.frameworkId}`
    const mismatch = updateSenderMismatch(subject, s)
    if (mismatch) return mismatch
    const runsOn = this.liveTasks.get(s.taskId)
    if (s.source === 'agent' && runsOn !== undefined && runsOn !== s.agentId) return `task ${s.taskId} was launched on agent ${runsOn}`
    return undefined
  }

  /**
   * A new leader: offers of the old one are void (rescinded here), and the tasks in flight are
   * reconciled, so that a launch the old leader never passed on comes back LOST.
   */
  private noteEpoch(epoch: number | undefined): void {
    if (epoch === undefined || epoch <= this.epoch) return
    const first = this.epoch === 0
    this.epoch = epoch
    if (first) return
    this.log.info({ epoch }, 'a new master leads: rescinding held offers and reconciling tasks')
    // demand is not in the registry: the new leader learns it again from us
    if (this.demand.length > 0) this.resendDemand()
    for (const [offerId, held] of [...this.heldOffers]) if (held.epoch < epoch) this.deliver({ type: 'RESCIND', offerId })
    const tasks = [...this.liveTasks].filter(([taskId]) => !this.launching.has(taskId))
      .map(([taskId, agentId]) => ({ taskId, ...(agentId ? { agentId } : {}) }))
    if (tasks.length > 0) this.reconcile(tasks).catch((err: Error) => this.log.warn({ err: err.message }, 'reconciliation after failover failed'))
  }

  private async sendKeepalive(): Promise<void> {
    if (this.stopped) return
    try {
      await this.call('KEEPALIVE', {})
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'keepalive failed')
    }
  }

  /** Sends a call; when the master no longer knows this framework (a new leader), subscribes again first. */
  private async call<T extends Call['type']>(type: T, body: CallBody<T>): Promise<void> {
    const c = { type, frameworkId: this.frameworkId, ...body }
    const send = async (): Promise<void> => {
      const reply = await requestWithRetry(this.nc, Subjects.schedulerCall, c, CallReply, { deadlineMs: this.o.callDeadlineMs ?? 30_000 })
      if ('ok' in reply) this.noteEpoch(reply.epoch)
    }
    try {
      await send()
    } catch (err) {
      if ((err as RegattaError).code !== 'UNKNOWN_FRAMEWORK' || this.stopped) throw err
      await this.subscribe()
      await send()
    }
  }

  /** Launches tasks on the resources of one or more offers of the same agent. */
  accept(offerIds: string[], tasks: TaskSpec[], filters?: Filters): Promise<void> {
    return this.operate(offerIds, tasks.length ? [{ type: 'LAUNCH', tasks }] : [], filters)
  }

  /**
   * Accepts offers of one agent with operations applied in order: RESERVE, UNRESERVE, CREATE
   * and DESTROY (volumes), LAUNCH; say, reserve disk, make a volume of it and launch a task that
   * uses it, in one call. What the operations leave is refused for `filters.refuseSeconds`.
   */
  operate(offerIds: string[], operations: Operation[], filters?: Filters): Promise<void> {
    const tasks = operations.flatMap((op) => (op.type === 'LAUNCH' ? op.tasks : []))
    const agentId = offerIds.map((id) => this.heldOffers.get(id)?.agentId).find((a) => a !== undefined)
    for (const id of offerIds) this.heldOffers.delete(id)
    for (const t of tasks) {
      this.liveTasks.set(t.taskId, agentId)
      this.launching.add(t.taskId)
    }
    const done = (): void => { for (const t of tasks) this.launching.delete(t.taskId) }
    return this.call('ACCEPT', { offerIds, operations, ...(filters ? { filters } : {}) })
      .finally(done)
  }

  /** Convenience: launch on one offer. */
  launch(offer: Offer, tasks: TaskSpec[], filters?: Filters): Promise<void> {
    return this.accept([offer.id], tasks, filters)
  }

  decline(offerIds: string[], filters?: Filters): Promise<void> {
    // nothing to decline: no call (the master refuses a DECLINE of no offers)
    if (offerIds.length === 0) return Promise.resolve()
    for (const id of offerIds) this.heldOffers.delete(id)
    return this.call('DECLINE', { offerIds, ...(filters ? { filters } : {}) })
  }

  revive(roles?: string[]): Promise<void> {
    return this.call('REVIVE', roles ? { roles } : {})
  }

  suppress(roles?: string[]): Promise<void> {
    return this.call('SUPPRESS', roles ? { roles } : {})
  }

  kill(taskId: string, options: { agentId?: string; gracePeriodMs?: number } = {}): Promise<void> {
    return this.call('KILL', { taskId, ...options })
  }

  /**
   * Tells the master what the framework waits for: `count` tasks of each shape, per pool. It
   * replaces the demand sent before (an empty list clears it), and is sent again after a
   * re-subscription or a new leader. The scaler starts agents for the part nothing fits.
   */
  request(requests: ResourceRequest[]): Promise<void> {
    this.demand = requests.map((r) => ({ ...r, resources: { ...r.resources } }))
    return this.call('REQUEST', { requests: this.demand })
  }

  private resendDemand(): void {
    if (this.stopped) return
    this.call('REQUEST', { requests: this.demand })
      .catch((err: Error) => this.log.warn({ err: err.message }, 'could not send the demand again'))
  }

  reconcile(tasks: Array<{ taskId: string; agentId?: string }> = []): Promise<void> {
    return this.call('RECONCILE', { tasks })
  }

  /** Acknowledges a status update: it will not be delivered again. */
  acknowledge(status: TaskStatus): void {
    if (!status.uuid) return
    const waiting = this.unacked.get(status.uuid)
    this.unacked.delete(status.uuid)
    this.acked.add(status.uuid)
    if (this.acked.size > 100_000) this.acked.delete(this.acked.values().next().value as string)
    if (waiting) {
      waiting.left.delete(status.uuid)
      if (waiting.left.size === 0) waiting.m.ack()
    }
    // the master forgets a task once its terminal update is acknowledged; no reply needed
    if (!isTerminal(status.state)) return
    this.nc.publish(Subjects.schedulerCall, encode({
      type: 'ACKNOWLEDGE', frameworkId: this.frameworkId, taskId: status.taskId, uuid: status.uuid,
      ...(status.agentId ? { agentId: status.agentId } : {}),
    }))
  }

  /** Ends the framework: its tasks are killed and it is forgotten. */
  async teardown(): Promise<void> {
    try {
      await this.call('TEARDOWN', {})
    } finally {
      await this.stop()
    }
  }

  /** Stops talking to the master; the framework's tasks live on for its failover timeout. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.keepalive) clearInterval(this.keepalive)
    this.events?.unsubscribe()
    this.leader?.unsubscribe()
    await this.updates?.close()
  }
}
