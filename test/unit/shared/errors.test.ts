// The error registry (shared/errors/index.ts): every code is documented, errors cross NATS as
// { code, message } and are rebuilt by code; an unknown code becomes INTERNAL.
import t from 'tap'
import { ErrorCodes, RegattaError, isWireError, type ErrorCode } from '../../../shared/errors/index.js'

const codes = Object.keys(ErrorCodes) as ErrorCode[]

t.test('Checks that every error code has a description', async (t) => {
  t.ok(codes.length >= 10, 'the registry is not empty')
  for (const code of codes) {
    t.match(code, /^[A-Z][A-Z_]*$/, `${code} is UPPER_SNAKE`)
    t.type(ErrorCodes[code], 'string')
    t.ok(ErrorCodes[code].trim().length >= 15, `${code} is described: "${ErrorCodes[code]}"`)
  }
  t.ok(codes.includes('INTERNAL'), 'INTERNAL exists (the fallback)')
})

t.test('Checks that toWire and fromWire round-trip every code', async (t) => {
  for (const code of codes) {
    const e = new RegattaError(code, `something about ${code}`)
    const wire = e.toWire()
    t.same(wire, { code, message: `something about ${code}` })
    const json = JSON.parse(JSON.stringify({ error: wire })) as unknown
    t.ok(isWireError(json), 'the JSON reply is recognised as an error')
    const back = RegattaError.fromWire(wire)
    t.ok(back instanceof RegattaError)
    t.equal(back.code, code)
    t.equal(back.message, e.message)
    t.equal(back.name, 'RegattaError')
  }
})

t.test('Checks that an unknown code from the wire becomes INTERNAL with its message', async (t) => {
  for (const code of ['NOPE', '', 'internal', 'toString', '__proto__', 'constructor']) {
    const back = RegattaError.fromWire({ code, message: 'from a newer peer' })
    t.equal(back.code, 'INTERNAL', `"${code}" -> INTERNAL`)
    t.equal(back.message, 'from a newer peer')
  }
})

t.test('Checks that from() keeps a RegattaError and wraps anything else with its cause', async (t) => {
  const original = new RegattaError('TIMEOUT', 'slow')
  t.equal(RegattaError.from(original), original)
  const cause = new TypeError('boom')
  const wrapped = RegattaError.from(cause, 'CONTAINER_ERROR')
  t.equal(wrapped.code, 'CONTAINER_ERROR')
  t.equal(wrapped.message, 'boom')
  t.equal(wrapped.cause, cause)
  t.equal(RegattaError.from('a string').code, 'INTERNAL')
  t.equal(RegattaError.from('a string').message, 'a string')
})

t.test('Checks that isWireError recognises only { error: { code: string } }', async (t) => {
  t.ok(isWireError({ error: { code: 'TIMEOUT', message: 'x' } }))
  for (const v of [null, undefined, 1, 'error', {}, { error: null }, { error: 'TIMEOUT' }, { error: { code: 5 } }, { ok: true }]) {
    t.notOk(isWireError(v), JSON.stringify(v) ?? String(v))
  }
})
