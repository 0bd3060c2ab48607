// Dynamic reservations (with a principal) and persistent volumes in the allocator: offered only
// to their role's subtree, whole, with the volume's id; a volume a task holds is not offered.
import t from 'tap'
import fc from 'fast-check'
import type { Resource } from '../../../shared/resources/index.js'
import { Harness, offered } from './harness.js'

const volume = (role: string, id: string, size: number, principal?: string): Resource => ({
  name: 'disk', scalar: size, role, ...(principal ? { principal } : {}), disk: { persistence: { id }, containerPath: `cache/${id}` },
})

function scenario(): Harness {
  const h = new Harness()
  for (let i = 0; i < 4; i++) {
    const a = h.addAgent(`agent-${i}`, 'cpus:2;mem:2048;disk:1000')
    // what a RESERVE and a CREATE by a framework of ci/main (principal ci-svc) leave on the agent
    a.total = [...a.total, { name: 'cpus', scalar: 1, role: 'ci/main', principal: 'ci-svc' }, { name: 'disk', scalar: 100, role: 'ci/main', principal: 'ci-svc' }, volume('ci/main', `v${i}`, 400, 'ci-svc')]
  }
  h.addFramework('web', ['web'])
  h.addFramework('ci', ['ci'])
  h.addFramework('main', ['ci/main'])
  h.addFramework('pr', ['ci/main/pr'])
  return h
}

t.test('Checks that dynamic reservations and volumes go only to their role\'s subtree, whole, whatever the agent order', async (t) => {
  const h = scenario()
  fc.assert(fc.property(fc.integer({ min: 0, max: 1_000_000 }), (seed) => {
    h.seed = seed
    const offers = h.allocate()
    for (const o of offers) {
      for (const r of o.resources) {
        if (r.role === undefined) continue
        if (!(o.role === r.role || o.role.startsWith(`${r.role}/`))) throw new Error(`${r.name}(${r.role}) offered to ${o.role}`)
        if (r.disk && r.scalar !== 400) throw new Error(`volume ${r.disk.persistence.id} offered in part (${r.scalar})`)
      }
    }
    const ids = offers.flatMap((o) => o.resources.filter((r) => r.disk).map((r) => r.disk!.persistence.id)).sort()
    if (JSON.stringify(ids) !== JSON.stringify(['v0', 'v1', 'v2', 'v3'])) throw new Error(`volumes offered: ${ids.join(',')}`)
  }), { numRuns: 100 })
  t.pass('property holds')
  h.seed = 7
  const offers = h.allocate()
  t.equal(offered(offers, 'disk', (o) => o.role === 'web' || o.role === 'ci'), offered(offers, 'disk', (o) => o.resources.every((r) => r.role === undefined)),
    'web and ci get unreserved disk only')
  const withVolume = offers.find((o) => o.resources.some((r) => r.disk?.persistence.id === 'v0'))
  t.ok(withVolume && (withVolume.role === 'ci/main' || withVolume.role === 'ci/main/pr'), 'v0 goes to ci/main or below')
  t.same(withVolume?.resources.find((r) => r.disk), volume('ci/main', 'v0', 400, 'ci-svc'), 'with its id, path and principal')
})

t.test('Checks that a volume a task holds is not offered, and is offered again once the task ends', async (t) => {
  const h = new Harness()
  const a = h.addAgent('agent-1', 'cpus:2;mem:2048')
  a.total = [...a.total, volume('ci', 'cache', 500)]
  h.addFramework('f', ['ci'])
  const first = h.allocate()
  t.same(first[0]?.resources.find((r) => r.disk), volume('ci', 'cache', 500))
  h.launch(first[0]!, [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 512 }, volume('ci', 'cache', 500)])
  const second = h.allocate()
  t.equal(second.length, 1)
  t.same(second[0]!.resources.filter((r) => r.disk), [], 'the volume in use is not offered')
  t.equal(offered(second, 'cpus'), 1)
  h.tasks.splice(0)
  t.same(h.allocate()[0]?.resources.find((r) => r.disk), volume('ci', 'cache', 500), 'offered again after the task')
})
