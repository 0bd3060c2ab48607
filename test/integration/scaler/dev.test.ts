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

t.test('Checks that regatta dev starts pool agents through its scaler and stops them when it ends', async (t) => {
  const natsPort = await freePort()
  const nats = `nats://127.0.0.1:${natsPort}`
  const data = await mkdtemp(join(tmpdir(), 'regatta-dev-scaler-'))
  const dev: ChildProcess = spawn(process.execPath, [
    REGATTA_BIN, 'dev', '--nats-port', String(natsPort), '--master-port', String(await freePort()), '--ci-port', String(await freePort()),
    '--data', data, '--containerizer', 'process',
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
  t.match(out, /scaler\s+process provider/, 'the banner names the scaler')

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
