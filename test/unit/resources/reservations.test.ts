// Property tests (fast-check) and examples for dynamic reservations and persistent volumes in
// the resource arithmetic: volume identity, conversions (RESERVE/UNRESERVE/CREATE/DESTROY) and
// the volume syntax of parseResources/formatResources.
import assert from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import {
  add, contains, convert, flatten, formatResources, isVolume, normalize, parseResources, scalar, subtract, totals,
  unreserved, volumeKey, volumePathProblem, withoutVolumes, type Resource,
} from '../../../shared/resources/index.js'
import { RegattaError } from '../../../shared/errors/index.js'

const RUNS = { numRuns: 300 }

// --- generators -------------------------------------------------------------------------------

const roleArb = fc.constantFrom('ci', 'ci/main', 'web')
const principalArb = fc.constantFrom<string | undefined>(undefined, 'ci-svc', 'ops')
const amountArb = fc.integer({ min: 1, max: 5_000_000 }).map((n) => n / 1000)
const volumeIdArb = fc.constantFrom('cache-a', 'cache-b', 'db')
const pathArb = fc.constantFrom('cache', '/workspace/.npm', 'data/x')

function withPrincipal(r: Resource, principal: string | undefined): Resource {
  if (principal !== undefined) r.principal = principal
  return r
}

const plainArb: fc.Arbitrary<Resource> = fc.record({ name: fc.constantFrom('cpus', 'mem', 'disk'), scalar: amountArb })
  .map(({ name, scalar: s }) => ({ name, scalar: s }))

const reservedArb: fc.Arbitrary<Resource> = fc.record({ name: fc.constantFrom('cpus', 'mem', 'disk'), scalar: amountArb, role: roleArb, principal: principalArb })
  .map(({ name, scalar: s, role, principal }) => withPrincipal({ name, scalar: s, role }, principal))

const volumeArb: fc.Arbitrary<Resource> = fc.record({ scalar: amountArb, role: roleArb, principal: principalArb, id: volumeIdArb, path: pathArb })
  .map(({ scalar: s, role, principal, id, path }) => withPrincipal({ name: 'disk', scalar: s, role, disk: { persistence: { id }, containerPath: path } }, principal))

const anyArb = fc.array(fc.oneof(plainArb, reservedArb, volumeArb), { maxLength: 8 })

function key(r: Resource): string {
  return `${r.name}|${r.role ?? ''}|${r.principal ?? ''}|${r.revocable ? 'rev' : ''}|${r.ranges ? 'ranges' : 'scalar'}|${volumeKey(r)}`
}

function canon(rs: readonly Resource[]): Resource[] {
  return normalize(rs).sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0))
}

// --- identity ---------------------------------------------------------------------------------

t.test('Checks that a volume never merges with reserved disk, unreserved disk or another volume', async (t) => {
  fc.assert(fc.property(amountArb, roleArb, (x, role) => {
    const plain: Resource = { name: 'disk', scalar: x }
    const reserved: Resource = { name: 'disk', scalar: x, role }
    const v1: Resource = { name: 'disk', scalar: x, role, disk: { persistence: { id: 'a' }, containerPath: 'cache' } }
    const v2: Resource = { name: 'disk', scalar: x, role, disk: { persistence: { id: 'b' }, containerPath: 'cache' } }
    const sum = add(add([plain, reserved], [v1]), [v2])
    assert.equal(sum.length, 4)
    assert.equal(sum.filter(isVolume).length, 2)
    assert.ok(!contains([reserved], [v1]), 'reserved disk is not a volume')
    assert.ok(!contains([v1], [reserved]), 'a volume is not plain reserved disk')
    assert.ok(!contains([v1], [v2]), 'one volume is not another')
    assert.deepEqual(canon(subtract(sum, [v1])), canon([plain, reserved, v2]))
    assert.equal(scalar(sum, 'disk'), Math.round(4 * x * 1000) / 1000, 'all of it is still disk')
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that subtract(add(a, b), b) equals a with reservations, principals and volumes', async (t) => {
  fc.assert(fc.property(anyArb, anyArb, (a, b) => {
    assert.deepEqual(canon(subtract(add(a, b), b)), canon(a))
    assert.ok(contains(add(a, b), a))
    assert.ok(contains(add(a, b), b))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that flatten and unreserved drop reservations and volumes, keeping the amounts', async (t) => {
  fc.assert(fc.property(anyArb, (a) => {
    for (const flat of [flatten(a), unreserved(a)]) {
      assert.ok(flat.every((r) => r.role === undefined && r.principal === undefined && r.disk === undefined))
      assert.deepEqual(totals(flat), totals(normalize(a)))
    }
    const plain = withoutVolumes(a)
    assert.ok(plain.every((r) => r.disk === undefined))
    assert.deepEqual(totals(plain), totals(normalize(a)))
  }), RUNS)
  t.pass('property holds')
})

// --- conversions ------------------------------------------------------------------------------

t.test('Checks that RESERVE then UNRESERVE (as conversions) gives back what there was', async (t) => {
  fc.assert(fc.property(anyArb, fc.array(reservedArb, { minLength: 1, maxLength: 4 }), (other, toReserve) => {
    const base = add(other, unreserved(toReserve))
    const reservedNow = convert(base, unreserved(toReserve), toReserve)
    assert.ok(reservedNow, 'the unreserved resources are there')
    assert.deepEqual(totals(reservedNow!), totals(base), 'a reservation changes no amount')
    assert.ok(contains(reservedNow!, toReserve))
    const back = convert(reservedNow!, toReserve, unreserved(toReserve))
    assert.deepEqual(canon(back!), canon(base))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that CREATE then DESTROY (as conversions) gives back the reserved disk', async (t) => {
  fc.assert(fc.property(anyArb, volumeArb, (other, volume) => {
    const base = add(other, withoutVolumes([volume]))
    const created = convert(base, withoutVolumes([volume]), [volume])
    assert.ok(created)
    assert.ok(contains(created!, [volume]))
    assert.deepEqual(totals(created!), totals(base))
    assert.deepEqual(canon(convert(created!, [volume], withoutVolumes([volume]))!), canon(base))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that a conversion of what is not there is refused and changes nothing', async (t) => {
  fc.assert(fc.property(anyArb, reservedArb, (rs, r) => {
    const have = subtract(rs, unreserved([r]))
    const out = convert(have, unreserved([r]), [r])
    assert.equal(out === undefined, !contains(have, unreserved([r])))
  }), RUNS)
  t.equal(convert([{ name: 'cpus', scalar: 1 }], [{ name: 'cpus', scalar: 2 }], [{ name: 'cpus', scalar: 2, role: 'ci' }]), undefined)
  t.equal(convert([{ name: 'disk', scalar: 10, role: 'web' }], [{ name: 'disk', scalar: 10, role: 'ci' }], []), undefined, 'another role\'s disk is not taken')
})

// --- syntax -----------------------------------------------------------------------------------

t.test('Checks that parseResources(formatResources(x)) round-trips volumes and reservations', async (t) => {
  const noPrincipal = fc.array(fc.oneof(plainArb, reservedArb, volumeArb).map((r) => {
    const { principal: _p, ...rest } = r
    return rest
  }), { maxLength: 8 })
  fc.assert(fc.property(noPrincipal, (x) => {
    const text = formatResources(x)
    assert.deepEqual(canon(parseResources(text)), canon(x), text)
  }), RUNS)
  t.same(parseResources('disk(ci)[cache-1:/workspace/.npm]:512;disk(ci):100'), [
    { name: 'disk', scalar: 512, role: 'ci', disk: { persistence: { id: 'cache-1' }, containerPath: '/workspace/.npm' } },
    { name: 'disk', scalar: 100, role: 'ci' },
  ])
})

for (const [input, why] of [
  ['disk[v:/x]:10', 'no role'],
  ['cpus(ci)[v:/x]:1', 'not disk'],
  ['disk(ci)[:x]:10', 'no id'],
  ['disk(ci)[v]:10', 'no path'],
  ['disk(ci)[v:x]:[1-2]', 'ranges'],
] as const) {
  t.test(`Checks that parseResources refuses the volume ${JSON.stringify(input)} (${why}) naming it`, async (t) => {
    let err: unknown
    try { parseResources(input) } catch (e) { err = e }
    t.ok(err instanceof RegattaError)
    t.equal((err as RegattaError).code, 'INVALID_RESOURCES')
    t.match((err as RegattaError).message, input)
  })
}

t.test('Checks that volumePathProblem accepts directories and refuses escapes and empty paths', async (t) => {
  for (const ok of ['cache', '/cache', '/workspace/.npm', 'a/b/c', './x']) t.equal(volumePathProblem(ok), undefined, ok)
  for (const bad of ['..', '../x', 'a/../../b', '/', '.', '//', 'a\u0000b']) t.type(volumePathProblem(bad), 'string', bad)
})
