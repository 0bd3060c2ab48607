// The pure parts of the master's reservations (services/master/src/reservations.ts) and of
// launch.ts with reservations and volumes: operations as conversions, the checks Mesos makes,
// reservations applied on top of what an agent reports, and tasks taking volumes whole.
import assert from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import type { Offer, Operation, ReservationOperation, Resource } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { add, contains, normalize, parseResources, totals } from '../../../shared/resources/index.js'
import {
  applyReservations, checkOperations, stepOf, takeForTask, type AgentReservations, type OperationContext,
} from '../../../services/master/src/reservations.js'
import { takeFromPool } from '../../../services/master/src/launch.js'

const ctx: OperationContext = { offerRoles: ['ci'], frameworkRoles: ['ci', 'ci/pr'], principal: 'ci-svc' }
const none: AgentReservations = { reserved: [], volumes: [] }
const vol = (id: string, size: number, extra: Partial<Resource> = {}): Resource => ({
  name: 'disk', scalar: size, role: 'ci', principal: 'ci-svc', disk: { persistence: { id }, containerPath: `c/${id}` }, ...extra,
})

function refused(fn: () => unknown): RegattaError {
  try {
    fn()
  } catch (err) {
    return err as RegattaError
  }
  throw new Error('not refused')
}

t.test('Checks that RESERVE reserves for the framework\'s principal and what it reserved applies on top of the agent', async (t) => {
  const pool = parseResources('cpus:4;mem:4096;disk:1000')
  const step = stepOf({ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci' }, { name: 'disk', scalar: 500, role: 'ci' }] }, 'op', pool, none, ctx)
  t.same(step.converted, [{ name: 'cpus', scalar: 1, role: 'ci', principal: 'ci-svc' }, { name: 'disk', scalar: 500, role: 'ci', principal: 'ci-svc' }])
  t.same(step.consumed, [{ name: 'cpus', scalar: 1 }, { name: 'disk', scalar: 500 }])
  t.same(step.book.reserved, step.converted)
  const applied = applyReservations(pool, step.book)
  t.same(applied.unfit, [])
  t.ok(contains(applied.resources, step.converted))
  t.same(totals(applied.resources), totals(pool), 'no amount changes')
})

t.test('Checks that reservations and volumes applied to what an agent reports keep every amount, and leave out what no longer fits', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: 4000 }), fc.integer({ min: 0, max: 4000 }),
    (cpus, reservedCpus, disk, volumeSize) => {
      const base = parseResources(`cpus:${cpus};disk:${disk}`)
      const book: AgentReservations = {
        reserved: reservedCpus > 0 ? [{ name: 'cpus', scalar: reservedCpus, role: 'ci' }, { name: 'disk', scalar: volumeSize + 1, role: 'ci' }] : [{ name: 'disk', scalar: volumeSize + 1, role: 'ci' }],
        volumes: volumeSize > 0 ? [vol('v', volumeSize, { principal: undefined })] : [],
      }
      const { resources, unfit } = applyReservations(base, book)
      assert.deepEqual(totals(resources), totals(base), 'amounts never change')
      assert.equal(unfit.some((r) => r.name === 'cpus'), reservedCpus > cpus, 'a reservation that does not fit is left out')
      if (volumeSize + 1 <= disk && volumeSize > 0) assert.ok(contains(resources, book.volumes), 'the volume is there when its disk is')
    }), { numRuns: 300 })
  t.pass('property holds')
})

t.test('Checks that CREATE takes the principal of the reserved disk it is made of, and DESTROY finds a volume by role and id', async (t) => {
  const pool = add(parseResources('cpus:1'), [{ name: 'disk', scalar: 300, role: 'ci', principal: 'ci-svc' }])
  const created = stepOf({ type: 'CREATE', volumes: [vol('cache', 200, { principal: undefined })] }, 'op', pool, none, { ...ctx, principal: undefined })
  t.same(created.converted, [vol('cache', 200)], 'principal ci-svc, from the disk')
  t.same(created.created, [{ role: 'ci', id: 'cache' }])
  const after = normalize([...parseResources('cpus:1'), { name: 'disk', scalar: 100, role: 'ci', principal: 'ci-svc' }, vol('cache', 200)])
  // named by id only (no size, another path): the volume as it is
  const destroyed = stepOf({ type: 'DESTROY', volumes: [{ name: 'disk', scalar: 1, role: 'ci', disk: { persistence: { id: 'cache' }, containerPath: 'x' } }] }, 'op', after, created.book, ctx)
  t.same(destroyed.consumed, [vol('cache', 200)])
  t.same(destroyed.converted, [{ name: 'disk', scalar: 200, role: 'ci', principal: 'ci-svc' }])
  t.same(destroyed.book, none)
  t.same(destroyed.destroyed, [{ role: 'ci', id: 'cache' }])
  const again = refused(() => stepOf({ type: 'CREATE', volumes: [vol('cache', 50)] }, 'ACCEPT operations[0] (CREATE)', after, created.book, ctx))
  t.equal(again.code, 'INVALID_OPERATION')
  t.match(again.message, 'ACCEPT operations[0] (CREATE): volumes[0]: role "ci" has a volume "cache" on this agent already')
  const inUse = refused(() => stepOf({ type: 'DESTROY', volumes: [vol('cache', 200)] }, 'op', parseResources('cpus:1'), created.book, ctx))
  t.match(inUse.message, 'volume "cache" of role "ci" is in use')
})

t.test('Checks that the checks Mesos makes refuse bad operations, naming the field', async (t) => {
  const pool = add(parseResources('cpus:2;disk:100'), [{ name: 'cpus', scalar: 1, role: 'ci' }, { name: 'disk', scalar: 100, role: 'ci' }])
  const cases: Array<[ReservationOperation, AgentReservations, string]> = [
    [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci', principal: 'someone' }] }, none, 'resources[0]: principal "someone" is not the framework\'s (ci-svc)'],
    [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci', revocable: true }] }, none, 'resources[0]: revocable resources cannot be reserved'],
    [{ type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci/pr' }] }, none, 'role "ci/pr" is not the role the offers were made to (ci)'],
    [{ type: 'UNRESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci' }] }, none, 'cpus(ci):1 is not a dynamic reservation on this agent (static reservations cannot be given back)'],
    [{ type: 'UNRESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'web' }] }, none, 'resources[0]: role "web" is not one of the framework\'s roles'],
    [{ type: 'UNRESERVE', resources: [vol('v', 10)] }, none, 'resources[0]: is a volume: DESTROY it first'],
    [{ type: 'CREATE', volumes: [{ name: 'cpus', scalar: 1, role: 'ci', disk: { persistence: { id: 'v' }, containerPath: 'v' } }] }, none, 'volumes[0]: a volume is a "disk" resource with a size'],
    [{ type: 'CREATE', volumes: [{ name: 'disk', scalar: 10, role: 'ci' }] }, none, 'volumes[0]: names no volume'],
    [{ type: 'CREATE', volumes: [vol('a', 10, { principal: undefined }), vol('a', 10, { principal: undefined })] }, none, 'volumes[1]: role "ci" has a volume "a"'],
    [{ type: 'CREATE', volumes: [vol('a', 10, { disk: { persistence: { id: 'a' }, containerPath: '/' } })] }, none, 'volumes[0]: disk.containerPath "/" names no directory'],
  ]
  for (const [op, book, message] of cases) {
    const err = refused(() => stepOf(op, 'ACCEPT operations[0] (X)', pool, book, ctx))
    t.equal(err.code, 'INVALID_OPERATION', message)
    t.match(err.message, message)
  }
})

t.test('Checks that an ACCEPT may reserve, make a volume and launch a task on it at once, and that operations are checked in order', async (t) => {
  const offer: Offer = {
    id: 'o1', frameworkId: 'f', agentId: 'a', hostname: 'h', pool: 'default', attributes: {}, role: 'ci', resources: parseResources('cpus:2;mem:1024;disk:1000'),
  }
  const task = { taskId: 't1', container: { command: ['true'] }, resources: [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 64 }, vol('cache', 300, { principal: 'ci-svc' })] }
  const ops: Operation[] = [
    { type: 'RESERVE', resources: [{ name: 'disk', scalar: 300, role: 'ci' }] },
    { type: 'CREATE', volumes: [vol('cache', 300, { principal: undefined })] },
    { type: 'LAUNCH', tasks: [task] },
  ]
  checkOperations(offer.resources, ops, none, ctx, takeForTask([offer]))
  t.pass('reserve, create and launch on the volume pass together')
  // a task that took all the cpus leaves nothing to reserve after it
  const greedy = { ...task, taskId: 't2', resources: [{ name: 'cpus', scalar: 2 }] }
  const err = refused(() => checkOperations(offer.resources, [{ type: 'LAUNCH', tasks: [greedy] }, { type: 'RESERVE', resources: [{ name: 'cpus', scalar: 1, role: 'ci' }] }], none, ctx, takeForTask([offer])))
  t.match(err.message, 'ACCEPT operations[1] (RESERVE): the offers do not hold cpus:1 unreserved')
})

t.test('Checks that a task takes a volume whole by its id, plain disk never takes a volume, and reserved pieces keep their principal', async (t) => {
  const pool = normalize([
    ...parseResources('cpus:1;disk:50'),
    { name: 'cpus', scalar: 1, role: 'ci', principal: 'ci-svc' },
    { name: 'disk', scalar: 20, role: 'ci', principal: 'ci-svc' },
    vol('cache', 300),
  ])
  const byId = { name: 'disk', scalar: 1, disk: { persistence: { id: 'cache' }, containerPath: 'c/cache' } }
  t.same(takeFromPool(pool, [byId], 'ci'), [vol('cache', 300)], 'the whole volume, named without its role or size')
  t.same(takeFromPool(pool, [byId], 'web'), undefined, 'not by another role')
  t.same(takeFromPool(pool, [{ ...byId, disk: { persistence: { id: 'other' }, containerPath: 'c/cache' } }], 'ci'), undefined, 'not another id')
  t.same(takeFromPool(pool, [{ name: 'disk', scalar: 70 }], 'ci'), [{ name: 'disk', scalar: 20, role: 'ci', principal: 'ci-svc' }, { name: 'disk', scalar: 50 }],
    'plain disk: the reservation first, then unreserved, never the volume')
  t.same(takeFromPool(pool, [{ name: 'disk', scalar: 71 }], 'ci'), undefined)
  t.same(takeFromPool(pool, [{ name: 'cpus', scalar: 1.5 }], 'ci'), [{ name: 'cpus', scalar: 1, role: 'ci', principal: 'ci-svc' }, { name: 'cpus', scalar: 0.5 }],
    'the reserved piece keeps its principal, so it is taken off what the agent has')
})
