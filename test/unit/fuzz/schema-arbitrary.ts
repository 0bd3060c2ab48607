// fast-check arbitraries made from the JSON Schema of a TypeBox schema: valid values of any
// message of shared/protocol, and the mutations that break one field of them. Covers the
// keywords the protocol uses (object, record, array, string with length and pattern, integer,
// number with bounds, boolean, null, const, anyOf); anything else throws, so a new kind of
// schema is noticed here rather than fuzzed wrongly.
import fc from 'fast-check'
import type { TSchema } from '@sinclair/typebox'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

interface Schema {
  anyOf?: Schema[]
  const?: unknown
  type?: string
  properties?: Record<string, Schema>
  required?: string[]
  patternProperties?: Record<string, Schema>
  items?: Schema
  minItems?: number
  maxItems?: number
  minLength?: number
  maxLength?: number
  pattern?: string
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
}

const cache = new WeakMap<object, fc.Arbitrary<Json>>()

/** Valid values of a schema, small (arrays of at most 3, short strings). */
export function arbitraryOf(schema: TSchema): fc.Arbitrary<Json> {
  const s = schema as unknown as Schema
  let arb = cache.get(s)
  if (!arb) {
    arb = build(s)
    cache.set(s, arb)
  }
  return arb
}

function build(s: Schema): fc.Arbitrary<Json> {
  if (s.anyOf) return fc.oneof(...s.anyOf.map((m) => arbitraryOf(m as unknown as TSchema)))
  if (s.const !== undefined) return fc.constant(s.const as Json)
  switch (s.type) {
    case 'null': return fc.constant(null)
    case 'boolean': return fc.boolean()
    case 'integer': {
      const min = Math.max(s.minimum ?? -1e9, s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : -1e9)
      const max = Math.min(s.maximum ?? 1e9, s.exclusiveMaximum !== undefined ? s.exclusiveMaximum - 1 : 1e9)
      return fc.integer({ min, max })
    }
    case 'number':
      return fc.double({
        min: s.exclusiveMinimum ?? s.minimum ?? -1e9,
        max: s.exclusiveMaximum ?? s.maximum ?? 1e9,
        minExcluded: s.exclusiveMinimum !== undefined,
        maxExcluded: s.exclusiveMaximum !== undefined,
        noNaN: true,
        noDefaultInfinity: true,
      }).map((n) => (Object.is(n, -0) ? 0 : n))
    case 'string': {
      const min = s.minLength ?? 0
      const max = s.maxLength ?? Infinity
      if (!s.pattern) return fc.string({ minLength: min, maxLength: Math.max(min, Math.min(max, 12)) })
      // fast-check's stringMatching hangs on some negated classes ([^/\s]): generate from a
      // subset of them, and keep what the pattern itself accepts
      const pattern = new RegExp(s.pattern)
      const generator = new RegExp(s.pattern.replace(/\[\^[^\]]*\]/g, '[a-z0-9]'))
      return fc.stringMatching(generator, { size: 'xsmall' }).filter((v) => v.length >= min && v.length <= max && pattern.test(v))
    }
    case 'array': {
      const min = s.minItems ?? 0
      return fc.array(arbitraryOf(s.items as unknown as TSchema), { minLength: min, maxLength: Math.max(min, Math.min(s.maxItems ?? 3, 3)) })
    }
    case 'object': {
      if (s.patternProperties) {
        const [pattern, value] = Object.entries(s.patternProperties)[0]
        const key = fc.string({ minLength: 1, maxLength: 8 }).filter((k) => new RegExp(pattern).test(k) && k !== '__proto__')
        return fc.dictionary(key, arbitraryOf(value as unknown as TSchema), { maxKeys: 3 }) as fc.Arbitrary<Json>
      }
      const props = Object.fromEntries(Object.entries(s.properties ?? {}).map(([k, v]) => [k, arbitraryOf(v as unknown as TSchema)]))
      return fc.record(props, { requiredKeys: s.required ?? [] }) as fc.Arbitrary<Json>
    }
    default:
      throw new Error(`schema-arbitrary: no arbitrary for ${JSON.stringify(s).slice(0, 200)}`)
  }
}

/** Every place inside a JSON value, as path segments (the root is []). */
export function placesOf(value: Json, at: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(at)
  if (Array.isArray(value)) value.forEach((v, i) => placesOf(v, [...at, i], out))
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) placesOf(v, [...at, k], out)
  return out
}

/** The RFC 6901 pointer of a place, as TypeBox writes it in its errors: `/updates/0/state`. */
export function pointer(place: Array<string | number>): string {
  return place.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('')
}

export type Mutation = 'replace' | 'delete' | 'add'

/**
 * The value with one place changed: replaced by `by`, deleted (a key, or an array element), or
 * given a new key/element `by`. Returns the changed value and the pointer of the changed place.
 */
export function mutate(value: Json, pick: number, kind: Mutation, by: Json): { value: Json; at: string } {
  // not structuredClone: it keeps shared objects shared (a push's head_commit is one of its commits)
  const copy = JSON.parse(JSON.stringify(value)) as Json
  const places = placesOf(copy)
  const place = places[pick % places.length]
  if (place.length === 0) {
    if (kind === 'add' && copy !== null && typeof copy === 'object' && !Array.isArray(copy)) {
      copy.zz = by
      return { value: copy, at: '/zz' }
    }
    return { value: by, at: '' }
  }
  const parent = place.slice(0, -1).reduce<Json>((node, seg) => (node as Record<string | number, Json>)[seg], copy) as Record<string | number, Json> | Json[]
  const last = place[place.length - 1]
  const target = (parent as Record<string | number, Json>)[last]
  if (kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1)
    else delete (parent as Record<string, Json>)[last]
  } else if (kind === 'add' && target !== null && typeof target === 'object') {
    if (Array.isArray(target)) {
      target.push(by)
      return { value: copy, at: pointer([...place, target.length - 1]) }
    }
    target.zz = by
    return { value: copy, at: pointer([...place, 'zz']) }
  } else (parent as Record<string | number, Json>)[last] = by
  return { value: copy, at: pointer(place) }
}
