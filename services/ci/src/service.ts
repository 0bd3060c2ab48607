// The CI service: a framework on the cluster core. A trigger (webhook, manual, schedule) is
// planned from the commit's pipeline files into a run; the run and job state machines decide;
// this module applies their effects: jobs placed on offers as tasks, task updates fed back,
// commit statuses reported, every run persisted in NATS KV so that a restarted service resumes.
import { randomBytes } from 'node:crypto'
import type { KV, NatsConnection, Subscription } from 'nats'
import { createActor, type Actor } from 'xstate'
import { Buckets, CiLeaderCall, CiLeaderReply, ClusterState, Subjects, isTerminal, wasPreempted, type Offer, type ResourceRequest, type TaskStatus } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { Scheduler } from '../../../shared/scheduler/index.js'
import { LeaderLease, kvKeys, request, requestWithRetry, serve } from '../../../shared/nats/index.js'
import type { Logger } from '../../../shared/log/index.js'
import { systemClock, type Clock, type Timer } from '../../../shared/clock/index.js'
import {
  FINAL_RUN_STATES, activeTasks, checkpointer, createRunMachine, parseRun, persistRun, resumeRun,
  type AttemptRecord, type Checkpointer, type JobTaskEvent, type PersistedRun, type RunMachine,
} from './machines/index.js'
import { evaluateCondition, formatPipelineError, githubContext, parsePipeline, planRun, sortPipelineErrors, type PlannedJob } from './pipeline/index.js'
import type { Schedules } from './schedules.js'
import type { HeadClaims, StatusReporter } from './github/index.js'
import { operationsFor, placeJobs, usageByRepo, type WaitingJob } from './placement.js'
import { taskIdFor, taskSpecFor, type TaskSpecInput } from './task-spec.js'
import { DEFAULT_CACHE_VOLUME_TTL_MS, KnownVolumes, cacheVolumeBase, reclaimOperations, reclaimVolumes, type VolumeWant } from './cache-volumes.js'
import { CacheVolumeLedger } from './cache-volume-ledger.js'
import { withCommit } from './repo.js'
import type { Trigger } from './trigger.js'
import type { ResolvedSecrets, SecretStore } from './secrets.js'
import type { LogArchive } from './logs.js'
import { openKv } from '../../../shared/nats/kv.js'

export const RUNS_BUCKET = 'regatta-runs'
export const CI_FRAMEWORK_ID = 'regatta-ci'
export const CI_ROLES = ['ci/push', 'ci/tag', 'ci/pull_request', 'ci/schedule', 'ci/manual']
/** Plans (each a checkout of the commit) at the same time. */
export const MAX_PLANNING = 4
/** A job launched this long ago whose task has not started is asked about (a lost launch); default of CiOptions.reconcileStartingMs. */
export const RECONCILE_STARTING_MS = 60_000

/** What the service keeps about a run besides its machine. */
export interface RunMeta {
  runId: string
  trigger: Trigger
  createdAt: number
  /** Planned jobs by id (empty when planning failed). */
  jobs: Record<string, PlannedJob>
  /** file:line:column errors of an invalid pipeline. */
  error?: string
  /** A newer run of the same branch or pull request cancelled this one. */
  supersededBy?: string
}

export interface RunDocument {
  meta: RunMeta
  machine: PersistedRun
}

export interface CiOptions {
  nc: NatsConnection
  logger: Logger
  statuses?: StatusReporter
  /** Base of the links in commit statuses (REGATTA_PUBLIC_URL). */
  publicUrl?: string
  githubToken?: string
  /** A newer push to a branch (or pull request) cancels its older runs. */
  cancelSuperseded?: boolean
  clock?: Clock
  replicas?: number
  /** Where ended tasks' logs are kept. */
  logs?: Pick<LogArchive, 'archive'>
  /** Repository secrets, opened for the jobs that name them. */
  secrets?: Pick<SecretStore, 'resolve'>
  /** TTL of the CI lease: a replica that dies is replaced after about this long (default 5 s). */
  leaseTtlMs?: number
  /** Where the default branch's schedules are recorded (cron runs). */
  schedules?: Pick<Schedules, 'record'>
  /**
   * Claims each submitted (webhook) push or pull request head before it is planned, so that a
   * head the GitHub head poller started already starts no second run (github/heads.ts).
   */
  heads?: HeadClaims
  /**
   * How long a launched job's task may stay unstarted before the master is asked about it, and
   * how often that is checked (default RECONCILE_STARTING_MS): a launch the master lost is
   * answered LOST and the job requeued.
   */
  reconcileStartingMs?: number
  /**
   * Cache volumes unused for this long are destroyed and their disk unreserved (default
   * DEFAULT_CACHE_VOLUME_TTL_MS, 7 days; 0: kept however long they are unused).
   */
  cacheVolumeTtlMs?: number
  /** Per-repository weights of the fair share between repositories (REGATTA_REPO_WEIGHTS, parseRepoWeights; default 1). */
  repoWeights?: Readonly<Record<string, number>>
}

interface LiveRun {
  meta: RunMeta
  actor: Actor<RunMachine>
}

const roleOf = (t: Trigger): string => `ci/${t.kind}`
/** Runs stored before jobs had a pool ran on the default one. */
const poolOf = (job: PlannedJob): string => job.pool ?? 'default'
const waitKey = (runId: string, jobId: string): string => `${runId}\u0000${jobId}`

export function newRunId(now: number): string {
  return `r${now.toString(36)}${randomBytes(3).toString('hex')}`
}

export class CiService {
  /** The framework connection, while this replica holds the CI lease. */
  private sched: Scheduler | undefined
  private lease?: LeaderLease
  /** The lead being taken (runs resumed, framework subscribed), awaited by start(). */
  private leading?: Promise<void>
  private leaderCalls?: Subscription
  private reconcileTimer?: Timer
  readonly id = `ci-${randomBytes(4).toString('hex')}`
  private readonly nc: NatsConnection
  private readonly log: Logger
  private readonly clock: Clock
  private kv?: KV
  private readonly runs = new Map<string, LiveRun>()
  private readonly waiting = new Map<string, { runId: string; jobId: string; attempt: number; requeue: number; since: number }>()
  private readonly tasks = new Map<string, { runId: string; jobId: string }>()
  private readonly machine: RunMachine
  private readonly saved: Checkpointer
  /** The roles offers are wanted for, as last told to the master (sorted, comma-joined). */
  private wantedRoles: string | undefined
  /** The demand last told to the master (REQUEST), as JSON. */
  private toldDemand: string | undefined
  private demandTimer: Timer | undefined
  /** The cache volumes on each agent, as far as seen: a new one never takes the id of one in use. */
  private readonly volumes = new KnownVolumes()
  /** When each cache volume was last used (KV), for the TTL and least-recently-used eviction. */
  private volumeLedger?: CacheVolumeLedger
  /** The cache volume each launched task took. */
  private readonly volumeOfTask = new Map<string, { agentId: string; role: string; id: string }>()
  private volumeTimer?: Timer

  constructor(private readonly o: CiOptions) {
    this.nc = o.nc
    this.log = o.logger
    this.clock = o.clock ?? systemClock
    this.saved = checkpointer((run) => this.store(run), (err, runId) => this.log.error({ err, runId }, 'cannot store a run'))
    this.machine = createRunMachine({
      requestPlacement: ({ runId, jobId, attempt, requeue }) => {
        // requeue: absent in machines persisted before relaunches had their own task ids
        this.waiting.set(waitKey(runId, jobId), { runId, jobId, attempt, requeue: requeue ?? 0, since: this.clock.now() })
        this.wantOffers()
      },
      withdrawPlacement: ({ runId, jobId }) => {
        this.waiting.delete(waitKey(runId, jobId))
        this.wantOffers()
      },
      killTask: ({ taskId }) => {
        this.sched?.kill(taskId).catch((err: Error) => this.log.warn({ err: err.message, taskId }, 'kill failed'))
      },
      reportStatus: ({ runId, jobId, status, description }) => {
        const run = this.runs.get(runId)
        const job = run?.meta.jobs[jobId]
        if (!run || !job) return
        this.reportStatus(run.meta, job.context, status, description)
      },
      reportRun: ({ runId, state, description }) => this.log.info({ runId, state }, description),
      persist: (p, run) => this.saved.persist(p, run),
      ifHolds: ({ runId, jobId, ifExpr, success, failure, cancelled }) => {
        const run = runId === undefined ? undefined : this.runs.get(runId)
        const job = run?.meta.jobs[jobId]
        if (!run || !job) return false
        try {
          return evaluateCondition(ifExpr ?? job.if, {
            github: githubContext(run.meta.trigger, runId), matrix: job.matrix, env: job.env, status: { success, failure, cancelled },
          })
        } catch (err) {
          this.log.warn({ runId, jobId, err: (err as Error).message }, 'the job\'s if condition failed; skipping it')
          return false
        }
      },
    } as Parameters<typeof createRunMachine>[0])
  }

  /** The framework's scheduler; only the replica holding the CI lease has one. */
  get scheduler(): Scheduler {
    if (!this.sched) throw new RegattaError('NOT_LEADER', 'this CI replica does not hold the CI lease')
    return this.sched
  }

  /** True while this replica runs the CI framework (the others hand it their writes). */
  get isLeader(): boolean {
    return this.sched !== undefined && (this.lease?.isLeader ?? false)
  }

  /**
   * Opens the runs bucket and contends for the CI lease: the holder resumes the stored runs and
   * runs the framework; a standby serves reads from KV and hands triggers, cancels and reruns to
   * the holder, and takes over when the holder's lease lapses.
   */
  async start(): Promise<void> {
    this.kv = await openKv(this.nc, RUNS_BUCKET, { history: 1, replicas: this.o.replicas ?? 1 })
    this.volumeLedger = await CacheVolumeLedger.open(this.nc, this.log, this.o.replicas ?? 1)
    this.lease = new LeaderLease({
      nc: this.nc, bucket: Buckets.ciLeader, ttlMs: this.o.leaseTtlMs ?? 5_000, holderId: this.id, replicas: this.o.replicas ?? 1,
      logger: this.log, clock: this.clock,
      onElected: () => {
        this.leading = this.lead().catch((err: Error) => {
          // Holding the lease without leading would block every replica: step down, so that this
          // replica (or another) tries again once the lease lapses.
          this.log.error({ err: err.message }, 'could not take the CI lead; stepping down')
          this.lease?.demote(`could not take the lead: ${err.message}`)
        })
      },
      onDemoted: (why) => { void this.standBy(why) },
    })
    await this.lease.start()
    await this.leading
  }

  private async lead(): Promise<void> {
    this.log.info({ id: this.id }, 'this CI replica leads: resuming runs')
    await this.resumeRuns()
    await this.volumeLedger?.load().catch((err: Error) => this.log.warn({ err: err.message }, 'cannot read when cache volumes were last used'))
    if (!this.lease?.isLeader) throw new RegattaError('NOT_LEADER', 'the CI lease lapsed while the runs were read')
    const sched = new Scheduler({
      nc: this.nc,
      framework: { id: CI_FRAMEWORK_ID, name: 'regatta-ci', roles: CI_ROLES, revocable: true, failoverTimeoutMs: 3_600_000 },
      logger: this.log,
      onEvent: (e) => {
        if (e.type === 'OFFERS') void this.onOffers(e.offers)
        else if (e.type === 'UPDATE') void this.onUpdate(e.status)
      },
    })
    // set first: offers and updates may arrive while it subscribes
    this.sched = sched
    await sched.start()
    this.leaderCalls = serve(this.nc, Subjects.ciLeader, CiLeaderCall, (c) => this.handleForwarded(c), { logger: this.log })
    const active = [...this.runs.values()].flatMap((r) => activeTasks(persistRun(r.actor)).map((t) => ({ taskId: t.taskId })))
    if (active.length > 0) await sched.reconcile(active)
    void this.learnVolumes()
    this.wantedRoles = undefined
    this.toldDemand = undefined
    this.wantOffers()
    this.reconcileTimer = this.clock.setInterval(() => this.reconcileStarting(), this.reconcileStartingMs)
    if (this.cacheVolumeTtlMs > 0) this.volumeTimer = this.clock.setInterval(() => void this.checkVolumeTtl(), Math.min(60_000, Math.max(250, this.cacheVolumeTtlMs / 4)))
  }

  /** Lost the lease: stop acting at once; what the runs reached is in KV for the next holder. */
  private async standBy(why: string): Promise<void> {
    const sched = this.sched
    // also after a lead that failed half way: runs it resumed are dropped (KV keeps them)
    this.log.warn({ id: this.id, why }, 'this CI replica no longer leads')
    this.sched = undefined
    this.reconcileTimer?.cancel()
    this.volumeTimer?.cancel()
    this.leaderCalls?.unsubscribe()
    for (const r of this.runs.values()) r.actor.stop()
    this.runs.clear()
    this.waiting.clear()
    this.tasks.clear()
    await sched?.stop().catch(() => undefined)
  }

  /**
   * Jobs launched a while ago whose task never started are asked about (RECONCILE): a launch
   * that never reached the master is answered LOST and the job requeued, instead of waiting.
   */
  private get reconcileStartingMs(): number {
    return this.o.reconcileStartingMs ?? RECONCILE_STARTING_MS
  }

  private reconcileStarting(): void {
    if (!this.sched) return
    const now = this.clock.now()
    const tasks = [...this.runs.values()].flatMap((r) => {
      // the live context, read only: no persisted copy needed
      const run = r.actor.getSnapshot().context
      return activeTasks(run).filter((t) => {
        const c = run.jobs[t.jobId]?.context
        return c && c.startedAt === null && c.launchedAt !== null && now - c.launchedAt >= this.reconcileStartingMs
      }).map((t) => ({ taskId: t.taskId }))
    })
    if (tasks.length > 0) this.sched.reconcile(tasks).catch((err: Error) => this.log.warn({ err: err.message }, 'reconcile failed'))
  }

  private async handleForwarded(c: CiLeaderCall): Promise<RunDocument | { ok: true }> {
    switch (c.type) {
      case 'SUBMIT': this.submit(c.trigger as Trigger); return { ok: true }
      case 'TRIGGER': return this.trigger(c.trigger as Trigger)
      case 'CANCEL': return this.cancel(c.runId)
      case 'RERUN': return this.rerun(c.runId)
    }
  }

  /** A write this standby hands to the replica holding the CI lease (retried while none holds it). */
  private async forward(c: CiLeaderCall): Promise<RunDocument> {
    const reply = await requestWithRetry(this.nc, Subjects.ciLeader, c, CiLeaderReply, { deadlineMs: 30_000, timeoutMs: 120_000 })
    return reply as unknown as RunDocument
  }

  /** Learns the cache volumes on the agents from the master's state (those in use are in no offer). */
  private async learnVolumes(): Promise<void> {
    try {
      this.volumes.noteState(await request(this.nc, Subjects.masterState, {}, ClusterState, 3_000), CI_ROLES)
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read the cache volumes from the master\'s state')
    }
  }

  async stop(): Promise<void> {
    await this.saved.flush()
    this.reconcileTimer?.cancel()
    this.volumeTimer?.cancel()
    this.leaderCalls?.unsubscribe()
    await this.sched?.stop()
    this.sched = undefined
    for (const r of this.runs.values()) r.actor.stop()
    // the next replica takes over at once rather than after the lease's TTL
    await this.lease?.resign()
  }

  // ---- runs ---------------------------------------------------------------------------------

  private async store(run: PersistedRun): Promise<void> {
    const live = this.runs.get(run.runId)
    if (!live || !this.kv) return
    await this.kv.put(`run.${run.runId}`, JSON.stringify({ meta: live.meta, machine: run } satisfies RunDocument))
  }

  private async resumeRuns(): Promise<void> {
    const kv = this.kv!
    const keys = await kvKeys(this.nc, RUNS_BUCKET, 'run.>')
    const now = this.clock.now()
    for (const k of keys) {
      const e = await kv.get(k)
      if (!e || e.operation !== 'PUT') continue
      try {
        const doc = e.json<RunDocument>()
        const machine = parseRun(JSON.stringify(doc.machine))
        if (FINAL_RUN_STATES.has(machine.state)) continue
        const live: LiveRun = { meta: doc.meta, actor: undefined as unknown as Actor<RunMachine> }
        this.runs.set(doc.meta.runId, live)
        for (const t of activeTasks(machine)) this.tasks.set(t.taskId, { runId: doc.meta.runId, jobId: t.jobId })
        live.actor = resumeRun(this.machine, machine, { at: now })
        this.log.info({ runId: doc.meta.runId, state: machine.state }, 'resumed a run')
      } catch (err) {
        this.log.error({ key: k, err: (err as Error).message }, 'cannot resume a stored run')
      }
    }
  }

  private planning = 0
  private readonly planQueue: Trigger[] = []

  /**
   * Queues a trigger to be planned soon (at most MAX_PLANNING at a time: each plan checks a
   * commit out): a webhook is answered at once, however many pushes arrive together.
   */
  submit(trigger: Trigger): void {
    if (!this.sched) {
      this.forward({ type: 'SUBMIT', trigger }).catch((err: Error) => this.log.error({ err: err.message, repo: trigger.repo.fullName, sha: trigger.sha }, 'cannot hand a trigger to the leading CI replica'))
      return
    }
    this.planQueue.push(trigger)
    this.drainPlans()
  }

  private drainPlans(): void {
    while (this.planning < MAX_PLANNING && this.planQueue.length > 0) {
      const next = this.planQueue.shift()!
      this.planning++
      this.startSubmitted(next)
        .catch((err: Error) => this.log.error({ err: err.message, repo: next.repo.fullName, sha: next.sha }, 'cannot start a run'))
        .finally(() => {
          this.planning--
          this.drainPlans()
        })
    }
  }

  /** A submitted trigger's run, unless its head was claimed already (by the head poller or another replica). */
  private async startSubmitted(trigger: Trigger): Promise<void> {
    if (this.o.heads && !(await this.o.heads.claim(trigger))) return
    const doc = await this.trigger(trigger)
    this.o.heads?.started(trigger, doc.meta.runId)
  }

  /** Plans the trigger's commit and starts a run; returns it (ended `error` when a pipeline is invalid). */
  async trigger(trigger: Trigger): Promise<RunDocument> {
    if (!this.sched) return this.forward({ type: 'TRIGGER', trigger: trigger as unknown as Extract<CiLeaderCall, { type: 'TRIGGER' }>['trigger'] })
    const runId = newRunId(this.clock.now())
    const meta: RunMeta = { runId, trigger, createdAt: this.clock.now(), jobs: {} }
    let planError: string | undefined
    try {
      const plan = await withCommit(trigger, this.o.githubToken, (files) => {
        if (trigger.kind === 'push' && trigger.branch === trigger.repo.defaultBranch && this.o.schedules) {
          // the default branch's files say which schedules the repository has
          const crons = files.pipelines.flatMap((f) => {
            const r = parsePipeline(f.path, f.text)
            return r.ok ? r.pipeline.on.schedule : []
          })
          this.o.schedules.record(trigger.repo, crons).catch((err: Error) => this.log.warn({ err: err.message }, 'cannot record schedules'))
        }
        return planRun(files.pipelines, trigger, { hashFiles: files.hashFiles, runId })
      })
      if (plan.errors.length > 0) planError = sortPipelineErrors(plan.errors).map(formatPipelineError).join('\n')
      else for (const p of plan.pipelines) for (const j of p.jobs) meta.jobs[j.id] = j
    } catch (err) {
      planError = RegattaError.from(err).message
    }
    if (planError) meta.error = planError
    const live: LiveRun = { meta, actor: undefined as unknown as Actor<RunMachine> }
    this.runs.set(runId, live)
    const jobs = Object.values(meta.jobs).map((j) => ({ id: j.id, needs: j.needs, retries: j.retries, timeoutMs: j.timeoutMs, if: j.if }))
    live.actor = createActor(this.machine, { input: { runId, jobs, createdAt: meta.createdAt } })
    live.actor.start()
    if (planError) {
      live.actor.send({ type: 'PIPELINE_INVALID', message: planError, at: this.clock.now() })
      // no jobs to carry a status: one status for the whole configuration, naming file:line
      this.reportStatus(meta, 'regatta', 'error', planError.split('\n')[0]!)
    } else {
      live.actor.send({ type: 'START', at: this.clock.now() })
      if (this.o.cancelSuperseded !== false) this.cancelSuperseded(meta)
    }
    await this.saved.flush()
    this.log.info({ runId, repo: trigger.repo.fullName, ref: trigger.ref, sha: trigger.sha, jobs: jobs.length, error: planError }, 'run created')
    return this.document(live)
  }

  private cancelSuperseded(meta: RunMeta): void {
    const t = meta.trigger
    const sameLine = (o: Trigger): boolean => o.repo.fullName === t.repo.fullName && o.kind === t.kind &&
      (t.kind === 'pull_request' ? o.pullRequest?.number === t.pullRequest?.number : t.kind === 'push' && o.branch === t.branch)
    if (t.kind !== 'push' && t.kind !== 'pull_request') return
    for (const other of this.runs.values()) {
      if (other.meta.runId === meta.runId || other.meta.createdAt > meta.createdAt || !sameLine(other.meta.trigger)) continue
      if (FINAL_RUN_STATES.has(persistRun(other.actor).state)) continue
      other.meta.supersededBy = meta.runId
      other.actor.send({ type: 'CANCEL', at: this.clock.now() })
      this.log.info({ runId: other.meta.runId, by: meta.runId }, 'run superseded by a newer push')
    }
  }

  async cancel(runId: string): Promise<RunDocument> {
    if (!this.sched) return this.forward({ type: 'CANCEL', runId })
    const live = await this.live(runId)
    live.actor.send({ type: 'CANCEL', at: this.clock.now() })
    await this.saved.flush()
    return this.document(live)
  }

  /** A new run of the same trigger (the commit's pipelines planned again). */
  async rerun(runId: string): Promise<RunDocument> {
    if (!this.sched) return this.forward({ type: 'RERUN', runId })
    const doc = await this.get(runId)
    if (!doc) throw new RegattaError('NOT_FOUND', `no run ${runId}`)
    return this.trigger({ ...doc.meta.trigger, deliveryId: undefined })
  }

  private async live(runId: string): Promise<LiveRun> {
    const live = this.runs.get(runId)
    if (live) return live
    if (await this.get(runId)) throw new RegattaError('INVALID_OPERATION', `run ${runId} has ended`)
    throw new RegattaError('NOT_FOUND', `no run ${runId}`)
  }

  private document(live: LiveRun): RunDocument {
    return { meta: live.meta, machine: persistRun(live.actor) }
  }

  async get(runId: string): Promise<RunDocument | undefined> {
    const live = this.runs.get(runId)
    if (live) return this.document(live)
    const e = await this.kv?.get(`run.${runId}`)
    if (!e || e.operation !== 'PUT') return undefined
    return e.json<RunDocument>()
  }

  /** Every stored run, newest first. */
  async list(limit = 100): Promise<RunDocument[]> {
    const out: RunDocument[] = []
    const keys = (await kvKeys(this.nc, RUNS_BUCKET, 'run.>')).sort().reverse()
    for (const k of keys.slice(0, limit)) {
      const doc = await this.get(k.slice('run.'.length))
      if (doc) out.push(doc)
    }
    return out.sort((a, b) => b.meta.createdAt - a.meta.createdAt)
  }

  /** The tasks of a job's attempts, oldest first (for its log), each with its end once it ended. */
  async jobAttempts(runId: string, jobId: string): Promise<JobAttempt[]> {
    return jobAttemptsOf(await this.get(runId), jobId)
  }

  /** The tasks of a job's attempts, oldest first. */
  async jobTasks(runId: string, jobId: string): Promise<string[]> {
    return (await this.jobAttempts(runId, jobId)).map((a) => a.taskId)
  }

  // ---- statuses -----------------------------------------------------------------------------

  private reportStatus(meta: RunMeta, context: string, state: 'pending' | 'success' | 'failure' | 'error', description: string): void {
    const base = (this.o.publicUrl ?? '').replace(/\/$/, '')
    this.o.statuses?.report({
      repo: meta.trigger.repo.fullName, sha: meta.trigger.sha, context, state, description,
      ...(base ? { targetUrl: `${base}/runs/${meta.runId}` } : {}),
    })
  }

  // ---- offers and tasks ---------------------------------------------------------------------

  /**
   * Offers are wanted only for the roles of waiting jobs (each trigger kind has its role): the
   * others are suppressed, so that the master offers a push's agent to `ci/push`, not to a role
   * with nothing to run.
   */
  private wantOffers(): void {
    if (!this.sched) return
    this.tellDemand()
    const wanted = new Set<string>()
    for (const w of this.waiting.values()) {
      const run = this.runs.get(w.runId)
      if (run) wanted.add(roleOf(run.meta.trigger))
    }
    // offers of a role holding a cache volume past its TTL: the volume is destroyed on one
    for (const role of this.volumeLedger?.expiredRoles(this.clock.now(), this.cacheVolumeTtlMs) ?? []) wanted.add(role)
    const key = [...wanted].sort().join(',')
    if (key === this.wantedRoles) return
    this.wantedRoles = key
    const unwanted = CI_ROLES.filter((r) => !wanted.has(r))
    if (unwanted.length > 0) this.sched?.suppress(unwanted).catch((err: Error) => this.log.warn({ err: err.message }, 'suppress failed'))
    if (wanted.size > 0) this.sched?.revive([...wanted]).catch((err: Error) => this.log.warn({ err: err.message }, 'revive failed'))
  }

  private async onOffers(offers: Offer[]): Promise<void> {
    for (const o of offers) this.volumes.noteOffer(o)
    const waiting: WaitingJob[] = []
    for (const [key, w] of this.waiting) {
      const run = this.runs.get(w.runId)
      const job = run?.meta.jobs[w.jobId]
      if (!run || !job) {
        this.waiting.delete(key)
        continue
      }
      waiting.push({
        key, role: roleOf(run.meta.trigger), pool: poolOf(job), cpus: job.resources.cpus, mem: job.resources.mem,
        ...(job.resources.disk ? { disk: job.resources.disk } : {}),
        // a job evicted from revocable capacity goes back on ordinary capacity
        revocable: job.revocable && !this.lastAttemptPreempted(run, w.jobId), priority: job.priority, since: w.since,
        ...(job.cache?.volume ? { volume: { base: cacheVolumeBase(run.meta.trigger.repo.fullName, job.pipeline), size: job.cache.volume.size } } : {}),
        repo: run.meta.trigger.repo.fullName,
      })
    }
    // repositories take turns by what their launched, not yet ended, tasks hold (placement.ts)
    const running = usageByRepo([...this.tasks.values()].flatMap(({ runId, jobId }) => {
      const run = this.runs.get(runId)
      const job = run?.meta.jobs[jobId]
      return run && job ? [{ repo: run.meta.trigger.repo.fullName, ...job.resources }] : []
    }))
    const placeable = this.reclaimCacheVolumes(offers, waiting)
    const { placements, unused } = placeJobs(placeable, waiting, (agentId, role) => this.volumes.ids(agentId, role), { running, ...(this.o.repoWeights ? { weights: this.o.repoWeights } : {}) })
    if (unused.length > 0) {
      this.sched?.decline(unused.map((o) => o.id), { refuseSeconds: this.waiting.size > 0 ? 1 : 30 })
        .catch((err: Error) => this.log.warn({ err: err.message }, 'decline failed'))
    }
    for (const p of placements) {
      const inputs: TaskSpecInput[] = []
      for (const { job: w, resources, volume } of p.jobs) {
        const entry = this.waiting.get(w.key)
        if (!entry) continue
        const run = this.runs.get(entry.runId)!
        const job = run.meta.jobs[entry.jobId]!
        const taskId = taskIdFor(entry.runId, entry.jobId, entry.attempt, entry.requeue)
        this.waiting.delete(w.key)
        this.tasks.set(taskId, { runId: entry.runId, jobId: entry.jobId })
        run.actor.send({ type: 'JOB_EVENT', jobId: entry.jobId, event: { type: 'LAUNCHED', taskId, at: this.clock.now() } })
        const secrets = await this.secretsFor(run.meta.trigger, job)
        inputs.push({
          runId: entry.runId, job, taskId, attempt: entry.attempt, trigger: run.meta.trigger, resources,
          ...(secrets ? { secrets } : {}),
          ...(this.o.githubToken ? { githubToken: this.o.githubToken } : {}),
          ...(volume ? { cacheVolume: volume.id } : {}),
        })
        if (volume?.create) this.volumes.note(p.offer.agentId, p.offer.role, volume.id)
        if (volume) this.useCacheVolume(taskId, { agentId: p.offer.agentId, role: p.offer.role, id: volume.id })
      }
      // the run knows the task before the master does: a crash in between is reconciled as lost
      await this.saved.flush()
      const operations = operationsFor(p, inputs.map(taskSpecFor))
      this.sched?.operate([p.offer.id], operations, { refuseSeconds: 1 }).catch((err: Error) => {
        if (!operations.some((op) => op.type === 'CREATE') || (err as RegattaError).code !== 'INVALID_OPERATION') {
          this.log.warn({ err: err.message }, 'launch failed')
          return
        }
        // a volume id in use that this service did not know of (a restart, another replica): the
        // ACCEPT was refused before anything changed, so the same offer takes the jobs without volumes
        this.log.warn({ agentId: p.offer.agentId, err: err.message }, 'cache volumes refused; launching without them')
        void this.learnVolumes()
        const plain = inputs.map(({ cacheVolume: _v, ...i }) => taskSpecFor({ ...i, resources: i.resources.filter((r) => !r.disk) }))
        this.sched?.accept([p.offer.id], plain, { refuseSeconds: 1 }).catch((e: Error) => this.log.warn({ err: e.message }, 'launch failed'))
      })
    }
    this.wantOffers()
  }

  // ---- cache volumes: TTL and least-recently-used eviction ---------------------------------

  private get cacheVolumeTtlMs(): number {
    return this.o.cacheVolumeTtlMs ?? DEFAULT_CACHE_VOLUME_TTL_MS
  }

  private useCacheVolume(taskId: string, v: { agentId: string; role: string; id: string }): void {
    this.volumeOfTask.set(taskId, v)
    this.volumeLedger?.used(v.agentId, v.role, v.id, true, this.clock.now())
  }

  private releaseCacheVolume(taskId: string): void {
    const v = this.volumeOfTask.get(taskId)
    if (!v) return
    this.volumeOfTask.delete(taskId)
    this.volumeLedger?.used(v.agentId, v.role, v.id, false, this.clock.now())
  }

  /**
   * Takes the offers whose free cache volumes go (cache-volumes.ts reclaimVolumes: unused past
   * the TTL, or the least recently used when a waiting job's volume has no room) and ACCEPTs
   * them with DESTROY and UNRESERVE; returns the other offers, for placement.
   */
  private reclaimCacheVolumes(offers: Offer[], waiting: readonly WaitingJob[]): Offer[] {
    const ledger = this.volumeLedger
    if (!ledger || !this.sched) return offers
    const now = this.clock.now()
    for (const o of offers) for (const r of o.resources) if (r.disk && r.role === o.role) ledger.sighted(o.agentId, o.role, r.disk.persistence.id, now)
    const wants: VolumeWant[] = waiting.flatMap((w) => (w.volume ? [{
      role: w.role, pool: w.pool, cpus: w.cpus, mem: w.mem, ...(w.disk ? { disk: w.disk } : {}), revocable: w.revocable, base: w.volume.base, size: w.volume.size,
    }] : []))
    const reclaims = reclaimVolumes(offers, wants, {
      now, ttlMs: this.cacheVolumeTtlMs, lastUsed: (a, r, id) => ledger.lastUsed(a, r, id), existing: (a, r) => this.volumes.ids(a, r),
    })
    for (const r of reclaims) {
      const { agentId, role } = r.offer
      const ids = r.volumes.map((v) => v.disk!.persistence.id)
      // what they free comes back in the next offer at once (no refusal)
      this.sched.operate([r.offer.id], reclaimOperations(r), { refuseSeconds: 0 }).then(() => {
        for (const id of ids) {
          ledger.forget(agentId, role, id)
          this.volumes.forget(agentId, role, id)
        }
        this.log.info({ agentId, role, volumes: ids, why: r.why }, r.why === 'expired' ? 'cache volumes unused past their TTL destroyed' : 'least recently used cache volumes destroyed to make room')
        this.wantedRoles = undefined
        this.wantOffers()
      }, (err: Error) => {
        this.log.warn({ agentId, role, volumes: ids, err: err.message }, 'cannot destroy cache volumes')
        void this.learnVolumes()
      })
    }
    const taken = new Set(reclaims.map((r) => r.offer.id))
    return taken.size === 0 ? offers : offers.filter((o) => !taken.has(o.id))
  }

  /** Volumes past their TTL: their roles' offers are wanted (records of volumes the master no longer has are dropped first). */
  private async checkVolumeTtl(): Promise<void> {
    const ledger = this.volumeLedger
    if (!ledger || !this.sched || ledger.expiredRoles(this.clock.now(), this.cacheVolumeTtlMs).size === 0) return
    try {
      const state = await request(this.nc, Subjects.masterState, {}, ClusterState, 3_000)
      ledger.keepOnly(state.agents.flatMap((a) => a.resources.flatMap((r) => (r.disk && r.role ? [{ agentId: a.id, role: r.role, id: r.disk.persistence.id }] : []))))
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'cannot read the master\'s state for cache volumes')
    }
    this.wantOffers()
  }

  private lastAttemptPreempted(run: LiveRun, jobId: string): boolean {
    // read on every offer for each waiting job: the live context, not a persisted (copied) one
    return run.actor.getSnapshot().context.jobs[jobId]?.context.history.at(-1)?.outcome === 'preempted'
  }

  /**
   * Tells the master what the waiting jobs need (REQUEST), per pool, role and shape, so that
   * the scaler can grow a pool for them; sent when it changes, at most every 200 ms.
   */
  private tellDemand(): void {
    if (this.demandTimer) return
    this.demandTimer = this.clock.setTimeout(() => {
      this.demandTimer = undefined
      if (!this.sched) return
      const shapes = new Map<string, ResourceRequest>()
      for (const w of this.waiting.values()) {
        const run = this.runs.get(w.runId)
        const job = run?.meta.jobs[w.jobId]
        if (!run || !job) continue
        const resources: Record<string, number> = { cpus: job.resources.cpus, mem: job.resources.mem, ...(job.resources.disk ? { disk: job.resources.disk } : {}) }
        const r = { pool: poolOf(job), role: roleOf(run.meta.trigger), resources }
        const key = JSON.stringify(r)
        const seen = shapes.get(key)
        if (seen) seen.count++
        else shapes.set(key, { ...r, count: 1 })
      }
      const demand = [...shapes.values()].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))
      const key = JSON.stringify(demand)
      if (key === this.toldDemand) return
      this.toldDemand = key
      this.sched?.request(demand).catch((err: Error) => {
        this.toldDemand = undefined
        this.log.warn({ err: err.message }, 'could not tell the master the demand')
      })
    }, 200)
  }

  /** Keeps an ended task's output for the log retention (JetStream keeps it a day). */
  private archiveLog(taskId: string): void {
    const archive = this.o.logs
    if (!archive) return
    // the agent sends the last output before the end: a moment lets it be stored
    this.clock.setTimeout(() => {
      archive.archive(CI_FRAMEWORK_ID, taskId).catch((err: Error) => this.log.warn({ taskId, err: err.message }, 'cannot archive a task\'s log (it stays readable for a day)'))
    }, 300)
  }

  /** The values of the secrets a job names (none for a fork's pull request: the plan names none). */
  private async secretsFor(trigger: Trigger, job: PlannedJob): Promise<ResolvedSecrets | undefined> {
    const names = new Set([...job.secrets, ...job.services.flatMap((s) => Object.values(s.secretEnv))])
    if (names.size === 0) return undefined
    if (!this.o.secrets) return { values: {}, missing: [...names] }
    try {
      return await this.o.secrets.resolve(trigger.repo.fullName, names)
    } catch (err) {
      // the job runs without them and says so in its log, rather than never running
      this.log.error({ repo: trigger.repo.fullName, err: (err as Error).message }, 'cannot open the secrets of a job')
      return { values: {}, missing: [...names] }
    }
  }

  private async onUpdate(status: TaskStatus): Promise<void> {
    const ref = this.tasks.get(status.taskId)
    const run = ref && this.runs.get(ref.runId)
    if (ref && run) {
      const event = jobEventOf(status)
      if (event) run.actor.send({ type: 'JOB_EVENT', jobId: ref.jobId, event })
      if (isTerminal(status.state)) {
        this.tasks.delete(status.taskId)
        this.archiveLog(status.taskId)
        this.releaseCacheVolume(status.taskId)
      }
      if (FINAL_RUN_STATES.has(persistRun(run.actor).state)) {
        await this.saved.flush()
        this.runs.delete(ref.runId)
        run.actor.stop()
      }
      await this.saved.flush()
    }
    this.sched?.acknowledge(status)
  }
}

/** One task a job ran (or runs), with its end once it ended. */
export interface JobAttempt {
  taskId: string
  ended?: AttemptRecord
}

/** The tasks of a job's attempts in a run document, oldest first (for its log). */
export function jobAttemptsOf(doc: RunDocument | undefined, jobId: string): JobAttempt[] {
  const job = doc?.machine.snapshot.context.jobs[jobId]
  if (!job) return []
  const out: JobAttempt[] = job.context.history.map((h) => ({ taskId: h.taskId, ended: h }))
  if (job.context.taskId && !out.some((a) => a.taskId === job.context.taskId)) out.push({ taskId: job.context.taskId })
  return out
}

/** A task status as the job machine's event (none for states it does not care about). */
export function jobEventOf(s: TaskStatus): JobTaskEvent | undefined {
  const at = s.timestamp
  const taskId = s.taskId
  switch (s.state) {
    case 'RUNNING': return { type: 'TASK_RUNNING', taskId, at }
    case 'FINISHED': return { type: 'TASK_FINISHED', taskId, exitCode: s.exitCode ?? 0, at }
    case 'FAILED':
      return { type: 'TASK_FAILED', taskId, reason: s.reason ?? 'FAILED', ...(s.exitCode !== undefined ? { exitCode: s.exitCode } : {}), ...(s.message ? { message: s.message } : {}), at }
    case 'KILLED':
      if (wasPreempted(s)) return { type: 'TASK_PREEMPTED', taskId, ...(s.message ? { message: s.message } : {}), at }
      return { type: 'TASK_FAILED', taskId, reason: s.reason ?? 'KILLED', ...(s.message ? { message: s.message } : {}), at }
    case 'LOST': case 'DROPPED': case 'GONE': case 'ERROR':
      return { type: 'TASK_LOST', taskId, reason: s.reason ?? s.state, ...(s.message ? { message: s.message } : {}), at }
    default: return undefined
  }
}

