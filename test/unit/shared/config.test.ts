// Flag and environment parsers (shared/config/index.ts): good input gives the value, bad input
// a RegattaError INVALID_CONFIG whose message names the flag.
import t from 'tap'
import type { TapTest } from '../../helpers/tap-types.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { natsUrl, parseAttributes, parseDuration, parseHostPort, parseIntArg, parseNumberArg } from '../../../shared/config/index.js'

/** Asserts that fn throws INVALID_CONFIG with a message that names `flag`. */
function rejects(t: TapTest, fn: () => unknown, flag: string, what: string): void {
  try {
    const v = fn()
    t.fail(`${what}: expected INVALID_CONFIG, got ${JSON.stringify(v)}`)
  } catch (err) {
    t.ok(err instanceof RegattaError, `${what}: a RegattaError`)
    t.equal((err as RegattaError).code, 'INVALID_CONFIG', `${what}: INVALID_CONFIG`)
    t.ok((err as Error).message.includes(flag), `${what}: the message names ${flag} (${(err as Error).message})`)
    t.notOk((err as Error).message.includes('\n'), `${what}: one line`)
  }
}

t.test('Checks that natsUrl takes the flag, then REGATTA_NATS_URL, then the default', async (t) => {
  const saved = process.env.REGATTA_NATS_URL
  t.teardown(() => {
    if (saved === undefined) delete process.env.REGATTA_NATS_URL
    else process.env.REGATTA_NATS_URL = saved
  })
  delete process.env.REGATTA_NATS_URL
  t.equal(natsUrl(), 'nats://127.0.0.1:4222', 'the default')
  process.env.REGATTA_NATS_URL = 'nats://10.0.0.1:4333'
  t.equal(natsUrl(), 'nats://10.0.0.1:4333', 'the environment')
  t.equal(natsUrl('nats://127.0.0.1:5000'), 'nats://127.0.0.1:5000', 'the flag wins')
  t.equal(natsUrl('nats://a:1,nats://b:2,tls://c:3'), 'nats://a:1,nats://b:2,tls://c:3', 'several servers')
  t.equal(natsUrl('ws://h:8080'), 'ws://h:8080')
  process.env.REGATTA_NATS_URL = 'http://nope'
  rejects(t, () => natsUrl(), '--nats', 'a bad URL from the environment')
})

t.test('Checks that natsUrl refuses what is not a NATS URL', async (t) => {
  for (const bad of ['', 'localhost:4222', 'http://127.0.0.1:4222', 'nats://', 'nats://a b:1', 'nats://a:1,', 'nats://a:1,http://b:2']) {
    rejects(t, () => natsUrl(bad), '--nats', JSON.stringify(bad))
  }
})

t.test('Checks that parseHostPort reads HOST:PORT, [v6]:PORT and a bare port', async (t) => {
  t.same(parseHostPort('0.0.0.0:5050', '--http'), { host: '0.0.0.0', port: 5050 })
  t.same(parseHostPort('localhost:0', '--http'), { host: 'localhost', port: 0 })
  t.same(parseHostPort('[::1]:8080', '--http'), { host: '::1', port: 8080 })
  t.same(parseHostPort('5050', '--http'), { host: '127.0.0.1', port: 5050 }, 'a bare port binds loopback')
  t.same(parseHostPort(' 127.0.0.1:65535 ', '--http'), { host: '127.0.0.1', port: 65535 })
})

t.test('Checks that parseHostPort refuses bad addresses naming the flag', async (t) => {
  for (const bad of ['', 'localhost', 'localhost:', ':80', 'host:65536', 'host:port', 'a:b:1', 'host:123456', 'host:-1']) {
    rejects(t, () => parseHostPort(bad, '--http'), '--http', JSON.stringify(bad))
  }
})

t.test('Checks that parseDuration reads units, compounds and bare seconds', async (t) => {
  t.equal(parseDuration('500ms', '--idle'), 500)
  t.equal(parseDuration('30s', '--idle'), 30_000)
  t.equal(parseDuration('5m', '--idle'), 300_000)
  t.equal(parseDuration('2h', '--idle'), 7_200_000)
  t.equal(parseDuration('1d', '--idle'), 86_400_000)
  t.equal(parseDuration('1h30m', '--idle'), 5_400_000)
  t.equal(parseDuration('1m30s250ms', '--idle'), 90_250)
  t.equal(parseDuration('1.5s', '--idle'), 1_500)
  t.equal(parseDuration('90', '--idle'), 90_000, 'a bare number is seconds')
  t.equal(parseDuration('0.25', '--idle'), 250)
  t.equal(parseDuration(' 10s ', '--idle'), 10_000)
  t.equal(parseDuration('0s', '--idle'), 0)
})

t.test('Checks that parseDuration refuses what is not a duration, naming the flag', async (t) => {
  for (const bad of ['', '  ', 's', '5x', '-5s', '5 m', '1s2', '1..5s', 'five minutes', '1h-30m']) {
    rejects(t, () => parseDuration(bad, '--idle'), '--idle', JSON.stringify(bad))
  }
})

t.test('Checks that parseAttributes reads key:value pairs', async (t) => {
  t.same(parseAttributes(undefined), {})
  t.same(parseAttributes(''), {})
  t.same(parseAttributes('os:linux;arch:amd64'), { os: 'linux', arch: 'amd64' })
  t.same(parseAttributes(' os : linux ; ; arch:amd64;'), { os: 'linux', arch: 'amd64' }, 'blanks and empty parts are ignored')
  t.same(parseAttributes('url:http://x:1/y'), { url: 'http://x:1/y' }, 'the value may hold colons')
  t.same(parseAttributes('k:v;k:w'), { k: 'w' }, 'the last of a repeated key wins')
})

t.test('Checks that parseAttributes refuses a part without key:value, naming --attributes', async (t) => {
  for (const bad of ['os', ':linux', 'os:linux;arch']) {
    rejects(t, () => parseAttributes(bad), '--attributes', JSON.stringify(bad))
  }
})

t.test('Checks that parseIntArg takes whole numbers within bounds', async (t) => {
  t.equal(parseIntArg('4222', '--nats-port', 1, 65535), 4222)
  t.equal(parseIntArg('1', '--nats-port', 1, 65535), 1)
  t.equal(parseIntArg('65535', '--nats-port', 1, 65535), 65535)
  t.equal(parseIntArg('0', '--master-port', 0, 65535), 0)
  t.equal(parseIntArg('12', '--n'), 12)
})

t.test('Checks that parseIntArg refuses fractions, words and numbers out of bounds, naming the flag', async (t) => {
  for (const bad of ['abc', '1.5', '0', '65536', '-1', 'NaN', 'Infinity', '80abc']) {
    rejects(t, () => parseIntArg(bad, '--nats-port', 1, 65535), '--nats-port', JSON.stringify(bad))
  }
})

t.test('Checks that parseIntArg refuses an empty value and non-decimal notations', async (t) => {
  // Number('') is 0 and Number('0x10') is 16: `--master-port ""` silently became 0 (a random
  // port) and `--nats-port 0x10` port 16. shared/resources fixed the same Number() pitfall.
  for (const bad of ['', ' ', '0x10', '0b1', '0o7']) {
    rejects(t, () => parseIntArg(bad, '--master-port', 0, 65535), '--master-port', JSON.stringify(bad))
  }
})

t.test('Checks that parseNumberArg takes numbers at or above the minimum and refuses the rest', async (t) => {
  t.equal(parseNumberArg('0.5', '--cpus', 0.001), 0.5)
  t.equal(parseNumberArg('2', '--cpus', 0.001), 2)
  t.equal(parseNumberArg('0.001', '--cpus', 0.001), 0.001)
  for (const bad of ['abc', '0', '-1', 'Infinity', 'NaN', '0.0001', '1,5']) {
    rejects(t, () => parseNumberArg(bad, '--cpus', 0.001), '--cpus', JSON.stringify(bad))
  }
  for (const bad of ['', '0x10']) {
    rejects(t, () => parseNumberArg(bad, '--mem', 0), '--mem', `${JSON.stringify(bad)} (not a decimal number)`)
  }
})
