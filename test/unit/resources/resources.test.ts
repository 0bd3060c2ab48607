// Property tests (fast-check) and examples for the resource arithmetic in shared/resources.
import assert from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import {
  add, contains, flatten, formatResources, normalize, normalizeRanges, parseResources, pickPorts,
  scalar, subtract, totals, usableBy, type Range, type Resource,
} from '../../../shared/resources/index.js'
import { RegattaError } from '../../../shared/errors/index.js'

const RUNS = { numRuns: 300 }

// --- generators -------------------------------------------------------------------------------

const roleArb = fc.constantFrom<string | undefined>(undefined, 'ci', 'ci/main', 'web')
const scalarNameArb = fc.constantFrom('cpus', 'mem', 'disk', 'gpus')
/** Multiples of 0.001, as the fixed point keeps them. */
const amountArb = fc.integer({ min: 0, max: 5_000_000 }).map((n) => n / 1000)

const rangesArb: fc.Arbitrary<Range[]> = fc.array(
  fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 40 })).map(([begin, len]) => ({ begin, end: begin + len })),
  { maxLength: 5 },
)

function scalarResource(revocableAllowed: boolean): fc.Arbitrary<Resource> {
  return fc.record({ name: scalarNameArb, scalar: amountArb, role: roleArb, revocable: revocableAllowed ? fc.boolean() : fc.constant(false) })
    .map(({ name, scalar: s, role, revocable }) => shape({ name, scalar: s }, role, revocable))
}

function rangesResource(revocableAllowed: boolean): fc.Arbitrary<Resource> {
  return fc.record({ ranges: rangesArb, role: roleArb, revocable: revocableAllowed ? fc.boolean() : fc.constant(false) })
    .map(({ ranges, role, revocable }) => shape({ name: 'ports', ranges }, role, revocable))
}

function shape(r: Resource, role: string | undefined, revocable: boolean): Resource {
  if (role !== undefined) r.role = role
  if (revocable) r.revocable = true
  return r
}

const resourcesArb = (revocable = true): fc.Arbitrary<Resource[]> =>
  fc.array(fc.oneof(scalarResource(revocable), rangesResource(revocable)), { maxLength: 8 })

/**
 * Two resource lists whose ranges never overlap (a port belongs to a or to b, never both), as
 * Mesos requires when adding ranges; scalars are free.
 */
const disjointPairArb: fc.Arbitrary<[Resource[], Resource[]]> = fc.record({
  scalarsA: fc.array(scalarResource(true), { maxLength: 6 }),
  scalarsB: fc.array(scalarResource(true), { maxLength: 6 }),
  ports: fc.uniqueArray(fc.record({ port: fc.integer({ min: 0, max: 300 }), inA: fc.boolean(), role: roleArb, revocable: fc.boolean() }), {
    maxLength: 40, selector: (p) => p.port,
  }),
}).map(({ scalarsA, scalarsB, ports }) => {
  const a = [...scalarsA]
  const b = [...scalarsB]
  for (const p of ports) (p.inA ? a : b).push(shape({ name: 'ports', ranges: [{ begin: p.port, end: p.port }] }, p.role, p.revocable))
  return [a, b]
})

// --- comparison -------------------------------------------------------------------------------

function key(r: Resource): string {
  return `${r.name}|${r.role ?? ''}|${r.principal ?? ''}|${r.revocable ? 'rev' : ''}|${r.ranges ? 'ranges' : 'scalar'}`
}

/** A canonical form: normalized, then sorted by identity, so lists compare with t.same. */
function canon(rs: readonly Resource[]): Resource[] {
  return normalize(rs).sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0))
}

function portSet(ranges: readonly Range[]): Set<number> {
  const s = new Set<number>()
  for (const r of ranges) for (let p = r.begin; p <= r.end; p++) s.add(p)
  return s
}

// --- algebra ----------------------------------------------------------------------------------

t.test('Checks that add is commutative (after normalize)', async (t) => {
  fc.assert(fc.property(resourcesArb(), resourcesArb(), (a, b) => {
    assert.deepEqual(canon(add(a, b)), canon(add(b, a)))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that add is associative (after normalize)', async (t) => {
  fc.assert(fc.property(resourcesArb(), resourcesArb(), resourcesArb(), (a, b, c) => {
    assert.deepEqual(canon(add(add(a, b), c)), canon(add(a, add(b, c))))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that add is associative even for values off the 0.001 grid', async (t) => {
  // Tenths of the grid step are where rounding the running sum (instead of each value) differs.
  const value = fc.oneof(fc.double({ min: 0, max: 10, noNaN: true }), fc.integer({ min: 0, max: 30 }).map((n) => n / 10_000))
  const offGrid = fc.array(value.map((x) => ({ name: 'cpus', scalar: x })), { maxLength: 6 })
  fc.assert(fc.property(offGrid, offGrid, offGrid, (a, b, c) => {
    assert.deepEqual(canon(add(add(a, b), c)), canon(add(a, add(b, c))))
    assert.deepEqual(canon(add(a, b)), canon(add(b, a)))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that subtract(add(a, b), b) equals a when ranges do not overlap', async (t) => {
  fc.assert(fc.property(disjointPairArb, ([a, b]) => {
    assert.deepEqual(canon(subtract(add(a, b), b)), canon(a))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that add(a, b) contains b and contains a', async (t) => {
  fc.assert(fc.property(resourcesArb(), resourcesArb(), (a, b) => {
    assert.ok(contains(add(a, b), b))
    assert.ok(contains(add(a, b), a))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that a contains subtract(a, b), and subtract(a, a) is empty', async (t) => {
  fc.assert(fc.property(resourcesArb(), resourcesArb(), (a, b) => {
    assert.ok(contains(a, subtract(a, b)))
    assert.deepEqual(subtract(a, a), [])
    assert.ok(contains(a, a))
    assert.ok(contains(a, []))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that subtract then add back restores a when a contains b', async (t) => {
  fc.assert(fc.property(disjointPairArb, ([x, y]) => {
    const a = add(x, y)
    assert.deepEqual(canon(add(subtract(a, y), y)), canon(a))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that contains agrees with scalar arithmetic identity by identity', async (t) => {
  fc.assert(fc.property(amountArb, amountArb, roleArb, (x, y, role) => {
    const a = [shape({ name: 'cpus', scalar: x }, role, false)]
    const b = [shape({ name: 'cpus', scalar: y }, role, false)]
    assert.equal(contains(a, b), x >= y)
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that repeated fixed-point arithmetic never drifts', async (t) => {
  let rs: Resource[] = []
  for (let i = 0; i < 10; i++) rs = add(rs, [{ name: 'cpus', scalar: 0.1 }])
  t.equal(scalar(rs, 'cpus'), 1)
  t.same(rs, [{ name: 'cpus', scalar: 1 }])
  for (let i = 0; i < 10; i++) rs = subtract(rs, [{ name: 'cpus', scalar: 0.1 }])
  t.same(rs, [])
})

// --- identity ---------------------------------------------------------------------------------

t.test('Checks that reserved, unreserved and revocable resources never merge', async (t) => {
  fc.assert(fc.property(scalarNameArb, amountArb.filter((x) => x > 0), (name, x) => {
    const unreserved: Resource = { name, scalar: x }
    const reserved: Resource = { name, scalar: x, role: 'ci' }
    const revocable: Resource = { name, scalar: x, revocable: true }
    const sum = add(add([unreserved], [reserved]), [revocable])
    assert.equal(sum.length, 3)
    assert.deepEqual(canon(sum), canon([unreserved, reserved, revocable]))
    // Taking one kind never touches the others.
    assert.deepEqual(canon(subtract(sum, [reserved])), canon([unreserved, revocable]))
    assert.deepEqual(canon(subtract(sum, [revocable])), canon([unreserved, reserved]))
    assert.deepEqual(canon(subtract(sum, [unreserved])), canon([reserved, revocable]))
    assert.ok(!contains([unreserved], [reserved]))
    assert.ok(!contains([reserved], [unreserved]))
    assert.ok(!contains([unreserved], [revocable]))
    assert.ok(!contains([revocable], [unreserved]))
    assert.ok(!contains([{ name, scalar: x, role: 'ci' }], [{ name, scalar: x, role: 'ci/main' }]))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that role "*" means unreserved', async (t) => {
  t.same(add([{ name: 'cpus', scalar: 1, role: '*' }], [{ name: 'cpus', scalar: 2 }]), [{ name: 'cpus', scalar: 3 }])
  t.ok(contains([{ name: 'cpus', scalar: 2 }], [{ name: 'cpus', scalar: 1, role: '*' }]))
  t.same(subtract([{ name: 'cpus', scalar: 2, role: '*' }], [{ name: 'cpus', scalar: 1 }]), [{ name: 'cpus', scalar: 1 }])
})

t.test('Checks that an empty principal is the same as no principal', async (t) => {
  const a = [{ name: 'cpus', scalar: 2, role: 'ci', principal: '' }]
  const b = [{ name: 'cpus', scalar: 1, role: 'ci' }]
  t.same(subtract(a, b), [{ name: 'cpus', scalar: 1, role: 'ci' }])
  t.ok(contains(a, b))
  t.notOk(contains(b, a))
})

t.test('Checks that a scalar and ranges of the same name stay apart instead of losing one', async (t) => {
  const mixed = add([{ name: 'ports', scalar: 5 }], [{ name: 'ports', ranges: [{ begin: 1, end: 3 }] }])
  t.equal(mixed.length, 2)
  t.equal(scalar(mixed, 'ports'), 5)
  t.ok(contains(mixed, [{ name: 'ports', ranges: [{ begin: 2, end: 2 }] }]))
  t.ok(contains(mixed, [{ name: 'ports', scalar: 5 }]))
})

t.test('Checks that flatten drops reservations and the revocable mark, keeping the amounts', async (t) => {
  fc.assert(fc.property(resourcesArb(), (a) => {
    const flat = flatten(a)
    assert.ok(flat.every((r) => r.role === undefined && !r.revocable))
    const want = totals(normalize(a))
    assert.deepEqual(totalsWithoutRangeOverlap(flat), totalsWithoutRangeOverlap(flatten(normalize(a))))
    for (const name of ['cpus', 'mem', 'disk', 'gpus']) assert.equal(scalar(flat, name), want[name] ?? 0)
  }), RUNS)
  t.pass('property holds')
})

function totalsWithoutRangeOverlap(rs: Resource[]): Record<string, number> {
  return totals(normalize(rs))
}

t.test('Checks that usableBy offers unreserved resources and reservations of the role or an ancestor', async (t) => {
  const rs: Resource[] = [
    { name: 'cpus', scalar: 1 },
    { name: 'cpus', scalar: 2, role: '*' },
    { name: 'cpus', scalar: 3, role: 'ci' },
    { name: 'cpus', scalar: 4, role: 'ci/main' },
    { name: 'cpus', scalar: 5, role: 'cix' },
    { name: 'cpus', scalar: 6, role: 'ci/main/x' },
  ]
  t.same(usableBy(rs, 'ci/main').map((r) => r.scalar), [1, 2, 3, 4])
  t.same(usableBy(rs, 'ci').map((r) => r.scalar), [1, 2, 3])
  t.same(usableBy(rs, 'web').map((r) => r.scalar), [1, 2])
  t.same(usableBy(rs, 'cix').map((r) => r.scalar), [1, 2, 5])
})

// --- ranges -----------------------------------------------------------------------------------

t.test('Checks that normalizeRanges keeps the same ports, sorted, with no overlap or adjacency', async (t) => {
  fc.assert(fc.property(rangesArb, (ranges) => {
    const out = normalizeRanges(ranges)
    assert.deepEqual(portSet(out), portSet(ranges))
    for (let i = 1; i < out.length; i++) assert.ok(out[i]!.begin > out[i - 1]!.end + 1, 'sorted, apart')
    assert.deepEqual(normalizeRanges(out), out, 'idempotent')
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that range arithmetic matches set arithmetic on ports', async (t) => {
  fc.assert(fc.property(rangesArb, rangesArb, (x, y) => {
    const a = [{ name: 'ports', ranges: x }]
    const b = [{ name: 'ports', ranges: y }]
    const sum = add(a, b)
    const diff = subtract(a, b)
    const px = portSet(x)
    const py = portSet(y)
    assert.deepEqual(portSet(sum[0]?.ranges ?? []), new Set([...px, ...py]))
    assert.deepEqual(portSet(diff[0]?.ranges ?? []), new Set([...px].filter((p) => !py.has(p))))
    assert.equal(contains(a, b), [...py].every((p) => px.has(p)))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that pickPorts takes distinct ports that the resources hold', async (t) => {
  fc.assert(fc.property(resourcesArb(), fc.integer({ min: 0, max: 50 }), (rs, count) => {
    const picked = pickPorts(rs, count)
    const have = new Set<number>()
    for (const r of rs) if (r.name === 'ports' && r.ranges) for (const p of portSet(r.ranges)) have.add(p)
    if (have.size < count) { assert.equal(picked, undefined); return }
    assert.ok(picked)
    const got = portSet(picked ?? [])
    assert.equal(got.size, count)
    assert.ok([...got].every((p) => have.has(p)))
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that pickPorts never picks the same port twice across reservations', async (t) => {
  const rs: Resource[] = [
    { name: 'ports', ranges: [{ begin: 100, end: 100 }] },
    { name: 'ports', ranges: [{ begin: 100, end: 101 }], role: 'ci' },
  ]
  t.same(pickPorts(rs, 2), [{ begin: 100, end: 101 }])
  t.equal(pickPorts(rs, 3), undefined)
})

// --- parse / format ---------------------------------------------------------------------------

t.test('Checks that parseResources(formatResources(x)) round-trips non-revocable resources', async (t) => {
  fc.assert(fc.property(resourcesArb(false), (x) => {
    const text = formatResources(x)
    assert.deepEqual(canon(parseResources(text)), canon(x), text)
  }), RUNS)
  t.pass('property holds')
})

t.test('Checks that parseResources reads the agent flag syntax', async (t) => {
  t.same(parseResources('cpus:2;mem:4096;disk:20000;ports:[31000-32000]'), [
    { name: 'cpus', scalar: 2 },
    { name: 'mem', scalar: 4096 },
    { name: 'disk', scalar: 20000 },
    { name: 'ports', ranges: [{ begin: 31000, end: 32000 }] },
  ])
  t.same(parseResources(' cpus(ci/main):1.5 ; cpus:0.5;ports:[1,2,3-5, 9] ;'), [
    { name: 'cpus', scalar: 1.5, role: 'ci/main' },
    { name: 'cpus', scalar: 0.5 },
    { name: 'ports', ranges: [{ begin: 1, end: 5 }, { begin: 9, end: 9 }] },
  ])
  t.same(parseResources('cpus(*):1'), [{ name: 'cpus', scalar: 1 }])
  t.same(parseResources('cpus:1e3'), [{ name: 'cpus', scalar: 1000 }])
  t.same(parseResources(''), [])
})

const badInputs: Array<[string, string]> = [
  ['cpus', 'cpus'],
  ['cpus:abc', 'abc'],
  ['cpus:-1', '-1'],
  ['cpus:', 'cpus:'],
  ['cpus: ', 'cpus'],
  ['cpus:0x10', '0x10'],
  ['cpus:Infinity', 'Infinity'],
  ['mem:4096;1cpus:2', '1cpus:2'],
  ['ports:[1-2', '[1-2'],
  ['ports:[5-1]', '5-1'],
  ['ports:[x]', 'x'],
  ['ports:[1-99999999999999999999]', '1-99999999999999999999'],
  ['cpus():1', 'cpus():1'],
  ['cpus( ):1', 'cpus( ):1'],
]

for (const [input, part] of badInputs) {
  t.test(`Checks that parseResources rejects ${JSON.stringify(input)} naming the bad part`, async (t) => {
    let err: unknown
    try { parseResources(input) } catch (e) { err = e }
    t.ok(err instanceof RegattaError, 'a RegattaError')
    t.equal((err as RegattaError).code, 'INVALID_RESOURCES')
    t.match((err as RegattaError).message, part)
  })
}
