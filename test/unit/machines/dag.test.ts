// The job graph check: what makes a run's jobs unrunnable, named in one message.
import t from 'tap'
import { ancestorsOf, checkJobGraph, MAX_TIMEOUT_MS } from '../../../services/ci/src/machines/index.js'
import { job } from './harness.js'

t.test('Checks that a well-formed graph passes', async (t) => {
  t.equal(checkJobGraph([job('a'), job('b', ['a']), job('c', ['a', 'b'])]), null)
  t.equal(checkJobGraph([]), null)
})

t.test('Checks that each kind of bad graph gets a message naming the job', async (t) => {
  t.equal(checkJobGraph([job('a'), job('a')]), 'job "a" is declared twice')
  t.equal(checkJobGraph([job('')]), 'a job has an empty id')
  t.equal(checkJobGraph([job('a', ['a'])]), 'job "a" needs itself')
  t.equal(checkJobGraph([job('test', ['biuld'])]), 'job "test" needs unknown job "biuld"')
  t.equal(checkJobGraph([job('a'), job('b', ['a', 'a'])]), 'job "b" lists need "a" twice')
  t.equal(checkJobGraph([job('a', ['c']), job('b', ['a']), job('c', ['b'])]), 'jobs form a cycle through needs: a -> c -> b -> a')
  t.match(checkJobGraph([job('a', [], { retries: -1 })]), /job "a": retries must be a whole number >= 0/)
  t.match(checkJobGraph([job('a', [], { timeoutMs: 0 })]), /job "a": timeout must be between 1 ms and/)
  t.match(checkJobGraph([job('a', [], { timeoutMs: MAX_TIMEOUT_MS + 1 })]), /timeout must be between/, 'longer than a timer can hold')
  t.match(checkJobGraph([job('a', [], { maxRequeues: 1.5 })]), /maxRequeues must be a whole number/)
})

t.test('Checks that ancestors are every job reached through needs, once', async (t) => {
  const needs: Record<string, string[]> = { a: [], b: ['a'], c: ['a'], d: ['b', 'c'] }
  t.same([...ancestorsOf('d', (id) => needs[id])].sort(), ['a', 'b', 'c'])
  t.same([...ancestorsOf('a', (id) => needs[id])], [])
})
