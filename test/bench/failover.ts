// Benchmark `failover`: 3 `regatta master` processes and 3 process-containerizer agents on a
// real nats-server, a framework keeping a steady load of short tasks. Ten times: kill -9 the
// leader, measure from the kill to the framework's first OFFERS after it (the old leader is
// dead by then, so they come from the new one, which a state request confirms), then start the
// killed master again so there are always three. Lost tasks: launched but never ended with a
// terminal update the framework acknowledged.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectNats } from '../../shared/nats/index.js'
import { scalar } from '../../shared/resources/index.js'
import { Scheduler } from '../../shared/scheduler/index.js'
import { silentLogger } from '../../shared/log/index.js'
import { isTerminal, type Offer, type TaskSpec } from '../../shared/protocol/index.js'
import { startNatsServer } from '../helpers/nats-server.js'
import {
  leaderOf, startAgentProcess, startMasterProcess, stopAllProcesses, waitForLeader, type MasterProcess,
} from '../helpers/processes.js'

const KILLS = Number(process.env.BENCH_KILLS ?? 10)
const LEASE_TTL_MS = Number(process.env.BENCH_LEASE_TTL_MS ?? 1_000)
const HEARTBEAT = '500ms'
const AGENTS = 3
const AGENT_RESOURCES = 'cpus:2;mem:2048;disk:10000;ports:[31000-31100]'
/** Tasks in flight at any time (the steady load), each `sleep TASK_SECONDS`. */
const IN_FLIGHT = 20
const TASK_SECONDS = 1
const TASK_CPUS = 0.1
const TASK_MEM = 32
/** Steady load between kills. */
const STEADY_MS = 2_000

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!

export async function run(): Promise<void> {
  const nats = await startNatsServer()
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-bench-failover-'))
  const masters: MasterProcess[] = []
  try {
    const settings = { natsUrl: nats.url, leaseTtl: `${LEASE_TTL_MS}ms`, heartbeatInterval: HEARTBEAT }
    masters.push(await startMasterProcess({ ...settings, id: 'm1', waitFor: 'leader' }))
    masters.push(...await Promise.all(['m2', 'm3'].map((id) => startMasterProcess({ ...settings, id }))))
    const ports = masters.map((m) => Number(new URL(m.httpUrl).port))
    await Promise.all(Array.from({ length: AGENTS }, (_, i) => startAgentProcess({
      natsUrl: nats.url, workDir: join(workDir, `agent-${i}`), containerizer: 'process', resources: AGENT_RESOURCES,
    })))

    const nc = await connectNats(nats.url, 'bench-failover')
    let next = 0
    let inFlight = 0
    const launched = new Set<string>()
    const ended = new Map<string, string>()
    const endStates = new Map<string, number>()
    let measuring = false
    let firstOfferAt = 0
    let offerEpoch: number | undefined
    let stopping = false
    const s: Scheduler = new Scheduler({
      nc, logger: silentLogger(), framework: { name: 'bench-failover', roles: ['*'], failoverTimeoutMs: 600_000 },
      onEvent(e) {
        if (e.type === 'OFFERS') {
          if (measuring && !firstOfferAt) {
            firstOfferAt = performance.now()
            offerEpoch = e.epoch
          }
          for (const o of e.offers) launchOn(o)
        } else if (e.type === 'UPDATE') {
          const st = e.status
          s.acknowledge(st)
          // only a real terminal update counts (one with a uuid, acknowledged above), not a reconciliation answer
          if (!isTerminal(st.state) || st.uuid === undefined || !launched.has(st.taskId) || ended.has(st.taskId)) return
          ended.set(st.taskId, st.state)
          endStates.set(st.state, (endStates.get(st.state) ?? 0) + 1)
          inFlight--
        }
      },
    })
    const launchOn = (offer: Offer): void => {
      const fit = Math.floor(Math.min(scalar(offer.resources, 'cpus') / TASK_CPUS + 1e-9, scalar(offer.resources, 'mem') / TASK_MEM + 1e-9))
      const n = stopping ? 0 : Math.max(0, Math.min(fit, IN_FLIGHT - inFlight))
      if (n === 0) {
        s.decline([offer.id], { refuseSeconds: 0.2 }).catch(() => undefined)
        return
      }
      const tasks: TaskSpec[] = []
      for (let i = 0; i < n; i++) {
        const taskId = `f${next++}`
        launched.add(taskId)
        inFlight++
        tasks.push({ taskId, resources: [{ name: 'cpus', scalar: TASK_CPUS }, { name: 'mem', scalar: TASK_MEM }], container: { command: ['sleep', String(TASK_SECONDS)] } })
      }
      s.launch(offer, tasks, { refuseSeconds: 0 }).catch((err: Error) => process.stderr.write(`launch failed: ${err.message}\n`))
    }
    await s.start()
    await new Promise((r) => setTimeout(r, STEADY_MS))

    const samples: number[] = []
    for (let k = 1; k <= KILLS; k++) {
      const before = await waitForLeader(nc)
      const victim = masters.find((m) => m.id === before.id)!
      firstOfferAt = 0
      offerEpoch = undefined
      const killedAt = performance.now()
      victim.kill('SIGKILL')
      await victim.exited
      // the victim is dead: whatever offers arrive from here on come from the new leader
      measuring = true
      const deadline = Date.now() + 30_000
      while (!firstOfferAt && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
      measuring = false
      const after = await leaderOf(nc).catch(() => null)
      const ms = firstOfferAt ? Math.round(firstOfferAt - killedAt) : NaN
      samples.push(ms)
      const confirmed = after && after.id !== before.id && after.epoch > before.epoch
      process.stdout.write(`kill ${k}: ${before.id} (epoch ${before.epoch}) killed; first offer after ${ms} ms; leader now ${after?.id ?? '?'} (epoch ${after?.epoch ?? '?'}${offerEpoch !== undefined ? `, offer epoch ${offerEpoch}` : ''})${confirmed ? '' : ' NOT CONFIRMED'}; tasks launched ${launched.size}, ended ${ended.size}\n`)
      // three masters again: the killed one comes back as a standby
      const i = masters.indexOf(victim)
      masters[i] = await startMasterProcess({ ...settings, id: victim.id, httpPort: ports[i]! })
      await new Promise((r) => setTimeout(r, STEADY_MS))
    }

    // stop launching; give every launched task time to end
    stopping = true
    const drainDeadline = Date.now() + 30_000
    while (ended.size < launched.size && Date.now() < drainDeadline) await new Promise((r) => setTimeout(r, 50))
    const lost = [...launched].filter((id) => !ended.has(id))
    const sorted = samples.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
    const p50 = sorted.length ? percentile(sorted, 50) : NaN
    const max = sorted.length === samples.length ? sorted[sorted.length - 1]! : NaN
    process.stdout.write(`failover: lease TTL ${LEASE_TTL_MS} ms, agent heartbeat ${HEARTBEAT}, ${AGENTS} process agents, ${IN_FLIGHT} tasks of ${TASK_SECONDS} s in flight\n`)
    process.stdout.write(`kill -> first offer from the new leader (ms): ${samples.join(', ')}; median ${p50}, max ${max}\n`)
    process.stdout.write(`tasks: ${launched.size} launched, ${ended.size} ended (${[...endStates].map(([k, v]) => `${k} ${v}`).join(', ')}), ${lost.length} lost${lost.length ? ` (${lost.slice(0, 20).join(' ')})` : ''}\n`)
    await s.teardown().catch(() => undefined)
    await nc.close()
    process.stdout.write(`${JSON.stringify({ bench: 'failover', kills: samples.length, p50_ms: p50, max_ms: max, lost_tasks: lost.length })}\n`)
  } finally {
    await stopAllProcesses()
    await nats.stop()
    await rm(workDir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run()
