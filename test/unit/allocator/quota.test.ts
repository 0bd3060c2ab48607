// Quota guarantees: met first (the quota stage), and protected by headroom in fair sharing.
import t from 'tap'
import { Harness, offered } from './harness.js'

const AGENT = 'cpus:4;mem:4096'
const WHOLE = [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 4096 }]

function guaranteeScenario(withQuota: boolean): Harness {
  const h = new Harness()
  for (let i = 0; i < 8; i++) h.addAgent(`agent-${i}`, AGENT)
  if (withQuota) h.setRole('q', { quota: { cpus: 24, mem: 24576 } })
  h.addFramework('fq', ['q'])
  h.addFramework('fr', ['r'])
  // q already holds one agent, so under plain DRF it is behind r from the start.
  h.tasks.push({ frameworkId: 'fq', role: 'q', agentId: 'agent-0', resources: WHOLE })
  return h
}

t.test('Checks that a role below its guarantee gets it even though its share would lose', async (t) => {
  const plain = guaranteeScenario(false).allocate()
  t.ok(offered(plain, 'cpus', (o) => o.role === 'q') < 20, 'without quota, DRF gives q less than its guarantee')

  const offers = guaranteeScenario(true).allocate()
  t.equal(offered(offers, 'cpus', (o) => o.role === 'q'), 20, 'q is brought up to 24 cpus (4 held + 20)')
  t.equal(offered(offers, 'mem', (o) => o.role === 'q'), 20480)
  t.equal(offered(offers, 'cpus', (o) => o.role === 'r'), 8, 'r shares what is left')
})

t.test('Checks that the quota stage offers only up to the guarantee and the rest is shared in the same pass', async (t) => {
  const h = new Harness()
  h.addAgent('big', 'cpus:16;mem:16384')
  h.setRole('q', { quota: { cpus: 4, mem: 4096 } })
  h.addFramework('fq', ['q'])
  h.addFramework('fr', ['r'])
  const offers = h.allocate()
  t.equal(offers.length, 2, 'one agent, two offers')
  const q = offers.find((o) => o.role === 'q')
  const r = offers.find((o) => o.role === 'r')
  t.same(q?.resources, [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 4096 }], 'cut to the guarantee')
  t.same(r?.resources, [{ name: 'cpus', scalar: 12 }, { name: 'mem', scalar: 12288 }])
})

t.test('Checks that headroom for an unmet guarantee is held back from other roles', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 4; i++) h.addAgent(`agent-${i}`, AGENT)
  // No framework is in `batch` right now; its guarantee still stands.
  h.setRole('batch', { quota: { cpus: 8, mem: 8192 } })
  h.addFramework('fr', ['r'])
  const offers = h.allocate()
  t.equal(offered(offers, 'cpus'), 8, 'only what exceeds the guarantees is shared')
  t.equal(offered(offers, 'mem'), 8192)

  // Once the guarantee is consumed elsewhere, nothing is held back any more.
  h.tasks.push({ frameworkId: 'gone', role: 'batch', agentId: 'agent-0', resources: WHOLE })
  h.tasks.push({ frameworkId: 'gone', role: 'batch', agentId: 'agent-1', resources: WHOLE })
  t.equal(offered(h.allocate(), 'cpus'), 8)
  h.setRole('batch', { quota: { cpus: 12, mem: 12288 } })
  t.equal(offered(h.allocate(), 'cpus'), 4, 'a raised guarantee holds back again')
})

t.test('Checks that unallocated reservations count toward the guarantee', async (t) => {
  const h = new Harness()
  h.addAgent('reserved', 'cpus(batch):4;mem(batch):4096')
  h.addAgent('shared', AGENT)
  h.setRole('batch', { quota: { cpus: 4, mem: 4096 } })
  h.addFramework('fr', ['r'])
  // batch's reservation covers its guarantee, so the unreserved agent is free for r.
  const offers = h.allocate()
  t.equal(offers.length, 1)
  t.equal(offers[0]!.agentId, 'shared')
  t.equal(offered(offers, 'cpus'), 4)
})

t.test('Checks that a parent\'s guarantee is met through its children', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 6; i++) h.addAgent(`agent-${i}`, AGENT)
  h.setRole('ci', { quota: { cpus: 16, mem: 16384 } })
  h.addFramework('main', ['ci/main'])
  h.addFramework('pr', ['ci/pr'])
  h.addFramework('site', ['web'])
  h.tasks.push({ frameworkId: 'site', role: 'web', agentId: 'agent-0', resources: [{ name: 'cpus', scalar: 0.5 }, { name: 'mem', scalar: 512 }] })
  const offers = h.allocate()
  t.equal(offered(offers, 'cpus', (o) => o.role.startsWith('ci/')), 16, 'ci\'s subtree gets its guarantee')
  t.ok(offered(offers, 'cpus', (o) => o.role === 'ci/main') >= 4)
  t.ok(offered(offers, 'cpus', (o) => o.role === 'ci/pr') >= 4, 'shared by DRF between the children')
  t.equal(offered(offers, 'cpus', (o) => o.role === 'web'), 7.5, 'web gets the rest')
})

t.test('Checks that a role above its guarantee shares fairly like any other', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 10; i++) h.addAgent(`agent-${i}`, AGENT)
  h.setRole('q', { quota: { cpus: 4, mem: 4096 } })
  h.addFramework('fq', ['q'])
  h.addFramework('fr', ['r'])
  const offers = h.allocate()
  t.equal(offered(offers, 'cpus', (o) => o.role === 'q'), 20)
  t.equal(offered(offers, 'cpus', (o) => o.role === 'r'), 20)
})

t.test('Checks that a role offered in both stages on one agent gets a single merged offer', async (t) => {
  const h = new Harness()
  h.addAgent('big', 'cpus:16;mem:16384;ports:[31000-31099]')
  h.setRole('q', { quota: { cpus: 4, mem: 4096 } })
  h.addFramework('fq', ['q'])
  const offers = h.allocate()
  t.equal(offers.length, 1)
  t.same(offers[0]!.resources, [
    { name: 'cpus', scalar: 16 }, { name: 'mem', scalar: 16384 }, { name: 'ports', ranges: [{ begin: 31000, end: 31099 }] },
  ])
})
