// The pipeline parser and planner on generated input: pipelines of every shape, valid and not,
// written by a YAML serializer in block and flow style; duplicate keys; maps of 46 000 keys; alias
// bombs; nesting of every kind and depth; files around the size limit; matrices and plans that
// multiply a small file into a huge run. Never a throw, never a hang (CPU-time guard, see
// fuzz.ts), every error an INVALID_PIPELINE line with file:line:column inside the file, and each
// limit refused where the table in pipelines/README.md says. test/unit/pipeline/fuzz.test.ts
// holds the random-text and mangled-example properties.
import t from 'tap'
import fc from 'fast-check'
import { stringify } from 'yaml'
import {
  LIMITS, formatPipelineError, parsePipeline, pipelineFailure, planRun, type PipelineError, type PlanResult,
} from '../../../services/ci/src/pipeline/index.js'
import { expandMatrix } from '../../../services/ci/src/pipeline/matrix.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { pushTo } from '../pipeline/fixtures.js'
import { HANG_GUARD_MS, SEED, fuzz, withinGuard } from './fuzz.js'

const FILE = '.regatta/f.yml'

/**
 * The limits as pipelines/README.md states them. The properties check against these numbers, not
 * against LIMITS, so that removing or raising a protection fails them.
 */
const DOCUMENTED = {
  fileBytes: 262_144, depth: 32, flowDepth: 64, aliases: 100, matrixCombinations: 256, matrixKeys: 64,
  plannedJobs: 512, plannedText: 8 * 1024 * 1024,
}

t.comment(`fuzz seed ${SEED} (REGATTA_FUZZ_SEED to change it)`)

t.test('Checks that the pipeline limits are the documented ones', async (t) => {
  for (const [name, value] of Object.entries(DOCUMENTED)) t.equal(LIMITS[name as keyof typeof LIMITS], value, name)
})

/** Every error names FILE and a line and column inside the text, with a message. */
function placed(errors: PipelineError[], text: string): boolean {
  const lines = text.split(/\r\n|\r|\n/)
  return errors.every((e) => e.file === FILE && e.line >= 1 && e.line <= lines.length + 1 && e.column >= 1 &&
    e.column <= (lines[e.line - 1]?.length ?? 0) + 2 && e.message.length > 0)
}

/** As the CI service fails a run: one RegattaError INVALID_PIPELINE, one `file:line:col: message` a line. */
function failureIsClear(errors: PipelineError[]): boolean {
  if (errors.length === 0) return true
  const failure = pipelineFailure(errors)
  return failure instanceof RegattaError && failure.code === 'INVALID_PIPELINE' &&
    failure.message.split('\n').length === errors.length &&
    failure.message.split('\n').every((line) => /^\.regatta\/f\.yml:\d+:\d+: \S/.test(line))
}

function parseAndPlan(text: string): { parsed: ReturnType<typeof parsePipeline>; plan: PlanResult } {
  const parsed = withinGuard('parsePipeline', () => parsePipeline(FILE, text))
  const plan = withinGuard('planRun', () => planRun([{ path: FILE, text }], pushTo('main'), { hashFiles: () => 'h' }))
  return { parsed, plan }
}

function assertClear(text: string): { parsed: ReturnType<typeof parsePipeline>; plan: PlanResult } {
  const r = parseAndPlan(text)
  if (!r.parsed.ok && (r.parsed.errors.length === 0 || !placed(r.parsed.errors, text))) {
    throw new Error(`badly placed parse errors: ${JSON.stringify(r.parsed.errors.slice(0, 3))}`)
  }
  if (!placed(r.plan.errors, text)) throw new Error(`badly placed plan errors: ${JSON.stringify(r.plan.errors.slice(0, 3))}`)
  if (!failureIsClear(r.plan.errors)) throw new Error('the run failure is not one file:line:col line an error')
  return r
}

// ---------------------------------------------------------------- generated pipelines

const names = fc.constantFrom('build', 'test', 'lint', 'deploy', 'a', 'b-c', 'd_e', 'Bad Name', '', '1x', 'x'.repeat(101))
const EXPRESSIONS = [
  '${{ matrix.shard }}', '${{ github.sha }}', '${{ env.A }}', '${{ nosuch.x }}', "${{ format('{0}-{1}', github.ref, matrix.os) }}",
  '${{ secrets.TOKEN }}', '${{', '}}', "${{ hashFiles('**/package-lock.json') }}", '${{ (((1))) }}', "${{ 'a' == 'A' }}",
  "${{ format('{9}') }}", '${{ matrix }}', '${{ github.ref_name }}',
]
const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom(...EXPRESSIONS),
  fc.array(fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom(...EXPRESSIONS)), { maxLength: 5 }).map((a) => a.join(' ')),
)
const scalar = fc.oneof(text, fc.integer({ min: -5, max: 100 }), fc.boolean(), fc.constant(null), fc.double())
/** Now and then a random value where a well-formed part would go. */
const orJunk = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 9, arbitrary: arb }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) })
const envMap = fc.dictionary(fc.constantFrom('A', 'B', 'C_D', 'bad key', 'TOKEN'), scalar, { maxKeys: 3 })
const step = fc.record({ name: text, run: text }, { requiredKeys: ['run'] })
const matrix = fc.dictionary(
  fc.constantFrom('shard', 'os', 'node', 'include', 'exclude', 'bad key'),
  fc.oneof(
    fc.array(scalar, { maxLength: 4 }),
    fc.array(fc.dictionary(fc.constantFrom('shard', 'os', 'extra'), scalar, { maxKeys: 3 }), { maxLength: 3 }),
  ),
  { maxKeys: 4 },
)
const job = fc.record({
  image: text,
  steps: fc.array(orJunk(step), { maxLength: 4 }),
  needs: fc.oneof(names, fc.array(names, { maxLength: 3 })),
  matrix: orJunk(matrix),
  env: orJunk(envMap),
  timeout: fc.constantFrom('20m', '1s', '0s', '25h', '1h30m', 'x', 5),
  retries: fc.integer({ min: -1, max: 11 }),
  if: fc.constantFrom('success()', 'failure() || always()', "${{ github.ref == 'refs/heads/main' }}", 'matrix.shard == 1', '&&', true),
  resources: fc.record({ cpus: fc.double({ min: -1, max: 300, noNaN: true }), mem: fc.integer({ min: -1, max: 2_000_000 }) }, { requiredKeys: [] }),
  services: fc.dictionary(names, fc.record({ image: text, env: envMap }, { requiredKeys: ['image'] }), { maxKeys: 2 }),
  cache: fc.record({
    key: text,
    paths: fc.array(text, { maxLength: 2 }),
    volume: fc.oneof(fc.boolean(), fc.record({ size: fc.integer({ min: -1, max: 5000 }) })),
  }, { requiredKeys: ['key'] }),
  artifacts: fc.array(text, { maxLength: 2 }),
  secrets: fc.array(fc.constantFrom('TOKEN', 'bad-name'), { maxLength: 2 }),
  revocable: fc.boolean(),
  priority: fc.integer({ min: -1, max: 101 }),
  pool: names,
}, { requiredKeys: ['steps'] })
const on = fc.oneof(
  fc.constantFrom('push', 'pull_request', ['push', 'manual'], null, 'nope'),
  fc.record({
    push: fc.record({
      branches: fc.array(fc.constantFrom('main', 'release/*', '[', '**', '!main'), { maxLength: 2 }),
      paths: fc.array(fc.constantFrom('src/**', '!x', ''), { maxLength: 2 }),
    }, { requiredKeys: [] }),
    pull_request: fc.constantFrom({}, null, { types: ['opened'] }, { types: ['closed'] }),
    schedule: fc.array(fc.constantFrom('0 3 * * *', '61 * * * *', '@daily', 'x', { cron: '*/5 * * * *' }), { maxLength: 2 }),
    manual: fc.constant(null),
  }, { requiredKeys: [] }),
)
const messyPipeline = fc.record({
  name: names,
  on,
  env: envMap,
  jobs: fc.dictionary(names, orJunk(job), { maxKeys: 4 }),
  unknown: fc.jsonValue({ maxDepth: 2 }),
}, { requiredKeys: ['on', 'jobs'] })

const validStep = fc.record({
  name: fc.constantFrom('compile', 'unit tests', 'shard ${{ matrix.shard }}'),
  run: fc.constantFrom('make', 'echo ${{ github.sha }}', 'npm test -- --shard=${{ matrix.shard }}/3', "echo ${{ format('{0}-{1}', github.ref_name, matrix.os) }}", 'echo $A\necho done'),
}, { requiredKeys: ['run'] })
const validJob = fc.record({
  image: fc.constantFrom('node:20', 'regatta/busybox:latest'),
  matrix: fc.constantFrom({ shard: [1, 2, 3], os: ['linux', 'mac'] }, { shard: [1], os: ['linux'], include: [{ os: 'linux', extra: true }] }),
  steps: fc.array(validStep, { minLength: 1, maxLength: 3 }),
  env: fc.dictionary(fc.constantFrom('A', 'B'), fc.constantFrom('1', '${{ github.ref }}', 2, true), { maxKeys: 2 }),
  timeout: fc.constantFrom('20m', '1h'),
  retries: fc.integer({ min: 0, max: 3 }),
  if: fc.constantFrom('success()', "github.ref == 'refs/heads/main'", "${{ matrix.os != 'mac' }}"),
  revocable: fc.boolean(),
  cache: fc.constantFrom({ key: "npm-${{ hashFiles('package-lock.json') }}", paths: ['.npm'] }),
}, { requiredKeys: ['image', 'steps', 'matrix'] })
const validPipeline = fc.tuple(fc.record({
  name: fc.constantFrom('ci', 'release'),
  on: fc.constantFrom('push', ['push', 'pull_request'], { push: { branches: ['main', 'release/*'] }, schedule: ['0 3 * * *'] }),
  env: fc.dictionary(fc.constantFrom('A', 'NODE_ENV'), fc.constantFrom('test', '${{ github.sha }}'), { maxKeys: 2 }),
  jobs: fc.dictionary(fc.constantFrom('build', 'test', 'lint', 'deploy', 'pack'), validJob, { minKeys: 1, maxKeys: 4 }),
}, { requiredKeys: ['on', 'jobs'] }), fc.boolean()).map(([p, chain]) => {
  // each job needs the one before it: a DAG
  if (chain) Object.keys(p.jobs).forEach((name, i, all) => { if (i > 0) (p.jobs[name] as Record<string, unknown>).needs = [all[i - 1]] })
  return p
})
const pipeline = fc.oneof(validPipeline, messyPipeline)

/** YAML of a generated pipeline: block or flow style, any indentation; a repeated step becomes an anchor and alias. */
const pipelineText = fc.tuple(pipeline, fc.constantFrom('any', 'block', 'flow'), fc.integer({ min: 1, max: 6 }), fc.boolean())
  .map(([p, collectionStyle, indent, alias]) => {
    const doc = structuredClone(p) as Record<string, unknown>
    const jobs = doc.jobs as Record<string, { steps?: unknown[] }>
    const first = Object.values(jobs).find((j) => Array.isArray(j?.steps) && j.steps.length > 0)
    if (alias && first?.steps) first.steps.push(first.steps[0])
    return stringify(doc, { collectionStyle: collectionStyle as 'any' | 'block' | 'flow', indent, lineWidth: 0 })
  })

t.test('Checks (property) that generated pipelines, valid or not, in any YAML style, are read and planned without a throw or a hang, every error placed', async (t) => {
  let valid = 0
  let planned = 0
  fc.assert(fc.property(pipelineText, (yaml) => {
    const { parsed, plan } = assertClear(yaml)
    if (parsed.ok) {
      valid++
      for (const p of plan.pipelines) {
        planned += p.jobs.length
        if (p.jobs.length > DOCUMENTED.plannedJobs) throw new Error(`${p.jobs.length} jobs planned`)
        if (new Set(p.jobs.map((j) => j.id)).size !== p.jobs.length) throw new Error('job ids repeat')
      }
    }
  }), fuzz(250))
  t.ok(valid > 0, `some generated pipelines are valid (${valid}), and planned into ${planned} jobs`)
})

// ---------------------------------------------------------------- step names

t.test('Checks (property) that a step without a name is named by its first line, never cut inside a ${{ }}', async (t) => {
  const exprs = ['${{ matrix.os }}', '${{ github.sha }}', "${{ format('{0}/{1}', matrix.os, github.ref_name) }}", '${{ env.A }}']
  const words = fc.stringMatching(/^[a-z0-9 ./=-]{0,70}$/)
  fc.assert(fc.property(words, fc.constantFrom(...exprs), words, (before, expr, after) => {
    const line = `echo ${before}${expr}${after}`.trim()
    const yaml = `on: push\nenv: { A: a }\njobs:\n  build:\n    image: x\n    matrix: { os: [linux] }\n    steps:\n      - run: |\n          ${line}\n          make\n`
    const { plan } = assertClear(yaml)
    if (plan.errors.length > 0) throw new Error(`${line}: ${plan.errors.map(formatPipelineError).join('; ')}`)
    const name = plan.pipelines[0].jobs[0].steps[0].name
    if (name.includes('${{')) throw new Error(`name not interpolated: ${name}`)
    if (line.length > 60 ? !name.endsWith('…') : name.endsWith('…')) throw new Error(`name ${name} of ${line}`)
  }), fuzz(300))
  t.pass('held for every generated input')
})

// ---------------------------------------------------------------- duplicate keys

/** Keys as YAML writes them, with the value the parser gives them ("a", 'a' and a are the same key; 1 and "1" are not). */
const KEYS: Array<[string, string]> = [
  ['a', 's:a'], ['"a"', 's:a'], ["'a'", 's:a'], ['b', 's:b'], ['on', 's:on'], ['jobs', 's:jobs'],
  ['1', 'n:1'], ['"1"', 's:1'], ['true', 'b:true'], ['"true"', 's:true'], ['~', 'null'], ['null', 'null'],
]

t.test('Checks (property) that every repeated key of a map is reported at its own line and column, in block and flow style', async (t) => {
  fc.assert(fc.property(
    fc.array(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 12 }), fc.boolean(), fc.boolean(),
    (keys, flow, nested) => {
      const pad = nested ? '  ' : ''
      let yaml = nested ? 'x:\n' : ''
      const expected: string[] = []
      const seen = new Set<string>()
      if (flow) {
        let line = `${pad}{ `
        keys.forEach(([src, id], i) => {
          if (seen.has(id)) expected.push(`${nested ? 2 : 1}:${line.length + 1}`)
          seen.add(id)
          line += `${src}: ${i}, `
        })
        yaml += `${line}}\n`
      } else {
        keys.forEach(([src, id], i) => {
          if (seen.has(id)) expected.push(`${i + (nested ? 2 : 1)}:${pad.length + 1}`)
          seen.add(id)
          yaml += `${pad}${src}: ${i}\n`
        })
      }
      const r = withinGuard('parsePipeline', () => parsePipeline(FILE, yaml))
      const got = r.ok ? [] : r.errors.filter((e) => e.message === 'YAML: Map keys must be unique').map((e) => `${e.line}:${e.column}`)
      if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`${JSON.stringify(yaml)}: duplicates at ${got}, expected ${expected}`)
    },
  ), fuzz(300))
  t.pass('held for every generated input')
})

t.test('Checks that a map of 33 000 keys is read in bounded time (the YAML parser\'s own duplicate check was quadratic: 10 s)', async (t) => {
  // a letter first: 000 and 0e0 are both the number 0, the same key
  const keys = Array.from({ length: 26 * 36 ** 2 }, (_, i) => String.fromCharCode(97 + Math.floor(i / 36 ** 2)) + (i % 36 ** 2).toString(36).padStart(2, '0'))
  const block = keys.map((k) => `${k}:`).join('\n') + '\n'
  const flow = `{${keys.join(',')}}\n`
  const dup = `${block}${keys[7]}:\n`
  for (const [what, yaml] of [['block', block], ['flow', flow], ['block with one repeat at the end', dup]] as const) {
    t.ok(Buffer.byteLength(yaml) <= DOCUMENTED.fileBytes, `${what}: within the size limit (${Buffer.byteLength(yaml)} bytes)`)
    const r = withinGuard(what, () => parsePipeline(FILE, yaml))
    t.notOk(r.ok, `${what}: refused`)
    if (!r.ok) t.ok(placed(r.errors, yaml), `${what}: errors placed (${formatPipelineError(r.errors[0])})`)
    if (what === 'block with one repeat at the end' && !r.ok) {
      t.same(r.errors.filter((e) => /unique/.test(e.message)).map((e) => `${e.line}:${e.column}`), [`${keys.length + 1}:1`], 'the repeat found')
    }
  }
})

// ---------------------------------------------------------------- alias bombs

function bomb(width: number, depth: number, inJob: boolean): string {
  const pad = inJob ? '      ' : ''
  let s = inJob ? 'on: push\njobs:\n  a:\n    image: x\n    steps: [{ run: x }]\n    env:\n' : ''
  s += `${pad}A0: &a0 [${Array(width).fill('x').join(', ')}]\n`
  for (let i = 1; i <= depth; i++) s += `${pad}A${i}: &a${i} [${Array(width).fill(`*a${i - 1}`).join(', ')}]\n`
  return s
}

t.test('Checks (property) that alias bombs ("billion laughs") are refused at an alias, quickly, and small reuse is not', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 2, max: 12 }), fc.integer({ min: 1, max: 14 }), fc.boolean(), (width, depth, inJob) => {
    const yaml = bomb(width, depth, inJob)
    const r = withinGuard('parsePipeline', () => parsePipeline(FILE, yaml))
    const aliasErrors = r.ok ? [] : r.errors.filter((e) => /aliases \(\*name\) expand to too much \(at most 100 expansions\)/.test(e.message))
    if (width ** depth > DOCUMENTED.aliases && aliasErrors.length !== 1) throw new Error(`${width}^${depth} not refused: ${JSON.stringify(r)}`)
    if (width ** depth <= 10 && aliasErrors.length > 0) throw new Error(`${width}^${depth} refused`)
    for (const e of aliasErrors) {
      const line = yaml.split('\n')[e.line - 1]
      if (line?.[e.column - 1] !== '*') throw new Error(`the error points at ${e.line}:${e.column}, not at an alias`)
    }
  }), fuzz(150))
  t.pass('held for every generated input')
})

// ---------------------------------------------------------------- nesting

const OPENERS = ['[', '{a: ']

t.test('Checks (property) that flow nesting is refused beyond 64 at the 65th [ or {, and values beyond 32 levels, never overflowing the stack', async (t) => {
  const openersOf = fc.integer({ min: 1, max: 300 }).chain((n) => fc.array(fc.constantFrom(...OPENERS), { minLength: n, maxLength: n }))
  fc.assert(fc.property(
    openersOf, fc.integer({ min: 0, max: 3 }), fc.boolean(),
    (openers, leadLines, closed) => {
      const lead = 'on: push\n'.repeat(Math.min(leadLines, 1)) + '# c\n'.repeat(leadLines)
      const opened = openers.join('')
      const closers = openers.map((o) => (o === '[' ? ']' : '}')).reverse().join('')
      const yaml = `${lead}x: ${opened}1${closed ? closers : ''}\n`
      const r = withinGuard('parsePipeline', () => parsePipeline(FILE, yaml))
      if (r.ok) throw new Error('accepted')
      if (!placed(r.errors, yaml)) throw new Error(`badly placed: ${JSON.stringify(r.errors[0])}`)
      const n = openers.length
      const line = lead.split('\n').length
      if (n > DOCUMENTED.flowDepth) {
        // the column of the 65th opener
        const col = 4 + openers.slice(0, DOCUMENTED.flowDepth).join('').length
        const want = `${line}:${col}: [ and { are nested deeper than 64 levels`
        if (`${r.errors[0].line}:${r.errors[0].column}: ${r.errors[0].message}` !== want) throw new Error(`${JSON.stringify(r.errors[0])}, expected ${want}`)
      } else if (closed && n + 1 > DOCUMENTED.depth) {
        if (!r.errors.some((e) => e.message === 'values are nested deeper than 32 levels')) throw new Error(`${n} levels: ${r.errors[0].message}`)
      } else if (r.errors.some((e) => /nested deeper/.test(e.message))) throw new Error(`${n} levels refused: ${r.errors[0].message}`)
    },
  ), fuzz(300))
  t.pass('held for every generated input')
})

t.test('Checks (property) that block nesting (indented maps and lists, "- - -" on a line) is refused beyond its limit, at the level that goes too deep', async (t) => {
  // up to 400 indented levels (a file under 256 KiB), 2800 on one line
  fc.assert(fc.property(fc.integer({ min: 2, max: 400 }), fc.constantFrom('map', 'list', 'compact', 'complex'), fc.integer({ min: 1, max: 3 }), (levels0, kind, step) => {
    const n = kind === 'compact' || kind === 'complex' ? levels0 * 7 : levels0
    let yaml: string
    if (kind === 'map') yaml = Array.from({ length: n }, (_, i) => `${' '.repeat(i * step)}a:`).join('\n') + ' 1\n'
    else if (kind === 'list') yaml = `x:\n${Array.from({ length: n }, (_, i) => `${' '.repeat(i * step + 1)}-`).join('\n')} 1\n`
    else if (kind === 'compact') yaml = `x:\n  ${'- '.repeat(n)}1\n`
    else yaml = `${'? '.repeat(n)}1\n`
    const r = withinGuard('parsePipeline', () => parsePipeline(FILE, yaml))
    if (r.ok) throw new Error('accepted')
    if (!placed(r.errors, yaml)) throw new Error(`badly placed: ${JSON.stringify(r.errors[0])}`)
    const deep = r.errors.filter((e) => /nested deeper than/.test(e.message))
    const levels = kind === 'map' ? n : n + 1
    if (kind === 'map' && n > DOCUMENTED.depth) {
      // the map of line 33 is the 33rd level
      const want = `${DOCUMENTED.depth + 1}:${DOCUMENTED.depth * step + 1}`
      if (deep.length !== 1 || `${deep[0].line}:${deep[0].column}` !== want) throw new Error(`${n} maps: ${JSON.stringify(r.errors[0])}, expected ${want}`)
    } else if (levels > DOCUMENTED.flowDepth && deep.length === 0) throw new Error(`${kind} ${n}: not refused for nesting: ${r.errors[0].message}`)
    if (levels <= DOCUMENTED.depth && deep.length > 0) throw new Error(`${kind} ${n}: refused at ${levels} levels`)
  }), fuzz(120))
  t.pass('held for every generated input')
})

// ---------------------------------------------------------------- size

t.test('Checks (property) that a file over 256 KiB (counted in UTF-8 bytes) is refused at 1:1 with its size, and one under it is read', async (t) => {
  const head = 'on: push\njobs:\n  a:\n    image: x\n    steps: [{ run: x }]\n'
  fc.assert(fc.property(fc.integer({ min: -300, max: 300 }), fc.constantFrom('x', 'é', '日', '😀'), (delta, char) => {
    const target = DOCUMENTED.fileBytes + delta
    const unit = Buffer.byteLength(char)
    let yaml = `${head}# ${char.repeat(Math.floor((target - head.length - 3) / unit))}`
    yaml += 'y'.repeat(target - 1 - Buffer.byteLength(yaml)) + '\n'
    const size = Buffer.byteLength(yaml)
    if (size !== target) throw new Error(`built ${size} bytes, not ${target}`)
    const r = withinGuard('parsePipeline', () => parsePipeline(FILE, yaml))
    if (size > DOCUMENTED.fileBytes) {
      if (r.ok || r.errors.length !== 1 || formatPipelineError(r.errors[0]) !== `${FILE}:1:1: the file is ${size} bytes; a pipeline file may have at most 262144 (256 KiB)`) {
        throw new Error(`${size} bytes: ${JSON.stringify(r)}`)
      }
    } else if (!r.ok) throw new Error(`${size} bytes refused: ${r.errors[0].message}`)
  }), fuzz(30))
  t.pass('held for every generated input')
})

// ---------------------------------------------------------------- matrices and plans

const values = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

t.test('Checks (property) that a matrix with too many combinations is refused before its include rows are applied, quickly', async (t) => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 256 }), fc.integer({ min: 1, max: 60 }),
    (a, b, rows, keys) => {
      const include = Array.from({ length: rows }, (_, r) => Object.fromEntries(values(keys).map((k) => [`k${k}`, r])))
      const result = withinGuard('expandMatrix', () => expandMatrix({ axes: [['a', values(a)], ['b', values(b)]], include, exclude: [] }))
      const when = rows > 0 ? ' before include' : ''
      if (a * b > DOCUMENTED.matrixCombinations) {
        if (result.ok || result.problem !== `has ${a * b} combinations${when}; at most 256 jobs can run from one matrix`) throw new Error(JSON.stringify(result))
      } else if (!result.ok) throw new Error(`${a}x${b}: ${result.problem}`)
      else if (result.combinations.length !== a * b || (rows > 0 && result.keys.length !== 2 + keys)) throw new Error(`${a}x${b}: ${result.combinations.length} combinations, keys ${result.keys}`)
    },
  ), fuzz(30))
  t.pass('held for every generated input')
})

t.test('Checks (property) that a matrix may have 64 keys, counting those its include rows add, and no more', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 100 }), fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 6 }), (axes, rowKeys) => {
    const include = rowKeys.map((n, r) => Object.fromEntries(values(n).map((k) => [`r${r}_${k}`, 1])))
    include.forEach((row) => { row.a0 = 0 })
    const result = expandMatrix({ axes: values(axes).map((k) => [`a${k}`, [0]]), include, exclude: [] })
    const total = axes + rowKeys.reduce((s, n) => s + n, 0)
    if (total > DOCUMENTED.matrixKeys) {
      if (result.ok || !/keys; at most 64|beyond the 64 a matrix may have/.test(result.problem)) throw new Error(`${total} keys: ${JSON.stringify(result).slice(0, 200)}`)
    } else if (!result.ok) throw new Error(`${total} keys refused: ${result.problem}`)
  }), fuzz(200))
  t.pass('held for every generated input')
})

t.test('Checks (property) that the text a matrix multiplies is bounded to 8 MiB a pipeline, refused at jobs:, in bounded time', async (t) => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 3000 }), fc.boolean(),
    (a, b, steps, runLength, interpolated) => {
      const run = interpolated ? `${'${{ matrix.a }}'.repeat(Math.ceil(runLength / 15))}` : 'x'.repeat(runLength)
      const yaml = `on: push\njobs:\n  big:\n    image: x\n    matrix: { a: [${values(a)}], b: [${values(b)}] }\n    steps:\n${`      - { name: s, run: "${run}" }\n`.repeat(steps)}`
      const { plan } = assertClear(yaml)
      // the text the jobs come to: each step's run (as written, or a digit or two for each expression) and name
      const perStep = interpolated ? Math.ceil(runLength / 15) : runLength
      const least = a * b * steps * (perStep + 1)
      const most = a * b * (steps * (2 * perStep + 1) + 64)
      const refused = plan.errors.filter((e) => e.path === 'jobs' && /more than 8 MiB of text/.test(e.message))
      if (least > DOCUMENTED.plannedText && refused.length !== 1) throw new Error(`${least}+ characters planned, not refused`)
      // within 8 MiB, only a run's own limit (384 KiB of planned jobs as JSON) may refuse it
      const others = plan.errors.filter((e) => !/ KiB of JSON with this file's; at most 384 KiB a run$/.test(e.message))
      if (most <= DOCUMENTED.plannedText && (refused.length > 0 || others.length > 0)) throw new Error(`${most} characters refused: ${others[0]?.message}`)
      if (refused.length > 0 && formatPipelineError(refused[0]) !== `${FILE}:3:3: jobs: the jobs come to more than 8 MiB of text (scripts, names, env... of every matrix combination, after \${{ }}); at most 8 MiB a pipeline`) {
        throw new Error(formatPipelineError(refused[0]))
      }
    },
  ), { ...fuzz(25), examples: [[16, 16, 64, 3000, false], [16, 16, 64, 3000, true], [16, 16, 8, 2100, false]] })
  t.pass(`each within the ${HANG_GUARD_MS} ms hang guard`)
})
