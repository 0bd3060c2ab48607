// Hierarchical roles: `ci/main` and `ci/pr` share what `ci` gets against its top-level siblings.
import t from 'tap'
import { Harness } from './harness.js'

function countByRole(offers: Array<{ role: string }>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const o of offers) out[o.role] = (out[o.role] ?? 0) + 1
  return out
}

t.test('Checks that ci/main and ci/pr split ci\'s half while the sibling web gets the other half', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 30; i++) h.addAgent(`agent-${i}`, 'cpus:2;mem:2048')
  h.addFramework('main', ['ci/main'])
  h.addFramework('pr', ['ci/pr'])
  h.addFramework('site', ['web'])
  const n = countByRole(h.allocate())
  t.equal(n['web'], 15, 'web, alone at the top level against ci, gets half')
  t.equal((n['ci/main'] ?? 0) + (n['ci/pr'] ?? 0), 15, 'ci\'s subtree gets the other half')
  t.ok(Math.abs((n['ci/main'] ?? 0) - (n['ci/pr'] ?? 0)) <= 1, 'split evenly inside ci')
})

t.test('Checks that flat roles of the same names (no hierarchy) split three ways instead', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 30; i++) h.addAgent(`agent-${i}`, 'cpus:2;mem:2048')
  h.addFramework('main', ['ci-main'])
  h.addFramework('pr', ['ci-pr'])
  h.addFramework('site', ['web'])
  t.same(countByRole(h.allocate()), { 'ci-main': 10, 'ci-pr': 10, web: 10 })
})

t.test('Checks that weights apply among siblings inside a subtree', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 32; i++) h.addAgent(`agent-${i}`, 'cpus:2;mem:2048')
  h.setRole('ci/main', { weight: 3 })
  h.addFramework('main', ['ci/main'])
  h.addFramework('pr', ['ci/pr'])
  h.addFramework('site', ['web'])
  const n = countByRole(h.allocate())
  t.equal(n['web'], 16)
  t.equal(n['ci/main'], 12)
  t.equal(n['ci/pr'], 4)
})

t.test('Checks that a role with its own frameworks and children competes as a virtual leaf', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 20; i++) h.addAgent(`agent-${i}`, 'cpus:2;mem:2048')
  h.addFramework('ci-own', ['ci'])
  h.addFramework('main', ['ci/main'])
  h.addFramework('site', ['web'])
  const n = countByRole(h.allocate())
  t.equal(n['web'], 10)
  t.equal(n['ci'], 5)
  t.equal(n['ci/main'], 5)
})

t.test('Checks that what a child role holds counts against its parent\'s share', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 4; i++) h.addAgent(`agent-${i}`, 'cpus:2;mem:2048')
  h.addFramework('main', ['ci/main'])
  h.addFramework('pr', ['ci/pr'])
  h.addFramework('site', ['web'])
  // ci/main holds one agent: ci's subtree is ahead of web, so web is offered first even though
  // ci/pr itself holds nothing.
  h.tasks.push({ frameworkId: 'main', role: 'ci/main', agentId: 'agent-0', resources: [{ name: 'cpus', scalar: 2 }, { name: 'mem', scalar: 2048 }] })
  h.seed = 7
  const offers = h.allocate()
  t.equal(offers[0]!.role, 'web')
  t.same(countByRole(offers), { web: 2, 'ci/pr': 1 })
})
