// Dynamic reservations by a framework, end to end on a real nats-server with a real master and
// agent (process containerizer): ACCEPT with RESERVE makes resources that only the framework's
// role is offered (another role's framework never sees them), UNRESERVE gives them back to
// everyone, bad operations are refused naming what is wrong and change nothing, and a new
// leader knows the reservations.
import t from 'tap'
import type { TapTest } from '../../helpers/tap-types.js'
import { Buckets, CallReply, Subjects, type Offer, type Resource } from '../../../shared/protocol/index.js'
import { request } from '../../../shared/nats/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { scalar } from '../../../shared/resources/index.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { fastMasterConfig, shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'

const processContainerizer = (): ProcessContainerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false })

async function newCluster(t: TapTest): Promise<TestCluster> {
  const cluster = await startCluster()
  t.teardown(() => cluster.stop())
  await cluster.startMaster('m1')
  await cluster.startAgent({ containerizer: processContainerizer(), id: 'agent-1', resources: 'cpus:4;mem:4096;disk:10000' })
  return cluster
}

const offersSince = (fw: RecordingFramework, since: number): Offer[] =>
  fw.events.slice(since).flatMap((e) => (e.type === 'OFFERS' ? e.offers : []))

const reservedIn = (rs: readonly Resource[]): Resource[] => rs.filter((r) => r.role !== undefined && r.role !== '*')

/** The error an ACCEPT was refused with. */
async function refusal(p: Promise<unknown>): Promise<RegattaError> {
  try {
    await p
  } catch (err) {
    return err as RegattaError
  }
  throw new Error('the ACCEPT was not refused')
}

t.test('Checks that resources a framework reserves are offered only to its role, never to another role\'s framework, and UNRESERVE gives them back', async (t) => {
  const cluster = await newCluster(t)
  const ci = await cluster.framework({ name: 'ci', roles: ['ci'], principal: 'ci-svc' })
  const first = await ci.nextOffer()
  t.same(reservedIn(first.resources), [], 'nothing is reserved at first')

  // reserve 2 cpus and 1 GiB for ci; refuse the rest for a minute so that the other framework is offered it
  await ci.scheduler.operate([first.id], [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 2, role: 'ci' }, { name: 'mem', scalar: 1024, role: 'ci' }] }], { refuseSeconds: 60 })
  const m1 = cluster.masters[0]!
  const agentResources = (): Resource[] => m1.state().agents.find((a) => a.id === 'agent-1')!.resources
  t.same(reservedIn(agentResources()), [
    { name: 'cpus', scalar: 2, role: 'ci', principal: 'ci-svc' },
    { name: 'mem', scalar: 1024, role: 'ci', principal: 'ci-svc' },
  ], 'the agent now has the reservation, with the framework\'s principal')
  t.equal(scalar(agentResources(), 'cpus'), 4, 'and still 4 cpus in all')

  const web = await cluster.framework({ name: 'web', roles: ['web'] })
  const webMark = web.events.length
  const webOffer = await web.nextOffer()
  t.same(reservedIn(webOffer.resources), [], 'web is offered no reserved resource')
  t.equal(scalar(webOffer.resources, 'cpus'), 2, 'only the 2 unreserved cpus')
  t.equal(scalar(webOffer.resources, 'mem'), 3072)

  // ci's filter goes with REVIVE: it is offered its reservation (web holds the rest)
  await ci.scheduler.revive()
  const reservedOffer = await ci.nextOffer((o) => reservedIn(o.resources).length > 0)
  t.same(reservedIn(reservedOffer.resources), [
    { name: 'cpus', scalar: 2, role: 'ci', principal: 'ci-svc' },
    { name: 'mem', scalar: 1024, role: 'ci', principal: 'ci-svc' },
  ], 'ci is offered what it reserved')
  t.equal(reservedOffer.role, 'ci')

  // a task of ci runs on the reservation
  await ci.scheduler.launch(reservedOffer, [shellTask('on-reserved', 'exit 0', { resources: [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 64 }] })], { refuseSeconds: 60 })
  t.equal((await ci.terminal('on-reserved')).state, 'FINISHED')
  const taskView = m1.state().tasks.find((x) => x.taskId === 'on-reserved')
  t.equal(taskView?.resources.cpus, 1, 'the task took its cpus (from the reservation first)')

  // ci wants nothing for now; web declines and is offered again, a few times: never a reserved resource
  await ci.scheduler.suppress()
  await web.scheduler.decline([webOffer.id], { refuseSeconds: 0 })
  let held = webOffer
  for (let i = 0; i < 3; i++) {
    held = await web.nextOffer()
    if (i < 2) await web.scheduler.decline([held.id], { refuseSeconds: 0 })
  }
  t.ok(offersSince(web, webMark).length >= 3, 'web got several offers')
  t.same(offersSince(web, webMark).flatMap((o) => reservedIn(o.resources)), [], 'none held a reservation for ci')
  t.equal(scalar(held.resources, 'cpus'), 2, 'only ever the 2 unreserved cpus')

  // ci is offered its whole reservation again (web holds the rest), and gives it back
  await ci.scheduler.revive()
  const back = await ci.nextOffer((o) => scalar(reservedIn(o.resources), 'cpus') === 2)
  await ci.scheduler.operate([back.id], [{ type: 'UNRESERVE', resources: reservedIn(back.resources) }], { refuseSeconds: 60 })
  t.same(reservedIn(agentResources()), [], 'the agent has no reservation any more')

  // ci wants nothing more: the whole agent, unreserved again, goes to web
  await ci.scheduler.suppress()
  for (const o of ci.offers.splice(0)) await ci.scheduler.decline([o.id], { refuseSeconds: 60 })
  const webAll = web.events.length
  await waitUntil('web to be offered all 4 cpus', async () => {
    for (const o of web.offers.splice(0)) await web.scheduler.decline([o.id], { refuseSeconds: 0 })
    return offersSince(web, webAll).some((o) => scalar(o.resources, 'cpus') === 4)
  }, 15_000)
  t.pass('web was offered all 4 cpus, unreserved')
})

t.test('Checks that bad reservation operations are refused with INVALID_OPERATION naming the operation, and the offer stays usable', async (t) => {
  const cluster = await newCluster(t)
  const ci = await cluster.framework({ name: 'ci', roles: ['ci'] })
  const offer = await ci.nextOffer()
  const cases: Array<[string, Parameters<typeof ci.scheduler.operate>[1], RegExp]> = [
    ['another role', [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'web' }] }], /operations\[0\] \(RESERVE\): resources\[0\]: role "web" is not the role the offers were made to/],
    ['no role', [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1 }] }], /operations\[0\] \(RESERVE\): resources\[0\]: names no role/],
    ['more than offered', [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 64, role: 'ci' }] }], /operations\[0\] \(RESERVE\): the offers do not hold cpus:64 unreserved/],
    ['nothing reserved', [{ type: 'UNRESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci' }] }], /operations\[0\] \(UNRESERVE\): cpus\(ci\):1 is not a dynamic reservation/],
    ['a volume on unreserved disk', [{ type: 'CREATE', volumes: [{ name: 'disk', scalar: 10, role: 'ci', disk: { persistence: { id: 'v' }, containerPath: 'v' } }] }], /operations\[0\] \(CREATE\): volumes\[0\]: the offers do not hold disk\(ci\):10 \(reserved disk\)/],
    ['a volume path out of the sandbox', [
      { type: 'RESERVE', resources: [{ name: 'disk', scalar: 10, role: 'ci' }] },
      { type: 'CREATE', volumes: [{ name: 'disk', scalar: 10, role: 'ci', disk: { persistence: { id: 'v' }, containerPath: '../up' } }] },
    ], /operations\[1\] \(CREATE\): volumes\[0\]: disk.containerPath "\.\.\/up" has a "\.\." segment/],
    ['destroying an unknown volume', [{ type: 'DESTROY', volumes: [{ name: 'disk', scalar: 10, role: 'ci', disk: { persistence: { id: 'nope' }, containerPath: 'v' } }] }], /operations\[0\] \(DESTROY\): volumes\[0\]: role "ci" has no volume "nope"/],
  ]
  for (const [what, operations, message] of cases) {
    const err = await refusal(ci.scheduler.operate([offer.id], operations))
    t.equal(err.code, 'INVALID_OPERATION', what)
    t.match(err.message, message, what)
  }
  t.same(cluster.masters[0]!.state().agents[0]!.resources.filter((r) => r.role), [], 'nothing was reserved by any of them')
  // the refused ACCEPTs left the offer as it was: it still launches
  await ci.scheduler.launch(offer, [shellTask('after-refusals', 'exit 0')])
  t.equal((await ci.terminal('after-refusals')).state, 'FINISHED')
})

t.test('Checks that a new leader knows the reservations and offers them to their role only', async (t) => {
  const cluster = await newCluster(t)
  const ci = await cluster.framework({ name: 'ci', roles: ['ci'], failoverTimeoutMs: 60_000 })
  const offer = await ci.nextOffer()
  await ci.scheduler.operate([offer.id], [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1.5, role: 'ci' }, { name: 'disk', scalar: 500, role: 'ci' }] }], { refuseSeconds: 0 })
  const m2 = await cluster.startMaster('m2', fastMasterConfig)
  await cluster.masters[0]!.stop()
  await waitUntil('m2 to lead', () => m2.isLeader, 15_000)
  const view = await waitUntil('agent-1 to re-register with m2', () => {
    const a = m2.state().agents.find((x) => x.id === 'agent-1')
    return a?.state === 'active' ? a : undefined
  }, 15_000)
  t.same(reservedIn(view.resources), [{ name: 'cpus', scalar: 1.5, role: 'ci' }, { name: 'disk', scalar: 500, role: 'ci' }], 'the reservation is there after the failover')
  const again = await ci.nextOffer((o) => reservedIn(o.resources).length > 0)
  t.equal(scalar(reservedIn(again.resources), 'cpus'), 1.5, 'and offered to ci')
})

t.test('Checks that an ACCEPT with RESERVE is answered only once its reservation is stored in the registry, and refused when it cannot be', async (t) => {
  const cluster = await newCluster(t)
  const ci = await cluster.framework({ name: 'ci', roles: ['ci'] })
  const offer = await ci.nextOffer()
  // a sealed stream takes no more writes: the registry cannot store anything from now on
  const nc = await cluster.connect('sealer')
  const jsm = await nc.jetstreamManager()
  const name = `KV_${Buckets.registry}`
  const info = await jsm.streams.info(name)
  // (nats.js's update type has no `sealed`: the JetStream API request itself)
  const sealed = JSON.parse(new TextDecoder().decode((await nc.request(`$JS.API.STREAM.UPDATE.${name}`, new TextEncoder().encode(JSON.stringify({ ...info.config, sealed: true })))).data)) as { config?: { sealed?: boolean }; error?: unknown }
  t.equal(sealed.config?.sealed, true, `the registry's stream is sealed (${JSON.stringify(sealed.error ?? 'ok')})`)
  // one raw call (the scheduler would retry a refusal, and a retry finds the offer used)
  const accept = { type: 'ACCEPT', frameworkId: ci.scheduler.frameworkId, offerIds: [offer.id], operations: [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci' }] }] }
  const started = Date.now()
  const err = await request(nc, Subjects.schedulerCall, accept, CallReply, 30_000).then(() => undefined, (e: unknown) => e as RegattaError)
  t.ok(err, `the ACCEPT was not answered ok while its reservation could not be stored (${Date.now() - started} ms)`)
  t.equal(err?.code, 'NOT_LEADER', 'it was refused NOT_LEADER')
  t.match(err?.message ?? '', /reservation operations on agent agent-1 could not be stored/, 'saying what was not stored')
})
