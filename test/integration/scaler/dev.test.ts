// `regatta dev` runs the scaler with the `process` provider: a pool policy set with `regatta
// pool set` gets its agents as local `regatta agent` processes (with the dev containerizer), and
// they end when `regatta dev` ends.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AgentView } from '../../../shared/protocol/index.js'
import { freePort } from '../../helpers/nats-server.js'
import { REGATTA_BIN, regatta } from '../../helpers/cli.js'
import { waitUntil } from '../../helpers/wait.js'
import type { TapTest } from '../../helpers/tap-types.js'

/** Pids of processes whose command line mentions `text`. */
async function processesWith(text: string): Promise<number[]> {
  const out: number[] = []
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')
    if (cmd.includes(text)) out.push(Number(e))
  }
  return out
}

interface Dev { nats: string; data: string; out: () => string; dev: ChildProcess; exited: Promise<number | null> }

async function startDev(t: TapTest, extra: string[] = []): Promise<Dev> {
  const natsPort = await freePort()
  const nats = `nats://127.0.0.1:${natsPort}`
  const data = await mkdtemp(join(tmpdir(), 'regatta-dev-scaler-'))
  const dev: ChildProcess = spawn(process.execPath, [
    REGATTA_BIN, 'dev', '--nats-port', String(natsPort), '--master-port', String(await freePort()), '--ci-port', String(await freePort()),
    '--data', data, '--containerizer', 'process', ...extra,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REGATTA_LOG_LEVEL: 'warn' } })
  let out = ''
  dev.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  dev.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((r) => dev.once('exit', (code) => r(code)))
  t.teardown(async () => {
    if (dev.exitCode === null && dev.signalCode === null) {
      dev.kill('SIGKILL')
      await exited
    }
    for (const pid of await processesWith(data)) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    await rm(data, { recursive: true, force: true, maxRetries: 5 })
  })
  await waitUntil('the banner', () => out.includes('Regatta is running') || dev.exitCode !== null, 60_000, 50)
  return { nats, data, out: () => out, dev, exited }
}

t.test('Checks that regatta dev starts pool agents through its scaler and stops them when it ends', async (t) => {
  const { nats, data, out, dev, exited } = await startDev(t)
  t.match(out(), /scaler\s+process provider/, 'the banner names the scaler')

  const set = await regatta(['pool', 'set', 'elastic', '--min', '1', '--max', '2', '--wait', '--timeout', '40s', '--nats', nats], { timeoutMs: 50_000 })
  t.equal(set.code, 0, set.stderr)
  const agents = JSON.parse((await regatta(['agents', 'ls', '--pool', 'elastic', '--json', '--nats', nats])).stdout) as AgentView[]
  t.equal(agents.length, 1, 'min 1: one agent in the pool')
  t.equal(agents[0]!.containerizer, 'process', 'with the dev containerizer')
  const instance = agents[0]!.attributes.instance!
  t.match(instance, /^elastic-[0-9a-f]{8}$/)
  t.equal((await processesWith(`instance:${instance}`)).length, 1, 'running as a local process')
  t.ok((await processesWith(join(data, 'scaler'))).length >= 1, 'with its work dir in the dev data dir')

  dev.kill('SIGTERM')
  t.equal(await exited, 0, 'regatta dev ends cleanly')
  await waitUntil('the pool agent to end', async () => (await processesWith(`instance:${instance}`)).length === 0, 15_000)
    .then(() => t.pass('the pool agent ended with regatta dev'), () => t.fail('the pool agent still runs'))
})

t.test('Checks that with --nats-auth each agent the scaler starts has a NATS user of its own, its id, and no password on its command line', async (t) => {
  const { nats, data } = await startDev(t, ['--nats-auth'])
  const usersOf = async (): Promise<Array<{ user: string; password: string; role: string; id?: string }>> =>
    (JSON.parse(await readFile(join(data, 'nats-auth.json'), 'utf8')) as { users: Array<{ user: string; password: string; role: string; id?: string }> }).users
  const operator = (await usersOf()).find((u) => u.role === 'operator')!
  const env = { REGATTA_NATS_USER: operator.user, REGATTA_NATS_PASSWORD: operator.password }
  const set = await regatta(['pool', 'set', 'secure', '--min', '1', '--max', '1', '--wait', '--timeout', '40s', '--nats', nats], { timeoutMs: 50_000, env })
  t.equal(set.code, 0, set.stderr)
  const agents = JSON.parse((await regatta(['agents', 'ls', '--pool', 'secure', '--json', '--nats', nats], { env })).stdout) as AgentView[]
  t.equal(agents.length, 1, 'the pool agent registered')
  const instance = agents[0]!.attributes.instance!
  t.equal(agents[0]!.id, instance, 'its agent id is its instance id')
  const user = (await usersOf()).find((u) => u.role === 'agent' && u.id === instance)
  t.ok(user, `a user of its own was made for it (${user?.user})`)
  const [pid] = await processesWith(`instance:${instance}`)
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8')
  t.notMatch(cmdline, user!.password, 'its password is not on its command line')
  t.notMatch(cmdline, /@127\.0\.0\.1/, 'nor any credentials in its NATS URL')
})
