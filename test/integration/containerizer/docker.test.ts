// The Docker containerizer against the real engine, with a locally built busybox image.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import t from 'tap'
import Dockerode from 'dockerode'
import {
  BUILD_CAPABILITIES, DockerContainerizer, detectContainerizer, LABEL_AGENT, LABEL_TASK,
  type LaunchSpec, type OutputSink,
} from '../../../services/agent/src/containerizer/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import {
  dockerAvailable, ensureBusyboxImage, listContainersByLabel, removeContainersByLabel, startBrokenRegistry, testDocker,
} from '../../helpers/docker.js'

const available = await dockerAvailable()
const skip = available ? false : 'no Docker engine answers'
const AGENT = `test-docker-${process.pid}-${randomBytes(3).toString('hex')}`
const docker = testDocker()
let image = ''
let sandbox = ''
let seq = 0

if (available) {
  image = await ensureBusyboxImage()
  sandbox = await mkdtemp(join(tmpdir(), 'regatta-docker-sandbox-'))
  t.teardown(async () => {
    await removeContainersByLabel(LABEL_AGENT, AGENT)
    await rm(sandbox, { recursive: true, force: true })
  })
}

function spec(over: Partial<LaunchSpec> = {}): LaunchSpec {
  const taskId = over.taskId ?? `task-${++seq}`
  return {
    taskId, frameworkId: 'fw-test', agentId: AGENT, command: ['true'], env: {}, sandbox,
    network: 'none', mounts: [], labels: {}, ...over,
  }
}

function collect(): { out: { stdout: string; stderr: string }; sink: OutputSink } {
  const out = { stdout: '', stderr: '' }
  return { out, sink: (stream, chunk) => { out[stream] += chunk.toString() } }
}

function containerizer(): DockerContainerizer {
  return new DockerContainerizer({ docker, defaultImage: image })
}

t.test('detectContainerizer finds the engine, and falls back to process when none answers', { skip }, async (t) => {
  t.equal(await detectContainerizer({ docker }), 'docker')
  const nowhere = new Dockerode({ socketPath: join(sandbox, 'no-such-docker.sock') })
  t.equal(await detectContainerizer({ docker: nowhere, timeoutMs: 500 }), 'process')
})

t.test('stdout and stderr arrive separately, and the exit code is reported', { skip }, async (t) => {
  const cz = containerizer()
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] }), sink)
  const exit = await c.exited
  t.equal(exit.exitCode, 3)
  t.equal(exit.killed, false)
  t.notOk(exit.oomKilled)
  t.equal(out.stdout, 'out\n')
  t.equal(out.stderr, 'err\n')
  t.match(c.id, /^[0-9a-f]{64}$/)
})

t.test('all output is delivered before exited resolves', { skip }, async (t) => {
  const cz = containerizer()
  const { out, sink } = collect()
  const script = 'i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done; echo done >&2'
  const c = await cz.launch(spec({ command: ['sh', '-c', script] }), sink)
  const exit = await c.exited
  t.equal(exit.exitCode, 0)
  const lines = out.stdout.split('\n').filter(Boolean)
  t.equal(lines.length, 3000)
  t.equal(lines[2999], 'line 2999')
  t.equal(out.stderr, 'done\n')
})

t.test('env and workdir are honoured; the default workdir is the sandbox mount', { skip }, async (t) => {
  const cz = containerizer()
  const a = collect()
  const c1 = await cz.launch(spec({ command: ['sh', '-c', 'echo "$FOO|$BAR"; pwd'], env: { FOO: 'bar baz', BAR: 'x=y' }, workdir: '/tmp' }), a.sink)
  t.equal((await c1.exited).exitCode, 0)
  t.equal(a.out.stdout, 'bar baz|x=y\n/tmp\n')
  const b = collect()
  const c2 = await cz.launch(spec({ command: ['pwd'] }), b.sink)
  t.equal((await c2.exited).exitCode, 0)
  t.equal(b.out.stdout, '/sandbox\n')
})

t.test('the sandbox is mounted read-write and extra mounts honour readOnly', { skip }, async (t) => {
  const cz = containerizer()
  const extra = await mkdtemp(join(tmpdir(), 'regatta-docker-extra-'))
  t.teardown(() => rm(extra, { recursive: true, force: true }))
  await writeFile(join(extra, 'input.txt'), 'from the host\n')
  const { out, sink } = collect()
  const script = 'echo written-inside > /sandbox/out.txt; cat /data/input.txt; if echo x > /data/nope; then echo WRITABLE; else echo readonly; fi'
  const c = await cz.launch(spec({ command: ['sh', '-c', script], mounts: [{ source: extra, target: '/data', readOnly: true }] }), sink)
  t.equal((await c.exited).exitCode, 0)
  t.equal(await readFile(join(sandbox, 'out.txt'), 'utf8'), 'written-inside\n')
  t.equal(out.stdout, 'from the host\nreadonly\n')
})

t.test('network none leaves only loopback; host shares the host interfaces', { skip }, async (t) => {
  const cz = containerizer()
  const ifaces = (text: string): string[] => text.split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean).sort()
  const none = collect()
  const c1 = await cz.launch(spec({ command: ['cat', '/proc/net/dev'] }), none.sink)
  t.equal((await c1.exited).exitCode, 0)
  t.same(ifaces(none.out.stdout), ['lo'])
  const lo = collect()
  // a server on localhost, reached by name (ping would need NET_RAW, which builds do not get)
  const serve = 'mkdir -p /tmp/www && echo reachable > /tmp/www/index.html && httpd -p 127.0.0.1:8099 -h /tmp/www && sleep 0.3 && wget -q -O- http://localhost:8099/'
  const c3 = await cz.launch(spec({ command: ['sh', '-c', `grep -w localhost /etc/hosts && ${serve}`] }), lo.sink)
  t.equal((await c3.exited).exitCode, 0, 'localhost resolves and answers without a network')
  t.match(lo.out.stdout, /^127\.0\.0\.1\s+localhost\n(.|\n)*reachable\n$/)
  const host = collect()
  const c2 = await cz.launch(spec({ command: ['cat', '/proc/net/dev'], network: 'host' }), host.sink)
  t.equal((await c2.exited).exitCode, 0)
  t.same(ifaces(host.out.stdout), ifaces(await readFile('/proc/net/dev', 'utf8')))
})

t.test('limits and labels are set on the container', { skip }, async (t) => {
  const cz = containerizer()
  const c = await cz.launch(spec({ taskId: 'limits', command: ['true'], cpus: 0.5, memMb: 64, labels: { 'ci.job': 'build' } }), () => {})
  await c.exited
  const info = await docker.getContainer(c.id).inspect()
  t.equal(info.HostConfig.NanoCpus, 500_000_000)
  t.equal(info.HostConfig.Memory, 64 * 1024 * 1024)
  t.equal(info.HostConfig.PidsLimit, 4096)
  t.equal(info.HostConfig.NetworkMode, 'none')
  t.equal(info.HostConfig.AutoRemove, false)
  t.match(info.Config.Labels, { 'regatta.task': 'limits', 'regatta.framework': 'fw-test', 'regatta.agent': AGENT, 'ci.job': 'build' })
  t.equal(info.HostConfig.Privileged, false)
  t.same(info.HostConfig.CapDrop, ['ALL'], 'every capability dropped')
  t.same([...(info.HostConfig.CapAdd ?? [])].sort(), [...BUILD_CAPABILITIES].sort(), 'but the few a build needs')
  t.same(info.HostConfig.SecurityOpt, ['no-new-privileges'])
  t.notOk((info.HostConfig.Binds ?? []).some((b: string) => b.includes('docker.sock')), 'the Docker socket is never mounted')
})

t.test('a build container cannot use the dropped capabilities, gain privileges, or fork without bound', { skip }, async (t) => {
  const cz = new DockerContainerizer({ docker, defaultImage: image, pidsLimit: 64 })
  const run = async (taskId: string, script: string): Promise<{ code: number | null; out: string }> => {
    const { out, sink } = collect()
    const c = await cz.launch(spec({ taskId, command: ['sh', '-c', script] }), sink)
    const exit = await c.exited
    await cz.remove(c.id)
    return { code: exit.exitCode, out: out.stdout + out.stderr }
  }
  const mknod = await run('no-mknod', 'mknod /tmp/dev c 1 3 && echo made')
  t.not(mknod.code, 0, `mknod (CAP_MKNOD) is refused: ${mknod.out.trim()}`)
  const caps = await run('caps', "grep -E '^Cap(Eff|Bnd)' /proc/self/status")
  // the bounding set holds only the build capabilities: bits of CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) FSETID(4) KILL(5) SETGID(6) SETUID(7) NET_BIND_SERVICE(10)
  t.match(caps.out, /CapBnd:\s+00000000000004fb/, caps.out.trim())
  const nnp = await run('nnp', "grep NoNewPrivs /proc/self/status")
  t.match(nnp.out, /NoNewPrivs:\s+1/, 'no-new-privileges is set')
  const forks = await run('forks', 'for i in $(seq 1 100); do sleep 5 & done 2>/dev/null; sleep 0.5; ls /proc | grep -c "^[0-9]"')
  const count = Number(forks.out.trim().split('\n').pop())
  t.ok(count <= 64, `the pids limit holds: ${count} processes of 100 asked for`)
})

t.test('a command over its memory limit is OOM-killed: 137 and oomKilled', { skip }, async (t) => {
  const cz = containerizer()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'head -c 64m /dev/zero | tail'], memMb: 16 }), () => {})
  const exit = await c.exited
  t.equal(exit.exitCode, 137)
  t.equal(exit.oomKilled, true)
  t.equal(exit.killed, false)
})

t.test('kill: sleep is stopped quickly and reported killed', { skip }, async (t) => {
  const cz = containerizer()
  const c = await cz.launch(spec({ command: ['sleep', '30'] }), () => {})
  const started = Date.now()
  await c.kill(300)
  const exit = await c.exited
  t.equal(exit.killed, true)
  t.not(exit.exitCode, 0)
  t.ok(Date.now() - started < 5000, `killed in ${Date.now() - started} ms`)
  await c.kill(300) // after the exit: a no-op
})

t.test('kill: a command that ignores SIGTERM gets SIGKILL after the grace', { skip }, async (t) => {
  const cz = containerizer()
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 0.1; done'] }), sink)
  await until(() => out.stdout.includes('ready'))
  const started = Date.now()
  await c.kill(400)
  const took = Date.now() - started
  const exit = await c.exited
  t.equal(exit.exitCode, 137)
  t.equal(exit.killed, true)
  t.ok(took >= 350 && took < 5000, `SIGKILL after ${took} ms`)
})

for (const grace of [2500, 5000]) {
  t.test(`kill: a TERM trap that exits gracefully is honoured within a ${grace} ms grace`, { skip }, async (t) => {
    const cz = containerizer()
    const { out, sink } = collect()
    const script = 'trap "echo graceful; exit 0" TERM; echo ready; while true; do sleep 0.1; done'
    const c = await cz.launch(spec({ command: ['sh', '-c', script] }), sink)
    await until(() => out.stdout.includes('ready'))
    const started = Date.now()
    await c.kill(grace)
    const took = Date.now() - started
    const exit = await c.exited
    t.equal(exit.exitCode, 0)
    t.equal(exit.killed, true)
    t.equal(out.stdout, 'ready\ngraceful\n')
    t.ok(took < grace, `exited after ${took} ms`)
  })
}

t.test('an image that is missing and cannot be pulled fails with IMAGE_PULL_FAILED', { skip }, async (t) => {
  const cz = containerizer()
  const missing = '127.0.0.1:1/regatta-missing:latest' // a loopback "registry": nothing leaves the machine
  const err = await cz.launch(spec({ taskId: 'unpullable', image: missing }), () => {}).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof RegattaError)
  t.equal((err as RegattaError).code, 'IMAGE_PULL_FAILED')
  t.match((err as RegattaError).message, `image ${missing}:`)
  t.same(await listContainersByLabel(LABEL_TASK, 'unpullable'), [])
})

t.test('a pull that fails half-way (error inside the progress stream) is IMAGE_PULL_FAILED', { skip }, async (t) => {
  const registry = await startBrokenRegistry()
  t.teardown(() => registry.close())
  const cz = containerizer()
  const broken = `${registry.host}/regatta-broken:latest`
  const err = await cz.launch(spec({ taskId: 'half-pulled', image: broken }), () => {}).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof RegattaError)
  t.equal((err as RegattaError).code, 'IMAGE_PULL_FAILED')
  t.match((err as RegattaError).message, `image ${broken}: unknown blob`)
  t.ok(registry.requests.some((r) => r.includes('/blobs/')), 'the engine got as far as the layers')
  t.same(await listContainersByLabel(LABEL_TASK, 'half-pulled'), [])
})

t.test('a missing command: exit 127 with the reason on stderr (docker-init execs it)', { skip }, async (t) => {
  const cz = containerizer()
  const { out, sink } = collect()
  const c = await cz.launch(spec({ command: ['/no/such/command'] }), sink)
  const exit = await c.exited
  t.equal(exit.exitCode, 127)
  t.match(out.stderr, '/no/such/command')
})

t.test('a missing command without docker-init fails the launch with CONTAINER_ERROR and leaves no container', { skip }, async (t) => {
  const cz = new DockerContainerizer({ docker, defaultImage: image, init: false })
  const err = await cz.launch(spec({ taskId: 'no-such-command', command: ['/no/such/command'] }), () => {}).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof RegattaError)
  t.equal((err as RegattaError).code, 'CONTAINER_ERROR')
  t.match((err as RegattaError).message, /cannot start container of task no-such-command: .*\/no\/such\/command/)
  t.same(await listContainersByLabel(LABEL_TASK, 'no-such-command'), [])
})

t.test('recover finds this agent\'s containers by label, follows the running ones and reports the exited', { skip }, async (t) => {
  const agentId = `${AGENT}-recover`
  t.teardown(() => removeContainersByLabel(LABEL_AGENT, agentId))
  const before = containerizer()
  const ticks = 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "tick $i"; sleep 0.2; done; exit 4'
  const running = await before.launch(spec({ agentId, taskId: 'running', frameworkId: 'fw-r', command: ['sh', '-c', ticks] }), () => {})
  const done = await before.launch(spec({ agentId, taskId: 'done', frameworkId: 'fw-d', command: ['sh', '-c', 'exit 7'] }), () => {})
  await done.exited
  const sleeper = await before.launch(spec({ agentId, taskId: 'sleeper', frameworkId: 'fw-s', command: ['sleep', '30'] }), () => {})
  const other = await before.launch(spec({ taskId: 'other-agent', command: ['sleep', '30'] }), () => {})
  t.teardown(() => before.remove(other.id))

  // A new containerizer, as after an agent restart.
  const after = containerizer()
  const outputs = new Map<string, string>()
  const recovered = await after.recover(agentId, (taskId) => (_stream, chunk) => {
    outputs.set(taskId, (outputs.get(taskId) ?? '') + chunk.toString())
  })
  const byTask = new Map(recovered.map((r) => [r.taskId, r]))
  t.same([...byTask.keys()].sort(), ['done', 'running', 'sleeper'])
  t.equal(byTask.get('running')!.frameworkId, 'fw-r')
  t.equal(byTask.get('running')!.container.id, running.id)

  t.same(await byTask.get('done')!.container.exited, { exitCode: 7, killed: false })
  const exit = await byTask.get('running')!.container.exited
  t.equal(exit.exitCode, 4)
  t.match(outputs.get('running'), /tick 12\n$/)

  await byTask.get('sleeper')!.container.kill(200)
  const killed = await byTask.get('sleeper')!.container.exited
  t.equal(killed.killed, true)
  t.equal(sleeper.id, byTask.get('sleeper')!.container.id)

  for (const r of recovered) await after.remove(r.container.id)
  t.same(await listContainersByLabel(LABEL_AGENT, agentId), [])
})

t.test('remove deletes the container and tolerates one that is already gone', { skip }, async (t) => {
  const cz = containerizer()
  const c = await cz.launch(spec({ taskId: 'to-remove' }), () => {})
  await c.exited
  t.equal((await listContainersByLabel(LABEL_TASK, 'to-remove')).length, 1)
  await cz.remove(c.id)
  t.same(await listContainersByLabel(LABEL_TASK, 'to-remove'), [])
  await t.resolves(cz.remove(c.id))
})

t.test('a removed image is looked up again rather than failing on the cached presence', { skip }, async (t) => {
  // Named on a loopback "registry", so the pull that follows its removal stays on this machine.
  const repo = '127.0.0.1:1/regatta-busybox'
  const tagged = `${repo}:test-${process.pid}`
  await docker.getImage(image).tag({ repo, tag: `test-${process.pid}` })
  t.teardown(() => docker.getImage(tagged).remove().catch(() => undefined))
  const cz = containerizer()
  const first = await cz.launch(spec({ image: tagged }), () => {})
  t.equal((await first.exited).exitCode, 0)
  await cz.remove(first.id)
  await docker.getImage(tagged).remove()
  const err = await cz.launch(spec({ image: tagged }), () => {}).then(() => undefined, (e: unknown) => e)
  // Not present any more and not pullable: reported as such, not as a create error.
  t.equal((err as RegattaError).code, 'IMAGE_PULL_FAILED')
})

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}
