// `${{ }}` expressions: an evaluator of our own over the parser of expression-syntax.ts (no
// eval, no Function), bounded in length, nesting and result size, whose only exception is
// ExpressionError with the column where the problem is. Semantics follow GitHub Actions:
// loose equality, case-insensitive string comparison, && and || returning an operand, a
// missing property reading as null.
//
//   evaluateExpression("matrix.shard == 1 && startsWith(github.ref, 'refs/tags/')", ctx)
//   interpolate("npm-${{ hashFiles('package-lock.json') }}", { hashFiles })
//   evaluateCondition("failure()", { status: { success: false, failure: true, cancelled: false } })
import { didYouMean } from './did-you-mean.js'
import {
  CONTEXTS, ExpressionError, STATUS_FUNCTIONS, bounded, formatString, parseExpression, usesStatusFunction,
  type ContextName, type Expression, type Node, type Value,
} from './expression-syntax.js'
import { LIMITS } from './limits.js'

export {
  CONTEXTS, ExpressionError, GITHUB_PROPERTIES, STATUS_FUNCTIONS, parseExpression, usesName, usesStatusFunction,
  type BinaryOp, type ContextName, type Expression, type FunctionName, type Node, type Value,
} from './expression-syntax.js'
export { checkExpression, type ExpressionRules } from './expression-check.js'

// ---------------------------------------------------------------- evaluation

export interface JobStatus {
  /** Every job this one needs succeeded (and the run was not cancelled). */
  success: boolean
  /** A job this one needs failed. */
  failure: boolean
  /** The run was cancelled. */
  cancelled: boolean
}

export interface ExpressionContext {
  github?: { readonly [key: string]: Value }
  matrix?: { readonly [key: string]: Value }
  env?: { readonly [key: string]: Value }
  secrets?: { readonly [key: string]: Value }
  needs?: { readonly [key: string]: Value }
  status?: JobStatus
  /** A hash of the files matching the globs, relative to the checkout ('' when none match). */
  hashFiles?: (patterns: string[]) => string
}

/** Evaluates a parsed expression. Throws only ExpressionError. */
export function evaluate(expr: Expression, ctx: ExpressionContext): Value {
  return new Evaluator(ctx).eval(expr.ast)
}

/** Parses and evaluates. Throws only ExpressionError. */
export function evaluateExpression(text: string, ctx: ExpressionContext): Value {
  return evaluate(parseExpression(text), ctx)
}

class Evaluator {
  constructor(private readonly ctx: ExpressionContext) {}

  eval(n: Node): Value {
    switch (n.kind) {
      case 'literal':
        return n.value
      case 'name': {
        if (!(CONTEXTS as readonly string[]).includes(n.name)) {
          throw new ExpressionError(n.index, `unknown name "${n.name}"${didYouMean(n.name, CONTEXTS)}`)
        }
        const v = this.ctx[n.name as ContextName]
        if (v === undefined) throw new ExpressionError(n.index, `${n.name} is not available here`)
        return v
      }
      case 'property':
        return member(this.eval(n.object), n.name)
      case 'index': {
        const obj = this.eval(n.object)
        const key = this.eval(n.key)
        if (Array.isArray(obj)) return typeof key === 'number' && Number.isInteger(key) ? (obj as readonly Value[])[key] ?? null : null
        return typeof key === 'string' ? member(obj, key) : null
      }
      case 'not':
        return !truthy(this.eval(n.operand))
      case 'binary':
        return this.binary(n)
      case 'call':
        return this.call(n)
    }
  }

  private binary(n: Extract<Node, { kind: 'binary' }>): Value {
    const left = this.eval(n.left)
    if (n.op === '&&') return truthy(left) ? this.eval(n.right) : left
    if (n.op === '||') return truthy(left) ? left : this.eval(n.right)
    const right = this.eval(n.right)
    switch (n.op) {
      case '==': return looseEquals(left, right)
      case '!=': return !looseEquals(left, right)
      default: {
        const c = compare(left, right)
        if (c === undefined) return false
        return n.op === '<' ? c < 0 : n.op === '<=' ? c <= 0 : n.op === '>' ? c > 0 : c >= 0
      }
    }
  }

  private call(n: Extract<Node, { kind: 'call' }>): Value {
    if (STATUS_FUNCTIONS.has(n.name)) {
      if (n.name === 'always') return true
      const status = this.ctx.status
      if (!status) throw new ExpressionError(n.index, `${n.name}() can only be used in if`)
      return status[n.name as 'success' | 'failure' | 'cancelled'] === true
    }
    const args = n.args.map((a) => this.eval(a))
    switch (n.name) {
      case 'contains': {
        const [hay, needle] = args
        if (Array.isArray(hay)) return (hay as readonly Value[]).some((v) => looseEquals(v, needle))
        return toText(hay, n.index).toLowerCase().includes(toText(needle, n.index).toLowerCase())
      }
      case 'startsWith':
        return toText(args[0], n.index).toLowerCase().startsWith(toText(args[1], n.index).toLowerCase())
      case 'endsWith':
        return toText(args[0], n.index).toLowerCase().endsWith(toText(args[1], n.index).toLowerCase())
      case 'format':
        return formatString(toText(args[0], n.index), args.slice(1).map((a) => toText(a, n.index)), n.args[0].index)
      case 'join': {
        const sep = args.length > 1 ? toText(args[1], n.index) : ','
        if (!Array.isArray(args[0])) return toText(args[0], n.index)
        return bounded((args[0] as readonly Value[]).map((v) => toText(v, n.index)).join(sep), n.index)
      }
      case 'hashFiles': {
        const fn = this.ctx.hashFiles
        if (!fn) throw new ExpressionError(n.index, 'hashFiles() is not available here (no checkout)')
        const patterns = args.map((a) => toText(a, n.index))
        let out: unknown
        try {
          out = fn(patterns)
        } catch (e) {
          throw new ExpressionError(n.index, `hashFiles(${patterns.map((p) => `'${p}'`).join(', ')}) failed: ${e instanceof Error ? e.message : String(e)}`)
        }
        if (typeof out !== 'string') throw new ExpressionError(n.index, 'hashFiles() did not return text')
        return out
      }
      default:
        throw new ExpressionError(n.index, `unknown function "${n.name}"`)
    }
  }
}

function member(obj: Value, key: string): Value {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return null
  return Object.hasOwn(obj, key) ? (obj as { [k: string]: Value })[key] ?? null : null
}

/** GitHub's truthiness: false, 0, -0, '', null and NaN are false. */
export function truthy(v: Value): boolean {
  if (v === null || v === false || v === '') return false
  if (typeof v === 'number') return v !== 0 && !Number.isNaN(v)
  return true
}

function toNumber(v: Value): number {
  if (v === null) return 0
  if (typeof v === 'boolean') return v ? 1 : 0
  if (typeof v === 'number') return v
  if (typeof v === 'string') return v.trim() === '' ? 0 : Number(v)
  return NaN
}

/** GitHub's ==: same types compare directly (strings ignoring case); others as numbers. */
export function looseEquals(a: Value, b: Value): boolean {
  if (typeof a === 'string' && typeof b === 'string') return a.toLowerCase() === b.toLowerCase()
  if (typeof a === 'object' && a !== null) return a === b
  if (typeof b === 'object' && b !== null) return false
  if (typeof a === typeof b) return a === b
  const x = toNumber(a)
  const y = toNumber(b)
  return !Number.isNaN(x) && x === y
}

function compare(a: Value, b: Value): number | undefined {
  if (typeof a === 'string' && typeof b === 'string') {
    const x = a.toLowerCase()
    const y = b.toLowerCase()
    return x < y ? -1 : x > y ? 1 : 0
  }
  const x = toNumber(a)
  const y = toNumber(b)
  if (Number.isNaN(x) || Number.isNaN(y)) return undefined
  return x - y
}

/** A value as text in a string: null is '', objects and lists are JSON. */
export function toText(v: Value, index = 0): string {
  if (v === null) return ''
  if (typeof v === 'string') return v
  if (typeof v === 'boolean' || typeof v === 'number') return String(v)
  return bounded(JSON.stringify(v) ?? '', index)
}

// ---------------------------------------------------------------- templates and conditions

export type TemplatePart =
  | { kind: 'text'; text: string }
  /** `start` is the offset of `${{` in the template, `exprStart` of the expression text. */
  | { kind: 'expr'; expr: Expression; start: number; exprStart: number; end: number }

/** Splits text with ${{ }} into literal text and parsed expressions. Errors are offsets in the template. */
export function parseTemplate(template: string): TemplatePart[] {
  const parts: TemplatePart[] = []
  let i = 0
  for (;;) {
    const open = template.indexOf('${{', i)
    if (open < 0) {
      if (i < template.length) parts.push({ kind: 'text', text: template.slice(i) })
      return parts
    }
    if (open > i) parts.push({ kind: 'text', text: template.slice(i, open) })
    const exprStart = open + 3
    const close = findClose(template, exprStart)
    if (close < 0) throw new ExpressionError(open, '"${{" without a closing "}}"')
    const body = template.slice(exprStart, close)
    let expr: Expression
    try {
      expr = parseExpression(body)
    } catch (e) {
      throw e instanceof ExpressionError ? e.shifted(exprStart) : e
    }
    parts.push({ kind: 'expr', expr, start: open, exprStart, end: close + 2 })
    i = close + 2
  }
}

/** The offset of the `}}` closing an expression, skipping quoted strings; -1 if none. */
function findClose(s: string, from: number): number {
  let quoted = false
  for (let i = from; i < s.length; i++) {
    if (s[i] === "'") quoted = !quoted
    else if (!quoted && s[i] === '}' && s[i + 1] === '}') return i
  }
  return -1
}

/** Whether text has any ${{ }}. */
export function hasExpression(text: string): boolean {
  return text.includes('${{')
}

/** Replaces each ${{ }} by its value as text. Errors carry offsets in the template. */
export function interpolate(template: string, ctx: ExpressionContext): string {
  if (!hasExpression(template)) return template
  return renderTemplate(parseTemplate(template), ctx)
}

export function renderTemplate(parts: TemplatePart[], ctx: ExpressionContext): string {
  let out = ''
  for (const p of parts) {
    if (p.kind === 'text') out += p.text
    else {
      try {
        out += toText(evaluate(p.expr, ctx), 0)
      } catch (e) {
        throw e instanceof ExpressionError ? e.shifted(p.exprStart) : e
      }
    }
    if (out.length > LIMITS.expressionResult) throw new ExpressionError(p.kind === 'expr' ? p.start : 0, `the result is longer than ${LIMITS.expressionResult} characters`)
  }
  return out
}

/**
 * The expression of an `if`: written bare (`github.ref == 'refs/heads/main'`) or as one
 * `${{ }}`. Offsets of errors are in `text`. Text mixing ${{ }} with more is refused: it
 * would be a non-empty string, always true.
 */
export function parseCondition(text: string): { expr: Expression; offset: number } {
  const trimmed = text.trim()
  const lead = text.indexOf(trimmed)
  if (trimmed.startsWith('${{')) {
    const parts = parseTemplate(trimmed)
    const only = parts.length === 1 ? parts[0] : undefined
    if (!only || only.kind !== 'expr') {
      throw new ExpressionError(lead, 'write the whole condition inside one ${{ }}, or without ${{ }}')
    }
    return { expr: only.expr, offset: lead + only.exprStart }
  }
  if (hasExpression(trimmed)) {
    throw new ExpressionError(lead + trimmed.indexOf('${{'), 'write the whole condition inside one ${{ }}, or without ${{ }}')
  }
  return { expr: parseExpression(text), offset: 0 }
}

/**
 * Evaluates an `if`. Without a status function it means `success() && (...)`, as on GitHub:
 * a job whose needs failed is skipped unless its condition says otherwise.
 */
export function evaluateCondition(text: string, ctx: ExpressionContext): boolean {
  const { expr, offset } = parseCondition(text)
  const status = ctx.status ?? { success: true, failure: false, cancelled: false }
  try {
    const result = truthy(evaluate(expr, { ...ctx, status }))
    return usesStatusFunction(expr) ? result : status.success && result
  } catch (e) {
    throw e instanceof ExpressionError ? e.shifted(offset) : e
  }
}
