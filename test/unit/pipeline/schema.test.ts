// pipelines/schema.json and the validator agree: the file is generated from the TypeBox schema
// parse.ts checks with; the positioned checker implements every keyword the schema uses; and
// on examples, bad files and random documents it says what TypeBox's own checker says.
import t from 'tap'
import fc from 'fast-check'
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { LineCounter, parseDocument, stringify } from 'yaml'
import { Value } from '@sinclair/typebox/value'
import { PipelineFileSchema, pipelineJsonSchema } from '../../../services/ci/src/pipeline/schema.js'
import { checkAgainstSchema, unsupportedKeywords } from '../../../services/ci/src/pipeline/schema-check.js'
import { parsePipeline } from '../../../services/ci/src/pipeline/index.js'

const pipelinesDir = fileURLToPath(new URL('../../../pipelines/', import.meta.url))
const examplesDir = `${pipelinesDir}examples/`
const examples = readdirSync(examplesDir).filter((f) => f.endsWith('.yml')).map((f) => ({ name: f, text: readFileSync(examplesDir + f, 'utf8') }))

/** Whether the positioned checker passes the YAML text (schema only, no later checks). */
function checkerPasses(text: string): boolean {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false })
  if (doc.errors.length > 0) throw new Error(`not YAML: ${doc.errors[0].message}`)
  return checkAgainstSchema(doc, lines, PipelineFileSchema).issues.length === 0
}

const typeboxPasses = (text: string): boolean => Value.Check(PipelineFileSchema, parseDocument(text).toJS())

t.test('Checks that pipelines/schema.json is the one generated from the TypeBox schema', async (t) => {
  const onDisk = JSON.parse(readFileSync(`${pipelinesDir}schema.json`, 'utf8')) as unknown
  t.same(onDisk, pipelineJsonSchema(), 'out of date: run `npx tsx pipelines/generate-schema.ts`')
  t.equal((onDisk as { $schema: string }).$schema, 'http://json-schema.org/draft-07/schema#')
})

t.test('Checks that the positioned checker implements every keyword the schema uses', async (t) => {
  t.same(unsupportedKeywords(pipelineJsonSchema()), [])
  t.same(unsupportedKeywords({ properties: { a: { type: 'string', format: 'uri' } }, oneOf: [] }), ['#/properties/a/format', '#/oneOf'], 'and it notices when one is not')
})

t.test('Checks that every example passes both the schema (TypeBox) and the positioned checker', async (t) => {
  t.ok(examples.length >= 3)
  for (const ex of examples) {
    t.ok(typeboxPasses(ex.text), `${ex.name}: TypeBox`)
    t.ok(checkerPasses(ex.text), `${ex.name}: checker`)
  }
})

const BAD: Record<string, string> = {
  'unknown top-level key': 'on: push\njob: {}\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'no on': 'jobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'no jobs': 'on: push\n',
  'empty jobs': 'on: push\njobs: {}\n',
  'unknown event': 'on: commit\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'unknown push filter': 'on: { push: { branch: [main] } }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'branches not a list': 'on: { push: { branches: main } }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'bad pull_request type': 'on: { pull_request: { types: [closed] } }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'schedule not a list': 'on: { schedule: "0 3 * * *" }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'schedule entry without cron': 'on: { schedule: [{ at: 3 }] }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'manual with inputs': 'on: { manual: { inputs: 1 } }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'job without image': 'on: push\njobs: { a: { steps: [{ run: x }] } }\n',
  'job without steps': 'on: push\njobs: { a: { image: x } }\n',
  'empty steps': 'on: push\njobs: { a: { image: x, steps: [] } }\n',
  'step without run': 'on: push\njobs: { a: { image: x, steps: [{ name: x }] } }\n',
  'step as text': 'on: push\njobs: { a: { image: x, steps: [npm test] } }\n',
  'unknown job key': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], runs-on: linux } }\n',
  'bad job name': 'on: push\njobs: { "1a": { image: x, steps: [{ run: x }] } }\n',
  'needs a number': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], needs: 3 } }\n',
  'retries too many': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], retries: 11 } }\n',
  'retries fraction': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], retries: 1.5 } }\n',
  'timeout a number': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], timeout: 20 } }\n',
  'timeout words': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], timeout: 20 minutes } }\n',
  'cpus zero': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], resources: { cpus: 0 } } }\n',
  'mem text': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], resources: { mem: 2GiB } } }\n',
  'unknown resource': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], resources: { gpus: 1 } } }\n',
  'matrix not a map': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], matrix: [1, 2] } }\n',
  'matrix empty list': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], matrix: { a: [] } } }\n',
  'matrix map value': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], matrix: { a: [{ b: 1 }] } } }\n',
  'matrix include not rows': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], matrix: { a: [1], include: [1] } } }\n',
  'service without image': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], services: { db: { env: {} } } } }\n',
  'service bad name': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], services: { my_db: { image: pg } } } }\n',
  'cache without paths': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], cache: { key: k } } }\n',
  'artifacts as text': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], artifacts: dist/ } }\n',
  'secret bad name': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], secrets: [my-token] } }\n',
  'revocable text': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], revocable: maybe } }\n',
  'priority out of range': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], priority: -1 } }\n',
  'if a number': 'on: push\njobs: { a: { image: x, steps: [{ run: x }], if: 1 } }\n',
  'env list': 'on: push\nenv: [A]\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'env bad name': 'on: push\nenv: { A-B: 1 }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'env map value': 'on: push\nenv: { A: { b: 1 } }\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'name with space': 'name: my ci\non: push\njobs: { a: { image: x, steps: [{ run: x }] } }\n',
  'a list': '- on: push\n',
}

t.test('Checks that each structurally bad file fails both TypeBox and the checker, and parsePipeline', async (t) => {
  for (const [what, text] of Object.entries(BAD)) {
    t.notOk(typeboxPasses(text), `${what}: TypeBox refuses`)
    t.notOk(checkerPasses(text), `${what}: the checker refuses`)
    t.notOk(parsePipeline('.regatta/x.yml', text).ok, `${what}: parsePipeline refuses`)
  }
})

// ---------------------------------------------------------------- random documents

const scalar = fc.oneof(fc.string({ maxLength: 8 }), fc.integer({ min: -5, max: 300 }), fc.double({ noNaN: true, noDefaultInfinity: true, min: -10, max: 10 }), fc.boolean(), fc.constant(null))
const anyValue: fc.Arbitrary<unknown> = fc.oneof({ maxDepth: 2 }, scalar, fc.array(scalar, { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), scalar, { maxKeys: 3 }), fc.constant({}), fc.constant([]))
const opt = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined })
const globs = fc.array(fc.constantFrom('main', 'release/*', '**', 'v*', '!x'), { minLength: 1, maxLength: 3 })
const matrixValue = fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom('linux', 'mac'), fc.boolean())

const validJob = fc.record({
  image: fc.constantFrom('node:20', 'alpine'),
  steps: fc.array(fc.record({ name: opt(fc.constantFrom('install', 'test')), run: fc.constantFrom('npm test', 'make') }), { minLength: 1, maxLength: 3 }),
  needs: opt(fc.oneof(fc.constant('build'), fc.array(fc.constantFrom('build', 'test'), { maxLength: 2 }))),
  matrix: opt(fc.record({
    shard: fc.array(matrixValue, { minLength: 1, maxLength: 3 }),
    include: opt(fc.array(fc.dictionary(fc.constantFrom('shard', 'os'), matrixValue, { minKeys: 1, maxKeys: 2 }), { maxLength: 2 })),
  })),
  env: opt(fc.dictionary(fc.constantFrom('A', 'NODE_ENV', '_x'), fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.boolean()), { maxKeys: 3 })),
  resources: opt(fc.record({ cpus: opt(fc.double({ min: 0.1, max: 256, noNaN: true })), mem: opt(fc.integer({ min: 16, max: 5000 })), disk: opt(fc.integer({ min: 0, max: 10 })) })),
  timeout: opt(fc.constantFrom('20m', '1h30m', '90s', '1.5h', '500ms')),
  retries: opt(fc.integer({ min: 0, max: 10 })),
  if: opt(fc.oneof(fc.boolean(), fc.constantFrom('success()', 'always()'))),
  services: opt(fc.dictionary(fc.constantFrom('db', 'redis'), fc.record({ image: fc.constantFrom('pg', 'redis'), command: opt(fc.oneof(fc.constant('serve'), fc.array(fc.constantFrom('a', 'b'), { minLength: 1, maxLength: 2 }))) }), { maxKeys: 2 })),
  cache: opt(fc.record({ key: fc.constantFrom('k', 'npm'), paths: fc.array(fc.constantFrom('.npm', 'x'), { minLength: 1, maxLength: 2 }) })),
  artifacts: opt(fc.array(fc.constantFrom('dist/', 'out'), { maxLength: 2 })),
  secrets: opt(fc.array(fc.constantFrom('TOKEN', 'KEY'), { maxLength: 2 })),
  revocable: opt(fc.boolean()),
  priority: opt(fc.integer({ min: 0, max: 100 })),
}, { requiredKeys: ['image', 'steps'] })
const validOn = fc.oneof(
  fc.constantFrom('push', 'pull_request', 'manual'),
  fc.array(fc.constantFrom('push', 'pull_request', 'manual'), { minLength: 1, maxLength: 3 }),
  fc.record({
    push: opt(fc.oneof(fc.constant(null), fc.record({ branches: opt(globs), 'branches-ignore': opt(globs), tags: opt(globs), paths: opt(globs), 'paths-ignore': opt(globs) }))),
    pull_request: opt(fc.oneof(fc.constant(null), fc.record({ branches: opt(globs), types: opt(fc.array(fc.constantFrom('opened', 'reopened'), { minLength: 1, maxLength: 2 })) }))),
    schedule: opt(fc.array(fc.oneof(fc.constant('0 3 * * *'), fc.record({ cron: fc.constant('* * * * *') })), { minLength: 1, maxLength: 2 })),
    manual: opt(fc.oneof(fc.constant(null), fc.constant({}))),
  }, { requiredKeys: ['push'] }),
)
const validDoc = fc.record({
  name: opt(fc.constantFrom('ci', 'a.b-c')),
  on: validOn,
  env: opt(fc.dictionary(fc.constantFrom('A', 'B'), fc.string({ maxLength: 4 }), { maxKeys: 2 })),
  jobs: fc.dictionary(fc.constantFrom('build', 'test', 'a_b', 'x-1'), validJob, { minKeys: 1, maxKeys: 3 }),
})

type Mutation = { at: number; how: 'replace' | 'delete' | 'add'; key: string; value: unknown }
const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  how: fc.constantFrom('replace', 'delete', 'add'),
  key: fc.constantFrom('timout', 'runs-on', '1bad', 'my job', '<<', '', 'image', 'steps', 'push', 'A'),
  value: anyValue,
})

/** Every [container, key] of a JSON-like value, for mutations. */
function slots(v: unknown, out: Array<[Record<string, unknown> | unknown[], string | number]> = []): typeof out {
  if (Array.isArray(v)) v.forEach((x, i) => { out.push([v, i]); slots(x, out) })
  else if (typeof v === 'object' && v !== null) {
    for (const [k, x] of Object.entries(v)) { out.push([v as Record<string, unknown>, k]); slots(x, out) }
  }
  return out
}

function mutate(doc: Record<string, unknown>, ms: Mutation[]): Record<string, unknown> {
  const copy = structuredClone(doc) as Record<string, unknown>
  for (const m of ms) {
    // fc.constant({}) hands out one shared object: clone it, or two mutations
    // could put it inside itself (a cycle) or carry it over to later runs.
    const value = structuredClone(m.value)
    const all = slots(copy)
    if (all.length === 0) break
    const [container, key] = all[m.at % all.length]
    if (m.how === 'replace') (container as Record<string, unknown>)[key as string] = value
    else if (m.how === 'delete') {
      if (Array.isArray(container)) container.splice(key as number, 1)
      else delete container[key as string]
    } else {
      const target = (container as Record<string, unknown>)[key as string]
      if (typeof target === 'object' && target !== null && !Array.isArray(target)) (target as Record<string, unknown>)[m.key] = value
      else if (Array.isArray(target)) target.push(value)
    }
  }
  return copy
}

/** Drops undefined (the optional fields left out) the way YAML output would. */
const plain = (v: unknown): Record<string, unknown> => JSON.parse(JSON.stringify(v)) as Record<string, unknown>

const pipelineDoc = fc.tuple(validDoc, fc.array(mutation, { maxLength: 2 })).map(([doc, ms]) => mutate(plain(doc), ms))

t.test('Checks (property) that on random documents the checker and TypeBox agree', async (t) => {
  let passed = 0
  let refused = 0
  fc.assert(fc.property(pipelineDoc, (doc) => {
    const text = stringify(doc)
    const a = typeboxPasses(text)
    const b = checkerPasses(text)
    if (a) passed++
    else refused++
    return a === b
  }), { numRuns: 1200 })
  t.ok(passed > 200, `both kinds of documents were generated (${passed} valid)`)
  t.ok(refused > 200, `(${refused} invalid)`)
})
