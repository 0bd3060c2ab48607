// The ${{ }} expression language: literals, contexts, each operator and function, precedence,
// templates and conditions, errors with their columns, limits, and a property test that no
// input makes the evaluator throw anything but ExpressionError or run long.
import t from 'tap'
import fc from 'fast-check'
import {
  ExpressionError, evaluateCondition, evaluateExpression, interpolate, parseExpression, type ExpressionContext, type Value,
} from '../../../services/ci/src/pipeline/index.js'
import { checkExpression } from '../../../services/ci/src/pipeline/expressions.js'
import { RegattaError } from '../../../shared/errors/index.js'

const ctx: ExpressionContext = {
  github: { sha: 'abc123', ref: 'refs/heads/Main', ref_name: 'Main', event_name: 'push', repository: 'acme/app', actor: 'octocat', base_ref: '', head_ref: '' },
  matrix: { shard: 2, os: 'linux', big: true },
  env: { NODE_ENV: 'test', EMPTY: '', ZERO: '0' },
  needs: { build: { result: 'success' } },
}

const ev = (text: string, c: ExpressionContext = ctx): Value => evaluateExpression(text, c)

/** Checks that `fn` throws an ExpressionError at this column whose reason matches. */
function throwsAt(t: Tap, fn: () => unknown, column: number, reason: RegExp | string): void {
  try {
    fn()
    t.fail(`expected an ExpressionError at column ${column}`)
  } catch (e) {
    t.ok(e instanceof ExpressionError, 'an ExpressionError')
    const err = e as ExpressionError
    t.equal(err.column, column, `at column ${column} (${err.message})`)
    t.match(err.reason, reason)
    t.equal(err.code, 'INVALID_EXPRESSION')
    t.ok(err instanceof RegattaError, 'a RegattaError with a code')
  }
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

t.test('Checks literals: strings with doubled quotes, numbers, booleans, null', async (t) => {
  t.equal(ev("'it''s'"), "it's")
  t.equal(ev("''"), '')
  t.equal(ev('42'), 42)
  t.equal(ev('-1.5'), -1.5)
  t.equal(ev('0x1F'), 31)
  t.equal(ev('1e3'), 1000)
  t.equal(ev('.5'), 0.5)
  t.equal(ev('true'), true)
  t.equal(ev('false'), false)
  t.equal(ev('null'), null)
})

t.test('Checks property and index access: contexts, missing properties are null, no prototype', async (t) => {
  t.equal(ev('matrix.shard'), 2)
  t.equal(ev('env.NODE_ENV'), 'test')
  t.equal(ev('github.sha'), 'abc123')
  t.equal(ev("github['sha']"), 'abc123')
  t.equal(ev('needs.build.result'), 'success')
  t.equal(ev('env.NOPE'), null)
  t.equal(ev('github.sha.length'), null, 'strings have no properties')
  t.equal(ev('github.__proto__'), null)
  t.equal(ev("github['constructor']"), null)
  t.equal(ev('env.NOPE.deeper'), null)
  const lists: ExpressionContext = { matrix: { list: ['a', 'b'] } }
  t.equal(evaluateExpression('matrix.list[1]', lists), 'b')
  t.equal(evaluateExpression('matrix.list[5]', lists), null)
  t.equal(evaluateExpression("matrix.list['length']", lists), null)
  t.equal(evaluateExpression("matrix['list'][0]", lists), 'a')
})

t.test('Checks == and != with GitHub\'s loose equality', async (t) => {
  const cases: Array<[string, boolean]> = [
    ["'abc' == 'ABC'", true],
    ["'abc' != 'abd'", true],
    ["1 == '1'", true],
    ["1 == '1.0'", true],
    ['true == 1', true],
    ['false == 0', true],
    ["null == ''", true],
    ['null == 0', true],
    ["'' == 0", true],
    ["'x' == 0", false],
    ['null == null', true],
    ["matrix.shard == '2'", true],
    ['github == github', true],
    ['github == matrix', false],
    ["github == 'x'", false],
  ]
  for (const [e, want] of cases) t.equal(ev(e), want, e)
})

t.test('Checks < <= > >= on numbers, strings (ignoring case) and mixed values', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['1 < 2', true], ['2 <= 2', true], ['3 > 2', true], ['2 >= 3', false],
    ["'a' < 'B'", true], ["'b' > 'A'", true], ["'abc' <= 'ABC'", true],
    ["'10' > 9", true], ['true > false', true], ["'x' < 1", false], ["'x' >= 1", false],
    ['null < 1', true],
  ]
  for (const [e, want] of cases) t.equal(ev(e), want, e)
})

t.test('Checks && and || return an operand and short-circuit; ! negates truthiness', async (t) => {
  t.equal(ev("'a' && 'b'"), 'b')
  t.equal(ev("'' && 'b'"), '')
  t.equal(ev("'' || 'b'"), 'b')
  t.equal(ev("'a' || 'b'"), 'a')
  t.equal(ev("env.EMPTY || 'default'"), 'default')
  t.equal(ev('false && hashFiles(\'x\')'), false, 'the right side is not evaluated')
  t.equal(ev('true || nosuch.x'), true, 'the right side is not evaluated')
  t.equal(ev('!0'), true)
  t.equal(ev("!''"), true)
  t.equal(ev('!null'), true)
  t.equal(ev("!'0'"), false, "'0' is a non-empty string")
  t.equal(ev('!!matrix'), true)
})

t.test('Checks precedence: ! over comparison over equality over && over ||; parentheses', async (t) => {
  t.equal(ev('!false == true'), true, '(!false) == true')
  t.equal(ev('true || false && false'), true, 'true || (false && false)')
  t.equal(ev('(true || false) && false'), false)
  t.equal(ev('1 < 2 == 2 < 3'), true, '(1 < 2) == (2 < 3)')
  t.equal(ev("matrix.os == 'linux' && matrix.shard > 1 || false"), true)
  t.equal(ev('!(1 == 1)'), false)
  t.equal(ev('((((1))))'), 1)
})

t.test('Checks contains, startsWith, endsWith (ignoring case), format and join', async (t) => {
  t.equal(ev("contains('Hello world', 'WORLD')"), true)
  t.equal(ev("contains(github.ref, 'heads')"), true)
  t.equal(ev("contains('abc', 'x')"), false)
  t.equal(evaluateExpression("contains(matrix.list, 'b')", { matrix: { list: ['a', 'b'] } }), true)
  t.equal(evaluateExpression('contains(matrix.list, 2)', { matrix: { list: ['1', '2'] } }), true, 'elements compare loosely')
  t.equal(ev("startsWith(github.ref, 'refs/heads/')"), true)
  t.equal(ev("startsWith(github.ref, 'REFS/')"), true)
  t.equal(ev("endsWith(github.ref, '/main')"), true)
  t.equal(ev("endsWith(github.ref, 'x')"), false)
  t.equal(ev("format('{0}-{1}-{0}', 'a', matrix.shard)"), 'a-2-a')
  t.equal(ev("format('{{literal}} {0}', 'x')"), '{literal} x')
  t.equal(ev("format('no args')"), 'no args')
  t.equal(evaluateExpression("join(matrix.list, '+')", { matrix: { list: ['a', 'b', 3] } }), 'a+b+3')
  t.equal(evaluateExpression('join(matrix.list)', { matrix: { list: ['a', 'b'] } }), 'a,b')
  t.equal(ev("join('single')"), 'single')
  t.equal(ev("STARTSWITH('Ab', 'a')"), true, 'function names ignore case')
})

t.test('Checks success(), failure(), always(), cancelled() read the job status', async (t) => {
  const status = { success: false, failure: true, cancelled: false }
  t.equal(evaluateExpression('success()', { status }), false)
  t.equal(evaluateExpression('failure()', { status }), true)
  t.equal(evaluateExpression('cancelled()', { status }), false)
  t.equal(evaluateExpression('always()', {}), true)
  throwsAt(t, () => evaluateExpression('success()', {}), 1, 'success() can only be used in if')
})

t.test('Checks hashFiles() through the injected function, and its failures', async (t) => {
  const seen: string[][] = []
  const hashFiles = (p: string[]): string => {
    seen.push(p)
    return 'h-' + p.join('+')
  }
  t.equal(evaluateExpression("hashFiles('package-lock.json', '**/*.lock')", { hashFiles }), 'h-package-lock.json+**/*.lock')
  t.same(seen, [['package-lock.json', '**/*.lock']])
  throwsAt(t, () => evaluateExpression("hashFiles('x')", {}), 1, 'hashFiles() is not available here')
  throwsAt(t, () => evaluateExpression("  hashFiles('x')", { hashFiles: () => { throw new Error('disk on fire') } }), 3, "hashFiles('x') failed: disk on fire")
  throwsAt(t, () => evaluateExpression("hashFiles('x')", { hashFiles: () => 5 as unknown as string }), 1, 'did not return text')
})

t.test('Checks syntax errors carry the column of the problem', async (t) => {
  throwsAt(t, () => parseExpression("github.ref = 'main'"), 12, 'unexpected character "=" (comparison is ==)')
  throwsAt(t, () => parseExpression('a & b'), 3, 'unexpected character "&" (and is &&)')
  throwsAt(t, () => parseExpression("'open"), 1, 'unterminated string')
  throwsAt(t, () => parseExpression('"double"'), 1, 'single quotes')
  throwsAt(t, () => parseExpression('(1 == 1'), 8, 'expected ")" to close the "(" at column 1, found the end')
  throwsAt(t, () => parseExpression("contain('a', 'b')"), 1, 'unknown function "contain"; did you mean "contains"?')
  throwsAt(t, () => parseExpression("startsWith('a')"), 1, 'startsWith() takes 2 arguments, not 1')
  throwsAt(t, () => parseExpression('success(1)'), 1, 'success() takes 0 arguments, not 1')
  throwsAt(t, () => parseExpression('   '), 1, 'empty expression')
  throwsAt(t, () => parseExpression('github.sha github.ref'), 12, 'unexpected "github" (missing an operator')
  throwsAt(t, () => parseExpression('github.'), 8, 'expected a property name after "."')
  throwsAt(t, () => parseExpression('1 +'), 3, 'unexpected character "+"')
  throwsAt(t, () => parseExpression('==1'), 1, 'unexpected "=="')
  throwsAt(t, () => parseExpression('12abc'), 1, '"12a..." is not a number')
  throwsAt(t, () => parseExpression("matrix['a'"), 11, 'expected "]"')
  throwsAt(t, () => evaluateExpression('nosuch.x', ctx), 1, 'unknown name "nosuch"')
  throwsAt(t, () => evaluateExpression('secrets.X', ctx), 1, 'secrets is not available here')
  throwsAt(t, () => evaluateExpression("format('{2}', 'a')", ctx), 8, 'format: {2} but only 1 argument after the format')
  throwsAt(t, () => evaluateExpression("format('{x}')", ctx), 8, 'format: "{" at position 0 is not {N}')
})

t.test('Checks the limits: length, nesting, size of results', async (t) => {
  throwsAt(t, () => parseExpression(`'${'x'.repeat(5000)}'`), 4097, 'longer than 4096 characters')
  throwsAt(t, () => parseExpression(`${'('.repeat(40)}1${')'.repeat(40)}`), 33, 'nested deeper than 32 levels')
  throwsAt(t, () => parseExpression(`${'!'.repeat(40)}1`), 33, 'nested deeper than 32 levels')
  t.doesNotThrow(() => parseExpression(`${'('.repeat(30)}1${')'.repeat(30)}`))
  let bomb = "'xxxxxxxxxxxxxxxx'"
  for (let i = 0; i < 12; i++) bomb = `format('{0}{0}{0}{0}', ${bomb})`
  t.throws(() => evaluateExpression(bomb, {}), { name: 'ExpressionError', reason: /the result is longer than 1048576 characters/ })
  const long = `1${' == 1'.repeat(600)}`
  t.equal(typeof evaluateExpression(long, {}), 'boolean', 'a long flat chain evaluates')
})

t.test('Checks interpolation of templates: several expressions, text around, values as text', async (t) => {
  t.equal(interpolate('npm test -- --shard=${{ matrix.shard }}/3', ctx), 'npm test -- --shard=2/3')
  t.equal(interpolate('${{ github.sha }}-${{matrix.os}}', ctx), 'abc123-linux')
  t.equal(interpolate('plain text', ctx), 'plain text')
  t.equal(interpolate("x${{ format('}}{0}', 'a') }}y", ctx), 'x}ay', '}} inside a string does not close')
  t.equal(interpolate('[${{ env.NOPE }}]', ctx), '[]', 'null is empty text')
  t.equal(interpolate('${{ matrix.big }} ${{ 1.5 }}', ctx), 'true 1.5')
  t.equal(interpolate('${{ needs.build }}', ctx), '{"result":"success"}', 'objects as JSON')
  t.equal(interpolate("npm-${{ hashFiles('package-lock.json') }}", { hashFiles: () => 'f00' }), 'npm-f00')
  t.equal(interpolate('${{ github.head_ref }}', { github: { head_ref: '${{ secrets.TOKEN }}' } }), '${{ secrets.TOKEN }}', 'a value is not interpolated again')
  throwsAt(t, () => interpolate('echo ${{ github.sha', ctx), 6, '"${{" without a closing "}}"')
  throwsAt(t, () => interpolate('ab ${{ github.sha == }} cd', ctx), 22, 'unexpected end of expression')
  throwsAt(t, () => interpolate('a ${{ 1 }} b ${{ nope.x }}', ctx), 18, 'unknown name "nope"')
})

t.test('Checks conditions: bare or in ${{ }}, success() implied unless a status function is used', async (t) => {
  const ok = { success: true, failure: false, cancelled: false }
  const failed = { success: false, failure: true, cancelled: false }
  t.equal(evaluateCondition("github.event_name == 'push'", { ...ctx, status: ok }), true)
  t.equal(evaluateCondition("${{ github.event_name == 'push' }}", { ...ctx, status: ok }), true)
  t.equal(evaluateCondition("  ${{ matrix.os == 'mac' }}  ", { ...ctx, status: ok }), false)
  t.equal(evaluateCondition("github.event_name == 'push'", { ...ctx, status: failed }), false, 'a failed need skips the job')
  t.equal(evaluateCondition('always()', { status: failed }), true)
  t.equal(evaluateCondition('failure()', { status: failed }), true)
  t.equal(evaluateCondition('${{ failure() || cancelled() }}', { status: ok }), false)
  t.equal(evaluateCondition('true', {}), true, 'no status given: as if needs succeeded')
  t.equal(evaluateCondition('false', {}), false)
  t.equal(evaluateCondition("env.EMPTY", ctx), false)
  throwsAt(t, () => evaluateCondition('${{ true }} && false', ctx), 1, 'write the whole condition inside one ${{ }}, or without ${{ }}')
  throwsAt(t, () => evaluateCondition('true && ${{ false }}', ctx), 9, 'write the whole condition inside one ${{ }}')
  throwsAt(t, () => evaluateCondition('${{ github.ref = 1 }}', ctx), 16, 'unexpected character "="')
  throwsAt(t, () => evaluateCondition('  github.ref = 1', ctx), 14, 'unexpected character "="')
})

t.test('Checks the static checks: contexts allowed here, matrix keys, github properties, needs', async (t) => {
  const reasons = (text: string, rules: Parameters<typeof checkExpression>[1]): string[] =>
    checkExpression(parseExpression(text), rules).map((e) => `${e.column}: ${e.reason}`)
  t.same(reasons("github.shaa == 'x'", { contexts: ['github'] }), ['8: github has no property "shaa"; did you mean "sha"?'])
  t.same(reasons('matrix.x', { contexts: ['github', 'matrix'] }), ['1: this job has no matrix'])
  t.same(reasons('matrix.shrd', { contexts: ['matrix'], matrixKeys: new Set(['shard']) }), ['8: the matrix has no "shrd"; did you mean "shard"? (it has shard)'])
  t.same(reasons('env.X', { contexts: ['github'] }), ['1: env is not available here (contexts here: github)'])
  t.same(reasons('always()', { contexts: ['github'] }), ['1: always() can only be used in if'])
  t.same(reasons('always()', { contexts: ['github'], status: true }), [])
  t.same(reasons('needs.lint.result', { contexts: ['needs'], needs: new Set(['build']) }), ['7: "lint" is not in this job\'s needs'])
  t.same(reasons("format('{1}', 'a')", { contexts: [] }), ["8: format: {1} but only 1 argument after the format"])
  t.same(reasons('matrix.shard == 1 && startsWith(github.ref, env.P)', { contexts: ['github', 'matrix', 'env'], matrixKeys: new Set(['shard']) }), [])
})

// ---------------------------------------------------------------- property tests

const TOKENS = [
  'github', 'matrix', 'env', 'secrets', 'needs', 'nosuch', '.', 'sha', 'ref', 'shard', '[', ']', '(', ')', ',', "'", "'x'", "''", '"',
  '==', '!=', '<', '<=', '>', '>=', '&&', '||', '!', '=', '&', '|', '1', '-1', '0x1', '1e999', '.5', 'true', 'false', 'null',
  'contains', 'startsWith', 'endsWith', 'format', 'join', 'hashFiles', 'success', 'failure', 'always', 'cancelled',
  "'{0}'", "'{'", "'}}'", '${{', '}}', ' ', '\n', '__proto__', 'constructor', '-', '\u0000', '😀',
]
const tokenText = fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }).map((ts) => ts.join(''))
const anyText = fc.oneof(tokenText, fc.string({ maxLength: 60 }), fc.string({ unit: 'grapheme', maxLength: 30 }))
const fullCtx: ExpressionContext = {
  ...ctx,
  secrets: { X: 'secret' },
  status: { success: true, failure: false, cancelled: false },
  hashFiles: (p) => p.join(','),
}

function onlyExpressionErrors(fn: () => unknown): boolean {
  try {
    fn()
    return true
  } catch (e) {
    return e instanceof ExpressionError && Number.isInteger(e.column) && e.column >= 1
  }
}

t.test('Checks (property) that parsing and evaluating any text throws nothing but ExpressionError, quickly', async (t) => {
  const started = Date.now()
  fc.assert(fc.property(anyText, (text) => {
    const t0 = Date.now()
    const ok = onlyExpressionErrors(() => evaluateExpression(text, fullCtx)) &&
      onlyExpressionErrors(() => evaluateExpression(text, {})) &&
      onlyExpressionErrors(() => interpolate(text, fullCtx)) &&
      onlyExpressionErrors(() => evaluateCondition(text, fullCtx))
    return ok && Date.now() - t0 < 200
  }), { numRuns: 3000 })
  t.ok(Date.now() - started < 30_000, 'bounded time')
})

t.test('Checks (property) that deep and long random nestings are refused, not overflowing the stack', async (t) => {
  fc.assert(fc.property(fc.array(fc.constantFrom('(', '!', 'format(', 'matrix[', 'contains(1,'), { minLength: 1, maxLength: 3000 }), (opens) => {
    const text = opens.join('') + '1'
    return onlyExpressionErrors(() => evaluateExpression(text, fullCtx))
  }), { numRuns: 200 })
  t.pass('no RangeError')
})

t.test('Checks (property) that comparisons of numbers agree with JavaScript\'s', async (t) => {
  fc.assert(fc.property(fc.integer({ min: -1e6, max: 1e6 }), fc.integer({ min: -1e6, max: 1e6 }), (a, b) =>
    ev(`${a} < ${b}`) === (a < b) && ev(`${a} == ${b}`) === (a === b) && ev(`${a} >= ${b}`) === (a >= b)))
  t.pass()
})
