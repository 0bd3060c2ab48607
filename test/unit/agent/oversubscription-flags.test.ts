// The agent's oversubscription flags (services/agent/src/main.ts oversubscriptionFromFlags): good
// values become options, bad ones a one-line INVALID_CONFIG naming the flag.
import t from 'tap'
import { RegattaError } from '../../../shared/errors/index.js'
import { oversubscriptionFromFlags, type OversubscriptionFlags } from '../../../services/agent/src/main.js'

t.test('Checks that oversubscription is off unless --oversubscribe is given', async (t) => {
  t.equal(oversubscriptionFromFlags({}), undefined)
  t.equal(oversubscriptionFromFlags({ oversubscribe: false }), undefined)
  t.same(oversubscriptionFromFlags({ oversubscribe: true }), {}, 'on, with the defaults')
})

t.test('Checks that the settings are parsed', async (t) => {
  t.same(oversubscriptionFromFlags({
    oversubscribe: true, revocableMargin: '0.3', qosInterval: '500ms', qosMinFreeMem: '256', qosMaxCpuBusy: '.95',
  }), { margin: 0.3, intervalMs: 500, memMinFreeMb: 256, cpuMaxBusy: 0.95 })
  t.same(oversubscriptionFromFlags({ oversubscribe: true, revocableMargin: '0', qosInterval: '2' }), { margin: 0, intervalMs: 2000 })
})

t.test('Checks that bad settings are refused with the flag named, on one line', async (t) => {
  const bad: Array<[OversubscriptionFlags, string]> = [
    [{ oversubscribe: true, revocableMargin: '1.5' }, '--revocable-margin'],
    [{ oversubscribe: true, revocableMargin: '-0.1' }, '--revocable-margin'],
    [{ oversubscribe: true, revocableMargin: 'lots' }, '--revocable-margin'],
    [{ oversubscribe: true, qosInterval: 'soon' }, '--qos-interval'],
    [{ oversubscribe: true, qosInterval: '10ms' }, '--qos-interval'],
    [{ oversubscribe: true, qosMinFreeMem: '1G' }, '--qos-min-free-mem'],
    [{ oversubscribe: true, qosMaxCpuBusy: '95%' }, '--qos-max-cpu-busy'],
    [{ revocableMargin: '0.2' }, '--revocable-margin needs --oversubscribe'],
    [{ qosInterval: '1s' }, '--qos-interval needs --oversubscribe'],
  ]
  for (const [flags, named] of bad) {
    try {
      const v = oversubscriptionFromFlags(flags)
      t.fail(`${JSON.stringify(flags)}: expected INVALID_CONFIG, got ${JSON.stringify(v)}`)
    } catch (err) {
      t.equal((err as RegattaError).code, 'INVALID_CONFIG', JSON.stringify(flags))
      t.ok((err as Error).message.includes(named), `names ${named}: ${(err as Error).message}`)
      t.notOk((err as Error).message.includes('\n'), 'one line')
    }
  }
})
