// Reservations: resources reserved for a role are offered only to that role and its descendants.
import t from 'tap'
import { Harness, offered } from './harness.js'

t.test('Checks that reserved resources go only to their role and its descendants, never to others', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 6; i++) h.addAgent(`agent-${i}`, 'cpus:2;mem:2048;cpus(ci):4;mem(ci):4096;cpus(ci/main):1;mem(ci/main):512')
  h.addFramework('site', ['web'])
  h.addFramework('ci-own', ['ci'])
  h.addFramework('main', ['ci/main'])
  h.addFramework('pr', ['ci/pr'])
  for (let seed = 0; seed < 20; seed++) {
    h.seed = seed
    for (const o of h.allocate()) {
      for (const r of o.resources) {
        if (r.role === undefined) continue
        t.ok(o.role === r.role || o.role.startsWith(`${r.role}/`), `${r.name}(${r.role}) offered to ${o.role}`)
      }
    }
  }
  const offers = h.allocate()
  t.ok(offered(offers, 'cpus', (o) => o.role === 'web') > 0, 'web is offered the unreserved part')
  t.ok(offers.filter((o) => o.role === 'web').every((o) => o.resources.every((r) => r.role === undefined)), 'web never sees a reservation')
  t.equal(offered(offers, 'cpus'), 6 * 7, 'yet everything is offered to someone')
})

t.test('Checks that one agent gives the unreserved part to one role and the reserved part to another in the same pass', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:2;mem:2048;cpus(ci):4;mem(ci):4096')
  // `a-web` sorts before `ci` on a tie, so it is offered first and takes the unreserved part.
  h.addFramework('site', ['a-web'])
  h.addFramework('builder', ['ci'])
  const offers = h.allocate()
  t.equal(offers.length, 2)
  t.same(offers.find((o) => o.role === 'a-web')?.resources, [{ name: 'cpus', scalar: 2 }, { name: 'mem', scalar: 2048 }])
  t.same(offers.find((o) => o.role === 'ci')?.resources, [{ name: 'cpus', scalar: 4, role: 'ci' }, { name: 'mem', scalar: 4096, role: 'ci' }])
})

t.test('Checks that a reservation for a child role is not offered to its parent', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus(ci/main):4;mem(ci/main):4096')
  h.addFramework('ci-own', ['ci'])
  t.same(h.allocate(), [], 'ci may not use ci/main\'s reservation')
  h.addFramework('main', ['ci/main'])
  const offers = h.allocate()
  t.equal(offers.length, 1)
  t.equal(offers[0]!.frameworkId, 'main')
})

t.test('Checks that a reservation for a parent role is offered to a framework in a child role', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus(ci):4;mem(ci):4096;ports(ci):[31000-31009]')
  h.addFramework('pr', ['ci/pr'])
  const offers = h.allocate()
  t.equal(offers.length, 1)
  t.same(offers[0]!.resources, [
    { name: 'cpus', scalar: 4, role: 'ci' },
    { name: 'mem', scalar: 4096, role: 'ci' },
    { name: 'ports', ranges: [{ begin: 31000, end: 31009 }], role: 'ci' },
  ])
})

t.test('Checks that offered reservations count in the role\'s share', async (t) => {
  const h = new Harness()
  h.addAgent('agent-r', 'cpus(b):8;mem(b):8192')
  h.addAgent('agent-1', 'cpus:8;mem:8192')
  h.addAgent('agent-2', 'cpus:8;mem:8192')
  h.addFramework('fa', ['a'])
  h.addFramework('fb', ['b'])
  // Offers come out in the order agents are visited. When b's reservation is offered first,
  // b's share is 1/3 before the unreserved agents are visited, so both go to a.
  let reservedFirst = 0
  for (let seed = 0; seed < 30; seed++) {
    h.seed = seed
    const offers = h.allocate()
    t.equal(offers.length, 3)
    if (offers[0]!.agentId !== 'agent-r') continue
    reservedFirst++
    t.same(offers.slice(1).map((o) => o.frameworkId), ['fa', 'fa'], `seed ${seed}`)
  }
  t.ok(reservedFirst > 0, 'some seed visits the reserved agent first')
})
