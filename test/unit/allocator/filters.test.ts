// Refuse filters (DECLINE): hold for their duration (snapshot.now), then expire.
import t from 'tap'
import { Harness } from './harness.js'

t.test('Checks that a refuse filter holds for its duration and expires', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:4;mem:4096')
  h.addFramework('f', ['ci'])
  const [offer] = h.allocate()
  t.ok(offer)
  h.decline(offer!, 5)
  t.same(h.allocate(), [], 'filtered right after the decline')
  h.now += 4_999
  t.same(h.allocate(), [], 'still filtered 1 ms before it ends')
  h.now += 1
  const again = h.allocate()
  t.equal(again.length, 1, 'offered again once `until` is reached')
  t.same(again[0]!.resources, offer!.resources)
})

t.test('Checks that a filter only holds back offers contained in what was refused', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:4;mem:4096')
  h.addFramework('f', ['ci'])
  h.filters.push({ frameworkId: 'f', agentId: 'agent-1', resources: [{ name: 'cpus', scalar: 1 }], until: h.now + 60_000 })
  t.equal(h.allocate().length, 1, 'more than was refused is offered')
  h.filters.push({ frameworkId: 'f', agentId: 'agent-1', resources: [{ name: 'cpus', scalar: 8 }, { name: 'mem', scalar: 8192 }], until: h.now + 60_000 })
  t.same(h.allocate(), [], 'a subset of what was refused is not')
})

t.test('Checks that a filter is per framework and agent, and the filtered offer goes to the next framework', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:4;mem:4096')
  h.addAgent('agent-2', 'cpus:4;mem:4096')
  h.addFramework('f1', ['a'])
  h.addFramework('f2', ['b'])
  h.filters.push({ frameworkId: 'f1', agentId: 'agent-1', resources: [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 4096 }], until: h.now + 60_000 })
  const offers = h.allocate()
  t.equal(offers.length, 2)
  t.equal(offers.find((o) => o.agentId === 'agent-1')?.frameworkId, 'f2', 'f1 is filtered on agent-1, f2 is not')
  t.equal(offers.find((o) => o.agentId === 'agent-2')?.frameworkId, 'f1', 'f1 is still offered other agents')
})
