// Benchmark `launch`: a real nats-server, one master (its own process), 200 agents of a
// simulated fleet (real agent code, a containerizer that finishes each task at once; its own
// process) and one framework launching 20,000 tasks: tasks per second from the first offer to
// the last acknowledged FINISHED.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectNats } from '../../shared/nats/index.js'
import { scalar } from '../../shared/resources/index.js'
import { Scheduler } from '../../shared/scheduler/index.js'
import { silentLogger } from '../../shared/log/index.js'
import type { Offer, TaskSpec } from '../../shared/protocol/index.js'
import { startNatsServer } from '../helpers/nats-server.js'

const AGENTS = Number(process.env.BENCH_AGENTS ?? 200)
const TASKS = Number(process.env.BENCH_TASKS ?? 20_000)
const TASK_CPUS = 1
const TASK_MEM = 256

/** CPU seconds a process has used so far (Linux /proc; clock ticks of 10 ms). */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (!pid) return NaN
  try {
    const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return NaN
  }
}

function startProcess(args: string[], ready: RegExp, logLevel = 'warn'): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const profile = process.env.BENCH_PROFILE_DIR ? [process.env.BENCH_PROFILE_KIND === 'heap' ? '--heap-prof' : '--cpu-prof', process.env.BENCH_PROFILE_KIND === 'heap' ? '--heap-prof-dir' : '--cpu-prof-dir', process.env.BENCH_PROFILE_DIR] : []
    // both run as JavaScript bundles, as `regatta master` and `regatta agent` do
    const child = spawn(process.execPath, [...profile, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REGATTA_LOG_LEVEL: logLevel } })
    let out = ''
    const onData = (d: Buffer): void => {
      out += d.toString()
      if (ready.test(out)) resolve(child)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out.slice(-2000)}`)))
  })
}

/**
 * The fleet runs as production agents do: bundled JavaScript (as `regatta agent` runs from the
 * CLI's bundle), not TypeScript through tsx. Built next to node_modules so packages resolve.
 */
async function bundleFleet(): Promise<string> {
  const esbuild = await import('esbuild')
  const outfile = new URL('../../node_modules/.cache/regatta-bench/simulated-fleet.js', import.meta.url).pathname
  await esbuild.build({
    entryPoints: [new URL('../helpers/simulated-fleet-main.ts', import.meta.url).pathname],
    outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'error',
  })
  return outfile
}

export async function run(): Promise<void> {
  const nats = await startNatsServer()
  // The 200 simulated agents share one machine; their work dirs go on tmpfs where there is one,
  // as 200 real agents would each have their own disk (here one ext4 mkdir takes ~0.2 ms).
  const shm = await stat('/dev/shm').then((s) => s.isDirectory(), () => false)
  const workDir = await mkdtemp(join(shm ? '/dev/shm' : tmpdir(), 'regatta-bench-launch-'))
  const children: ChildProcess[] = []
  try {
    children.push(await startProcess(['services/cli/bin/regatta.mjs', 'master', '--nats', nats.url, '--id', 'bench-master', '--http', '127.0.0.1:0'], /"msg":"elected leader"/, 'info'))
    children.push(await startProcess([await bundleFleet(), nats.url, String(AGENTS), 'cpus:8;mem:8192;disk:10000', workDir], /^ready$/m))
    const nc = await connectNats(nats.url, 'bench-framework')
    let next = 0
    let finished = 0
    let firstOffer = 0
    let done!: () => void
    const allDone = new Promise<void>((r) => { done = r })
    const s: Scheduler = new Scheduler({
      nc, logger: silentLogger(), framework: { name: 'bench-launch', roles: ['bench'] },
      onEvent(e) {
        if (e.type === 'OFFERS') {
          if (!firstOffer) firstOffer = performance.now()
          for (const offer of e.offers) launchOn(offer)
        } else if (e.type === 'UPDATE') {
          s.acknowledge(e.status)
          if (e.status.state === 'FINISHED' && ++finished === TASKS) done()
          else if (e.status.state !== 'FINISHED' && e.status.state !== 'STARTING' && e.status.state !== 'RUNNING') {
            process.stderr.write(`unexpected ${e.status.state} for ${e.status.taskId}: ${e.status.message ?? ''}\n`)
          }
        }
      },
    })
    const launchOn = (offer: Offer): void => {
      const fit = Math.min(Math.floor(scalar(offer.resources, 'cpus') / TASK_CPUS + 1e-9), Math.floor(scalar(offer.resources, 'mem') / TASK_MEM), TASKS - next)
      if (fit <= 0) {
        s.decline([offer.id], { refuseSeconds: next >= TASKS ? 3600 : 0 }).catch(() => undefined)
        return
      }
      const tasks: TaskSpec[] = []
      for (let i = 0; i < fit; i++) {
        tasks.push({ taskId: `t${next++}`, resources: [{ name: 'cpus', scalar: TASK_CPUS }, { name: 'mem', scalar: TASK_MEM }], container: { command: ['true'] } })
      }
      s.launch(offer, tasks, { refuseSeconds: 0 }).catch((err: Error) => process.stderr.write(`launch failed: ${err.message}\n`))
    }
    await s.start()
    const timeout = setTimeout(() => { process.stderr.write(`timed out: ${finished}/${TASKS} finished\n`); done() }, 600_000)
    await allDone
    clearTimeout(timeout)
    const seconds = (performance.now() - firstOffer) / 1000
    const [masterCpu, fleetCpu, natsCpu] = await Promise.all([children[0]?.pid, children[1]?.pid, nats.process.pid].map(cpuSeconds))
    const own = process.cpuUsage()
    process.stdout.write(`CPU seconds (whole run): master ${masterCpu}, simulated fleet ${fleetCpu}, nats-server ${natsCpu}, framework ${((own.user + own.system) / 1e6).toFixed(1)}\n`)
    const rate = Math.round(finished / seconds)
    process.stdout.write(`launch: ${finished} tasks on ${AGENTS} simulated agents (instant containerizer, work dirs in ${workDir}) in ${seconds.toFixed(2)} s from first offer to last acknowledged FINISHED: ${rate} tasks/s\n`)
    await s.teardown().catch(() => undefined)
    await nc.close()
    process.stdout.write(`${JSON.stringify({ bench: 'launch', agents: AGENTS, tasks: finished, tasks_per_s: rate })}\n`)
  } finally {
    for (const c of children) c.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 3000))
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await nats.stop()
    await rm(workDir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run()
