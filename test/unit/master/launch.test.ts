// takeFromPool (services/master/src/launch.ts): what a task takes from the resources of the offers
// it is launched on. Plain asks are taken from the role's reservation first, then unreserved;
// revocable resources only when the task marks them so; ranges come from one piece.
import t from 'tap'
import type { Resource } from '../../../shared/protocol/index.js'
import { contains, normalize, parseResources, subtract } from '../../../shared/resources/index.js'
import { takeFromPool } from '../../../services/master/src/launch.js'

const r = parseResources
const sorted = (rs: readonly Resource[] | undefined): Resource[] | undefined =>
  rs === undefined ? undefined : normalize(rs).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))

t.test('Checks that an exact match takes everything the pool holds', async (t) => {
  const pool = r('cpus:1;mem:128;ports:[31000-31001]')
  const taken = takeFromPool(pool, r('cpus:1;mem:128;ports:[31000-31001]'), '*')
  t.same(sorted(taken), sorted(pool))
})

t.test('Checks that a plain ask smaller than the pool takes exactly the ask', async (t) => {
  const pool = r('cpus:4;mem:4096;disk:1000')
  const taken = takeFromPool(pool, r('cpus:0.5;mem:256'), '*')
  t.same(sorted(taken), sorted(r('cpus:0.5;mem:256')))
  t.ok(taken && contains(pool, taken), 'what is taken is in the pool')
})

t.test('Checks that a plain ask is taken from the role\'s reservation before unreserved resources', async (t) => {
  const pool = r('cpus(ci/main):1;cpus:2;mem:1024')
  // more than the reservation holds: all of the reservation, the rest unreserved
  t.same(sorted(takeFromPool(pool, r('cpus:2.5'), 'ci/main')), sorted([
    { name: 'cpus', scalar: 1, role: 'ci/main' }, { name: 'cpus', scalar: 1.5 },
  ]), 'reservation first, then unreserved')
  // no more than the reservation holds: all of it comes from the reservation. (A fast path in
  // takeFromPool returns the ask as it is whenever the unreserved part alone holds it, leaving
  // the reservation idle while the framework eats shared capacity.)
  t.same(sorted(takeFromPool(pool, r('cpus:1'), 'ci/main')), [{ name: 'cpus', scalar: 1, role: 'ci/main' }],
    'an ask the reservation holds is taken from the reservation')
  t.same(sorted(takeFromPool(pool, r('cpus:0.5;mem:64'), 'ci/main')), sorted([
    { name: 'cpus', scalar: 0.5, role: 'ci/main' }, { name: 'mem', scalar: 64 },
  ]), 'a part of the reservation, and unreserved mem')
})

t.test('Checks that a child role may take its parent\'s reservation and another role may not', async (t) => {
  const pool = r('cpus(ci):2;mem:512')
  t.same(sorted(takeFromPool(pool, r('cpus:2;mem:512'), 'ci/main')), sorted([
    { name: 'cpus', scalar: 2, role: 'ci' }, { name: 'mem', scalar: 512 },
  ]), 'ci/main takes from ci')
  t.equal(takeFromPool(pool, r('cpus:1'), 'cd'), undefined, 'role cd cannot use the ci reservation')
  t.equal(takeFromPool(pool, r('cpus:1'), 'ci-other'), undefined, 'a role that only shares a prefix cannot either')
  t.equal(takeFromPool(pool, r('cpus:1'), '*'), undefined, 'nor the unreserved role')
})

t.test('Checks that an explicitly reserved ask must be in the pool as it is', async (t) => {
  const pool = r('cpus(ci/main):1;cpus:4')
  t.same(takeFromPool(pool, r('cpus(ci/main):1'), 'ci/main'), [{ name: 'cpus', scalar: 1, role: 'ci/main' }])
  t.equal(takeFromPool(pool, r('cpus(ci/main):2'), 'ci/main'), undefined, 'more than reserved: unreserved does not make up for it')
  t.equal(takeFromPool(pool, r('cpus(ci/pr):1'), 'ci/main'), undefined, 'a reservation the pool does not have')
})

t.test('Checks that revocable resources are taken only when the task asks for them', async (t) => {
  const revocable: Resource[] = [{ name: 'cpus', scalar: 4, revocable: true }, { name: 'mem', scalar: 4096, revocable: true }]
  const pool = [...r('cpus:1;mem:512'), ...revocable]
  t.same(sorted(takeFromPool(pool, r('cpus:1;mem:512'), '*')), sorted(r('cpus:1;mem:512')), 'a plain ask takes the regular part')
  t.equal(takeFromPool(pool, r('cpus:2'), '*'), undefined, 'a plain ask never spills into revocable resources')
  t.equal(takeFromPool(revocable, r('cpus:1'), '*'), undefined, 'revocable alone does not serve a plain ask')
  t.same(sorted(takeFromPool(pool, [{ name: 'cpus', scalar: 3, revocable: true }], '*')), [{ name: 'cpus', scalar: 3, revocable: true }],
    'a revocable ask takes revocable resources')
  t.equal(takeFromPool(r('cpus:8'), [{ name: 'cpus', scalar: 1, revocable: true }], '*'), undefined,
    'a revocable ask is not served from regular resources')
})

t.test('Checks that ranges are taken as asked, from a reserved piece when there is one', async (t) => {
  const pool = r('ports:[31000-31010];cpus:1')
  t.same(takeFromPool(pool, r('ports:[31002-31003]'), '*'), [{ name: 'ports', ranges: [{ begin: 31002, end: 31003 }] }])
  t.same(sorted(takeFromPool(pool, r('ports:[31000,31005,31010];cpus:1'), '*')), sorted([
    { name: 'ports', ranges: [{ begin: 31000, end: 31000 }, { begin: 31005, end: 31005 }, { begin: 31010, end: 31010 }] },
    { name: 'cpus', scalar: 1 },
  ]), 'several ports at once')
  t.equal(takeFromPool(pool, r('ports:[31011-31011]'), '*'), undefined, 'a port outside the ranges')
  t.equal(takeFromPool(pool, r('ports:[31009-31012]'), '*'), undefined, 'a range that runs past the end')

  const reserved = r('ports(ci):[32000-32009];ports:[31000-31009]')
  t.same(takeFromPool(reserved, r('ports:[32001-32002]'), 'ci'), [{ name: 'ports', role: 'ci', ranges: [{ begin: 32001, end: 32002 }] }],
    'ports only the reservation holds are taken from it, marked with its role')
  t.equal(takeFromPool(reserved, r('ports:[32001-32002]'), 'cd'), undefined, 'not for another role')
})

t.test('Checks that an ask that does not fit returns undefined', async (t) => {
  const pool = r('cpus:2;mem:1024;ports:[31000-31001]')
  t.equal(takeFromPool(pool, r('cpus:2.001'), '*'), undefined, 'a little more cpus than there is')
  t.equal(takeFromPool(pool, r('mem:2048'), '*'), undefined, 'too much mem')
  t.equal(takeFromPool(pool, r('gpus:1'), '*'), undefined, 'a resource the pool has none of')
  t.equal(takeFromPool(pool, r('cpus:1;mem:4096'), '*'), undefined, 'one part fits, another does not')
  t.equal(takeFromPool([], r('cpus:0.1'), '*'), undefined, 'an empty pool')
})

t.test('Checks that an empty ask fits and takes nothing', async (t) => {
  t.same(takeFromPool(r('cpus:1'), [], '*'), [])
})

t.test('Checks that what is taken, subtracted from the pool, leaves the rest for the next task', async (t) => {
  let pool = r('cpus(ci):1;cpus:1;mem:1024')
  const first = takeFromPool(pool, r('cpus:1.5;mem:512'), 'ci')
  t.ok(first, 'the first task fits')
  pool = subtract(pool, first!)
  t.same(sorted(pool), sorted(r('cpus:0.5;mem:512')), 'the reservation went first')
  const second = takeFromPool(pool, r('cpus:0.5;mem:512'), 'ci')
  t.same(sorted(second), sorted(r('cpus:0.5;mem:512')))
  t.equal(takeFromPool(subtract(pool, second!), r('cpus:0.001'), 'ci'), undefined, 'nothing left')
})
