// The ${{ }} expression language on generated input: expressions built from its grammar (printed
// with every parenthesis and with as few as precedence allows, which must mean the same), the
// same mangled, nesting of every kind up to thousands of levels, literals around the length
// limit, long flat chains, format() bombs, and templates. Each gives a value or an
// ExpressionError (INVALID_EXPRESSION) with a column inside the text: never another throw, never
// a hang (CPU-time guard, see fuzz.ts). test/unit/pipeline/expressions.test.ts holds the
// random-text properties.
import t from 'tap'
import fc from 'fast-check'
import {
  ExpressionError, LIMITS, evaluateExpression, interpolate, type ExpressionContext, type Value,
} from '../../../services/ci/src/pipeline/index.js'
import { SEED, fuzz, withinGuard } from './fuzz.js'

t.comment(`fuzz seed ${SEED} (REGATTA_FUZZ_SEED to change it)`)

/** The limits as pipelines/README.md states them (checked against these, so that removing one fails). */
const DOCUMENTED = { expressionLength: 4096, expressionDepth: 32, expressionResult: 1024 * 1024 }

t.test('Checks that the expression limits are the documented ones', async (t) => {
  for (const [name, value] of Object.entries(DOCUMENTED)) t.equal(LIMITS[name as keyof typeof LIMITS], value, name)
})

const ctx: ExpressionContext = {
  github: { sha: 'abc123', ref: 'refs/heads/Main', ref_name: 'Main', event_name: 'push', repository: 'acme/app', actor: 'octocat' },
  matrix: { shard: 2, os: 'linux', big: true, list: [1, 'two', null] as unknown as Value },
  env: { NODE_ENV: 'test', EMPTY: '', ZERO: '0' },
  secrets: { TOKEN: 'hunter2' },
  needs: { build: { result: 'success', outputs: { x: '1' } } },
  status: { success: true, failure: false, cancelled: false },
  hashFiles: (patterns) => `h(${patterns.join(',')})`,
}

type Outcome = { value: Value } | { error: ExpressionError }

/** Evaluates; an ExpressionError is an outcome, any other throw fails the property, as does a hang. */
function outcome(text: string, fn: (text: string) => Value = (s) => evaluateExpression(s, ctx)): Outcome {
  return withinGuard(JSON.stringify(text.slice(0, 80)), () => {
    try {
      return { value: fn(text) }
    } catch (e) {
      if (!(e instanceof ExpressionError)) throw new Error(`${JSON.stringify(text.slice(0, 200))} threw ${String(e)}`)
      if (e.code !== 'INVALID_EXPRESSION' || !Number.isInteger(e.column) || e.column < 1 || e.column > text.length + 1) {
        throw new Error(`${JSON.stringify(text.slice(0, 200))}: column ${e.column} outside the text (${e.message})`)
      }
      return { error: e }
    }
  })
}

const same = (a: Outcome, b: Outcome): boolean =>
  'value' in a && 'value' in b
    ? JSON.stringify(a.value) === JSON.stringify(b.value) || (Number.isNaN(a.value) && Number.isNaN(b.value))
    : 'error' in a && 'error' in b && a.error.reason === b.error.reason

// ---------------------------------------------------------------- the grammar

type Ast =
  | { kind: 'atom'; text: string }
  | { kind: 'binary'; op: string; left: Ast; right: Ast }
  | { kind: 'not'; operand: Ast }
  | { kind: 'call'; name: string; args: Ast[] }
  | { kind: 'property'; object: Ast; name: string }
  | { kind: 'index'; object: Ast; key: Ast }

const ATOMS = [
  "'text'", "''", "'it''s'", "'MAIN'", '0', '1', '-1', '2.5', '0x1F', '1e3', '.5', 'true', 'false', 'null',
  'github', 'github.ref', 'github.sha', 'matrix', 'matrix.shard', 'matrix.os', 'matrix.list', 'env', 'env.EMPTY', 'env.ZERO',
  'secrets.TOKEN', 'needs', 'needs.build.result', 'github.nosuch',
]
const OPS = ['==', '!=', '<', '<=', '>', '>=', '&&', '||']
const CALLS: Array<[string, number, number]> = [
  ['contains', 2, 2], ['startsWith', 2, 2], ['endsWith', 2, 2], ['format', 1, 4], ['join', 1, 2],
  ['success', 0, 0], ['failure', 0, 0], ['always', 0, 0], ['cancelled', 0, 0], ['hashFiles', 1, 2],
]

const ast = fc.letrec<{ node: Ast }>((tie) => ({
  node: fc.oneof(
    { maxDepth: 5, depthIdentifier: 'expr' },
    { weight: 4, arbitrary: fc.constantFrom(...ATOMS).map((text): Ast => ({ kind: 'atom', text })) },
    fc.record({ kind: fc.constant('binary' as const), op: fc.constantFrom(...OPS), left: tie('node'), right: tie('node') }),
    fc.record({ kind: fc.constant('not' as const), operand: tie('node') }),
    fc.constantFrom(...CALLS).chain(([name, min, max]) =>
      fc.array(tie('node'), { minLength: min, maxLength: max }).map((args): Ast => ({ kind: 'call', name, args }))),
    fc.record({ kind: fc.constant('property' as const), object: tie('node'), name: fc.constantFrom('ref', 'shard', 'result', 'length', '__proto__', 'x') }),
    fc.record({ kind: fc.constant('index' as const), object: tie('node'), key: tie('node') }),
  ),
})).node

const PREC: Record<string, number> = { '||': 1, '&&': 2, '==': 3, '!=': 3, '<': 4, '<=': 4, '>': 4, '>=': 4 }
const precOf = (n: Ast): number => (n.kind === 'binary' ? PREC[n.op] : n.kind === 'not' ? 5 : 6)

/** With a parenthesis around every operation. */
function full(n: Ast): string {
  switch (n.kind) {
    case 'atom': return n.text
    case 'binary': return `(${full(n.left)} ${n.op} ${full(n.right)})`
    case 'not': return `(!${full(n.operand)})`
    case 'call': return `${n.name}(${n.args.map(full).join(', ')})`
    case 'property': return `(${full(n.object)}).${n.name}`
    case 'index': return `(${full(n.object)})[${full(n.key)}]`
  }
}

/** With only the parentheses precedence and left associativity need. */
function minimal(n: Ast): string {
  const wrap = (child: Ast, needs: boolean): string => (needs ? `(${minimal(child)})` : minimal(child))
  const postfixable = (o: Ast): boolean => o.kind === 'call' || o.kind === 'property' || o.kind === 'index' || (o.kind === 'atom' && /^[a-z]/.test(o.text))
  switch (n.kind) {
    case 'atom': return n.text
    case 'binary': return `${wrap(n.left, precOf(n.left) < PREC[n.op])} ${n.op} ${wrap(n.right, precOf(n.right) <= PREC[n.op])}`
    case 'not': return `!${wrap(n.operand, precOf(n.operand) < 5)}`
    case 'call': return `${n.name}(${n.args.map(minimal).join(', ')})`
    case 'property': return `${wrap(n.object, !postfixable(n.object))}.${n.name}`
    case 'index': return `${wrap(n.object, !postfixable(n.object))}[${minimal(n.key)}]`
  }
}

t.test('Checks (property) that grammatical expressions evaluate to the same outcome however parenthesized, with only ExpressionErrors', async (t) => {
  let values = 0
  fc.assert(fc.property(ast, (n) => {
    const a = outcome(full(n))
    const b = outcome(minimal(n))
    if ('value' in a) values++
    if (!same(a, b)) throw new Error(`${full(n)} and ${minimal(n)} differ: ${JSON.stringify(a)} / ${JSON.stringify(b)}`)
  }), fuzz(1500))
  t.ok(values > 0, `${values} have a value`)
})

const MANGLE = ['(', ')', '[', ']', "'", '"', '.', ',', '!', '=', '&', '|', '<', '>', ' ', '1', 'x', '${{', '}}', '\u0000', '😀', '-', '0x', 'e9']

t.test('Checks (property) that mangled expressions give a value or an ExpressionError whose column is inside the text', async (t) => {
  const mangled = fc.tuple(ast, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 }), fc.constantFrom(...MANGLE)), { minLength: 1, maxLength: 5 }))
    .map(([n, edits]) => edits.reduce((s, [at, cut, insert]) => {
      const i = at % (s.length + 1)
      return s.slice(0, i) + insert + s.slice(i + cut)
    }, minimal(n)))
  let errors = 0
  fc.assert(fc.property(mangled, (text) => {
    if ('error' in outcome(text)) errors++
    outcome(text, (s) => interpolate(s, ctx))
  }), fuzz(1500))
  t.ok(errors > 0, `many are refused (${errors}), each with a column`)
})

// ---------------------------------------------------------------- limits

/** Openers that each nest one level, and where the parser counts the level (the column of the error). */
const NESTS: Array<{ open: string; at: number; close: string }> = [
  { open: '(', at: 0, close: ')' },
  { open: '!', at: 0, close: '' },
  { open: 'format(', at: 6, close: ')' },
  { open: "contains('x', ", at: 8, close: ')' },
  { open: 'matrix[', at: 6, close: ']' },
  { open: 'join(', at: 4, close: ')' },
]

t.test('Checks (property) that nesting beyond 32 levels is refused at the column of the 33rd level, of any kind, up to thousands deep', async (t) => {
  const nestsOf = fc.integer({ min: 1, max: 700 }).chain((n) => fc.array(fc.constantFrom(...NESTS), { minLength: n, maxLength: n }))
  fc.assert(fc.property(nestsOf, (nests) => {
    const text = `${nests.map((n) => n.open).join('')}'1'${nests.map((n) => n.close).reverse().join('')}`
    const o = outcome(text)
    if (text.length > DOCUMENTED.expressionLength) {
      if (!('error' in o) || o.error.column !== DOCUMENTED.expressionLength + 1 || o.error.reason !== 'longer than 4096 characters') throw new Error(`${text.length} characters: ${JSON.stringify(o)}`)
    } else if (nests.length > DOCUMENTED.expressionDepth) {
      const column = nests.slice(0, DOCUMENTED.expressionDepth).reduce((c, n) => c + n.open.length, 0) + nests[DOCUMENTED.expressionDepth].at + 1
      if (!('error' in o) || o.error.column !== column || o.error.reason !== 'nested deeper than 32 levels') throw new Error(`${nests.length} levels: ${JSON.stringify(o)}, expected column ${column}`)
    } else if ('error' in o && /nested deeper/.test(o.error.reason)) throw new Error(`${nests.length} levels refused`)
  }), fuzz(400))
  t.pass('no RangeError, every refusal placed')
})

t.test('Checks (property) that a literal around the length limit is its value, or refused at column 4097, in an expression or a template', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 4000, max: 4200 }), fc.constantFrom('x', "''", 'é', '😀'), fc.string({ maxLength: 10 }), (n, unit, lead) => {
    // '' is one quote inside a literal: keep them paired
    const literal = unit.repeat(Math.ceil(n / unit.length)).slice(0, unit === "''" ? n - (n % 2) : n)
    const expr = `'${literal}'`
    const o = outcome(expr)
    const value = literal.replaceAll("''", "'")
    if (expr.length > DOCUMENTED.expressionLength) {
      if (!('error' in o) || o.error.column !== 4097) throw new Error(`${expr.length}: ${JSON.stringify(o).slice(0, 200)}`)
    } else if (!('value' in o) || o.value !== value) throw new Error(`${expr.length}: not its value`)
    const prefix = lead.replaceAll('${{', '')
    const template = `${prefix}\${{ ${expr} }}`
    const ot = outcome(template, (s) => interpolate(s, ctx))
    if (expr.length + 2 > DOCUMENTED.expressionLength) {
      if (!('error' in ot) || ot.error.column !== prefix.length + 3 + 4097) throw new Error(`template: ${JSON.stringify(ot).slice(0, 200)}`)
    } else if (!('value' in ot) || ot.value !== prefix + value) throw new Error('template: not its value')
  }), fuzz(150))
  t.pass('held for every generated input')
})

t.test('Checks (property) that long flat chains (properties, comparisons, && and ||) up to the length limit evaluate without overflowing the stack', async (t) => {
  const chains: Array<[string, string, string]> = [
    ['github', '.x', ''], ['1', ' == 1', ''], ['matrix.shard', ' || env.EMPTY', ''], ['true', ' && true', ''], ["'a'", ' < \'b\'', ''],
    ['!', '!', 'true'], ['matrix.list', '[0]', ''], ["format('{0}', ", "format('{0}', ", "'x'"],
  ]
  fc.assert(fc.property(fc.constantFrom(...chains), fc.integer({ min: 1, max: 2000 }), ([head, link, tail], n) => {
    const text = `${head}${link.repeat(n)}${tail}`
    outcome(text)
  }), fuzz(200))
  t.pass('held for every generated input')
})

t.test('Checks (property) that nested format() bombs give exactly their text up to 1 MiB and are refused beyond it, quickly', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 14 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 20 }), (depth, reps, base) => {
    let text = `'${'x'.repeat(base)}'`
    for (let i = 0; i < depth; i++) text = `format('${'{0}'.repeat(reps)}', ${text})`
    const length = base * reps ** depth
    const o = outcome(text)
    if (length <= DOCUMENTED.expressionResult) {
      if (!('value' in o) || o.value !== 'x'.repeat(length)) throw new Error(`${base}x${reps}^${depth}: ${JSON.stringify(o).slice(0, 200)}`)
    } else if (!('error' in o) || o.error.reason !== 'the result is longer than 1048576 characters') throw new Error(`${length} characters not refused`)
  }), fuzz(200))
  t.pass('held for every generated input')
})

t.test('Checks (property) that a template is its text with each expression replaced by its value', async (t) => {
  const pieces: Array<[string, string]> = [
    ['${{ github.sha }}', 'abc123'], ['${{ matrix.shard }}', '2'], ["${{ format('{0}-{1}', matrix.os, 1) }}", 'linux-1'],
    ['${{ env.EMPTY }}', ''], ["${{ 'a }} b' }}", 'a }} b'], ['${{ matrix.list }}', '[1,"two",null]'], ['${{ 1 == 1 }}', 'true'],
    ["${{ hashFiles('a', 'b') }}", 'h(a,b)'], ['${{ needs.build.outputs }}', '{"x":"1"}'],
  ]
  const literal = fc.string({ maxLength: 12 }).filter((s) => !/[${}]/.test(s))
  fc.assert(fc.property(fc.array(fc.oneof(literal.map((s): [string, string] => [s, s]), fc.constantFrom(...pieces)), { maxLength: 12 }), (parts) => {
    const template = parts.map(([src]) => src).join('')
    const o = outcome(template, (s) => interpolate(s, ctx))
    const want = parts.map(([, text]) => text).join('')
    if (!('value' in o) || o.value !== want) throw new Error(`${JSON.stringify(template)}: ${JSON.stringify(o)}, expected ${JSON.stringify(want)}`)
  }), fuzz(500))
  t.pass('held for every generated input')
})
