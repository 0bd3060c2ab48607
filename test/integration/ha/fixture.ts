// The HA tests' cluster: real `regatta master` and `regatta agent` processes on a real
// nats-server (or a 3-node NATS cluster), a framework in the test process, and the Docker
// engine watched for container starts. Everything it starts it stops, including containers
// carrying its agents' label, and the temp dirs.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import { connectNats } from '../../../shared/nats/index.js'
import { Consumers, Streams, isTerminal, type FrameworkInfo, type TaskStatus } from '../../../shared/protocol/index.js'
import { LABEL_AGENT, LABEL_FRAMEWORK, LABEL_TASK } from '../../../services/agent/src/containerizer/labels.js'
import { RecordingFramework } from '../../helpers/cluster.js'
import { listContainersByLabel, removeContainersByLabel, testDocker } from '../../helpers/docker.js'
import {
  clusterState, startAgentProcess, startMasterProcess, waitForLeader,
  type AgentProcess, type AgentProcessOptions, type MasterProcess, type MasterProcessOptions,
} from '../../helpers/processes.js'

export type MasterSettings = Omit<MasterProcessOptions, 'natsUrl' | 'id'>
export type AgentSettings = Omit<AgentProcessOptions, 'natsUrl' | 'workDir'> & { workDir?: string }

export interface HaCluster {
  natsUrl: string
  /** The test's own connection (state requests, raw commands). */
  nc: NatsConnection
  /** Masters by slot; a killed master's slot holds the dead process until it is restarted. */
  masters: MasterProcess[]
  agents: AgentProcess[]
  /** Starts masters m1..mN; the first leads (it is started alone and waited for). */
  startMasters(n: number, settings?: MasterSettings): Promise<MasterProcess[]>
  /** Starts the master of slot i again (same id and HTTP port). */
  restartMaster(i: number): Promise<MasterProcess>
  startAgent(settings?: AgentSettings): Promise<AgentProcess>
  /** The master process that leads now (per `regatta.master.state`). */
  leader(pred?: (id: string) => boolean, timeoutMs?: number): Promise<{ master: MasterProcess; epoch: number }>
  framework(info?: Partial<FrameworkInfo>): Promise<RecordingFramework>
  /** Every agent id seen so far (restarted agents keep theirs). */
  agentIds(): string[]
  stop(): Promise<void>
}

/** When each event of a fixture framework arrived (ms since the epoch), by index in `fw.events`. */
const arrivals = new WeakMap<RecordingFramework, number[]>()

export async function startHaCluster(natsUrl: string, o: { agentDefaults?: AgentSettings } = {}): Promise<HaCluster> {
  const nc = await connectNats(natsUrl, 'ha-test', { reconnectTimeWait: 100 })
  const dirs: string[] = []
  const ids = new Set<string>()
  const frameworks: RecordingFramework[] = []
  const conns: NatsConnection[] = [nc]
  let masterSettings: MasterSettings = {}
  const ports: number[] = []
  const c: HaCluster = {
    natsUrl,
    nc,
    masters: [],
    agents: [],
    async startMasters(n, settings = {}) {
      masterSettings = settings
      const first = await startMasterProcess({ natsUrl, id: 'm1', ...settings, waitFor: 'leader' })
      c.masters.push(first)
      ports.push(Number(new URL(first.httpUrl).port))
      const rest = await Promise.all(Array.from({ length: n - 1 }, (_, i) => startMasterProcess({ natsUrl, id: `m${i + 2}`, ...settings })))
      for (const m of rest) {
        c.masters.push(m)
        ports.push(Number(new URL(m.httpUrl).port))
      }
      return c.masters
    },
    async restartMaster(i) {
      const old = c.masters[i]!
      if (!old.hasExited) throw new Error(`master ${old.id} still runs`)
      const m = await startMasterProcess({ natsUrl, ...masterSettings, id: old.id, httpPort: ports[i]!, waitFor: 'started' })
      c.masters[i] = m
      return m
    },
    async startAgent(settings = {}) {
      const s = { ...o.agentDefaults, ...settings }
      let workDir = s.workDir
      if (!workDir) {
        workDir = await mkdtemp(join(tmpdir(), 'regatta-ha-agent-'))
        dirs.push(workDir)
      }
      const a = await startAgentProcess({ natsUrl, ...s, workDir })
      ids.add(a.agentId)
      c.agents.push(a)
      return a
    },
    async leader(pred = () => true, timeoutMs = 30_000) {
      const l = await waitForLeader(nc, (x) => pred(x.id), timeoutMs)
      const master = c.masters.find((m) => m.id === l.id)
      if (!master) throw new Error(`the leader ${l.id} is none of this cluster's masters`)
      return { master, epoch: l.epoch }
    },
    async framework(info = {}) {
      const fnc = await connectNats(natsUrl, 'ha-framework', { reconnectTimeWait: 100 })
      conns.push(fnc)
      const fw = new RecordingFramework(fnc, { name: 'ha-test', roles: ['*'], failoverTimeoutMs: 120_000, ...info })
      const times: number[] = []
      arrivals.set(fw, times)
      const push = fw.events.push.bind(fw.events)
      fw.events.push = (...items) => {
        for (let i = 0; i < items.length; i++) times.push(Date.now())
        return push(...items)
      }
      await fw.start()
      frameworks.push(fw)
      return fw
    },
    agentIds: () => [...ids],
    async stop() {
      for (const fw of frameworks) await fw.scheduler.stop().catch(() => undefined)
      await Promise.all([...c.masters, ...c.agents].map((p) => p.stop(3_000)))
      for (const id of ids) await removeContainersByLabel(LABEL_AGENT, id).catch(() => undefined)
      for (const x of conns) await x.close().catch(() => undefined)
      for (const d of dirs) await rm(d, { recursive: true, force: true })
    },
  }
  return c
}

/** Containers (running or not) that carry any of these agents' label. */
export async function containersOf(agentIds: string[]): Promise<string[]> {
  const found: string[] = []
  for (const id of agentIds) for (const ci of await listContainersByLabel(LABEL_AGENT, id)) found.push(`${ci.Id.slice(0, 12)} ${ci.State} ${ci.Labels[LABEL_TASK] ?? ''}`)
  return found
}

export interface ContainerStart {
  taskId: string
  agentId: string
  containerId: string
  at: number
}

/**
 * Records every container start of one framework's tasks, from the Docker engine's event
 * stream: an independent count of how many times each task really ran.
 */
export async function watchContainerStarts(frameworkId: string): Promise<{ starts: ContainerStart[]; startsOf(taskId: string): number; close(): void }> {
  const stream = await testDocker().getEvents({
    filters: { type: ['container'], event: ['start'], label: [`${LABEL_FRAMEWORK}=${frameworkId}`] },
  }) as NodeJS.ReadableStream & { destroy?: () => void }
  const starts: ContainerStart[] = []
  let partial = ''
  stream.on('data', (d: Buffer) => {
    partial += d.toString()
    const parts = partial.split('\n')
    partial = parts.pop() ?? ''
    for (const raw of parts) {
      if (!raw.trim()) continue
      try {
        const e = JSON.parse(raw) as { id: string; Actor?: { Attributes?: Record<string, string> } }
        const attrs = e.Actor?.Attributes ?? {}
        starts.push({ taskId: attrs[LABEL_TASK] ?? '', agentId: attrs[LABEL_AGENT] ?? '', containerId: e.id, at: Date.now() })
      } catch {
        // a partial line; the next chunk completes it
      }
    }
  })
  stream.on('error', () => undefined)
  return {
    starts,
    startsOf: (taskId) => starts.filter((s) => s.taskId === taskId).length,
    close: () => stream.destroy?.(),
  }
}

/**
 * The framework's durable consumer of its status updates: nothing pending and nothing waiting
 * for an ack means every update was delivered and acknowledged.
 */
export async function updatesFullyAcknowledged(nc: NatsConnection, frameworkId: string): Promise<{ pending: number; ackPending: number }> {
  const info = await (await nc.jetstreamManager()).consumers.info(Streams.updates, Consumers.frameworkUpdates(frameworkId))
  return { pending: info.num_pending, ackPending: info.num_ack_pending }
}

/** The terminal updates the framework received for a task (distinct by uuid). */
export function terminalsOf(fw: RecordingFramework, taskId: string): TaskStatus[] {
  const seen = new Set<string>()
  return fw.updates.filter((u) => {
    if (u.taskId !== taskId || !isTerminal(u.state) || u.reason === 'RECONCILIATION') return false
    const k = u.uuid ?? `${u.state}:${u.timestamp}`
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

/** What logsOnFailure needs of a tap test. */
export interface TestLike {
  teardown(fn: () => unknown): void
  passing(): boolean
  comment(...message: unknown[]): void
}

/**
 * On a failing test, prints each process's last log lines (masters' and agents' pino lines,
 * trimmed), so that a failure names what the components did. Set HA_LOGS=all for every line.
 */
export function logsOnFailure(t: TestLike, c: HaCluster, lines = 40): void {
  t.teardown(() => {
    if (t.passing() && process.env.HA_LOGS !== 'all') return
    for (const p of [...c.masters, ...c.agents]) {
      const shown = (process.env.HA_LOGS === 'all' ? p.lines() : p.lines().slice(-lines)).map((l) => {
        const { level, time, pid, hostname, service, ...rest } = l
        void pid; void hostname; void service
        return `${typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : ''} ${String(level ?? '')} ${JSON.stringify(rest)}`
      })
      t.comment(`---- ${p.name} (pid ${p.pid}${p.hasExited ? ', exited' : ''}), last ${shown.length} log lines:\n${shown.join('\n')}`)
    }
  })
}

/**
 * On a failing test, prints what the framework heard (task, state, reason, source), what the
 * leader believes of the tasks, and where the update consumers stand (always with HA_LOGS=all).
 */
export function diagnoseOnFailure(t: TestLike, c: HaCluster, fw: RecordingFramework): void {
  t.teardown(async () => {
    if (t.passing() && process.env.HA_LOGS !== 'all') return
    const times = arrivals.get(fw) ?? []
    const clock = (ms: number | undefined): string => (ms ? new Date(ms).toISOString().slice(11, 23) : '?')
    const heard = fw.events.flatMap((e, i) => (e.type === 'UPDATE'
      ? [`${clock(times[i])} ${e.status.taskId}:${e.status.state}${e.status.reason ? `(${e.status.reason})` : ''}@${e.status.source ?? ''} sent ${clock(e.status.timestamp)}`]
      : []))
    t.comment(`framework heard (arrival, task:state(reason)@source, sent):\n${heard.join('\n')}`)
    t.comment(`framework events: ${fw.events.map((e, i) => `${clock(times[i])} ${e.type}`).join(', ')}`)
    try {
      const s = await clusterState(c.nc, 2_000)
      t.comment(`leader ${s.leader?.id}/${s.leader?.epoch} tasks: ${s.tasks.map((x) => `${x.taskId}:${x.state}`).join(' ')}; agents: ${s.agents.map((a) => `${a.id}:${a.state}`).join(' ')}; offers: ${s.offers.length}`)
    } catch (err) {
      t.comment(`no state: ${(err as Error).message}`)
    }
    try {
      const jsm = await c.nc.jetstreamManager()
      for (const name of [Consumers.masterUpdates, Consumers.frameworkUpdates(fw.scheduler.frameworkId)]) {
        const i = await jsm.consumers.info(Streams.updates, name)
        t.comment(`consumer ${name}: pending ${i.num_pending}, ack pending ${i.num_ack_pending}, redelivered ${i.num_redelivered}, delivered ${i.delivered.stream_seq}, waiting pulls ${i.num_waiting}`)
      }
    } catch (err) {
      t.comment(`no consumer info: ${(err as Error).message}`)
    }
  })
}

/** The real (not reconciliation) terminal update of a task: the one its agent or master sent with a uuid. */
export function realTerminal(fw: RecordingFramework, taskId: string, timeoutMs = 30_000): Promise<TaskStatus> {
  return fw.waitFor(`task ${taskId} to end`, () => fw.updates.find((u) => u.taskId === taskId && isTerminal(u.state) && u.uuid !== undefined), timeoutMs)
}

/**
 * Tasks the framework was told had ended without running (a reconciliation answer LOST,
 * GONE...) and that in fact ran: a later STARTING, RUNNING, FINISHED, FAILED or KILLED from the
 * agent. A framework that believes the first answer launches the task again: it runs twice.
 */
export function contradictedReconciliation(fw: RecordingFramework): string[] {
  const out: string[] = []
  const ranStates = new Set(['STARTING', 'RUNNING', 'FINISHED', 'FAILED', 'KILLED'])
  fw.updates.forEach((u, i) => {
    if (u.reason !== 'RECONCILIATION' || u.uuid !== undefined || !isTerminal(u.state)) return
    // the same end told twice (reconciliation first, the agent's stored update after) is the truth
    // told early, and so is the task's history sent before that answer and delivered after it
    // (JetStream catching up); a contradiction is a task said ended that runs after the answer was
    // given, or ends otherwise
    const later = fw.updates.slice(i + 1).find((x) => x.taskId === u.taskId && x.uuid !== undefined && ranStates.has(x.state) && x.state !== u.state &&
      (isTerminal(x.state) || x.timestamp > u.timestamp))
    if (later) out.push(`${u.taskId}: told ${u.state} (${u.message ?? ''}) by reconciliation, then ${later.state} from the ${later.source ?? '?'}`)
  })
  return out
}

/** For each real update a fixture framework heard: how long after it was sent it arrived. */
export function deliveryLags(fw: RecordingFramework): Array<{ taskId: string; state: string; lagMs: number }> {
  const times = arrivals.get(fw) ?? []
  return fw.events.flatMap((e, i) => (e.type === 'UPDATE' && e.status.uuid !== undefined && times[i] !== undefined
    ? [{ taskId: e.status.taskId, state: e.status.state, lagMs: times[i]! - e.status.timestamp }]
    : []))
}

/** Milliseconds since `from`, for messages. */
export const since = (from: number): number => Date.now() - from
