// parsePipeline and planRun on random YAML-ish text and on mangled examples: never a throw,
// never a hang, and every error has a file, a line and a column inside the text.
import t from 'tap'
import fc from 'fast-check'
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parsePipeline, planRun, type PipelineError } from '../../../services/ci/src/pipeline/index.js'
import { pushTo } from './fixtures.js'

const examplesDir = fileURLToPath(new URL('../../../pipelines/examples/', import.meta.url))
const examples = readdirSync(examplesDir).filter((f) => f.endsWith('.yml')).map((f) => readFileSync(examplesDir + f, 'utf8'))

const PIECES = [
  'on', 'push', 'pull_request', 'schedule', 'manual', 'jobs', 'build', 'test', 'image', 'steps', 'run', 'name', 'needs', 'matrix',
  'include', 'exclude', 'env', 'resources', 'cpus', 'mem', 'timeout', 'retries', 'if', 'services', 'cache', 'key', 'paths',
  'artifacts', 'secrets', 'revocable', 'priority', 'branches', 'tags', 'cron',
  ':', ': ', '- ', '-', '[', ']', '{', '}', ',', '"', "'", '#', '&a ', '*a', '&b ', '*b', '<<: ', '? ', '|', '>', '!!str ', '!x ',
  '---', '...', '%YAML 1.2', '\n', '\n  ', '\n    ', '\n      ', '\t', ' ', '${{', '}}', ' matrix.shard ', "hashFiles('x')",
  'success()', '0 3 * * *', '20m', '1', '-1', '1.5', 'true', 'null', '~', '\u0000', '\uFEFF', '😀', '\r\n',
]
const yamlish = fc.array(fc.constantFrom(...PIECES), { maxLength: 80 }).map((p) => p.join(''))
const mangled = fc.tuple(fc.constantFrom(...examples), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 8 }), fc.constantFrom(...PIECES)), { minLength: 1, maxLength: 6 }))
  .map(([text, edits]) => edits.reduce((s, [at, cut, insert]) => {
    const i = at % (s.length + 1)
    return s.slice(0, i) + insert + s.slice(i + cut)
  }, text))

function wellPlaced(errors: PipelineError[], text: string): boolean {
  const lines = text.split(/\r\n|\r|\n/).length + 1
  return errors.every((e) => e.file === '.regatta/f.yml' && e.line >= 1 && e.line <= lines && e.column >= 1 && typeof e.message === 'string' && e.message.length > 0)
}

for (const [what, arb] of [['random YAML-ish text', yamlish], ['mangled examples', mangled], ['any string', fc.string({ maxLength: 200 })]] as const) {
  t.test(`Checks (property) that parsePipeline on ${what} never throws nor hangs, and positions every error`, async (t) => {
    fc.assert(fc.property(arb, (text) => {
      const started = Date.now()
      const r = parsePipeline('.regatta/f.yml', text)
      const plan = planRun([{ path: '.regatta/f.yml', text }], pushTo('main'), { hashFiles: () => 'h' })
      const quick = Date.now() - started < 1000
      return quick && (r.ok || (r.errors.length > 0 && wellPlaced(r.errors, text))) && wellPlaced(plan.errors, text)
    }), { numRuns: 700 })
    t.pass()
  })
}

t.test('Checks that pathological inputs are refused quickly: deep nesting of every kind, long lines, many aliases', async (t) => {
  const inputs = [
    '['.repeat(100_000),
    '{a: '.repeat(50_000),
    Array.from({ length: 3000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n'),
    Array.from({ length: 700 }, (_, i) => `${' '.repeat(i)}a:`).join('\n'),
    `x:\n  ${'- '.repeat(20_000)}a`,
    `x:\n${Array.from({ length: 300 }, (_, i) => `${' '.repeat(i + 1)}- `).join('\n')}a`,
    `a: &a [x]\n${Array.from({ length: 2000 }, (_, i) => `k${i}: *a`).join('\n')}\n`,
    `on: push\njobs:\n  a:\n    image: x\n    steps:\n      - run: "${'\\u0041'.repeat(20_000)}"\n`,
    `on: push\njobs:\n  a:\n    image: x\n    steps:\n      - run: echo ${'${{ github.sha }}'.repeat(5000)}\n`,
  ]
  for (const text of inputs) {
    const started = Date.now()
    const r = parsePipeline('.regatta/f.yml', text)
    t.ok(Date.now() - started < 3000, `${JSON.stringify(text.slice(0, 20))}...: ${Date.now() - started} ms, ${r.ok ? 'valid' : r.errors[0].message.slice(0, 80)}`)
  }
})
