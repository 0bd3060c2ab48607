// Reads one pipeline file: YAML with positions, the limits, the schema, then the checks of
// semantics.ts. Either a typed Pipeline or every error found, each with file:line:column.
import { LineCounter, isAlias, isCollection, isMap, isPair, isScalar, parseDocument, type Document, type Scalar } from 'yaml'
import { pipelineError, sortPipelineErrors, type PipelineError, type Position } from './errors.js'
import { LIMITS } from './limits.js'
import type { Pipeline } from './model.js'
import { PipelineFileSchema, type PipelineFile } from './schema.js'
import { checkAgainstSchema } from './schema-check.js'
import { buildPipeline, type Locator } from './semantics.js'

export type ParseResult =
  | { ok: true; pipeline: Pipeline }
  | { ok: false; errors: PipelineError[] }

const START: Position = { line: 1, column: 1 }

/**
 * Parses and checks one pipeline file. `file` is how errors name it (e.g. `.regatta/ci.yml`);
 * the pipeline's default name is the file's base name. Never throws on any input.
 */
export function parsePipeline(file: string, text: string): ParseResult {
  const fail = (errors: PipelineError[]): ParseResult => ({ ok: false, errors: sortPipelineErrors(errors) })
  const size = Buffer.byteLength(text, 'utf8')
  if (size > LIMITS.fileBytes) {
    return fail([pipelineError(file, START, '', `the file is ${size} bytes; a pipeline file may have at most ${LIMITS.fileBytes} (256 KiB)`)])
  }
  const lines = new LineCounter()
  const at = (offset: number): Position => {
    const p = lines.linePos(offset)
    return { line: p.line, column: p.col }
  }

  // the YAML parser's own recursion must not meet a deep stack: refuse deep [ { nesting and
  // long runs of `- - -` on a line (each a level) before it runs
  const deepFlow = flowNestingBeyond(text, LIMITS.flowDepth)
  const deepLine = deepFlow >= 0 ? -1 : compactNestingBeyond(text, LIMITS.flowDepth)
  if (deepFlow >= 0 || deepLine >= 0) {
    lineStarts(text, lines)
    const what = deepFlow >= 0 ? '[ and { are' : '"- " or "? " on one line are'
    return fail([pipelineError(file, at(Math.max(deepFlow, deepLine)), '', `${what} nested deeper than ${LIMITS.flowDepth} levels`)])
  }

  let doc: Document
  try {
    // uniqueKeys off: the parser's own check compares each key with every earlier one (40 000
    // keys in 256 KiB took seconds); duplicateKeys does it with a set
    doc = parseDocument(text, { lineCounter: lines, keepSourceTokens: true, prettyErrors: false, uniqueKeys: false, strict: true })
  } catch (e) {
    return fail([pipelineError(file, START, '', `not readable as YAML: ${e instanceof Error ? e.message : String(e)}`)])
  }
  const duplicates = duplicateKeys(doc)
  if (doc.errors.length > 0 || duplicates.length > 0) {
    return fail([
      ...doc.errors.map((e) => pipelineError(file, at(e.pos[0]), '', yamlMessage(e.code, e.message))),
      ...duplicates.map((offset) => pipelineError(file, at(offset), '', 'YAML: Map keys must be unique')),
    ])
  }
  if (doc.contents === null || doc.contents === undefined) {
    return fail([pipelineError(file, START, '', 'the file is empty; a pipeline has at least "on" and "jobs"')])
  }

  const deep = nodeDeeperThan(doc, LIMITS.depth)
  if (deep !== undefined) return fail([pipelineError(file, at(deep), '', `values are nested deeper than ${LIMITS.depth} levels`)])

  let data: unknown
  try {
    data = doc.toJS({ maxAliasCount: LIMITS.aliases })
  } catch (e) {
    const alias = firstAlias(doc)
    const why = e instanceof Error && /alias/i.test(e.message)
      ? `aliases (*name) expand to too much (at most ${LIMITS.aliases} expansions): ${e.message}`
      : `not readable as YAML: ${e instanceof Error ? e.message : String(e)}`
    return fail([pipelineError(file, alias === undefined ? START : at(alias), '', why)])
  }

  const { issues, positions, scalars } = checkAgainstSchema(doc, lines, PipelineFileSchema)
  const schemaErrors = issues.map((i) => pipelineError(file, i.at, i.path, i.message))
  // the checks that follow need well-formed values: they run on the parts the schema passed
  const valid = issues.length === 0 ? { data: data as PipelineFile, dropped: {} } : wellFormedParts(data, issues.map((i) => i.path))
  if (!valid) return fail(schemaErrors)

  const locator = makeLocator(text, lines, positions, scalars)
  const order = Object.keys((data as { jobs: object }).jobs)
  const built = buildPipeline(file, valid.data, locator, valid.dropped, order)
  const errors = [...schemaErrors, ...built.errors]
  return errors.length > 0 ? fail(errors) : { ok: true, pipeline: built.pipeline! }
}

/**
 * The file without the top-level parts (on, env, name, one job) that failed the schema; for
 * each job left out, its `needs` when they are well-formed (so they are still checked).
 * Undefined when what failed is the file's frame itself.
 */
function wellFormedParts(data: unknown, paths: string[]): { data: PipelineFile; dropped: Record<string, string[]> } | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined
  const root = { ...(data as Record<string, unknown>) }
  const jobs = root.jobs
  if (typeof jobs !== 'object' || jobs === null || Array.isArray(jobs)) return undefined
  const keptJobs = { ...(jobs as Record<string, unknown>) }
  const bad = new Set<string>()
  for (const path of paths) {
    const m = /^jobs\.([A-Za-z0-9_-]+)(?:$|[.[])/.exec(path)
    if (m && Object.hasOwn(keptJobs, m[1])) bad.add(m[1])
    else if (/^(on|env|name)(?:$|[.[])/.test(path)) delete root[path.split(/[.[]/)[0]]
    else if (!m) return undefined
  }
  const dropped: Record<string, string[]> = {}
  for (const name of bad) {
    const needs = (keptJobs[name] as { needs?: unknown } | null)?.needs
    const needsBad = paths.some((p) => p === `jobs.${name}.needs` || p.startsWith(`jobs.${name}.needs[`))
    dropped[name] = needsBad ? [] : typeof needs === 'string' ? [needs] : Array.isArray(needs) ? (needs as string[]) : []
    delete keptJobs[name]
  }
  root.jobs = keptJobs
  if (root.on === undefined) root.on = {}
  return { data: root as PipelineFile, dropped }
}

function yamlMessage(code: string, message: string): string {
  const first = message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
  if (code === 'MULTIPLE_DOCS') return 'one pipeline a file: this file has more than one YAML document (---)'
  return `YAML: ${first}`
}

/** The offset of the first [ or { nested deeper than `max` (quotes and comments skipped), or -1. */
function flowNestingBeyond(text: string, max: number): number {
  let depth = 0
  let quote: string | undefined
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quote) {
      if (c === quote) quote = undefined
      else if (c === '\n' && depth === 0) quote = undefined
      continue
    }
    if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      const nl = text.indexOf('\n', i)
      if (nl < 0) break
      i = nl
    } else if ((c === '"' || c === "'") && depth > 0) quote = c
    else if (c === '[' || c === '{') {
      if (++depth > max) return i
    } else if ((c === ']' || c === '}') && depth > 0) depth--
  }
  return -1
}

/** The offset of the marker beyond `max` in a line starting with `- - ? - ...`, or -1. */
function compactNestingBeyond(text: string, max: number): number {
  const marker = /^[ \t]*((?:[-?:][ \t]+){1,})/gm
  for (const m of text.matchAll(marker)) {
    const markers = m[1].match(/[-?:]/g)!
    if (markers.length > max) {
      let seen = 0
      for (let i = m.index! + m[0].length - m[1].length; i < text.length; i++) {
        if ('-?:'.includes(text[i]) && ++seen > max) return i
      }
    }
  }
  return -1
}

/** Fills a LineCounter for a text the YAML parser did not read. */
function lineStarts(text: string, lines: LineCounter): void {
  lines.addNewLine(0)
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lines.addNewLine(i + 1)
}

/** The offset of a collection nested deeper than `max` (aliases not followed), or undefined. */
function nodeDeeperThan(doc: Document, max: number): number | undefined {
  const stack: Array<{ node: unknown; depth: number }> = [{ node: doc.contents, depth: 1 }]
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!
    if (!isCollection(node)) continue
    if (depth > max) return node.range?.[0] ?? 0
    for (const item of node.items) {
      if (isPair(item)) {
        stack.push({ node: item.key, depth: depth + 1 }, { node: item.value, depth: depth + 1 })
      } else stack.push({ node: item, depth: depth + 1 })
    }
  }
  return undefined
}

/** The offsets of keys repeated in their map (scalar keys equal in value, as the YAML parser compares them). */
function duplicateKeys(doc: Document): number[] {
  const found: number[] = []
  const stack: unknown[] = [doc.contents]
  while (stack.length > 0) {
    const node = stack.pop()
    if (!isCollection(node)) continue
    const keys = isMap(node) ? new Set<unknown>() : undefined
    for (const item of node.items) {
      if (!isPair(item)) {
        stack.push(item)
        continue
      }
      if (keys && isScalar(item.key)) {
        if (keys.has(item.key.value)) found.push(item.key.range?.[0] ?? 0)
        else keys.add(item.key.value)
      }
      stack.push(item.key, item.value)
    }
  }
  return found
}

function firstAlias(doc: Document): number | undefined {
  let found: number | undefined
  const stack: unknown[] = [doc.contents]
  while (stack.length > 0 && found === undefined) {
    const node = stack.pop()
    if (isAlias(node)) found = node.range?.[0]
    else if (isCollection(node)) for (const item of node.items) stack.push(...(isPair(item) ? [item.key, item.value] : [item]))
  }
  return found
}

function makeLocator(text: string, lines: LineCounter, positions: Map<string, Position>, scalars: Map<string, Scalar>): Locator {
  const at = (path: string): Position => {
    // the value's position, or its nearest recorded parent's
    for (let p = path; ; p = p.replace(/(\.[^.[]+|\[[^\]]+\])$/, '')) {
      const hit = positions.get(p)
      if (hit) return hit
      if (p === '' || !/(\.|\[)/.test(p)) return positions.get(p) ?? START
    }
  }
  return {
    at,
    keyAt: (path) => positions.get(`${path}#key`) ?? at(path),
    inValue: (path, index) => {
      const node = scalars.get(path)
      if (!node?.range || typeof node.value !== 'string') return at(path)
      return positionInScalar(text, lines, node, index)
    },
    source: (path) => scalars.get(path)?.source,
    all: () => Object.fromEntries(positions),
  }
}

/** The position of the character at `index` of a string scalar's value, in the file. */
function positionInScalar(text: string, lines: LineCounter, node: Scalar, index: number): Position {
  const [start, end] = node.range!
  const src = text.slice(start, end)
  const value = node.value as string
  const pos = (offset: number): Position => {
    const p = lines.linePos(offset)
    return { line: p.line, column: p.col }
  }
  if (node.type === 'PLAIN' && src === value) return pos(start + index)
  if ((node.type === 'QUOTE_SINGLE' || node.type === 'QUOTE_DOUBLE') && src.slice(1, -1) === value) return pos(start + 1 + index)
  if (node.type === 'BLOCK_LITERAL') {
    // value line k is the source line k + 1 (after the `|` header), indented by the block's indentation
    const srcLines = src.split('\n')
    const k = value.slice(0, index).split('\n').length - 1
    const col = index - (value.lastIndexOf('\n', index - 1) + 1)
    const indent = /^ */.exec(srcLines.slice(1).find((l) => l.trim() !== '') ?? '')![0].length
    if (k + 1 < srcLines.length) {
      let offset = start
      for (let i = 0; i <= k; i++) offset += srcLines[i].length + 1
      return pos(offset + indent + col)
    }
  }
  // folded or multi-line text: find the characters from the index on in the source
  const probe = value.slice(index, index + 24).split('\n')[0]
  const found = probe ? src.indexOf(probe) : -1
  return pos(found >= 0 ? start + found : start)
}
