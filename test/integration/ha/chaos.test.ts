// The chaos test: 100 container tasks of 2-5 s on 3 Docker agent processes (~30 at once),
// 3 master processes; the leader is killed with SIGKILL twice and one agent process is killed
// and started again in between. A framework that relaunches a task only when told it is
// LOST, DROPPED, GONE or ERROR (task ids carry the attempt: `c042-a2`) must see every task end
// exactly once, FINISHED, acknowledged; no task may run twice (the Docker engine's own event
// stream counts container starts); no container is left behind.
import t from 'tap'
import { Scheduler } from '../../../shared/scheduler/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { connectNats } from '../../../shared/nats/index.js'
import { scalar } from '../../../shared/resources/index.js'
import { isTerminal, type Offer, type TaskStatus } from '../../../shared/protocol/index.js'
import { shellTask } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../../helpers/docker.js'
import { startNatsServer, type NatsServer } from '../../helpers/nats-server.js'
import { waitUntil } from '../../helpers/wait.js'
import { containersOf, logsOnFailure, startHaCluster, updatesFullyAcknowledged, watchContainerStarts, type HaCluster } from './fixture.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

const TASKS = 100
const TASK_CPUS = 0.1
const TASK_MEM = 32
/** 3 agents x 10 tasks at once. */
const AGENT_RESOURCES = 'cpus:1;mem:1024;disk:10000;ports:[31000-31100]'
const DEADLINE_MS = 150_000
const RELAUNCH = new Set(['LOST', 'DROPPED', 'GONE', 'ERROR'])

/** A small seeded generator, so that a failing run can be repeated (CHAOS_SEED). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

interface Attempt {
  id: string
  logical: string
  launchedAt: number
  /** Every update heard for it: `STATE(reason)@source`. */
  heard: string[]
  /** Terminal updates with a uuid (distinct uuids). */
  terminalUuids: Set<string>
  /** Distinct terminal states heard, real or from reconciliation. */
  terminalStates: Set<string>
  closed?: string
}

/** The framework under test: launches on offers, relaunches only when told a task is gone. */
class ChaosFramework {
  readonly scheduler: Scheduler
  readonly queue: string[] = []
  readonly attempts = new Map<string, Attempt>()
  readonly finished = new Set<string>()
  readonly failedFinal = new Map<string, string>()
  readonly violations: string[] = []
  readonly attemptCount = new Map<string, number>()
  offersSeen = 0
  private readonly durations = new Map<string, number>()

  constructor(readonly nc: Awaited<ReturnType<typeof connectNats>>, logical: Array<{ id: string; seconds: number }>) {
    for (const l of logical) {
      this.queue.push(l.id)
      this.durations.set(l.id, l.seconds)
    }
    this.scheduler = new Scheduler({
      nc, logger: silentLogger(), framework: { name: 'chaos', roles: ['*'], failoverTimeoutMs: 300_000 },
      onEvent: (e) => {
        if (e.type === 'OFFERS') {
          this.offersSeen++
          for (const o of e.offers) this.onOffer(o)
        } else if (e.type === 'UPDATE') {
          this.onUpdate(e.status)
        }
      },
    })
  }

  private onOffer(offer: Offer): void {
    const fit = Math.floor(Math.min(scalar(offer.resources, 'cpus') / TASK_CPUS + 1e-9, scalar(offer.resources, 'mem') / TASK_MEM + 1e-9))
    const take = this.queue.splice(0, Math.max(0, fit))
    if (take.length === 0) {
      this.scheduler.decline([offer.id], { refuseSeconds: 1 }).catch(() => undefined)
      return
    }
    const specs = take.map((logical) => {
      const n = (this.attemptCount.get(logical) ?? 0) + 1
      this.attemptCount.set(logical, n)
      const id = `${logical}-a${n}`
      this.attempts.set(id, { id, logical, launchedAt: Date.now(), heard: [], terminalUuids: new Set(), terminalStates: new Set() })
      return shellTask(id, `sleep ${this.durations.get(logical)}; exit 0`, { resources: [{ name: 'cpus', scalar: TASK_CPUS }, { name: 'mem', scalar: TASK_MEM }] })
    })
    this.scheduler.launch(offer, specs, { refuseSeconds: 0 }).catch(() => {
      // the call's fate is unknown (no leader answered in time): ask the master what became of them
      setTimeout(() => void this.scheduler.reconcile(specs.map((s) => ({ taskId: s.taskId }))).catch(() => undefined), 2_000)
    })
  }

  private onUpdate(s: TaskStatus): void {
    if (s.uuid) this.scheduler.acknowledge(s)
    const a = this.attempts.get(s.taskId)
    if (!a) {
      this.violations.push(`an update for a task never launched: ${s.taskId} ${s.state}`)
      return
    }
    const reconciliation = s.reason === 'RECONCILIATION' && !s.uuid
    a.heard.push(`${s.state}${s.reason ? `(${s.reason})` : ''}@${s.source ?? '?'}`)
    if (!isTerminal(s.state)) {
      if (a.closed && !reconciliation && (s.state === 'RUNNING' || s.state === 'STARTING')) {
        this.violations.push(`${a.id} reported ${s.state} after it was told ${a.closed}: ${a.heard.join(' ')}`)
      }
      return
    }
    a.terminalStates.add(s.state)
    if (s.uuid) a.terminalUuids.add(s.uuid)
    if (a.closed) return
    a.closed = s.state
    if (s.state === 'FINISHED') {
      if (this.finished.has(a.logical)) this.violations.push(`${a.logical} FINISHED twice (${a.id})`)
      this.finished.add(a.logical)
    } else if (RELAUNCH.has(s.state)) {
      this.queue.unshift(a.logical)
    } else {
      this.failedFinal.set(a.logical, `${a.id} ${s.state} ${s.message ?? ''}`)
    }
  }

  get done(): number {
    return this.finished.size + this.failedFinal.size
  }
}

let nats: NatsServer
let c: HaCluster
t.before(async () => {
  nats = await startNatsServer()
  c = await startHaCluster(nats.url)
  await c.startMasters(3, { leaseTtl: '1500ms', heartbeatInterval: '500ms', agentUnreachable: '5s', agentGone: '60s' })
  await Promise.all([0, 1, 2].map(() => c.startAgent({ containerizer: 'docker', resources: AGENT_RESOURCES })))
})
t.teardown(async () => {
  await c?.stop()
  await nats?.stop()
})

t.test('Checks that 100 tasks through two leader kills and an agent restart each end once, FINISHED, acknowledged, run once', async (t) => {
  logsOnFailure(t, c, 25)
  const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000)
  const random = mulberry32(seed)
  t.comment(`seed ${seed} (CHAOS_SEED=${seed} repeats the durations)`)
  const logical = Array.from({ length: TASKS }, (_, i) => ({ id: `c${String(i).padStart(3, '0')}`, seconds: 2 + Math.round(random() * 30) / 10 }))
  const fnc = await connectNats(c.natsUrl, 'chaos-framework', { reconnectTimeWait: 100 })
  t.teardown(() => fnc.close())
  const fw = new ChaosFramework(fnc, logical)
  const starts = await watchContainerStarts(fw.scheduler.frameworkId)
  t.teardown(() => starts.close())
  t.teardown(() => fw.scheduler.stop())
  const began = Date.now()
  const at = (): string => `${((Date.now() - began) / 1000).toFixed(1)} s`
  const untilDone = (n: number, what: string): Promise<unknown> =>
    waitUntil(`${n} tasks done before ${what} (done: ${fw.done})`, () => fw.done >= n, DEADLINE_MS, 50)

  await fw.scheduler.start()
  await waitUntil('~30 tasks running at once', () => [...fw.attempts.values()].filter((a) => !a.closed && a.heard.some((h) => h.startsWith('RUNNING'))).length >= 25, 60_000, 50)
  t.comment(`${at()}: ${[...fw.attempts.values()].filter((a) => !a.closed).length} tasks launched and running`)

  // first leader kill
  await untilDone(15, 'the first leader kill')
  const first = await c.leader()
  first.master.kill('SIGKILL')
  await first.master.exited
  const second = await c.leader((id) => id !== first.master.id, 15_000)
  t.ok(second.epoch > first.epoch, `${at()}: killed leader ${first.master.id}; ${second.master.id} leads with epoch ${second.epoch} > ${first.epoch}`)
  await c.restartMaster(c.masters.indexOf(first.master))

  // one agent process killed and started again on its work dir
  await untilDone(40, 'the agent restart')
  const victim = c.agents[1]!
  victim.kill('SIGKILL')
  await victim.exited
  const back = await c.startAgent({ containerizer: 'docker', resources: AGENT_RESOURCES, workDir: victim.workDir })
  t.equal(back.agentId, victim.agentId, `${at()}: agent ${victim.agentId} restarted (recovered ${back.count('recovered a running task')} running tasks)`)

  // second leader kill
  await untilDone(60, 'the second leader kill')
  const third = await c.leader()
  third.master.kill('SIGKILL')
  await third.master.exited
  const fourth = await c.leader((id) => id !== third.master.id, 15_000)
  t.ok(fourth.epoch > third.epoch, `${at()}: killed leader ${third.master.id}; ${fourth.master.id} leads with epoch ${fourth.epoch} > ${third.epoch}`)
  await c.restartMaster(c.masters.indexOf(third.master))

  await waitUntil(`every task done (done: ${fw.done})`, () => fw.done >= TASKS, DEADLINE_MS - (Date.now() - began), 100).catch((err: Error) => {
    const open = [...fw.attempts.values()].filter((a) => !a.closed)
    t.fail(`${err.message}; queued: ${fw.queue.join(' ')}; open attempts: ${open.map((a) => `${a.id}[${a.heard.join(' ')}]`).join(' ')}`)
  })
  t.comment(`${at()}: ${fw.finished.size} FINISHED, ${fw.attempts.size} attempts, ${fw.offersSeen} OFFERS events, ${starts.starts.length} container starts`)

  t.equal(fw.finished.size, TASKS, 'every task FINISHED')
  t.same([...fw.failedFinal.values()], [], 'no task ended FAILED or KILLED')
  t.same(fw.violations, [], 'no task was reported after it ended, or finished twice')
  const twoEnds = [...fw.attempts.values()].filter((a) => a.terminalUuids.size > 1 || a.terminalStates.size > 1)
  t.same(twoEnds.map((a) => `${a.id}: ${a.heard.join(' ')}`), [], 'every attempt ended in exactly one terminal state')
  const relaunched = [...fw.attempts.values()].filter((a) => a.closed && a.closed !== 'FINISHED')
  t.comment(`attempts that ended otherwise than FINISHED: ${relaunched.map((a) => `${a.id} ${a.heard.join(' ')}`).join('; ') || 'none'}`)
  const ranTwice = logical.filter((l) => {
    const n = [...fw.attempts.values()].filter((a) => a.logical === l.id).reduce((sum, a) => sum + starts.startsOf(a.id), 0)
    return n !== 1
  })
  t.same(ranTwice.map((l) => `${l.id}: ${[...fw.attempts.values()].filter((a) => a.logical === l.id).map((a) => `${a.id}x${starts.startsOf(a.id)}`).join(',')}`), [],
    'every task ran in exactly one container (Docker start events)')
  const doubleStart = [...fw.attempts.values()].filter((a) => starts.startsOf(a.id) > 1)
  t.same(doubleStart.map((a) => a.id), [], 'no task id was started twice')

  await waitUntil('every update acknowledged', async () => {
    const q = await updatesFullyAcknowledged(c.nc, fw.scheduler.frameworkId)
    return q.pending === 0 && q.ackPending === 0
  }, 20_000, 200).then(() => t.pass('the framework consumer has nothing pending and nothing unacknowledged'), async () => {
    t.fail(`updates left unacknowledged: ${JSON.stringify(await updatesFullyAcknowledged(c.nc, fw.scheduler.frameworkId))}`)
  })
  const leftover = await waitUntil('no container left', async () => {
    const left = await containersOf(c.agentIds())
    return left.length === 0 ? [] : undefined
  }, 20_000, 250).catch(async () => containersOf(c.agentIds()))
  t.same(leftover, [], 'no container with the agents\' labels is left behind')
  t.ok(Date.now() - began < DEADLINE_MS, `done in ${at()}`)
})
