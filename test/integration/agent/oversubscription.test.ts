// Oversubscription end to end, with real processes on a real nats-server: a master, an agent
// with small resources and oversubscription on (process containerizer), a plain framework whose
// task uses little of its allocation, and a framework that opted in to revocable resources.
// The revocable one is offered the unused part, runs a task on it, and hears KILLED with reason
// PREEMPTED once the plain task's memory grows (the test tells it to, with a file in its
// sandbox: a deterministic trigger); the plain task runs on untouched.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AgentHeartbeat, ClusterState, Subjects, decode, type Offer, type Resource } from '../../../shared/protocol/index.js'
import { parseResources, scalar } from '../../../shared/resources/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { request } from '../../../shared/nats/index.js'
import { Agent } from '../../../services/agent/src/agent.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { PREEMPTED } from '../../../services/agent/src/oversubscription/index.js'
import { startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

const INTERVAL_MS = 250
const WINDOW = 3
const MARGIN = 0.1
/** The plain task's allocation and what it grows to when told. */
const SVC = { cpus: 1, memMb: 400, growMb: 300 }
/** What the revocable task asks for. */
const REV = { cpus: 0.5, memMb: 200 }

let cluster: TestCluster
let agent: Agent
let workDir: string
let plain: RecordingFramework
let opt: RecordingFramework
/** Every `revocable` the agent sent on its heartbeats, with when. */
const sent: Array<{ at: number; cpus: number; memMb: number }> = []

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
  workDir = await mkdtemp(join(tmpdir(), 'regatta-ovs-'))
  // a listener beside the master: sees each heartbeat the agent sends (it answers none)
  const watcher = await cluster.connect('heartbeat-watcher')
  watcher.subscribe(Subjects.agentHeartbeat, {
    callback: (err, m) => {
      if (err) return
      const hb = decode(AgentHeartbeat, m.data, 'heartbeat')
      if (hb.revocable) sent.push({ at: Date.now(), cpus: scalar(hb.revocable, 'cpus'), memMb: scalar(hb.revocable, 'mem') })
    },
  })
  agent = new Agent({
    nc: await cluster.connect('agent'), workDir, pool: 'default', id: 'ovs-agent',
    resources: parseResources('cpus:2;mem:512;disk:1000'), attributes: {},
    containerizer: new ProcessContainerizer({ logger: silentLogger() }), logger: silentLogger(), sandboxRetentionMs: 0,
    killGracePeriodMs: 500,
    oversubscription: { intervalMs: INTERVAL_MS, window: WINDOW, margin: MARGIN },
  })
  await agent.start()
  plain = await cluster.framework({ name: 'plain' })
  opt = await cluster.framework({ name: 'opt-in', revocable: true })
})

t.teardown(async () => {
  await plain?.scheduler.teardown().catch(() => undefined)
  await opt?.scheduler.teardown().catch(() => undefined)
  await agent?.stop().catch(() => undefined)
  await cluster?.stop()
  await rm(workDir, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined)
})

const revocableIn = (o: Offer): Resource[] => o.resources.filter((r) => r.revocable)

t.test('Checks that a revocable task runs on unused capacity and is preempted when the plain task needs it back', async (t) => {
  await waitUntil('a heartbeat with an estimate', () => sent.length >= 2, 5_000)
  t.same(sent.filter((s) => s.cpus > 0 || s.memMb > 0), [], 'the agent sends an empty estimate while it runs nothing')

  // 1. a plain task that uses almost none of its 400 MiB until told to grow by 300 MiB
  const offer = await plain.nextOffer((o) => o.agentId === 'ovs-agent')
  t.same(revocableIn(offer), [], 'a framework that did not opt in is never offered revocable resources')
  const grow = `while [ ! -e grow ]; do sleep 0.05; done; echo growing; dd if=/dev/zero bs=${SVC.growMb}M count=1 2>/dev/null | sleep 600`
  await plain.scheduler.launch(offer, [{
    taskId: 'svc', resources: [{ name: 'cpus', scalar: SVC.cpus }, { name: 'mem', scalar: SVC.memMb }],
    container: { command: ['sh', '-c', grow] },
  }], { refuseSeconds: 0 })
  await plain.waitFor('svc running', () => plain.statesOf('svc').includes('RUNNING'))

  // 2. once the agent has measured it, its unused part is offered as revocable to the opted-in framework
  const started = Date.now()
  const revOffer = await opt.nextOffer((o) => o.agentId === 'ovs-agent' &&
    scalar(revocableIn(o), 'mem') >= REV.memMb && scalar(revocableIn(o), 'cpus') >= REV.cpus)
  const estimate = sent[sent.length - 1]!
  t.ok(estimate.memMb > SVC.memMb * (1 - MARGIN) - 40 && estimate.memMb <= SVC.memMb * (1 - MARGIN),
    `the estimate is the unused memory less the margin: ${estimate.memMb} MiB of ${SVC.memMb}`)
  t.ok(estimate.cpus > 0.5 && estimate.cpus <= SVC.cpus * (1 - MARGIN), `and CPU: ${estimate.cpus} of ${SVC.cpus}`)
  t.ok(Date.now() - started < 10_000, `offered ${Date.now() - started} ms after the task ran`)

  // 3. a revocable task on them
  await opt.scheduler.launch(revOffer, [{
    taskId: 'rev', resources: [{ name: 'cpus', scalar: REV.cpus, revocable: true }, { name: 'mem', scalar: REV.memMb, revocable: true }],
    container: { command: ['sh', '-c', 'echo low priority; sleep 600'] },
  }], { refuseSeconds: 0 })
  await opt.waitFor('rev running', () => opt.statesOf('rev').includes('RUNNING'))
  // a few QoS rounds pass: nothing is preempted while it fits
  await new Promise((r) => setTimeout(r, INTERVAL_MS * 4))
  t.same(opt.statesOf('rev'), ['STARTING', 'RUNNING'], 'not preempted while the plain task stays small')

  // 4. the plain task grows: 400 - ~302 MiB unused < 200 MiB held by the revocable task
  const sandbox = join(workDir, 'sandboxes', encodeURIComponent(plain.scheduler.frameworkId), 'svc')
  const before = sent.length
  const grownAt = Date.now()
  const eventsBefore = opt.events.length
  await writeFile(join(sandbox, 'grow'), '')
  const end = await opt.terminal('rev', 15_000)
  const tookMs = Date.now() - grownAt
  t.equal(end.state, 'KILLED')
  t.equal(end.reason, PREEMPTED, 'reason PREEMPTED')
  t.equal(end.reason, 'PREEMPTED')
  t.match(end.message, /^preempted: the agent's non-revocable tasks need their memory back \(revocable tasks hold 200 MiB; \d+ MiB of the non-revocable allocation is unused\)$/)
  t.equal(end.source, 'agent')
  t.ok(tookMs < 8_000, `preempted ${tookMs} ms after the plain task grew`)

  // the estimate shrank with the growth: what is left unused, less the margin
  const shrunk = await waitUntil('the smaller estimate on a heartbeat', () =>
    sent.slice(before).find((s) => s.memMb <= SVC.memMb * (1 - MARGIN) - SVC.growMb), 5_000)
  t.pass(`revocable memory now ${shrunk.memMb} MiB`)

  // 5. the plain task is unharmed: still running, no update beyond RUNNING, seen by the master
  await new Promise((r) => setTimeout(r, INTERVAL_MS * 4))
  t.same(plain.statesOf('svc'), ['STARTING', 'RUNNING'], 'the plain task got no further update')
  const nc = await cluster.connect('state')
  const state = await request(nc, Subjects.masterState, {}, ClusterState, 3_000)
  t.equal(state.tasks.find((x) => x.taskId === 'svc')?.state, 'RUNNING', 'the master has it running')
  t.notOk(state.tasks.some((x) => x.taskId === 'rev' && x.state === 'RUNNING'), 'and the revocable one no more')

  // and no offer made since that the master did not withdraw (it rescinds revocable offers
  // whenever the estimate shrinks) holds revocable memory beyond the new estimate
  const rescinded = new Set(opt.events.flatMap((e) => (e.type === 'RESCIND' ? [e.offerId] : [])))
  for (const e of opt.events.slice(eventsBefore)) {
    if (e.type !== 'OFFERS') continue
    for (const o of e.offers) {
      if (rescinded.has(o.id)) continue
      t.ok(scalar(revocableIn(o), 'mem') <= shrunk.memMb, `a held offer made after the growth has ${scalar(revocableIn(o), 'mem')} MiB revocable`)
    }
  }

  await plain.scheduler.kill('svc')
  const svcEnd = await plain.terminal('svc')
  t.equal(svcEnd.state, 'KILLED')
  t.equal(svcEnd.reason, 'KILLED', 'a kill on request keeps reason KILLED: only preemption says PREEMPTED')
})
