// Checks a YAML document against the pipeline JSON Schema (schema.ts) node by node, so that
// each error has the line and column of the node at fault and says what was expected there.
// It interprets the subset of JSON Schema that schema.ts uses (a test checks it agrees with
// TypeBox's own checker), and records where every value is for the checks that follow.
import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode, type Scalar } from 'yaml'
import { didYouMean } from './did-you-mean.js'
import { renderPath, type Position } from './errors.js'
import { PATTERN_HINTS } from './schema.js'

/** A JSON Schema object, as far as this checker reads it. */
interface Schema {
  type?: 'string' | 'number' | 'integer' | 'boolean' | 'null' | 'object' | 'array'
  properties?: Record<string, Schema>
  required?: string[]
  additionalProperties?: boolean | Schema
  patternProperties?: Record<string, Schema>
  minProperties?: number
  maxProperties?: number
  items?: Schema
  minItems?: number
  maxItems?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  anyOf?: Schema[]
  const?: string | number | boolean
}

/** Keywords the checker implements, or may ignore (annotations). */
const UNDERSTOOD = new Set([
  'type', 'properties', 'required', 'additionalProperties', 'patternProperties', 'minProperties', 'maxProperties',
  'items', 'minItems', 'maxItems', 'minLength', 'maxLength', 'pattern', 'minimum', 'maximum', 'exclusiveMinimum',
  'anyOf', 'const', 'description', 'title', '$schema', '$id', 'default', 'examples',
])

/** Keywords of `schema` (recursively) this checker does not implement: must be empty. */
export function unsupportedKeywords(schema: unknown, at = '#'): string[] {
  if (typeof schema !== 'object' || schema === null) return []
  const out: string[] = []
  for (const [k, v] of Object.entries(schema)) {
    if (!UNDERSTOOD.has(k)) out.push(`${at}/${k}`)
    if (k === 'properties' || k === 'patternProperties') {
      for (const [p, s] of Object.entries(v as object)) out.push(...unsupportedKeywords(s, `${at}/${k}/${p}`))
    } else if (k === 'items' || (k === 'additionalProperties' && typeof v === 'object')) {
      out.push(...unsupportedKeywords(v, `${at}/${k}`))
    } else if (k === 'anyOf') {
      (v as unknown[]).forEach((s, i) => out.push(...unsupportedKeywords(s, `${at}/anyOf/${i}`)))
    }
  }
  return out
}

export interface SchemaIssue {
  path: string
  at: Position
  message: string
}

/** Where values are, by rendered path; keys of maps under `path + '#key'`. */
export type PositionIndex = Map<string, Position>

/** The scalar nodes, by rendered path: for positions inside a string and numbers' source text. */
export type ScalarIndex = Map<string, Scalar>

type Kind = 'string' | 'number' | 'boolean' | 'null' | 'object' | 'array' | 'other'

interface Ctx {
  doc: Document
  lines: LineCounter
  issues: SchemaIssue[]
  positions: PositionIndex
  scalars: ScalarIndex
  /** Recorded positions are only those of the branch that matched, so anyOf branches check silently first. */
  record: boolean
}

/** Checks the document's root against `schema`; returns issues and the position of every value. */
export function checkAgainstSchema(doc: Document, lines: LineCounter, schema: object): { issues: SchemaIssue[]; positions: PositionIndex; scalars: ScalarIndex } {
  const ctx: Ctx = { doc, lines, issues: [], positions: new Map(), scalars: new Map(), record: true }
  const root = doc.contents as YamlNode | null
  check(ctx, schema as Schema, root, [], { line: 1, column: 1 })
  return { issues: ctx.issues, positions: ctx.positions, scalars: ctx.scalars }
}

const patterns = new Map<string, RegExp>()
function regex(pattern: string): RegExp {
  let r = patterns.get(pattern)
  if (!r) patterns.set(pattern, (r = new RegExp(pattern)))
  return r
}

function pos(ctx: Ctx, offset: number): Position {
  const p = ctx.lines.linePos(offset)
  return { line: p.line, column: p.col }
}

function resolve(ctx: Ctx, node: unknown): unknown {
  // aliases can chain (an alias of an anchored alias); the file's alias count is bounded before this runs
  for (let i = 0; i < 100 && isAlias(node); i++) node = (node as { resolve(d: Document): unknown }).resolve(ctx.doc)
  return node
}

function kindOf(node: unknown): Kind {
  if (node === null || node === undefined) return 'null'
  if (isMap(node)) return 'object'
  if (isSeq(node)) return 'array'
  if (isScalar(node)) {
    const v = node.value
    if (v === null || v === undefined) return 'null'
    if (typeof v === 'string') return 'string'
    if (typeof v === 'number') return Number.isFinite(v) ? 'number' : 'other'
    if (typeof v === 'boolean') return 'boolean'
  }
  return 'other'
}

const KIND_WORDS: Record<string, string> = {
  string: 'text',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'true or false',
  null: 'nothing',
  object: 'a map (key: value)',
  array: 'a list',
  other: 'an unsupported value',
}

function describeNode(node: unknown, kind: Kind): string {
  if (kind === 'null') return 'an empty value'
  if (kind === 'string' || kind === 'number' || kind === 'boolean') {
    const v = (node as { value: unknown }).value
    const shown = JSON.stringify(v)
    return `${KIND_WORDS[kind]} (${shown.length > 40 ? `${shown.slice(0, 37)}..."` : shown})`
  }
  return KIND_WORDS[kind]
}

function describeSchema(s: Schema): string {
  if (s.const !== undefined) return JSON.stringify(s.const)
  if (s.anyOf) return [...new Set(s.anyOf.map(describeSchema))].join(' or ')
  return KIND_WORDS[s.type ?? 'other'] ?? 'a value'
}

function typeMatches(s: Schema, kind: Kind, node: unknown): boolean {
  if (s.type === undefined) return true
  if (s.type === 'integer') return kind === 'number' && Number.isInteger((node as { value: number }).value)
  return s.type === kind
}

function issue(ctx: Ctx, path: Array<string | number>, at: Position, message: string): void {
  ctx.issues.push({ path: renderPath(path), at, message })
}

function check(ctx: Ctx, s: Schema, raw: unknown, path: Array<string | number>, anchor: Position): void {
  const node = resolve(ctx, raw)
  const kind = kindOf(node)
  // an empty value (`key:`) has no text of its own: point at its key
  const at = kind === 'null' || !(raw as YamlNode | null)?.range ? anchor : pos(ctx, (raw as YamlNode).range![0])
  if (ctx.record) {
    ctx.positions.set(renderPath(path), at)
    if (isScalar(node)) ctx.scalars.set(renderPath(path), node)
  }

  if (s.anyOf) {
    checkAnyOf(ctx, s, raw, node, kind, path, at, anchor)
    return
  }
  if (!typeMatches(s, kind, node)) {
    const expected = s.type === 'integer' && kind === 'number' ? 'a whole number' : describeSchema(s)
    issue(ctx, path, at, `expected ${expected}, got ${describeNode(node, kind)}`)
    return
  }
  if (s.const !== undefined && (node as { value: unknown }).value !== s.const) {
    issue(ctx, path, at, `expected ${JSON.stringify(s.const)}, got ${describeNode(node, kind)}`)
    return
  }
  switch (kind) {
    case 'string':
      checkString(ctx, s, (node as { value: string }).value, path, at)
      return
    case 'number':
      checkNumber(ctx, s, (node as { value: number }).value, path, at)
      return
    case 'array':
      checkArray(ctx, s, node as { items: unknown[] }, path, at)
      return
    case 'object':
      checkObject(ctx, s, node as { items: unknown[] }, path, at, anchor)
      return
    default:
  }
}

function checkAnyOf(ctx: Ctx, s: Schema, raw: unknown, node: unknown, kind: Kind, path: Array<string | number>, at: Position, anchor: Position): void {
  const branches = s.anyOf!
  const trial = (b: Schema): SchemaIssue[] => {
    const sub: Ctx = { ...ctx, issues: [], record: false }
    check(sub, b, raw, path, anchor)
    return sub.issues
  }
  const results = branches.map((b) => ({ b, issues: trial(b) }))
  const passing = results.find((r) => r.issues.length === 0)
  if (passing) {
    check(ctx, passing.b, raw, path, anchor)
    return
  }
  // the branches that take this kind of value say best what is wrong with it
  const sameKind = results.filter((r) => takesKind(r.b, kind))
  if (sameKind.length === 1) {
    ctx.issues.push(...sameKind[0].issues)
    return
  }
  const constsOf = (b: Schema): string[] => (b.anyOf ? b.anyOf.flatMap(constsOf) : b.const !== undefined ? [String(b.const)] : [])
  const consts = constsOf(s)
  const hint = kind === 'string' && consts.length > 0 ? didYouMean((node as { value: string }).value, consts) : ''
  issue(ctx, path, at, `expected ${describeSchema(s)}, got ${describeNode(node, kind)}${hint}`)
}

/** Whether a schema takes values of this kind at all (an enumeration of texts does not count). */
function takesKind(s: Schema, kind: Kind): boolean {
  if (s.anyOf) return s.anyOf.some((b) => takesKind(b, kind))
  if (s.const !== undefined) return false
  return s.type === undefined || s.type === kind || (s.type === 'integer' && kind === 'number')
}

function checkString(ctx: Ctx, s: Schema, v: string, path: Array<string | number>, at: Position): void {
  if (s.minLength !== undefined && v.length < s.minLength) issue(ctx, path, at, 'must not be empty')
  else if (s.maxLength !== undefined && v.length > s.maxLength) issue(ctx, path, at, `is longer than ${s.maxLength} characters`)
  else if (s.pattern !== undefined && !regex(s.pattern).test(v)) {
    issue(ctx, path, at, `"${v}" is not valid: ${PATTERN_HINTS[s.pattern] ?? `it must match ${s.pattern}`}`)
  }
}

function checkNumber(ctx: Ctx, s: Schema, v: number, path: Array<string | number>, at: Position): void {
  const low = s.minimum ?? s.exclusiveMinimum
  const lowOk = s.exclusiveMinimum !== undefined ? v > s.exclusiveMinimum : s.minimum === undefined || v >= s.minimum
  const highOk = s.maximum === undefined || v <= s.maximum
  if (!lowOk || !highOk) {
    const range = s.maximum === undefined
      ? `${s.exclusiveMinimum !== undefined ? 'more than' : 'at least'} ${low}`
      : low === undefined ? `at most ${s.maximum}`
        : s.exclusiveMinimum !== undefined ? `more than ${low} and at most ${s.maximum}` : `between ${low} and ${s.maximum}`
    issue(ctx, path, at, `${v} is out of range: must be ${range}`)
  }
}

function checkArray(ctx: Ctx, s: Schema, node: { items: unknown[] }, path: Array<string | number>, at: Position): void {
  const n = node.items.length
  if (s.minItems !== undefined && n < s.minItems) {
    issue(ctx, path, at, s.minItems === 1 ? 'must not be an empty list' : `must have at least ${s.minItems} items`)
  }
  if (s.maxItems !== undefined && n > s.maxItems) issue(ctx, path, at, `has ${n} items; at most ${s.maxItems} are allowed`)
  if (s.items) {
    node.items.forEach((item, i) => {
      const range = (item as YamlNode | null)?.range
      check(ctx, s.items!, item, [...path, i], range ? pos(ctx, range[0]) : at)
    })
  }
}

function checkObject(ctx: Ctx, s: Schema, node: { items: unknown[] }, path: Array<string | number>, at: Position, anchor: Position): void {
  const seen = new Set<string>()
  const known = Object.keys(s.properties ?? {})
  for (const pair of node.items) {
    if (!isPair(pair)) continue
    const keyNode = resolve(ctx, pair.key)
    const keyAt = (pair.key as YamlNode | null)?.range ? pos(ctx, (pair.key as YamlNode).range![0]) : at
    if (!isScalar(keyNode) || (keyNode.value !== null && typeof keyNode.value === 'object')) {
      issue(ctx, path, keyAt, 'keys must be plain names, not lists or maps')
      continue
    }
    const key = keyNode.value === null || keyNode.value === undefined ? '' : String(keyNode.value)
    seen.add(key)
    if (ctx.record) ctx.positions.set(`${renderPath([...path, key])}#key`, keyAt)
    const sub = s.properties?.[key]
    if (sub) {
      check(ctx, sub, pair.value, [...path, key], keyAt)
      continue
    }
    const pattern = Object.keys(s.patternProperties ?? {})[0]
    if (pattern !== undefined && regex(pattern).test(key)) {
      check(ctx, s.patternProperties![pattern], pair.value, [...path, key], keyAt)
      continue
    }
    if (typeof s.additionalProperties === 'object') {
      check(ctx, s.additionalProperties, pair.value, [...path, key], keyAt)
      continue
    }
    if (s.additionalProperties === false) {
      if (key === '<<') issue(ctx, path, keyAt, 'YAML merge keys (<<) are not supported; repeat the values or use an alias (*name) for a whole value')
      else if (pattern !== undefined && known.length === 0) {
        issue(ctx, path, keyAt, `"${key}" is not a valid name: ${PATTERN_HINTS[pattern] ?? `it must match ${pattern}`}`)
      } else issue(ctx, path, keyAt, `unknown key "${key}"${didYouMean(key, known)}${known.length && !didYouMean(key, known) ? ` (known: ${known.join(', ')})` : ''}`)
    }
  }
  // what the map lacks is best shown at its key (`build:`), where the reader looks
  const whole = path.length > 0 ? anchor : at
  for (const r of s.required ?? []) {
    if (!seen.has(r)) issue(ctx, path, whole, `missing "${r}"`)
  }
  const n = seen.size
  if (s.minProperties !== undefined && n < s.minProperties) issue(ctx, path, whole, n === 0 ? 'must not be empty' : `must have at least ${s.minProperties} entries`)
  if (s.maxProperties !== undefined && n > s.maxProperties) issue(ctx, path, whole, `has ${n} entries; at most ${s.maxProperties} are allowed`)
}
