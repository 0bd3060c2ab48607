// Revocable (oversubscribed) resources: offered only to frameworks that opted in.
import t from 'tap'
import { Harness } from './harness.js'

t.test('Checks that revocable resources are offered only to frameworks that opted in', async (t) => {
  const h = new Harness()
  for (let i = 0; i < 5; i++) h.addAgent(`agent-${i}`, 'cpus:2;mem:2048', { revocable: 'cpus:4;mem:4096' })
  h.addFramework('plain', ['ci'])
  h.addFramework('opt', ['ci'], { revocable: true })
  let revocableToOpt = 0
  for (let seed = 0; seed < 20; seed++) {
    h.seed = seed
    for (const o of h.allocate()) {
      const rev = o.resources.filter((r) => r.revocable)
      if (o.frameworkId === 'plain') t.equal(rev.length, 0, 'plain never gets revocable resources')
      else revocableToOpt += rev.length
    }
  }
  t.ok(revocableToOpt > 0, 'the opted-in framework gets them')
})

t.test('Checks that revocable resources nobody opted in to are not offered at all', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:1;mem:1024', { revocable: 'cpus:4;mem:4096' })
  h.addFramework('plain', ['ci'])
  const first = h.allocate()
  t.equal(first.length, 1)
  t.same(first[0]!.resources, [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 1024 }])
  // Once the framework uses the unreserved part, only revocable resources are left: no offer.
  h.launch(first[0]!, first[0]!.resources)
  t.same(h.allocate(), [])
})

t.test('Checks that after a plain framework takes the regular part, the revocable part goes to an opted-in one on the same agent', async (t) => {
  const h = new Harness()
  h.addAgent('agent-1', 'cpus:2;mem:2048', { revocable: 'cpus:4;mem:4096' })
  h.addFramework('a-plain', ['a'])
  h.addFramework('b-opt', ['b'], { revocable: true })
  const offers = h.allocate()
  t.equal(offers.length, 2)
  t.same(offers.find((o) => o.frameworkId === 'a-plain')?.resources, [{ name: 'cpus', scalar: 2 }, { name: 'mem', scalar: 2048 }])
  t.same(offers.find((o) => o.frameworkId === 'b-opt')?.resources, [
    { name: 'cpus', scalar: 4, revocable: true }, { name: 'mem', scalar: 4096, revocable: true },
  ])
})
