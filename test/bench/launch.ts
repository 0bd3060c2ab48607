// Benchmark `launch`: a real nats-server, one master (its own process), 200 agents of a
// simulated fleet (real agent code, a containerizer that finishes each task at once; its own
// process) and one framework launching 20,000 tasks: tasks per second from the first offer to
// the last acknowledged FINISHED.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
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

function startProcess(args: string[], ready: RegExp, logLevel = 'warn'): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const profile = process.env.BENCH_PROFILE_DIR ? [process.env.BENCH_PROFILE_KIND === 'heap' ? '--heap-prof' : '--cpu-prof', process.env.BENCH_PROFILE_KIND === 'heap' ? '--heap-prof-dir' : '--cpu-prof-dir', process.env.BENCH_PROFILE_DIR] : []
    // the master runs as `regatta master` does (its bundle); the fleet's entry is TypeScript
    const loader = args[0]!.endsWith('.ts') ? ['--import', 'tsx'] : []
    const child = spawn(process.execPath, [...profile, ...loader, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, REGATTA_LOG_LEVEL: logLevel } })
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

export async function run(): Promise<void> {
  const nats = await startNatsServer()
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-bench-launch-'))
  const children: ChildProcess[] = []
  try {
    children.push(await startProcess(['services/cli/bin/regatta.mjs', 'master', '--nats', nats.url, '--id', 'bench-master', '--http', '127.0.0.1:0'], /"msg":"elected leader"/, 'info'))
    children.push(await startProcess(['test/helpers/simulated-fleet-main.ts', nats.url, String(AGENTS), 'cpus:8;mem:8192;disk:10000', workDir], /^ready$/m))
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
    const rate = Math.round(finished / seconds)
    process.stdout.write(`launch: ${finished} tasks on ${AGENTS} simulated agents (instant containerizer) in ${seconds.toFixed(2)} s from first offer to last acknowledged FINISHED: ${rate} tasks/s\n`)
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
