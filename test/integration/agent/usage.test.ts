// What the containerizers say a running task uses (RunningContainer.usage, sampled by
// oversubscription): a real task that holds 40 MiB and keeps a CPU busy, measured through
// one-shot Docker stats, through its cgroup v1 (memory, cpuacct), and through /proc when it
// has no cgroup.
import t from 'tap'
import { mkdtemp, readdir, rm, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import {
  DockerContainerizer, LABEL_AGENT, ProcessContainerizer, type Containerizer, type LaunchSpec, type RunningContainer,
} from '../../../services/agent/src/containerizer/index.js'
import { dockerAvailable, ensureBusyboxImage, removeContainersByLabel, testDocker } from '../../helpers/docker.js'
import { waitUntil } from '../../helpers/wait.js'
import type { TapTest } from '../../helpers/tap-types.js'

const AGENT = `test-usage-${process.pid}-${randomBytes(3).toString('hex')}`
const cgroupParent = `regatta-test-${process.pid}-${randomBytes(3).toString('hex')}`
const HOLD_MB = 40
// holds HOLD_MB in dd's buffer (its write to the pipe never completes) and spins a CPU
const SCRIPT = `dd if=/dev/zero bs=${HOLD_MB}M count=1 2>/dev/null | sleep 120 & while :; do :; done`

const sandbox = await mkdtemp(join(tmpdir(), 'regatta-usage-'))
const cgroups = new ProcessContainerizer({ cgroupParent })
const cgroupMemory = (await cgroups.enforcedControllers()).includes('memory')
const dockerUp = await dockerAvailable()
const image = dockerUp ? await ensureBusyboxImage() : ''
t.teardown(async () => {
  if (dockerUp) await removeContainersByLabel(LABEL_AGENT, AGENT)
  for (const controller of ['memory', 'cpu', 'pids', 'cpuacct']) {
    const dir = join('/sys/fs/cgroup', controller, cgroupParent)
    for (const e of await readdir(dir).catch(() => [] as string[])) await rmdir(join(dir, e)).catch(() => undefined)
    await rmdir(dir).catch(() => undefined)
  }
  await rm(sandbox, { recursive: true, force: true })
})

function spec(taskId: string): LaunchSpec {
  return {
    taskId, frameworkId: 'fw-usage', agentId: AGENT, command: ['sh', '-c', SCRIPT], env: {}, sandbox,
    network: 'none', mounts: [], labels: {}, cpus: 0.5, memMb: 128,
  }
}

/** Launches the task, reads its usage until it holds the memory, then twice 800 ms apart; kills it. */
async function measure(t: TapTest, cz: Containerizer, taskId: string, whileRunning?: () => Promise<void>): Promise<void> {
  const c: RunningContainer = await cz.launch(spec(taskId), () => undefined)
  try {
    await whileRunning?.()
    t.ok(c.usage, 'the container can say its usage')
    const first = await waitUntil(`${taskId} to hold ${HOLD_MB} MiB`, async () => {
      const u = await c.usage!()
      return u?.memMb !== undefined && u.memMb >= HOLD_MB ? u : undefined
    }, 10_000, 100)
    const at = Date.now()
    await new Promise((r) => setTimeout(r, 800))
    const second = await c.usage!()
    const cores = ((second?.cpuSeconds ?? 0) - (first.cpuSeconds ?? 0)) / ((Date.now() - at) / 1000)
    t.ok(first.memMb! >= HOLD_MB && first.memMb! < 128, `memory in use: ${first.memMb!.toFixed(1)} MiB (holds ${HOLD_MB}, limit 128)`)
    t.ok(second?.cpuSeconds !== undefined && second.cpuSeconds > first.cpuSeconds!, 'CPU time grows while it spins')
    // limited to 0.5 cpus where limits hold; a busy host may give it less
    t.ok(cores > 0.05 && cores < 1.3, `cores busy: ${cores.toFixed(2)}`)
  } finally {
    await c.kill(0)
    await c.exited
  }
  t.equal(await c.usage!(), undefined, 'nothing once it has exited')
  await cz.remove(c.id)
}

t.test('Checks that a Docker task\'s usage comes from one-shot stats', { skip: dockerUp ? false : 'no Docker engine answers' }, async (t) => {
  const cz = new DockerContainerizer({ docker: testDocker(), defaultImage: image })
  const started = Date.now()
  await measure(t, cz, 'docker-usage')
  t.ok(Date.now() - started < 15_000)
})

t.test('Checks that a process task\'s usage comes from its cgroups', {
  skip: cgroupMemory ? false : 'cgroup v1 memory is not writable here (the /proc test covers the fallback)',
}, async (t) => {
  await measure(t, cgroups, 'cgroup-usage', async () => {
    // accounting cgroups: memory (it has a limit too) and cpuacct (no limit, just CPU time)
    for (const controller of ['memory', 'cpuacct']) {
      const dirs = await readdir(join('/sys/fs/cgroup', controller, cgroupParent)).catch(() => [] as string[])
      t.ok(dirs.some((d) => d.startsWith('cgroup-usage-')), `the task has a ${controller} cgroup`)
    }
  })
})

t.test('Checks that a process task without cgroups is measured from /proc (its process group)', async (t) => {
  await measure(t, new ProcessContainerizer({ limits: false }), 'proc-usage')
})
