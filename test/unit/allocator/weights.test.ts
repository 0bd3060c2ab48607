// Role weights: a role's share is divided by its weight before roles are compared.
import t from 'tap'
import { Harness } from './harness.js'

function countByFramework(offers: Array<{ frameworkId: string }>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const o of offers) out[o.frameworkId] = (out[o.frameworkId] ?? 0) + 1
  return out
}

t.test('Checks that a role with weight 2 gets about twice what a role with weight 1 gets', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 30; i++) h.addAgent(`agent-${i}`, 'cpus:1;mem:1024')
  h.setRole('heavy', { weight: 2 })
  h.addFramework('f-heavy', ['heavy'])
  h.addFramework('f-light', ['light'])
  const n = countByFramework(h.allocate())
  t.equal(n['f-heavy'], 20)
  t.equal(n['f-light'], 10)
})

t.test('Checks that weights also count for what roles already hold', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 4; i++) h.addAgent(`agent-${i}`, 'cpus:1;mem:1024')
  h.setRole('heavy', { weight: 4 })
  h.addFramework('f-heavy', ['heavy'])
  h.addFramework('f-light', ['light'])
  // heavy holds two agents (share 0.5 / 4 = 0.125), light one (0.25): heavy is still lower.
  for (const id of ['agent-0', 'agent-1']) h.tasks.push({ frameworkId: 'f-heavy', role: 'heavy', agentId: id, resources: [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 1024 }] })
  h.tasks.push({ frameworkId: 'f-light', role: 'light', agentId: 'agent-2', resources: [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 1024 }] })
  const offers = h.allocate()
  t.equal(offers.length, 1)
  t.equal(offers[0]!.frameworkId, 'f-heavy')
})

t.test('Checks that a non-positive weight falls back to the default of 1', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 10; i++) h.addAgent(`agent-${i}`, 'cpus:1;mem:1024')
  h.setRole('zero', { weight: 0 })
  h.addFramework('f-zero', ['zero'])
  h.addFramework('f-one', ['one'])
  const n = countByFramework(h.allocate())
  t.equal(n['f-zero'], 5)
  t.equal(n['f-one'], 5)
})
