// decode/validate (shared/protocol/codec.ts): every message read from NATS goes through them; a
// bad one becomes a RegattaError INVALID_MESSAGE that names the bad field, never a crash.
import t from 'tap'
import type { TapTest } from '../../helpers/tap-types.js'
import { Type } from '@sinclair/typebox'
import { RegattaError } from '../../../shared/errors/index.js'
import {
  AgentCommand, AgentHeartbeat, Call, RegisterAgent, TaskStatus, decode, encode, validate,
} from '../../../shared/protocol/index.js'

function invalid(t: TapTest, fn: () => unknown, field: RegExp, what: string): void {
  try {
    fn()
    t.fail(`${what}: expected INVALID_MESSAGE`)
  } catch (err) {
    t.ok(err instanceof RegattaError, `${what}: a RegattaError`)
    t.equal((err as RegattaError).code, 'INVALID_MESSAGE', `${what}: INVALID_MESSAGE`)
    t.match((err as Error).message, field, `${what}: names the field (${(err as Error).message})`)
  }
}

const status = { taskId: 't1', frameworkId: 'f1', state: 'RUNNING', source: 'agent', timestamp: 1 }

t.test('Checks that encode and decode round-trip a valid message', async (t) => {
  t.same(decode(TaskStatus, encode(status), 'status'), status)
  const hb = { agentId: 'a1', revocable: [{ name: 'cpus', scalar: 2 }] }
  t.same(decode(AgentHeartbeat, encode(hb)), hb)
  t.equal(validate(TaskStatus, status), status, 'validate returns the value itself')
})

t.test('Checks that decode refuses bytes that are not JSON, saying what it was reading', async (t) => {
  invalid(t, () => decode(TaskStatus, new TextEncoder().encode('{not json'), 'status update'), /status update: not JSON/, 'broken JSON')
  invalid(t, () => decode(TaskStatus, new Uint8Array(), 'status update'), /not JSON/, 'empty bytes')
})

t.test('Checks that validate names the bad field of an object', async (t) => {
  invalid(t, () => validate(TaskStatus, { ...status, state: 'BOGUS' }, 'status'), /invalid status: \/state/, 'a state outside the enum')
  invalid(t, () => validate(TaskStatus, { ...status, timestamp: 'now' }), /\/timestamp/, 'a string for a number')
  invalid(t, () => validate(TaskStatus, { ...status, taskId: '' }), /\/taskId/, 'an empty id')
  const { frameworkId: _, ...noFramework } = status
  invalid(t, () => validate(TaskStatus, noFramework), /\/frameworkId/, 'a missing field')
  invalid(t, () => validate(AgentHeartbeat, { agentId: 'a1', revocable: [{ name: 'cpus', scalar: -1 }] }), /\/revocable\/0\/scalar/, 'a nested field')
  invalid(t, () => validate(RegisterAgent, {
    agent: { id: 'bad id!', hostname: 'h', pool: 'p', attributes: {}, resources: [], containerizer: 'docker' }, tasks: [],
  }), /\/agent\/id/, 'an id with spaces')
  invalid(t, () => validate(TaskStatus, null), /\(root\)/, 'null')
  invalid(t, () => validate(TaskStatus, [status]), /\(root\)/, 'an array')
})

t.test('Checks that a plain schema error names the path with a message', async (t) => {
  const S = Type.Object({ a: Type.Object({ b: Type.Integer({ minimum: 1 }) }) })
  invalid(t, () => validate(S, { a: { b: 0 } }, 'thing'), /^invalid thing: \/a\/b: .+/, 'a minimum')
})

t.test('Checks that a call of a known type with a bad field names that field', async (t) => {
  // Call and AgentCommand are unions: typebox reports "(root): Expected union value" for any bad
  // member, so the reply never says which field was wrong, as the README promises it does.
  invalid(t, () => validate(Call, { type: 'ACCEPT', frameworkId: 'f1' }, 'call'), /offerIds/, 'ACCEPT without offerIds')
  invalid(t, () => validate(Call, { type: 'KILL', frameworkId: 'f1', taskId: 5 }, 'call'), /taskId/, 'KILL with a number for taskId')
  invalid(t, () => validate(AgentCommand, { type: 'KILL', epoch: 1.5, frameworkId: 'f', taskId: 't' }, 'command'), /epoch/, 'a fractional epoch')
})

t.test('Checks that a call of an unknown type is refused with INVALID_MESSAGE', async (t) => {
  invalid(t, () => validate(Call, { type: 'NOPE', frameworkId: 'f1' }, 'call'), /invalid call/, 'an unknown type')
  invalid(t, () => validate(Call, {}, 'call'), /invalid call/, 'no type at all')
})
