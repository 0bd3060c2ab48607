// The syntax of ${{ }} expressions: values, the error class, a tokenizer and a
// recursive-descent parser bounded in length and nesting, and format() strings. Evaluation is
// in expressions.ts, the checks of what an expression may use where in expression-check.ts.
import { RegattaError } from '../../../../shared/errors/index.js'
import { didYouMean } from './did-you-mean.js'
import { LIMITS } from './limits.js'

// ---------------------------------------------------------------- values and errors

export type Value = null | boolean | number | string | readonly Value[] | { readonly [key: string]: Value }

export class ExpressionError extends RegattaError {
  /** 0-based offset in the expression text (or in the template for interpolation). */
  readonly index: number
  /** 1-based column: index + 1. */
  readonly column: number
  /** The message without the column prefix. */
  readonly reason: string
  constructor(index: number, reason: string) {
    super('INVALID_EXPRESSION', `column ${index + 1}: ${reason}`)
    this.name = 'ExpressionError'
    this.index = index
    this.column = index + 1
    this.reason = reason
  }

  /** The same error moved by `offset` (an expression inside a longer text). */
  shifted(offset: number): ExpressionError {
    return new ExpressionError(this.index + offset, this.reason)
  }
}

// ---------------------------------------------------------------- tokens

type TokenKind = 'string' | 'number' | 'ident' | 'punct' | 'end'

interface Token {
  kind: TokenKind
  /** The punctuation, the identifier, or the literal's source text. */
  text: string
  value?: string | number
  index: number
}

const PUNCT = ['==', '!=', '<=', '>=', '&&', '||', '<', '>', '!', '(', ')', '[', ']', '.', ',']

function tokenize(src: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < src.length) {
    const c = src[i]
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++
      continue
    }
    const start = i
    if (c === "'") {
      let out = ''
      i++
      for (;;) {
        if (i >= src.length) throw new ExpressionError(start, 'unterminated string (strings are in single quotes; write \'\' for a quote)')
        if (src[i] === "'") {
          if (src[i + 1] === "'") {
            out += "'"
            i += 2
            continue
          }
          i++
          break
        }
        out += src[i++]
      }
      tokens.push({ kind: 'string', text: src.slice(start, i), value: out, index: start })
      continue
    }
    if (c === '"') throw new ExpressionError(start, 'strings are in single quotes (\'text\'), not double quotes')
    const number = /^-?(0x[0-9a-fA-F]+|[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|\.[0-9]+)/.exec(src.slice(i, i + 400))
    if (number && (c !== '-' || /[0-9.]/.test(src[i + 1] ?? ''))) {
      const t = number[0]
      const after = src[i + t.length] ?? ''
      if (/[A-Za-z_]/.test(after)) throw new ExpressionError(start, `"${t}${after}..." is not a number`)
      const value = Number(t)
      if (!Number.isFinite(value)) throw new ExpressionError(start, `number ${t} is too large`)
      tokens.push({ kind: 'number', text: t, value, index: start })
      i += t.length
      continue
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1
      while (j < src.length && /[A-Za-z0-9_-]/.test(src[j])) j++
      tokens.push({ kind: 'ident', text: src.slice(i, j), index: start })
      i = j
      continue
    }
    const p = PUNCT.find((op) => src.startsWith(op, i))
    if (p) {
      tokens.push({ kind: 'punct', text: p, index: start })
      i += p.length
      continue
    }
    const hint = c === '=' ? ' (comparison is ==)' : c === '&' ? ' (and is &&)' : c === '|' ? ' (or is ||)' : ''
    throw new ExpressionError(start, `unexpected character "${c}"${hint}`)
  }
  tokens.push({ kind: 'end', text: '', index: src.length })
  return tokens
}

// ---------------------------------------------------------------- syntax tree

export type Node =
  | { kind: 'literal'; value: null | boolean | number | string; index: number }
  | { kind: 'name'; name: string; index: number }
  | { kind: 'property'; object: Node; name: string; index: number }
  | { kind: 'index'; object: Node; key: Node; index: number }
  | { kind: 'not'; operand: Node; index: number }
  | { kind: 'binary'; op: BinaryOp; left: Node; right: Node; index: number }
  | { kind: 'call'; name: FunctionName; args: Node[]; index: number }

export type BinaryOp = '==' | '!=' | '<' | '<=' | '>' | '>=' | '&&' | '||'

export interface Expression {
  text: string
  ast: Node
}

/** Contexts an expression may read. */
export const CONTEXTS = ['github', 'matrix', 'env', 'secrets', 'needs'] as const
export type ContextName = (typeof CONTEXTS)[number]

/** Functions, with their argument counts. */
const FUNCTIONS = {
  contains: [2, 2],
  startsWith: [2, 2],
  endsWith: [2, 2],
  format: [1, 20],
  join: [1, 2],
  hashFiles: [1, 20],
  success: [0, 0],
  failure: [0, 0],
  always: [0, 0],
  cancelled: [0, 0],
} as const
export type FunctionName = keyof typeof FUNCTIONS
const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[]
export const STATUS_FUNCTIONS: ReadonlySet<FunctionName> = new Set(['success', 'failure', 'always', 'cancelled'])

/** The properties of `github`. */
export const GITHUB_PROPERTIES = [
  'sha', 'ref', 'ref_name', 'ref_type', 'event_name', 'repository', 'repository_owner', 'actor', 'base_ref', 'head_ref', 'run_id',
] as const

class Parser {
  private pos = 0
  private depth = 0
  constructor(private readonly tokens: Token[]) {}

  parse(): Node {
    const node = this.or()
    const t = this.peek()
    if (t.kind !== 'end') {
      throw new ExpressionError(t.index, t.kind === 'ident' || t.kind === 'string' || t.kind === 'number'
        ? `unexpected "${t.text}" (missing an operator such as == or &&?)`
        : `unexpected "${t.text}"`)
    }
    return node
  }

  private peek(): Token {
    return this.tokens[this.pos]
  }

  private next(): Token {
    return this.tokens[this.pos++]
  }

  private isPunct(...texts: string[]): boolean {
    const t = this.peek()
    return t.kind === 'punct' && texts.includes(t.text)
  }

  private expect(text: string, what: string): Token {
    const t = this.peek()
    if (t.kind !== 'punct' || t.text !== text) {
      throw new ExpressionError(t.index, `expected "${text}" ${what}, found ${t.kind === 'end' ? 'the end' : `"${t.text}"`}`)
    }
    return this.next()
  }

  private nest<T>(index: number, fn: () => T): T {
    if (++this.depth > LIMITS.expressionDepth) throw new ExpressionError(index, `nested deeper than ${LIMITS.expressionDepth} levels`)
    try {
      return fn()
    } finally {
      this.depth--
    }
  }

  private binary(ops: BinaryOp[], operand: () => Node): Node {
    let left = operand()
    while (this.isPunct(...ops)) {
      const op = this.next()
      const right = operand()
      left = { kind: 'binary', op: op.text as BinaryOp, left, right, index: op.index }
    }
    return left
  }

  private or(): Node {
    return this.binary(['||'], () => this.and())
  }

  private and(): Node {
    return this.binary(['&&'], () => this.equality())
  }

  private equality(): Node {
    return this.binary(['==', '!='], () => this.comparison())
  }

  private comparison(): Node {
    return this.binary(['<', '<=', '>', '>='], () => this.unary())
  }

  private unary(): Node {
    if (this.isPunct('!')) {
      const t = this.next()
      return this.nest(t.index, () => ({ kind: 'not', operand: this.unary(), index: t.index }))
    }
    return this.postfix()
  }

  private postfix(): Node {
    let node = this.primary()
    for (;;) {
      if (this.isPunct('.')) {
        this.next()
        const t = this.next()
        if (t.kind !== 'ident') {
          throw new ExpressionError(t.index, `expected a property name after ".", found ${t.kind === 'end' ? 'the end' : `"${t.text}"`}`)
        }
        node = { kind: 'property', object: node, name: t.text, index: t.index }
      } else if (this.isPunct('[')) {
        const open = this.next()
        const key = this.nest(open.index, () => this.or())
        this.expect(']', 'to close "["')
        node = { kind: 'index', object: node, key, index: open.index }
      } else return node
    }
  }

  private primary(): Node {
    const t = this.next()
    switch (t.kind) {
      case 'string':
      case 'number':
        return { kind: 'literal', value: t.value!, index: t.index }
      case 'ident': {
        if (this.isPunct('(')) return this.call(t)
        if (t.text === 'true' || t.text === 'false') return { kind: 'literal', value: t.text === 'true', index: t.index }
        if (t.text === 'null') return { kind: 'literal', value: null, index: t.index }
        return { kind: 'name', name: t.text, index: t.index }
      }
      case 'punct':
        if (t.text === '(') {
          const inner = this.nest(t.index, () => this.or())
          this.expect(')', `to close the "(" at column ${t.index + 1}`)
          return inner
        }
        throw new ExpressionError(t.index, `unexpected "${t.text}"`)
      case 'end':
        throw new ExpressionError(t.index, 'unexpected end of expression')
    }
  }

  private call(nameToken: Token): Node {
    const name = FUNCTION_NAMES.find((f) => f.toLowerCase() === nameToken.text.toLowerCase())
    if (!name) throw new ExpressionError(nameToken.index, `unknown function "${nameToken.text}"${didYouMean(nameToken.text, FUNCTION_NAMES)}`)
    const open = this.next()
    const args = this.nest(open.index, () => {
      const list: Node[] = []
      if (this.isPunct(')')) return list
      for (;;) {
        list.push(this.or())
        if (!this.isPunct(',')) return list
        this.next()
      }
    })
    this.expect(')', `to close ${name}(`)
    const [min, max]: readonly [number, number] = FUNCTIONS[name]
    if (args.length < min || args.length > max) {
      const want = min === max ? `${min}` : max >= 20 ? `at least ${min}` : `${min} or ${max}`
      throw new ExpressionError(nameToken.index, `${name}() takes ${want} argument${want === '1' ? '' : 's'}, not ${args.length}`)
    }
    return { kind: 'call', name, args, index: nameToken.index }
  }
}

/** Parses an expression (the inside of ${{ }}, or a bare `if`). Throws ExpressionError. */
export function parseExpression(text: string): Expression {
  if (typeof text !== 'string') throw new ExpressionError(0, 'an expression must be text')
  if (text.length > LIMITS.expressionLength) {
    throw new ExpressionError(LIMITS.expressionLength, `longer than ${LIMITS.expressionLength} characters`)
  }
  if (text.trim() === '') throw new ExpressionError(0, 'empty expression')
  return { text, ast: new Parser(tokenize(text)).parse() }
}

export function usesStatusFunction(expr: Expression): boolean {
  return someNode(expr.ast, (n) => n.kind === 'call' && STATUS_FUNCTIONS.has(n.name))
}

/** Whether the expression reads a context (e.g. 'secrets') or calls a function (e.g. 'hashFiles'). */
export function usesName(expr: Expression, name: ContextName | FunctionName): boolean {
  return someNode(expr.ast, (n) => (n.kind === 'name' && n.name === name) || (n.kind === 'call' && n.name === name))
}

function someNode(n: Node, pred: (n: Node) => boolean): boolean {
  if (pred(n)) return true
  switch (n.kind) {
    case 'property': return someNode(n.object, pred)
    case 'index': return someNode(n.object, pred) || someNode(n.key, pred)
    case 'not': return someNode(n.operand, pred)
    case 'binary': return someNode(n.left, pred) || someNode(n.right, pred)
    case 'call': return n.args.some((a) => someNode(a, pred))
    default: return false
  }
}

// ---------------------------------------------------------------- format strings

export function bounded(s: string, index: number): string {
  if (s.length > LIMITS.expressionResult) throw new ExpressionError(index, `the result is longer than ${LIMITS.expressionResult} characters`)
  return s
}

/** format('{0}-{1}', a, b): {N} is argument N, {{ and }} are braces. */
export function formatString(fmt: string, args: string[], index: number): string {
  let out = ''
  for (let i = 0; i < fmt.length; i++) {
    const c = fmt[i]
    if (c === '{' && fmt[i + 1] === '{') {
      out += '{'
      i++
    } else if (c === '}' && fmt[i + 1] === '}') {
      out += '}'
      i++
    } else if (c === '{') {
      const m = /^\{([0-9]{1,3})\}/.exec(fmt.slice(i, i + 6))
      if (!m) throw new ExpressionError(index, `format: "{" at position ${i} is not {N} (write {{ for a brace)`)
      const n = Number(m[1])
      if (n >= args.length) throw new ExpressionError(index, `format: {${n}} but only ${args.length} argument${args.length === 1 ? '' : 's'} after the format`)
      out += args[n]
      i += m[0].length - 1
    } else if (c === '}') {
      throw new ExpressionError(index, `format: "}" at position ${i} has no "{" (write }} for a brace)`)
    } else out += c
    if (out.length > LIMITS.expressionResult) bounded(out, index)
  }
  return out
}
