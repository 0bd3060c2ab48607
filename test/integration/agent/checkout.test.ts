// The agent checks a git commit out into the task's workspace (/workspace in a container). A
// kill, or the agent stopping, during a checkout that hangs (a git remote on loopback that
// accepts and never answers) aborts it: KILLED at once, no git left, the sandbox gone.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createServer, type Server, type Socket } from 'node:net'
import { access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DockerContainerizer, ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { startCluster, shellTask, type TestCluster } from '../../helpers/cluster.js'
import { ensureBusyboxImage } from '../../helpers/docker.js'
import type { TapTest } from '../../helpers/tap-types.js'

await ensureBusyboxImage()
let cluster: TestCluster
let repo: string
let shas: string[] = []
t.before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'regatta-repo-'))
  const git = (...args: string[]): string => execFileSync('git', args, { cwd: repo, env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } }).toString().trim()
  git('init', '-q', '-b', 'main')
  await writeFile(join(repo, 'hello.txt'), 'first\n')
  git('add', '.')
  git('commit', '-q', '-m', 'one')
  shas.push(git('rev-parse', 'HEAD'))
  await writeFile(join(repo, 'hello.txt'), 'second\n')
  git('commit', '-q', '-am', 'two')
  shas.push(git('rev-parse', 'HEAD'))
  cluster = await startCluster()
  await cluster.startMaster()
  await cluster.startAgent({ containerizer: new DockerContainerizer({ logger: silentLogger() }), id: 'agent-docker', pool: 'docker' })
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'agent-process', pool: 'process' })
})
t.teardown(async () => {
  await cluster.stop()
  await rm(repo, { recursive: true, force: true })
})

for (const pool of ['docker', 'process']) {
  t.test(`Checks that a ${pool} task runs in a checkout of the commit it names`, async (t) => {
    const fw = await cluster.framework()
    t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
    const offer = await fw.nextOffer((o) => o.pool === pool)
    // the older commit, not the branch head
    // exit 8: not in the workspace; exit 9: not the content of the first commit
    await fw.scheduler.launch(offer, [shellTask(`co-${pool}`, 'case "$(pwd)" in */workspace) ;; *) exit 8;; esac; grep -qx first hello.txt || exit 9', {
      checkout: { url: `file://${repo}`, sha: shas[0]!, ref: 'refs/heads/main' },
    })])
    const end = await fw.terminal(`co-${pool}`)
    t.equal(end.state, 'FINISHED', `exit ${end.exitCode}: ${end.message ?? ''}`)
  })
}

t.test('Checks that a checkout of a missing commit fails the task with the reason', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  const offer = await fw.nextOffer((o) => o.pool === 'process')
  await fw.scheduler.launch(offer, [shellTask('co-missing', 'true', { checkout: { url: `file://${repo}`, sha: 'deadbeefdeadbeefdeadbeefdeadbeefdeadbeef' } })])
  const end = await fw.terminal('co-missing')
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'CHECKOUT_FAILED')
  t.match(end.message, /deadbeefdead/)
})

/** A git remote that accepts connections and never answers: a checkout from it hangs. */
async function hungRemote(t: TapTest): Promise<{ url: string; port: number; connected: () => number }> {
  const sockets = new Set<Socket>()
  let connected = 0
  const server: Server = createServer((s) => { connected++; sockets.add(s); s.on('error', () => undefined) })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close() })
  return { url: `http://127.0.0.1:${port}/hung.git`, port, connected: () => connected }
}

/** Pids of the processes (git and its helpers) whose command line names the hung remote's port. */
async function gitProcessesFor(port: number): Promise<number[]> {
  const out: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')
    if (cmd.includes(`127.0.0.1:${port}/`)) out.push(Number(name))
  }
  return out
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false)

async function until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await f()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

t.test('Checks that a kill during a hung checkout ends the task KILLED at once, with no git left and its sandbox gone', async (t) => {
  const remote = await hungRemote(t)
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-agent-hung-'))
  t.teardown(() => rm(workDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }))
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'agent-hung', pool: 'hung', workDir })
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  const offer = await fw.nextOffer((o) => o.pool === 'hung')
  await fw.scheduler.launch(offer, [shellTask('co-hung', 'true', { checkout: { url: remote.url, sha: shas[0]! } })])
  // git is running and connected to the remote, which never answers
  const pids = await until('git to connect to the hung remote', async () => remote.connected() > 0 && (await gitProcessesFor(remote.port)).length > 0 && gitProcessesFor(remote.port))
  const sandbox = join(workDir, 'sandboxes', encodeURIComponent(fw.scheduler.frameworkId), 'co-hung')
  t.ok(await exists(join(sandbox, 'workspace')), 'the checkout has begun in the sandbox')
  t.same(fw.statesOf('co-hung').filter((s) => s !== 'STAGING' && s !== 'STARTING'), [], 'the task has not started')

  const killedAt = Date.now()
  await fw.scheduler.kill('co-hung')
  const end = await fw.terminal('co-hung', 10_000)
  const ms = Date.now() - killedAt
  t.equal(end.state, 'KILLED', JSON.stringify(end))
  t.equal(end.message, 'killed during its checkout')
  // without the abort the kill would wait for the hung checkout, which never ends by itself
  t.ok(ms < 5_000, `KILLED ${ms} ms after the kill`)
  t.comment(`KILLED ${ms} ms after the kill; git processes before it: ${pids.length}`)
  t.same(await gitProcessesFor(remote.port), [], 'no git process (nor helper) is left')
  await until('the sandbox to be removed', async () => !(await exists(sandbox)), 5_000)
  t.notOk(await exists(sandbox), 'the half-made sandbox is gone')
})

t.test('Checks that an agent stopping during a hung checkout reports the task KILLED (AGENT_STOPPED) and leaves no git', async (t) => {
  const remote = await hungRemote(t)
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-agent-hung-'))
  t.teardown(() => rm(workDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }))
  const agent = await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'agent-stopping', pool: 'stopping', workDir })
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  const offer = await fw.nextOffer((o) => o.pool === 'stopping')
  await fw.scheduler.launch(offer, [shellTask('co-stopping', 'true', { checkout: { url: remote.url, sha: shas[0]! } })])
  await until('git to connect to the hung remote', async () => remote.connected() > 0 && (await gitProcessesFor(remote.port)).length > 0)

  const stoppedAt = Date.now()
  await agent.stop()
  const stopMs = Date.now() - stoppedAt
  t.ok(stopMs < 3_000, `the agent stopped in ${stopMs} ms`)
  t.same(await gitProcessesFor(remote.port), [], 'no git process (nor helper) is left')
  const end = await fw.terminal('co-stopping', 10_000)
  t.equal(end.state, 'KILLED', JSON.stringify(end))
  t.equal(end.reason, 'AGENT_STOPPED')
  t.comment(`agent stopped in ${stopMs} ms, KILLED reported ${Date.now() - stoppedAt} ms after the stop began`)
  const sandbox = join(workDir, 'sandboxes', encodeURIComponent(fw.scheduler.frameworkId), 'co-stopping')
  await until('the sandbox to be removed', async () => !(await exists(sandbox)), 5_000)
  t.notOk(await exists(sandbox), 'the half-made sandbox is gone')
})
