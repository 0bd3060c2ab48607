// The `regatta` command as users run it (`node services/cli/bin/regatta.mjs ...`, real
// processes) against a real cluster: status and agents ls (human and --json), exec failures with
// a one-line reason, bad flags (exit 2), no master, and a `regatta dev` smoke test.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClusterState } from '../../../shared/protocol/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { DockerContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { startCluster, type TestCluster } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../../helpers/docker.js'
import { freePort, startNatsServer, type NatsServer } from '../../helpers/nats-server.js'
import { waitUntil } from '../../helpers/wait.js'

const BIN = fileURLToPath(new URL('../../../services/cli/bin/regatta.mjs', import.meta.url))

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

/** Runs the CLI to the end (killed after timeoutMs); never rejects. */
function regatta(args: string[], timeoutMs = 30_000): Promise<Run> {
  const started = Date.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REGATTA_NATS_URL: '' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

/** The non-empty lines of a text. */
const lines = (s: string): string[] => s.split('\n').filter((l) => l.trim() !== '')

let cluster: TestCluster
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster('m1')
  await cluster.startAgent({ containerizer: new DockerContainerizer({ logger: silentLogger() }), id: 'cli-agent' })
  // the first run bundles the CLI (esbuild); do it before the tests that time themselves
  await regatta(['--help'], 60_000)
})
t.teardown(() => cluster.stop())

t.test('Checks that `regatta status` names the leader and the agent, and --json parses with the agent', async (t) => {
  const human = await regatta(['status', '--nats', cluster.nats.url])
  t.equal(human.code, 0, human.stderr)
  t.match(human.stdout, /m1/, 'the leader')
  t.match(human.stdout, /Leader\s*:?\s+m1/i, 'on the leader line')
  t.match(human.stdout, /Agents/i)

  const json = await regatta(['status', '--json', '--nats', cluster.nats.url])
  t.equal(json.code, 0, json.stderr)
  const state = JSON.parse(json.stdout) as ClusterState
  t.equal(state.leader?.id, 'm1')
  t.ok(state.agents.some((a) => a.id === 'cli-agent' && a.state === 'active'), 'the agent, active')
  t.equal(state.total.cpus, 4)
})

t.test('Checks that `regatta agents ls` lists the agent, and --json gives the agents', async (t) => {
  const human = await regatta(['agents', 'ls', '--nats', cluster.nats.url])
  t.equal(human.code, 0, human.stderr)
  t.match(human.stdout, /cli-agent/)
  t.match(human.stdout, /active/)

  const json = await regatta(['agents', 'ls', '--json', '--nats', cluster.nats.url])
  t.equal(json.code, 0, json.stderr)
  const agents = JSON.parse(json.stdout) as ClusterState['agents']
  t.ok(Array.isArray(agents))
  t.same(agents.map((a) => a.id), ['cli-agent'])
  t.equal(agents[0]?.containerizer, 'docker')
})

t.test('Checks that `regatta exec` with an image that is not local and cannot be pulled exits non-zero with a one-line reason', async (t) => {
  const image = `127.0.0.1:${await freePort()}/regatta-missing:latest` // a loopback registry nobody serves
  const r = await regatta(['exec', '--nats', cluster.nats.url, '--image', image, '--', 'true'])
  t.not(r.code, 0, `exit ${r.code}`)
  t.equal(r.signal, null, 'it exited by itself')
  t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  t.match(r.stderr, /^regatta: /)
  t.match(r.stderr, /regatta-missing/, 'the reason names the image')
})

t.test('Checks that a bad flag value exits 2 with a one-line message', async (t) => {
  const r = await regatta(['exec', '--nats', cluster.nats.url, '--cpus', 'abc', '--', 'true'])
  t.equal(r.code, 2)
  t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  t.match(r.stderr, /--cpus/)
  t.match(r.stderr, /abc/)
  t.equal(r.stdout, '')
})

t.test('Checks that a bad --nats URL exits 2 with a one-line message', async (t) => {
  const r = await regatta(['status', '--nats', 'http://127.0.0.1:1'])
  t.equal(r.code, 2)
  t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  t.match(r.stderr, /--nats/)
})

t.test('Checks that an unknown flag exits 2 with a one-line message', async (t) => {
  // commander prints the error and the whole help, and exits 1 (README: "exits non-zero with a
  // one-line reason on failure (2 for a bad argument)")
  const r = await regatta(['exec', '--bogus', '--', 'true'])
  t.equal(r.code, 2, `exit ${r.code}`)
  t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr.slice(0, 300))}`)
  t.match(r.stderr, /--bogus/)
})

t.test('Checks that `regatta status` with no master fails within 15 s with a one-line reason', async (t) => {
  const lonely: NatsServer = await startNatsServer()
  t.teardown(() => lonely.stop())
  const r = await regatta(['status', '--nats', lonely.url], 30_000)
  t.not(r.code, 0)
  t.equal(r.signal, null, 'it gave up by itself')
  t.ok(r.ms < 15_000, `failed after ${r.ms} ms`)
  t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  t.match(r.stderr, /^regatta: .*(master|responders)/i, 'says nobody answered')
})

t.test('Checks that `regatta status` with no NATS server fails fast with a one-line reason', async (t) => {
  const r = await regatta(['status', '--nats', `nats://127.0.0.1:${await freePort()}`], 30_000)
  t.not(r.code, 0)
  t.ok(r.ms < 15_000, `failed after ${r.ms} ms`)
  t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr)}`)
  t.match(r.stderr, /^regatta: .*NATS/i)
})

/** The pids of a process's children (to end what a killed parent would leave behind). */
async function childrenOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
  return text.split(/\s+/).filter(Boolean).map(Number)
}

t.test('Checks that `regatta dev` comes up, runs `regatta exec`, serves the state, and stops on SIGTERM', async (t) => {
  const natsPort = await freePort()
  const masterPort = await freePort()
  const data = await mkdtemp(join(tmpdir(), 'regatta-dev-'))
  const dev: ChildProcess = spawn(process.execPath, [BIN, 'dev', '--nats-port', String(natsPort), '--master-port', String(masterPort), '--ci-port', String(await freePort()), '--data', data, '--containerizer', 'process'], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REGATTA_LOG_LEVEL: 'warn' },
  })
  let out = ''
  dev.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  dev.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => dev.once('exit', (code, signal) => r({ code, signal })))
  let children: number[] = []
  t.teardown(async () => {
    if (dev.exitCode === null && dev.signalCode === null) {
      children = [...children, ...await childrenOf(dev.pid!)]
      dev.kill('SIGKILL')
      await exited
    }
    for (const pid of children) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
    await rm(data, { recursive: true, force: true, maxRetries: 5 })
  })

  await waitUntil('the banner', () => out.includes('Regatta is running') || dev.exitCode !== null, 60_000, 50)
  t.match(out, /Regatta is running/, `the banner: ${out.slice(0, 2000)}`)
  t.match(out, new RegExp(`nats://127\\.0\\.0\\.1:${natsPort}`), 'names the NATS URL')
  t.match(out, new RegExp(`http://127\\.0\\.0\\.1:${masterPort}/`), 'names the master UI')
  t.match(out, /process containerizer/)
  children = await childrenOf(dev.pid!)

  const ex = await regatta(['exec', '--nats', `nats://127.0.0.1:${natsPort}`, '--', 'sh', '-c', 'echo hi'])
  t.equal(ex.code, 0, ex.stderr)
  t.equal(ex.stdout, 'hi\n')

  const res = await fetch(`http://127.0.0.1:${masterPort}/api/v1/state`)
  t.equal(res.status, 200)
  const state = await res.json() as ClusterState
  t.equal(state.agents.length, 1, 'one agent')
  t.equal(state.agents[0]?.containerizer, 'process')
  t.equal(state.leader?.id, 'dev-master')

  const signalled = Date.now()
  dev.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const how = await Promise.race([exited, new Promise<undefined>((r) => { timer = setTimeout(() => r(undefined), 10_000) })])
  clearTimeout(timer)
  t.ok(how, `exited within 10 s of SIGTERM (after ${Date.now() - signalled} ms)`)
  t.equal(how?.code, 0, 'cleanly')
  // its nats-server went with it
  await waitUntil('the nats-server gone', () => children.every((pid) => {
    try { process.kill(pid, 0); return false } catch { return true }
  }), 5_000).then(() => t.pass('no child process left'), () => t.fail(`children still running: ${children.join(' ')}`))
})

t.test('Checks that `regatta agent --id` (or REGATTA_AGENT_ID) names the agent, and a bad id exits 2 with one line', async (t) => {
  const { startAgentProcess } = await import('../../helpers/processes.js')
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-cli-agent-id-'))
  t.teardown(() => rm(workDir, { recursive: true, force: true }))
  const agent = await startAgentProcess({ natsUrl: cluster.nats.url, workDir, containerizer: 'process', resources: 'cpus:1;mem:256;disk:100', extraArgs: ['--id', 'host-7.rack_2'] })
  t.teardown(() => agent.stop(3_000))
  t.equal(agent.agentId, 'host-7.rack_2', 'the agent runs under the id given')
  await waitUntil('the master to list it', () => cluster.masters[0]!.state().agents.some((a) => a.id === 'host-7.rack_2' && a.state === 'active'), 10_000)
  t.pass('the master lists it, active')
  for (const [args, reason] of [[['agent', '--id', 'a b'], /^regatta: --id: "a b" is not an agent id/], [['agent', '--id', 'x'.repeat(65)], /--id/]] as const) {
    const r = await regatta([...args, '--nats', cluster.nats.url])
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.equal(lines(r.stderr).length, 1)
    t.match(r.stderr, reason)
  }
})
