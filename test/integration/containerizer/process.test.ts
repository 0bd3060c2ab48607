// The process containerizer against this host: real child processes, process groups and, where
// cgroup v1 is writable (root here), real memory/CPU/pids limits.
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { ProcessContainerizer, type LaunchSpec, type OutputSink } from '../../../services/agent/src/containerizer/index.js'
import { RegattaError } from '../../../shared/errors/index.js'

const sandbox = await mkdtemp(join(tmpdir(), 'regatta-process-sandbox-'))
// A cgroup parent of our own, so the test never touches what a running agent uses.
const cgroupParent = `regatta-test-${process.pid}-${randomBytes(3).toString('hex')}`
t.teardown(async () => {
  await rm(sandbox, { recursive: true, force: true })
  for (const controller of ['memory', 'cpu', 'cpuacct', 'pids']) {
    await rmdir(join('/sys/fs/cgroup', controller, cgroupParent)).catch(() => undefined)
  }
})

let seq = 0
function spec(over: Partial<LaunchSpec> = {}): LaunchSpec {
  return {
    taskId: over.taskId ?? `ptask-${++seq}`, frameworkId: 'fw-test', agentId: 'agent-test', command: ['true'], env: {},
    sandbox, network: 'none', mounts: [], labels: {}, ...over,
  }
}

function collect(): { out: { stdout: string; stderr: string }; sink: OutputSink } {
  const out = { stdout: '', stderr: '' }
  return { out, sink: (stream, chunk) => { out[stream] += chunk.toString() } }
}

const cz = new ProcessContainerizer({ cgroupParent })
const controllers = await cz.enforcedControllers()
const noMemoryCgroup = controllers.includes('memory') ? false : 'cgroup v1 memory controller is not writable on this host'

/** Running (a zombie waiting for init to reap it counts as gone). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

t.test('stdout and stderr arrive separately, and the exit code is reported', async (t) => {
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] }), sink)
  t.match(c.id, /^pid:\d+$/)
  const exit = await c.exited
  t.equal(exit.exitCode, 3)
  t.equal(exit.killed, false)
  t.equal(out.stdout, 'out\n')
  t.equal(out.stderr, 'err\n')
})

t.test('all output is delivered before exited resolves', async (t) => {
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done'] }), sink)
  t.equal((await c.exited).exitCode, 0)
  const lines = out.stdout.split('\n').filter(Boolean)
  t.equal(lines.length, 3000)
  t.equal(lines[2999], 'line 2999')
})

t.test('the environment is minimal plus the spec env; HOME is the sandbox', async (t) => {
  const { out, sink } = collect()
  process.env.REGATTA_TEST_LEAK = 'leaked'
  t.teardown(() => { delete process.env.REGATTA_TEST_LEAK })
  const c = await cz.launch(spec({ command: ['sh', '-c', 'echo "$FOO|$HOME|${REGATTA_TEST_LEAK:-none}"; echo "$PATH"'], env: { FOO: 'bar baz' } }), sink)
  t.equal((await c.exited).exitCode, 0)
  const [first, path] = out.stdout.split('\n')
  t.equal(first, `bar baz|${sandbox}|none`)
  t.match(path, /\/usr\/bin/)
})

t.test('cwd is the sandbox by default; a container-style workdir maps into the sandbox', async (t) => {
  await mkdir(join(sandbox, 'sub'), { recursive: true })
  const a = collect()
  const c1 = await cz.launch(spec({ command: ['pwd'] }), a.sink)
  t.equal((await c1.exited).exitCode, 0)
  t.equal(a.out.stdout, `${sandbox}\n`)
  const b = collect()
  const c2 = await cz.launch(spec({ command: ['pwd'], workdir: '/sandbox/sub' }), b.sink)
  t.equal((await c2.exited).exitCode, 0)
  t.equal(b.out.stdout, `${join(sandbox, 'sub')}\n`)
  const c = collect()
  const c3 = await cz.launch(spec({ command: ['pwd'], workdir: '/tmp' }), c.sink)
  t.equal((await c3.exited).exitCode, 0)
  t.equal(c.out.stdout, '/tmp\n')
  await writeFile(join(sandbox, 'sub', 'run.sh'), '#!/bin/sh\necho "script in $(pwd)"\n')
  await chmod(join(sandbox, 'sub', 'run.sh'), 0o755)
  const d = collect()
  const c4 = await cz.launch(spec({ command: ['./run.sh'], workdir: 'sub' }), d.sink)
  t.equal((await c4.exited).exitCode, 0)
  t.equal(d.out.stdout, `script in ${join(sandbox, 'sub')}\n`)
})

t.test('a missing command or working dir fails the launch with CONTAINER_ERROR', async (t) => {
  for (const over of [{ command: ['no-such-command-regatta'] }, { command: ['./missing.sh'] }, { command: ['true'], workdir: '/no/such/dir' }]) {
    const err = await cz.launch(spec(over), () => {}).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof RegattaError, JSON.stringify(over))
    t.equal((err as RegattaError).code, 'CONTAINER_ERROR')
    t.match((err as RegattaError).message, /^cannot start /)
  }
  const plain = new ProcessContainerizer({ limits: false })
  const err = await plain.launch(spec({ command: ['no-such-command-regatta'] }), () => {}).then(() => undefined, (e: unknown) => e)
  t.equal((err as RegattaError).code, 'CONTAINER_ERROR', 'also without cgroups (spawn reports ENOENT itself)')
  t.match((err as RegattaError).message, 'ENOENT')
})

t.test('kill signals the whole process group, a child included, and reports killed', async (t) => {
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'sleep 30 & echo "child $!"; wait'] }), sink)
  await until(() => out.stdout.includes('child '))
  const childPid = Number(/child (\d+)/.exec(out.stdout)![1])
  t.ok(await alive(childPid), 'the child runs')
  const started = Date.now()
  await c.kill(2000)
  const exit = await c.exited
  t.equal(exit.killed, true)
  t.equal(exit.exitCode, null)
  t.equal(exit.signal, 'SIGTERM')
  t.ok(Date.now() - started < 1500, `killed in ${Date.now() - started} ms`)
  await until(async () => !(await alive(childPid)))
  t.notOk(await alive(childPid), 'the child is gone too')
})

t.test('kill: a group that ignores SIGTERM gets SIGKILL after the grace', async (t) => {
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 0.1; done'] }), sink)
  await until(() => out.stdout.includes('ready'))
  const started = Date.now()
  await c.kill(300)
  const took = Date.now() - started
  const exit = await c.exited
  t.equal(exit.signal, 'SIGKILL')
  t.equal(exit.killed, true)
  t.ok(took >= 250 && took < 3000, `SIGKILL after ${took} ms`)
})

t.test('kill: a TERM trap that exits gracefully is honoured within the grace', async (t) => {
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'trap "echo graceful; exit 0" TERM; echo ready; while true; do sleep 0.1; done'] }), sink)
  await until(() => out.stdout.includes('ready'))
  const started = Date.now()
  await c.kill(3000)
  const exit = await c.exited
  t.equal(exit.exitCode, 0)
  t.equal(exit.killed, true)
  t.equal(out.stdout, 'ready\ngraceful\n')
  t.ok(Date.now() - started < 3000)
})

t.test('a background process left behind is killed when the task ends', async (t) => {
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'sleep 30 >/dev/null 2>&1 & echo "bg $!"'] }), sink)
  t.equal((await c.exited).exitCode, 0)
  const bg = Number(/bg (\d+)/.exec(out.stdout)![1])
  await until(async () => !(await alive(bg)), 1000)
  t.notOk(await alive(bg))
})

t.test('without cgroups (limits: false) output, exit codes and group kill work the same', async (t) => {
  const plain = new ProcessContainerizer({ limits: false })
  t.same(await plain.enforcedControllers(), [])
  const { out, sink } = collect()
  const c1 = await plain.launch(spec({ command: ['sh', '-c', 'echo out; echo err >&2; cat /proc/self/cgroup | grep -c "regatta" ; exit 5'] }), sink)
  t.equal((await c1.exited).exitCode, 5)
  t.equal(out.stdout, 'out\n0\n', 'not in any regatta cgroup')
  t.equal(out.stderr, 'err\n')
  const k = collect()
  const c2 = await plain.launch(spec({ command: ['sh', '-c', 'sleep 30 & echo "child $!"; wait'] }), k.sink)
  await until(() => k.out.stdout.includes('child '))
  const childPid = Number(/child (\d+)/.exec(k.out.stdout)![1])
  await c2.kill(1000)
  t.equal((await c2.exited).killed, true)
  await until(async () => !(await alive(childPid)), 1000)
  t.notOk(await alive(childPid))
})

t.test('memory limit: a command over it is OOM-killed and reported', { skip: noMemoryCgroup }, async (t) => {
  const c = await cz.launch(spec({ command: ['sh', '-c', 'head -c 64m /dev/zero | tail'], memMb: 16 }), () => {})
  const exit = await c.exited
  t.equal(exit.exitCode, 137, 'the shell reports its pipeline killed by SIGKILL')
  t.equal(exit.oomKilled, true)
  const ok = await cz.launch(spec({ command: ['sh', '-c', 'head -c 4m /dev/zero | tail | wc -c'], memMb: 64 }), () => {})
  t.same(await ok.exited, { exitCode: 0, killed: false }, 'within the limit it runs')
})

t.test('limits are written to the task cgroup, which is removed at exit', { skip: noMemoryCgroup }, async (t) => {
  const { out, sink } = collect()
  const script = 'cg=$(grep -E "^[0-9]+:memory:" /proc/self/cgroup | cut -d: -f3); echo "$cg"; ' +
    'cat /sys/fs/cgroup/memory$cg/memory.limit_in_bytes; ' +
    'cgc=$(grep -E "^[0-9]+:cpu:" /proc/self/cgroup | cut -d: -f3); cat /sys/fs/cgroup/cpu$cgc/cpu.cfs_quota_us 2>/dev/null || echo none'
  const c = await cz.launch(spec({ taskId: 'limits/1', command: ['sh', '-c', script], memMb: 32, cpus: 0.5 }), sink)
  t.equal((await c.exited).exitCode, 0)
  const [cgroup, limit, quota] = out.stdout.trim().split('\n')
  t.match(cgroup, new RegExp(`^/${cgroupParent}/limits_1-[0-9a-f]{6}$`))
  t.equal(Number(limit), 32 * 1024 * 1024)
  if (controllers.includes('cpu')) t.equal(quota, '50000')
  for (const controller of controllers) {
    const left = (await readdir(join('/sys/fs/cgroup', controller, cgroupParent), { withFileTypes: true })).filter((e) => e.isDirectory())
    t.same(left.map((e) => e.name), [], `no task cgroup left under ${controller}`)
  }
})

t.test('recover returns nothing: processes cannot be re-attached', async (t) => {
  t.same(await cz.recover(), [])
  await t.resolves(cz.remove())
})

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}
