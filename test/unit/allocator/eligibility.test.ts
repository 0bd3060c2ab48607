// Who is not offered anything: suppressed roles, inactive frameworks, draining agents.
import t from 'tap'
import { Harness, offered } from './harness.js'

t.test('Checks that a suppressed role gets nothing while the framework\'s other roles still do', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:4;mem:4096')
  h.addAgent('agent-2', 'cpus:4;mem:4096')
  h.addFramework('f', ['a', 'b'], { suppressedRoles: ['a'] })
  const offers = h.allocate()
  t.equal(offers.length, 2)
  t.ok(offers.every((o) => o.role === 'b'))
  h.frameworks.get('f')!.suppressedRoles = ['a', 'b']
  t.same(h.allocate(), [], 'all roles suppressed: nothing')
})

t.test('Checks that an inactive framework gets nothing but what it holds still counts for its role', async (t) => {
  const h = new Harness()
  h.addAgent('agent-0', 'cpus:4;mem:4096')
  h.addAgent('agent-1', 'cpus:4;mem:4096')
  h.addAgent('agent-2', 'cpus:4;mem:4096')
  h.addFramework('gone', ['a'], { active: false })
  t.same(h.allocate(), [], 'the only framework is disconnected')
  h.tasks.push({ frameworkId: 'gone', role: 'a', agentId: 'agent-0', resources: [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 4096 }] })
  h.addFramework('fa', ['a'])
  h.addFramework('fb', ['b'])
  h.seed = 3
  const offers = h.allocate()
  t.equal(offers.length, 2)
  t.ok(offers.every((o) => o.frameworkId !== 'gone'))
  // Role a already holds a third of the cluster (through `gone`), so b is offered first.
  t.equal(offers[0]!.role, 'b')
})

t.test('Checks that a draining agent is not offered', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:4;mem:4096', { draining: true })
  h.addAgent('agent-2', 'cpus:4;mem:4096')
  h.addFramework('f', ['a'], { revocable: true })
  const offers = h.allocate()
  t.equal(offers.length, 1)
  t.equal(offers[0]!.agentId, 'agent-2')
  h.agents.get('agent-2')!.draining = true
  t.same(h.allocate(), [])
})

t.test('Checks that a draining agent\'s free resources are not counted as headroom', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:4;mem:4096', { draining: true })
  h.addAgent('agent-2', 'cpus:4;mem:4096')
  h.setRole('batch', { quota: { cpus: 4, mem: 4096 } })
  h.addFramework('f', ['a'])
  t.equal(offered(h.allocate(), 'cpus'), 0, 'agent-2 is the only headroom for batch\'s guarantee')
})

t.test('Checks that offers below the minimum allocatable resources are not made', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:0.005;mem:16;disk:1000')
  h.addFramework('f', ['a'])
  t.same(h.allocate(), [])
  h.addAgent('agent-2', 'cpus:0.01;mem:0')
  t.equal(h.allocate().length, 1)
})
