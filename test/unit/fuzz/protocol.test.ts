// decode (shared/protocol/codec.ts), through which every message read from NATS goes, on
// generated input, for every schema of shared/protocol: valid messages made from the schema
// come back as they were; a valid message with one field broken comes back valid or is refused
// with INVALID_MESSAGE naming that field (or a parent of it, or a field inside it), on one short
// line; any JSON, any bytes, nesting of 100 000 levels and oversized messages are refused with a
// clear error, quickly (CPU-time guard, see fuzz.ts). Then the same through a real nats-server: a
// service built with serve() answers each with { error } and keeps serving.
import t from 'tap'
import fc from 'fast-check'
import { Value } from '@sinclair/typebox/value'
import { Type, type TSchema } from '@sinclair/typebox'
import { connect } from 'nats'
import { RegattaError } from '../../../shared/errors/index.js'
import * as protocol from '../../../shared/protocol/index.js'
import { MAX_MESSAGE_BYTES, MAX_MESSAGE_DEPTH, TaskStatus, decode, encode, jsonNestingBeyond } from '../../../shared/protocol/index.js'
import { request, serve } from '../../../shared/nats/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { startNatsServer } from '../../helpers/nats-server.js'
import { SEED, fuzz, withinGuard } from './fuzz.js'
import { arbitraryOf, mutate, type Mutation } from './schema-arbitrary.js'

t.comment(`fuzz seed ${SEED} (REGATTA_FUZZ_SEED to change it)`)

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** Every schema shared/protocol exports: each message, and each part of one. */
const SCHEMAS: Array<[string, TSchema]> = (Object.entries(protocol) as Array<[string, unknown]>)
  .filter((e): e is [string, TSchema] => typeof e[1] === 'object' && e[1] !== null && ('type' in e[1] || 'anyOf' in e[1]))
  .sort(([a], [b]) => a.localeCompare(b))

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

type Decoded = { value: unknown } | { error: RegattaError; wheres: string[] }

/**
 * The fields `invalid WHAT: WHERE: why` may name: a JSON pointer or (root). A key may hold ": "
 * itself, so each ": " after WHAT could end WHERE; none when it names no field.
 */
function wheresOf(message: string, what: string): string[] {
  const rest = message.startsWith(`invalid ${what}: `) ? message.slice(`invalid ${what}: `.length) : ''
  const out: string[] = []
  for (let i = rest.indexOf(': '); i >= 0; i = rest.indexOf(': ', i + 1)) {
    const where = rest.slice(0, i)
    if (where === '(root)' || where.startsWith('/')) out.push(where === '(root)' ? '' : where)
  }
  return out
}

function decoded(schema: TSchema, data: Uint8Array, what: string): Decoded {
  return withinGuard(what, () => {
    try {
      return { value: decode(schema, data, what) }
    } catch (e) {
      if (!(e instanceof RegattaError) || e.code !== 'INVALID_MESSAGE') throw new Error(`${what}: threw ${String(e)}`)
      if (e.message.includes('\n') || e.message.length > 600) throw new Error(`${what}: not one short line: ${JSON.stringify(e.message.slice(0, 300))}`)
      return { error: e, wheres: wheresOf(e.message, what) }
    }
  })
}

/** A refusal must be clear; an acceptance must satisfy the schema (checked by TypeBox's other checker). */
function sound(schema: TSchema, name: string, r: Decoded, allowUnplaced = false): void {
  if ('value' in r) {
    if (!Value.Check(schema, r.value)) throw new Error(`${name}: decode returned a value failing the schema`)
  } else if (r.wheres.length === 0 && !(allowUnplaced && /^invalid [^\n]+: (not JSON|\d+ bytes|nested deeper)/.test(r.error.message))) {
    throw new Error(`${name}: unclear refusal ${JSON.stringify(r.error.message)}`)
  }
}

const related = (a: string, b: string): boolean => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`) || a === '' || b === ''

t.test(`Checks (property) that valid messages of each of the ${SCHEMAS.length} protocol schemas decode to themselves`, async (t) => {
  for (const [name, schema] of SCHEMAS) {
    fc.assert(fc.property(arbitraryOf(schema), (value) => {
      const r = decoded(schema, encode(value), name)
      if (!('value' in r)) throw new Error(`${name}: a valid message refused: ${r.error.message}`)
      if (JSON.stringify(r.value) !== JSON.stringify(value)) throw new Error(`${name}: changed by decode`)
    }), fuzz(25))
  }
  t.pass(SCHEMAS.map(([n]) => n).join(' '))
})

const BAD: Json[] = ['', 'x'.repeat(300), -1, 1.5, 2 ** 53, null, true, [], {}, [[[]]], { type: 'NOPE' }, 'RUNNING', '../etc', '\u0000\n']
const replacement = fc.oneof(fc.constantFrom(...BAD), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>)

t.test('Checks (property) that a valid message with one field broken decodes to a valid value or is refused naming that field', async (t) => {
  let refused = 0
  for (const [name, schema] of SCHEMAS) {
    const union = 'anyOf' in schema
    fc.assert(fc.property(arbitraryOf(schema), fc.nat(), fc.constantFrom<Mutation>('replace', 'delete', 'add'), replacement, (value, pick, kind, by) => {
      const { value: broken, at } = mutate(value, pick, kind, by)
      const r = decoded(schema, encode(broken), name)
      sound(schema, name, r)
      if ('error' in r) {
        refused++
        // a union told apart by `type`: a changed type may make the rest wrong for the type it now names
        const typeChanged = union && (at === '/type' || at === '')
        const named = r.wheres.filter((where) => related(where, at) && (where !== '' || at === '' || union))
        if (!typeChanged && named.length === 0) throw new Error(`${name}: changed ${at || '(root)'}, refused with ${r.error.message}`)
      }
    }), fuzz(40))
  }
  t.ok(refused > 0, `${refused} refused, each naming its field`)
})

t.test('Checks (property) that any JSON value and any bytes are decoded to a valid value or refused with a clear error', async (t) => {
  const schemas = fc.constantFrom(...SCHEMAS)
  fc.assert(fc.property(schemas, fc.jsonValue({ maxDepth: 4 }), ([name, schema], value) => {
    sound(schema, name, decoded(schema, encode(value), name))
  }), fuzz(1500))
  fc.assert(fc.property(schemas, fc.uint8Array({ maxLength: 200 }), ([name, schema], data) => {
    sound(schema, name, decoded(schema, data, name), true)
  }), fuzz(500))
  fc.assert(fc.property(schemas, fc.string({ unit: 'binary', maxLength: 100 }), ([name, schema], text) => {
    sound(schema, name, decoded(schema, bytes(text), name), true)
  }), fuzz(500))
  t.pass('held for every generated input')
})

// ---------------------------------------------------------------- depth and size

/** The limits as the README states them (checked against these, so that removing one fails). */
const DOCUMENTED = { bytes: 1024 * 1024, depth: 64 }

t.test('Checks that the message limits are the documented ones', async (t) => {
  t.equal(MAX_MESSAGE_BYTES, DOCUMENTED.bytes, 'MAX_MESSAGE_BYTES')
  t.equal(MAX_MESSAGE_DEPTH, DOCUMENTED.depth, 'MAX_MESSAGE_DEPTH')
})

/** Depth of a JSON value in levels of [ and { (a scalar is 0). */
function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf))
  if (v !== null && typeof v === 'object') return 1 + Math.max(0, ...Object.values(v).map(depthOf))
  return 0
}

t.test('Checks (property) that jsonNestingBeyond finds the first [ or { deeper than the limit, not counting those inside strings', async (t) => {
  const tricky = fc.constantFrom('[', '{', ']', '}', '"', '\\', '\\"[', '[{"')
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 9 }), (value, max) => {
    const text = JSON.stringify(value)
    const at = jsonNestingBeyond(text, max)
    if ((at >= 0) !== (depthOf(value) > max)) throw new Error(`${text}: ${at} for depth ${depthOf(value)} > ${max}`)
    if (at >= 0 && text[at] !== '[' && text[at] !== '{') throw new Error(`${text}: ${at} is not an opener`)
  }), fuzz(1000))
  fc.assert(fc.property(fc.array(fc.oneof(fc.string(), tricky), { maxLength: 20 }), (strings) => {
    // brackets and escaped quotes inside strings do not nest
    return jsonNestingBeyond(JSON.stringify(strings), 1) === -1
  }), fuzz(500))
  t.pass('held for every generated input')
})

const status = { taskId: 't1', frameworkId: 'f1', state: 'RUNNING', source: 'agent', timestamp: 1 }
const nested = (kind: 'array' | 'object' | 'mixed', depth: number): string => {
  let open = ''
  let close = ''
  for (let i = 0; i < depth; i++) {
    const array = kind === 'array' || (kind === 'mixed' && i % 2 === 0)
    open += array ? '[' : '{"a":'
    close = (array ? ']' : '}') + close
  }
  return `${open}1${close}`
}

t.test('Checks (property) that nesting beyond 64 levels is refused where the 65th level opens, as a whole message or in any field, however deep', async (t) => {
  fc.assert(fc.property(
    fc.oneof(fc.integer({ min: 1, max: 130 }), fc.integer({ min: 1, max: 200_000 })),
    fc.constantFrom('array', 'object', 'mixed'),
    fc.constantFrom('whole', 'extra field', 'in a string', 'unclosed'),
    fc.constantFrom(...SCHEMAS.filter(([n]) => ['TaskStatus', 'StatusUpdates', 'Call', 'Event', 'AgentCommand', 'RegisterAgent', 'OperatorCall', 'SecretsCall'].includes(n))),
    (depth, kind, where, [name, schema]) => {
      const inner = nested(kind as 'array' | 'object' | 'mixed', depth)
      const text = where === 'whole' ? inner
        : where === 'extra field' ? JSON.stringify({ ...status, extra: 0 }).replace('0}', `${inner}}`)
          : where === 'in a string' ? JSON.stringify({ ...status, message: inner.slice(0, 8000) })
            : inner.slice(0, inner.length - 1)
      const total = where === 'extra field' ? depth + 1 : where === 'in a string' ? 1 : depth
      const r = decoded(where === 'whole' ? schema : TaskStatus, bytes(text), name)
      const tooBig = text.length > DOCUMENTED.bytes
      if (tooBig) {
        if ('value' in r || !/ bytes; a message may have at most 1048576 \(1 MiB\)$/.test(r.error.message)) throw new Error(`${text.length} bytes not refused for size`)
      } else if (total > DOCUMENTED.depth) {
        const at = jsonNestingBeyond(text) + 1
        let opened = 0
        let expected = 0
        for (let i = 0; i < text.length && !expected; i++) if ((text[i] === '[' || text[i] === '{') && ++opened > DOCUMENTED.depth) expected = i + 1
        if ('value' in r || !r.error.message.endsWith(`: nested deeper than 64 levels of [ and { (at character ${expected})`) || at !== expected) {
          throw new Error(`${where} ${kind} ${depth}: ${'value' in r ? 'accepted' : r.error.message}, expected character ${expected}`)
        }
      } else if (where === 'extra field' || where === 'in a string') {
        if (!('value' in r)) throw new Error(`${where} ${depth} levels refused: ${r.error.message}`)
      } else if ('error' in r && /nested deeper/.test(r.error.message)) throw new Error(`${depth} levels refused for depth`)
    },
  ), fuzz(150))
  t.pass('held for every generated input')
})

t.test('Checks (property) that a message over 1 MiB (in bytes, whatever its characters) is refused before it is read, and one of 1 MiB is not', async (t) => {
  const base = JSON.stringify({ ...status, pad: '' })
  fc.assert(fc.property(fc.integer({ min: -3, max: 3 }), fc.constantFrom('x', 'é', '日', '😀'), (delta, char) => {
    const size = DOCUMENTED.bytes + delta
    const room = size - Buffer.byteLength(base)
    const unit = Buffer.byteLength(char)
    const pad = char.repeat(Math.floor(room / unit)) + 'x'.repeat(room % unit)
    const data = bytes(base.replace('"pad":""', `"pad":"${pad}"`))
    if (data.byteLength !== size) throw new Error(`built ${data.byteLength} bytes`)
    const r = decoded(TaskStatus, data, 'status update')
    if (size > DOCUMENTED.bytes) {
      if ('value' in r || r.error.message !== `invalid status update: ${size} bytes; a message may have at most 1048576 (1 MiB)`) throw new Error(`${size}: ${JSON.stringify(r).slice(0, 200)}`)
    } else if (!('value' in r)) throw new Error(`${size} bytes refused: ${r.error.message}`)
  }), fuzz(30))
  t.pass('held for every generated input')
})

// ---------------------------------------------------------------- through NATS

t.test('Checks that a service built with serve() answers every generated bad message on a real nats-server with INVALID_MESSAGE and keeps serving', async (t) => {
  const server = await startNatsServer()
  t.teardown(() => server.stop())
  const nc = await server.connect()
  const client = await connect({ servers: server.url, name: 'fuzz-client' })
  t.teardown(() => client.close())
  const handled: unknown[] = []
  serve(nc, 'fuzz.status', TaskStatus, (m) => { handled.push(m) }, { logger: silentLogger() })
  await nc.flush()

  const bodies = fc.sample(fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((v) => bytes(JSON.stringify(v))),
    fc.uint8Array({ maxLength: 100 }),
    fc.integer({ min: 65, max: 100_000 }).map((d) => bytes(nested('mixed', d))),
    fc.tuple(fc.nat(), fc.constantFrom<Mutation>('replace', 'delete', 'add'), replacement).map(([pick, kind, by]) => encode(mutate(status, pick, kind, by).value)),
  ), { numRuns: 150, seed: SEED })
  let invalid = 0
  let accepted = 0
  const unclear: string[] = []
  for (const body of bodies) {
    const reply = (await client.request('fuzz.status', body, { timeout: 5000 })).json() as { ok?: true; error?: { code: string; message: string } }
    if (reply.error) {
      invalid++
      if (reply.error.code !== 'INVALID_MESSAGE' || !/^invalid message on fuzz\.status: [^\n]+$/.test(reply.error.message)) unclear.push(JSON.stringify(reply.error))
    } else accepted++
  }
  t.same(unclear, [], 'every refusal is INVALID_MESSAGE saying what was wrong, on one line')
  t.equal(handled.length, accepted, 'the handler saw only the messages that passed')
  t.ok(handled.every((m) => Value.Check(TaskStatus, m)), 'each of them valid')
  t.ok(invalid > 100, `${invalid} of ${bodies.length} refused with INVALID_MESSAGE`)
  const after = (await client.request('fuzz.status', encode(status), { timeout: 5000 })).json()
  t.same(after, { ok: true }, 'still serving')
})

t.test('Checks that request() refuses a reply nested too deep, or not JSON, with INVALID_MESSAGE naming the subject', async (t) => {
  const server = await startNatsServer()
  t.teardown(() => server.stop())
  const nc = await server.connect()
  const responder = await connect({ servers: server.url, name: 'fuzz-responder' })
  t.teardown(() => responder.close())
  const replies: Record<string, Uint8Array> = {
    deep: bytes(nested('mixed', MAX_MESSAGE_DEPTH + 1)),
    garbage: bytes('{not json'),
    fine: encode(status),
  }
  for (const [name, body] of Object.entries(replies)) responder.subscribe(`fuzz.reply.${name}`, { callback: (_e, m) => m.respond(body) })
  await responder.flush()
  // (a reply over 1 MiB never arrives: the server refuses to carry more than its max_payload)
  for (const name of ['deep', 'garbage']) {
    // any JSON would pass this schema: only the depth limit can refuse it
    const err = await request(nc, `fuzz.reply.${name}`, {}, Type.Unknown(), 5_000).then(() => undefined, (e: RegattaError) => e)
    t.equal(err?.code, 'INVALID_MESSAGE', `${name}: refused`)
    t.match(err?.message ?? '', /^invalid reply on fuzz\.reply\.\w+: [^\n]+$/, `${name}: one line naming the subject (${err?.message.slice(0, 90)})`)
  }
  t.same(await request(nc, 'fuzz.reply.fine', {}, TaskStatus, 5_000), status, 'a good reply still decodes')
})
