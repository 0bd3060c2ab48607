// Benchmark `exec`: `regatta exec -- true` in a Docker container on an idle one-agent cluster,
// 20 runs, latency from the command's start to its exit, beside `docker run --rm IMAGE true`
// measured in the same run on the same machine.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectNats } from '../../shared/nats/index.js'
import { silentLogger } from '../../shared/log/index.js'
import { parseResources } from '../../shared/resources/index.js'
import { Master } from '../../services/master/src/master.js'
import { Agent } from '../../services/agent/src/agent.js'
import { DockerContainerizer } from '../../services/agent/src/containerizer/index.js'
import { startNatsServer } from '../helpers/nats-server.js'
import { ensureBusyboxImage } from '../helpers/docker.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 20)

function timeCommand(cmd: string, args: string[]): Promise<{ ms: number; code: number | null }> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.once('error', reject)
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`))
      else resolve({ ms: performance.now() - started, code })
    })
  })
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

export async function run(): Promise<void> {
  const image = await ensureBusyboxImage()
  const nats = await startNatsServer()
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-bench-exec-'))
  const masterNc = await connectNats(nats.url, 'bench')
  const agentNc = await connectNats(nats.url, 'bench')
  const master = new Master({ nc: masterNc, id: 'bench-master', logger: silentLogger() })
  await master.start()
  const agent = new Agent({
    nc: agentNc, workDir, pool: 'default', resources: parseResources('cpus:2;mem:2048;disk:1000'), attributes: {},
    containerizer: new DockerContainerizer({ logger: silentLogger() }), logger: silentLogger(), defaultImage: image, sandboxRetentionMs: 0,
  })
  await agent.start()
  try {
    const bin = new URL('../../services/cli/bin/regatta.mjs', import.meta.url).pathname
    // warm up both paths once (tsx's transform cache, the image's first use)
    await timeCommand(process.execPath, [bin, 'exec', '--nats', nats.url, '--', 'true'])
    await timeCommand('docker', ['run', '--rm', '--network', 'none', image, 'true'])
    const execMs: number[] = []
    const dockerMs: number[] = []
    for (let i = 0; i < RUNS; i++) {
      execMs.push((await timeCommand(process.execPath, [bin, 'exec', '--nats', nats.url, '--', 'true'])).ms)
      dockerMs.push((await timeCommand('docker', ['run', '--rm', '--network', 'none', image, 'true'])).ms)
    }
    const p50 = Math.round(median(execMs))
    const docker = Math.round(median(dockerMs))
    process.stdout.write(`exec: regatta exec -- true, ${RUNS} runs, median ${p50} ms (min ${Math.round(Math.min(...execMs))}, max ${Math.round(Math.max(...execMs))}); docker run --rm ${image} true: median ${docker} ms\n`)
    process.stdout.write(`${JSON.stringify({ bench: 'exec', p50_ms: p50, docker_run_p50_ms: docker })}\n`)
  } finally {
    await agent.stop()
    await master.stop()
    await agentNc.close()
    await masterNc.close()
    await nats.stop()
    await rm(workDir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run()
