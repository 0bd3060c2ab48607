// Encodes and validates messages. Every message read from NATS goes through `decode`, which
// names the first bad field; a bad message becomes a RegattaError, never a crash.
//
// Limits, checked before JSON.parse (README, "Limits"): MAX_MESSAGE_BYTES, the NATS server's
// default max_payload, so a server configured larger still hands decode nothing bigger; and
// MAX_MESSAGE_DEPTH levels of [ and {, where the deepest message of the protocol has about 10:
// nothing from the wire can make JSON.parse or a reader of the value work through 100 000 levels.
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { Static, TSchema } from '@sinclair/typebox'
import { RegattaError } from '../errors/index.js'

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>()

function checkerOf<T extends TSchema>(schema: T): TypeCheck<T> {
  let c = compiled.get(schema)
  if (!c) {
    c = TypeCompiler.Compile(schema)
    compiled.set(schema, c)
  }
  return c as TypeCheck<T>
}

/** Bytes of the largest message `decode` reads (1 MiB, NATS's default max_payload). */
export const MAX_MESSAGE_BYTES = 1024 * 1024
/** Deepest nesting of arrays and objects `decode` reads. */
export const MAX_MESSAGE_DEPTH = 64

/**
 * The offset of the first [ or { nested deeper than `max` levels in JSON text (brackets inside
 * strings skipped), or -1. Linear, no recursion: safe on any input, valid JSON or not.
 */
export function jsonNestingBeyond(text: string, max = MAX_MESSAGE_DEPTH): number {
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // a string: skip to its closing quote, stepping over escapes
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i)
        if (d === 0x5c) i++
        else if (d === 0x22) break
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return -1
}

export function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

/**
 * For a union told apart by its `type` field (calls, events, commands), the member the value
 * claims to be, so that an error names the bad field rather than "Expected union value".
 */
function memberFor(schema: TSchema, value: unknown): TSchema | undefined {
  const members = (schema as { anyOf?: TSchema[] }).anyOf
  if (!members || typeof value !== 'object' || value === null || !('type' in value)) return undefined
  const type = (value as { type: unknown }).type
  return members.find((m) => (m as { properties?: { type?: { const?: unknown } } }).properties?.type?.const === type)
}

/**
 * Text from a message, shown in an error: one line (control characters escaped) and at most
 * `max` characters, whatever a sender put in a key or a type.
 */
function shown(text: string, max = 200): string {
  const line = text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  return line.length <= max ? line : `${line.slice(0, max)}…`
}

/** Checks a value against a schema; throws INVALID_MESSAGE naming the first bad field. */
export function validate<T extends TSchema>(schema: T, value: unknown, what = 'message'): Static<T> {
  const check = checkerOf(schema)
  if (check.Check(value)) return value as Static<T>
  const member = memberFor(schema, value)
  if (!member && (schema as { anyOf?: unknown }).anyOf && typeof value === 'object' && value !== null && 'type' in value) {
    throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: /type: unknown type ${shown(JSON.stringify((value as { type: unknown }).type) ?? 'undefined', 100)}`)
  }
  const first = (member ? checkerOf(member) : check).Errors(value).First()
  const where = first?.path ? shown(first.path) : '(root)'
  throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: ${where}: ${first?.message ?? 'does not match its schema'}`)
}

/** Parses JSON bytes and validates them; refuses more than MAX_MESSAGE_BYTES or MAX_MESSAGE_DEPTH. */
export function decode<T extends TSchema>(schema: T, data: Uint8Array, what = 'message'): Static<T> {
  if (data.byteLength > MAX_MESSAGE_BYTES) {
    throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: ${data.byteLength} bytes; a message may have at most ${MAX_MESSAGE_BYTES} (1 MiB)`)
  }
  const text = decoder.decode(data)
  const deep = jsonNestingBeyond(text)
  if (deep >= 0) {
    throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: nested deeper than ${MAX_MESSAGE_DEPTH} levels of [ and { (at character ${deep + 1})`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: not JSON (${shown((err as Error).message)})`)
  }
  return validate(schema, value, what)
}
