// Encodes and validates messages. Every message read from NATS goes through `decode`, which
// names the first bad field; a bad message becomes a RegattaError, never a crash.
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

export function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

/** Checks a value against a schema; throws INVALID_MESSAGE naming the first bad field. */
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

export function validate<T extends TSchema>(schema: T, value: unknown, what = 'message'): Static<T> {
  const check = checkerOf(schema)
  if (check.Check(value)) return value as Static<T>
  const member = memberFor(schema, value)
  if (!member && (schema as { anyOf?: unknown }).anyOf && typeof value === 'object' && value !== null && 'type' in value) {
    throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: /type: unknown type ${JSON.stringify((value as { type: unknown }).type)}`)
  }
  const first = (member ? checkerOf(member) : check).Errors(value).First()
  const where = first?.path ? first.path : '(root)'
  throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: ${where}: ${first?.message ?? 'does not match its schema'}`)
}

/** Parses JSON bytes and validates them. */
export function decode<T extends TSchema>(schema: T, data: Uint8Array, what = 'message'): Static<T> {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(data))
  } catch (err) {
    throw new RegattaError('INVALID_MESSAGE', `invalid ${what}: not JSON (${(err as Error).message})`)
  }
  return validate(schema, value, what)
}
