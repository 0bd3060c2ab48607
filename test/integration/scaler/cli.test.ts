// `regatta pool ls|set` and `regatta scaler` as users run them (real processes) against a real
// nats-server and master: bad flags exit 2 and write nothing, `pool set --wait` follows the
// pool up to its new min and down to its new max while `regatta scaler` starts and stops
// `regatta agent` processes, a restarted scaler finds the agents it started before, and
// `pool ls` shows policies with agents and demand.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import { ProcessProvider } from '../../../services/scaler/src/providers/process.js'
import { fastMasterConfig, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { REGATTA_BIN, regatta } from '../../helpers/cli.js'
import type { TapTest } from '../../helpers/tap-types.js'

let cluster: TestCluster
let dataDir: string
let scaler: ChildProcess | undefined
let scalerOut = ''

/** Starts `regatta scaler` and waits until it leads. */
async function startScaler(t: TapTest): Promise<void> {
  scalerOut = ''
  scaler = spawn(process.execPath, [
    REGATTA_BIN, 'scaler', '--nats', cluster.nats.url, '--data', dataDir, '--providers', 'process', '--agent-containerizer', 'process',
    '--agent-resources', 'cpus:1;mem:512;disk:1000;ports:[31000-31010]', '--interval', '100ms', '--cooldown', '0s', '--lease-ttl', '2s',
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REGATTA_LOG_LEVEL: 'info' } })
  scaler.stdout!.on('data', (d: Buffer) => { scalerOut += d.toString() })
  scaler.stderr!.on('data', (d: Buffer) => { scalerOut += d.toString() })
  const deadline = Date.now() + 30_000
  while (!scalerOut.includes('this scaler leads')) {
    if (Date.now() > deadline || scaler.exitCode !== null) t.bailout(`regatta scaler did not start:\n${scalerOut}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function stopScaler(): Promise<number | null> {
  const s = scaler!
  s.kill('SIGTERM')
  return new Promise((r) => (s.exitCode !== null ? r(s.exitCode) : s.once('exit', (c) => r(c))))
}

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster('m1', fastMasterConfig)
  dataDir = await mkdtemp(join(tmpdir(), 'regatta-scaler-cli-'))
})
t.teardown(async () => {
  if (scaler && scaler.exitCode === null) scaler.kill('SIGKILL')
  // agents a scaler left running (it keeps them when it stops): found from their records
  await new ProcessProvider({ natsUrl: cluster.nats.url, baseDir: join(dataDir, 'process'), logger: silentLogger(), stopGraceMs: 2_000 }).stopAll()
  await cluster.stop()
  await rm(dataDir, { recursive: true, force: true })
})

t.test('Checks that pool set refuses bad flags with exit 2 and one line, and writes nothing', async (t) => {
  const url = cluster.nats.url
  for (const [args, reason] of [
    [['--min', '5', '--max', '2'], /--min 5 is above --max 2/],
    [['--max', '-1'], /--max: "-1" is not a whole number/],
    [['--max', '2', '--provider', 'ec2'], /--provider: "ec2" is not a provider/],
    [['--max', '2', '--idle', 'later'], /--idle: "later" is not a duration/],
    [['--min', '1'], /--max: pool elastic has no policy yet/],
  ] as const) {
    const r = await regatta(['pool', 'set', 'elastic', ...args, '--nats', url])
    t.equal(r.code, 2, `exit 2 for ${args.join(' ')}`)
    t.match(r.stderr, reason)
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  }
  const ls = await regatta(['pool', 'ls', '--nats', url])
  t.equal(ls.code, 0)
  t.match(ls.stdout, /No pool policies/, 'nothing was written')
})

t.test('Checks that pool set --wait follows the pool up to min and down to max while regatta scaler starts and stops agents', async (t) => {
  const url = cluster.nats.url
  await startScaler(t)

  const up = await regatta(['pool', 'set', 'elastic', '--min', '2', '--max', '3', '--idle', '1s', '--wait', '--timeout', '40s', '--nats', url], { timeoutMs: 50_000 })
  t.equal(up.code, 0, `pool set --wait up: ${up.stderr}`)
  t.match(up.stdout, /pool elastic \[[#-]+\] 0\/2 agents/, 'progress from 0')
  t.match(up.stdout, /pool elastic has 2 agents \(min 2, max 3\)\n$/, 'until it has min')

  const json = await regatta(['pool', 'ls', '--json', '--nats', url])
  t.equal(json.code, 0)
  const pools = JSON.parse(json.stdout) as Array<{ pool: string; min: number; max: number; idleMs: number; provider: string; now: { serving: number } }>
  t.match(pools, [{ pool: 'elastic', min: 2, max: 3, idleMs: 1000, provider: 'process', now: { serving: 2 } }])
  const table = await regatta(['pool', 'ls', '--nats', url])
  t.match(table.stdout, /^POOL\s+MIN\s+MAX\s+IDLE\s+PROVIDER\s+AGENTS\s+DEMAND\nelastic\s+2\s+3\s+1s\s+process\s+2\s+-\n$/)
  const agents = await regatta(['agents', 'ls', '--json', '--pool', 'elastic', '--nats', url])
  const listed = JSON.parse(agents.stdout) as Array<{ attributes: Record<string, string> }>
  t.equal(listed.filter((a) => /^elastic-[0-9a-f]{8}$/.test(a.attributes.instance ?? '')).length, 2, 'the agents carry their instance ids')

  // a scaler that stops leaves its agents running; the next one finds them and starts none
  t.equal(await stopScaler(), 0, 'regatta scaler stops on SIGTERM')
  await startScaler(t)
  await new Promise((r) => setTimeout(r, 1_000))
  t.equal(scalerOut.split('\n').filter((l) => l.includes('found an instance started before')).length, 2, 'the new scaler found both agents')
  t.notMatch(scalerOut, /starting \d+ agent/, 'and started none')

  const set = await regatta(['pool', 'set', 'elastic', '--max', '4', '--json', '--nats', url])
  t.same(JSON.parse(set.stdout), { pool: 'elastic', min: 2, max: 4, idleMs: 1000, provider: 'process' }, 'a change keeps the rest of the policy')

  const down = await regatta(['pool', 'set', 'elastic', '--min', '0', '--max', '0', '--wait', '--timeout', '40s', '--nats', url], { timeoutMs: 50_000 })
  t.equal(down.code, 0, `pool set --wait down: ${down.stderr}`)
  t.match(down.stdout, /pool elastic has 0 agents \(min 0, max 0\)\n$/)
  t.match(scalerOut, /draining agent \S+ of pool elastic \(over-max\)/, 'the scaler drained them first')
  t.match(scalerOut, /stopping instance \S+ of pool elastic \(drained\)/)

  t.equal(await stopScaler(), 0)
})

t.test('Checks that pool set --wait gives up with exit 1 and says why when nothing sizes the pool', async (t) => {
  const r = await regatta(['pool', 'set', 'nobody', '--min', '1', '--max', '1', '--wait', '--timeout', '1s', '--nats', cluster.nats.url], { timeoutMs: 20_000 })
  t.equal(r.code, 1)
  t.match(r.stderr, /pool nobody did not reach min 1 \/ max 1 within 1s \(0 agents taking work\); is `regatta scaler` running\?/)
})
