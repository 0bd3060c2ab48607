// Demand per pool (services/master/src/demand.ts): requests summed per pool, and the part the
// free resources of the pool's active, non-draining agents cannot fit. No I/O.
import t from 'tap'
import fc from 'fast-check'
import { poolDemand, type DemandAgent, type DemandRequest } from '../../../services/master/src/demand.js'
import { Cluster, type AgentEntry, type FrameworkEntry } from '../../../services/master/src/cluster.js'
import { parseResources } from '../../../shared/resources/index.js'

const agent = (pool: string, free: string): DemandAgent => ({ pool, free: parseResources(free) })
const req = (pool: string, resources: Record<string, number>, count: number, roles: string[] = ['*']): DemandRequest => ({ pool, roles, resources, count })

t.test('Checks that demand that fits the free resources is summed per pool with nothing unmet', async (t) => {
  const d = poolDemand([req('ci', { cpus: 1, mem: 512 }, 3), req('ci', { cpus: 0.5 }, 2)], [agent('ci', 'cpus:8;mem:8192')])
  t.same(d, [{ pool: 'ci', requested: { cpus: 4, mem: 1536 }, unmet: {}, jobs: 5, unmetJobs: 0 }])
})

t.test('Checks that only free capacity counts: tasks beyond it are unmet, with their resources', async (t) => {
  // 4 cpus, 2.5 of them used: one 1-cpu task fits, two do not
  const d = poolDemand([req('ci', { cpus: 1, mem: 100 }, 3)], [agent('ci', 'cpus:1.5;mem:1000')])
  t.same(d, [{ pool: 'ci', requested: { cpus: 3, mem: 300 }, unmet: { cpus: 2, mem: 200 }, jobs: 3, unmetJobs: 2 }])
})

t.test('Checks that a pool with no agents has all of its demand unmet, and pools are reported apart and sorted', async (t) => {
  const d = poolDemand([req('zeta', { cpus: 2 }, 1), req('alpha', { cpus: 1 }, 4)], [agent('zeta', 'cpus:4')])
  t.same(d.map((p) => p.pool), ['alpha', 'zeta'])
  t.same(d[0], { pool: 'alpha', requested: { cpus: 4 }, unmet: { cpus: 4 }, jobs: 4, unmetJobs: 4 })
  t.same(d[1], { pool: 'zeta', requested: { cpus: 2 }, unmet: {}, jobs: 1, unmetJobs: 0 })
})

t.test('Checks that fragmented free resources are placed first fit: a task fits on one agent or not at all', async (t) => {
  // 3 cpus free in all, but 1.5 per agent: only two 1-cpu tasks fit
  const d = poolDemand([req('ci', { cpus: 1 }, 3)], [agent('ci', 'cpus:1.5'), agent('ci', 'cpus:1.5')])
  t.equal(d[0]!.unmetJobs, 1)
  t.same(d[0]!.unmet, { cpus: 1 })
})

t.test('Checks that requests share the free resources in the order given', async (t) => {
  const d = poolDemand([req('ci', { cpus: 2 }, 1), req('ci', { cpus: 1 }, 3)], [agent('ci', 'cpus:4')])
  t.equal(d[0]!.unmetJobs, 1, 'the first takes 2 cpus, two of the three 1-cpu tasks fit the rest')
  t.same(d[0]!.unmet, { cpus: 1 })
})

t.test('Checks that an agent of another pool does not meet a pool\'s demand', async (t) => {
  const d = poolDemand([req('gpu', { cpus: 1 }, 1)], [agent('ci', 'cpus:16')])
  t.equal(d[0]!.unmetJobs, 1)
})

t.test('Checks that a resource no agent has leaves the task unmet', async (t) => {
  const d = poolDemand([req('ci', { cpus: 1, gpus: 1 }, 2)], [agent('ci', 'cpus:16;mem:4096')])
  t.same(d[0], { pool: 'ci', requested: { cpus: 2, gpus: 2 }, unmet: { cpus: 2, gpus: 2 }, jobs: 2, unmetJobs: 2 })
})

t.test('Checks that reserved resources count only for their role and its children, and come before unreserved ones', async (t) => {
  const agents = (): DemandAgent[] => [agent('ci', 'cpus(ci):2;cpus:1')]
  t.equal(poolDemand([req('ci', { cpus: 1 }, 3, ['ci/main'])], agents())[0]!.unmetJobs, 0, 'a child role uses its parent\'s reservation')
  t.equal(poolDemand([req('ci', { cpus: 1 }, 3, ['other'])], agents())[0]!.unmetJobs, 2, 'another role only the unreserved cpu')
  t.equal(poolDemand([req('ci', { cpus: 1 }, 3, ['*'])], agents())[0]!.unmetJobs, 2, 'no role only the unreserved cpu')
  // ci takes its reservation first, which leaves the unreserved cpu to the other role
  const d = poolDemand([req('ci', { cpus: 1 }, 2, ['ci']), req('ci', { cpus: 1 }, 1, ['other'])], agents())
  t.equal(d[0]!.unmetJobs, 0)
})

t.test('Checks that revocable resources do not meet demand', async (t) => {
  const d = poolDemand([req('ci', { cpus: 1 }, 1)], [{ pool: 'ci', free: [{ name: 'cpus', scalar: 8, revocable: true }] }])
  t.equal(d[0]!.unmetJobs, 1)
})

t.test('Checks that a shape asking for nothing fits any agent but still needs one, and no requests give no entries', async (t) => {
  t.equal(poolDemand([req('ci', {}, 5)], [agent('ci', 'cpus:1')])[0]!.unmetJobs, 0)
  t.equal(poolDemand([req('ci', {}, 5)], [])[0]!.unmetJobs, 5, 'a pool with no agent runs nothing')
  t.same(poolDemand([], [agent('ci', 'cpus:1')]), [])
})

t.test('Checks that large counts are computed at once (100,000 tasks on 1,000 agents)', async (t) => {
  const agents = Array.from({ length: 1000 }, () => agent('ci', 'cpus:8;mem:16384'))
  const started = performance.now()
  const d = poolDemand([req('ci', { cpus: 0.1, mem: 128 }, 100_000)], agents)
  const ms = performance.now() - started
  // 80 per agent by cpus, 128 by mem: 80,000 fit
  t.equal(d[0]!.unmetJobs, 20_000)
  t.ok(ms < 500, `took ${ms.toFixed(1)} ms`)
})

/** The definition, task by task: each task on the first agent of its pool that still holds it. */
function referenceUnmet(requests: DemandRequest[], agents: DemandAgent[]): Map<string, number> {
  const free = agents.map((a) => ({ pool: a.pool, cpus: a.free.find((r) => r.name === 'cpus')?.scalar ?? 0, mem: a.free.find((r) => r.name === 'mem')?.scalar ?? 0 }))
  const unmet = new Map<string, number>()
  for (const r of requests) {
    for (let i = 0; i < r.count; i++) {
      const c = r.resources.cpus ?? 0
      const m = r.resources.mem ?? 0
      const a = free.find((x) => x.pool === r.pool && x.cpus + 1e-9 >= c && x.mem + 1e-9 >= m)
      if (a) {
        a.cpus = Math.round((a.cpus - c) * 1000) / 1000
        a.mem = Math.round((a.mem - m) * 1000) / 1000
      } else unmet.set(r.pool, (unmet.get(r.pool) ?? 0) + 1)
    }
  }
  return unmet
}

t.test('Checks that placing as many as fit per agent gives the same unmet count as placing task by task', async (t) => {
  const pool = fc.constantFrom('a', 'b')
  fc.assert(fc.property(
    fc.array(fc.record({ pool, cpus: fc.integer({ min: 0, max: 16 }), mem: fc.integer({ min: 0, max: 8 }) }), { maxLength: 6 }),
    fc.array(fc.record({ pool, cpus: fc.integer({ min: 0, max: 8 }), mem: fc.integer({ min: 0, max: 4 }), count: fc.integer({ min: 1, max: 12 }) }), { maxLength: 6 }),
    (as, rs) => {
      const agents = as.map((a) => ({ pool: a.pool, free: [{ name: 'cpus', scalar: a.cpus / 2 }, { name: 'mem', scalar: a.mem * 256 }].filter((x) => x.scalar > 0) }))
      const requests = rs.map((r) => req(r.pool, { cpus: r.cpus / 4, mem: r.mem * 128 }, r.count))
      const expected = referenceUnmet(requests, agents)
      for (const d of poolDemand(requests, agents)) {
        if (d.unmetJobs !== (expected.get(d.pool) ?? 0)) return false
        if (d.unmetJobs > d.jobs) return false
      }
      return true
    },
  ), { numRuns: 500 })
  t.pass('no counterexample')
})

// ---- the master's bookkeeping: which agents count, and what counts as free -----------------

function addAgent(c: Cluster, id: string, resources: string, over: Partial<AgentEntry> = {}): AgentEntry {
  const a: AgentEntry = {
    info: { id, hostname: id, pool: 'ci', attributes: {}, resources: parseResources(resources), containerizer: 'process' },
    state: 'active', draining: false, registeredAt: 0, lastHeartbeatAt: 0,
    revocable: [], used: [], offered: [], taskKeys: new Set(), idleSince: 0, ...over,
  }
  c.agents.set(id, a)
  return a
}

function addFramework(c: Cluster, id: string, demand: FrameworkEntry['demand'], roles = ['*']): FrameworkEntry {
  const f: FrameworkEntry = {
    info: { id, name: id, roles }, active: true, registeredAt: 0, lastSeenAt: 0,
    suppressed: new Set(), offerIds: new Set(), taskKeys: new Set(), ...(demand ? { demand } : {}),
  }
  c.frameworks.set(id, f)
  return f
}

t.test('Checks that the cluster counts only active, non-draining agents, with offered resources as free and used ones not', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1', 'cpus:2;mem:2048', { used: parseResources('cpus:1'), offered: parseResources('cpus:1;mem:2048') })
  addAgent(c, 'a2', 'cpus:8;mem:8192', { draining: true })
  addAgent(c, 'a3', 'cpus:8;mem:8192', { state: 'unreachable' })
  addAgent(c, 'a4', 'cpus:8;mem:8192', { state: 'recovering' })
  addFramework(c, 'fw1', [{ pool: 'ci', resources: { cpus: 1, mem: 512 }, count: 2 }])
  addFramework(c, 'fw2', [{ pool: 'ci', resources: { cpus: 0.5 }, count: 1 }])
  addFramework(c, 'fw3', undefined)
  const d = c.demand()
  t.same(d, [{ pool: 'ci', requested: { cpus: 2.5, mem: 1024 }, unmet: { cpus: 1.5, mem: 512 }, jobs: 3, unmetJobs: 2 }])
  t.same(c.view('m', null, 0, 0).demand, d, 'the state view carries it')
})

t.test('Checks that a request without a role may use the framework\'s roles\' reservations, and one with a role only that role\'s', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1', 'cpus(ci/main):2')
  addFramework(c, 'fw', [{ pool: 'ci', resources: { cpus: 1 }, count: 2 }], ['ci/main'])
  t.equal(c.demand()[0]!.unmetJobs, 0)
  c.frameworks.get('fw')!.demand = [{ pool: 'ci', role: 'ci/pr', resources: { cpus: 1 }, count: 2 }]
  t.equal(c.demand()[0]!.unmetJobs, 2)
})

t.test('Checks that a framework without demand adds no entry', async (t) => {
  const c = new Cluster()
  addAgent(c, 'a1', 'cpus:2')
  addFramework(c, 'fw', undefined)
  t.same(c.demand(), [])
})
