// Benchmark `allocator`: full allocate() passes over a large synthetic cluster (10,000 agents,
// 500 frameworks in 20 roles with hierarchy, weights, quotas, reservations, revocable
// resources, existing allocations and refuse filters). Pure CPU: no NATS, no processes.
import { loadavg } from 'node:os'
import { pathToFileURL } from 'node:url'
import { allocate, type AllocationSnapshot, type AllocatorAgent, type AllocatorFramework, type Allocation, type RefuseFilter, type RoleConfig } from '../../services/master/src/allocator/index.js'
import type { Resource } from '../../shared/resources/index.js'

const AGENTS = Number(process.env.BENCH_AGENTS ?? 10_000)
const FRAMEWORKS = Number(process.env.BENCH_FRAMEWORKS ?? 500)
const TASKS = 4_000
const FILTERS = 3_000
const WARMUP = 5
const RUNS = Number(process.env.BENCH_RUNS ?? 30)

const ROLES = [
  'ci', 'ci/main', 'ci/pr', 'ci/nightly', 'web', 'web/staging', 'data', 'data/etl', 'batch', 'ml',
  'ml/train', 'ml/serve', 'infra', 'release', 'docs', 'qa', 'perf', 'sec', 'mobile', 'desktop',
]

const ROLE_CONFIG: Record<string, RoleConfig> = {
  'ci/main': { weight: 2, quota: { cpus: 8_000, mem: 32_000_000 } },
  release: { weight: 3, quota: { cpus: 2_000, mem: 8_000_000 } },
  infra: { quota: { cpus: 1_000, mem: 4_000_000 } },
  ml: { weight: 0.5 },
  'ml/train': { weight: 2 },
  web: { weight: 1.5 },
}

/** mulberry32: a deterministic generator, so every run measures the same cluster. */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let x = s
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

export function buildSnapshot(now = 1_700_000_000_000): AllocationSnapshot {
  const rand = rng(42)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1))

  // Agents: what they have, and what is still free (their own mutable copy of the free amounts).
  const agents: AllocatorAgent[] = []
  const free: Array<{ cpus: number; mem: number; disk: number }> = []
  for (let i = 0; i < AGENTS; i++) {
    const cpus = int(8, 32)
    const mem = cpus * int(2, 8) * 1024
    const disk = int(50, 500) * 1024
    const total: Resource[] = [
      { name: 'cpus', scalar: cpus }, { name: 'mem', scalar: mem }, { name: 'disk', scalar: disk },
      { name: 'ports', ranges: [{ begin: 31000, end: 32000 }] },
    ]
    const available: Resource[] = []
    // One agent in ten reserves part of itself for a role.
    let reserved: Resource[] = []
    if (rand() < 0.1) {
      const role = pick(['ci/main', 'release', 'ml/train', 'data', 'infra'])
      reserved = [{ name: 'cpus', scalar: 4, role }, { name: 'mem', scalar: 8192, role }]
      total[0] = { name: 'cpus', scalar: cpus - 4 }
      total[1] = { name: 'mem', scalar: mem - 8192 }
      total.push(...reserved)
      available.push(...reserved)
    }
    agents.push({ id: `agent-${i.toString().padStart(5, '0')}`, hostname: `host-${i}.bench`, pool: i % 3 === 0 ? 'linux-large' : 'linux', attributes: { os: 'linux', arch: 'amd64' }, total, available })
    free.push({ cpus: total[0].scalar as number, mem: total[1].scalar as number, disk })
    // One in five advertises revocable (oversubscribed) capacity.
    if (rand() < 0.2) available.push({ name: 'cpus', scalar: int(1, 4), revocable: true }, { name: 'mem', scalar: int(1, 4) * 1024, revocable: true })
  }

  const frameworks: AllocatorFramework[] = []
  for (let f = 0; f < FRAMEWORKS; f++) {
    const role = ROLES[f % ROLES.length]
    const roles = rand() < 0.1 ? [role, pick(ROLES)] : [role]
    frameworks.push({
      id: `fw-${f.toString().padStart(4, '0')}`,
      roles: [...new Set(roles)],
      revocable: rand() < 0.2,
      suppressedRoles: rand() < 0.05 ? [role] : [],
      active: rand() >= 0.05,
    })
  }

  // Existing allocations: tasks on random agents, taken out of what is free.
  // One Allocation per task (the master merges per framework and role; the allocator takes both).
  const held: Allocation[] = []
  for (let t = 0; t < TASKS; t++) {
    const a = int(0, AGENTS - 1)
    const cpus = int(1, 4)
    const mem = int(1, 8) * 1024
    if (free[a].cpus < cpus || free[a].mem < mem) continue
    free[a].cpus -= cpus
    free[a].mem -= mem
    const fw = frameworks[int(0, FRAMEWORKS - 1)]
    const role = fw.roles[0]
    held.push({ frameworkId: fw.id, role, resources: [{ name: 'cpus', scalar: cpus }, { name: 'mem', scalar: mem }] })
  }
  for (let i = 0; i < AGENTS; i++) {
    agents[i].available.unshift(
      { name: 'cpus', scalar: free[i].cpus }, { name: 'mem', scalar: free[i].mem }, { name: 'disk', scalar: free[i].disk },
      { name: 'ports', ranges: [{ begin: 31000, end: 32000 }] },
    )
  }

  // Refuse filters: most active (some covering the whole free part, some only a piece), some expired.
  const filters: RefuseFilter[] = []
  for (let i = 0; i < FILTERS; i++) {
    const a = int(0, AGENTS - 1)
    const whole = rand() < 0.5
    filters.push({
      frameworkId: frameworks[int(0, FRAMEWORKS - 1)].id,
      agentId: agents[a].id,
      resources: whole ? agents[a].available : [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 1024 }],
      until: rand() < 0.8 ? now + 5_000 : now - 1,
    })
  }

  return { now, agents, frameworks, roles: ROLE_CONFIG, allocations: held, filters }
}

function percentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]
}

export async function run(): Promise<void> {
  const snapshot = buildSnapshot()
  let offers = 0
  for (let i = 0; i < WARMUP; i++) offers = allocate({ ...snapshot, now: snapshot.now + i }).length
  const times: number[] = []
  const cpu: number[] = []
  for (let i = 0; i < RUNS; i++) {
    // A new `now` each run changes the agents' visiting order, as successive passes would.
    const s = { ...snapshot, now: snapshot.now + WARMUP + i }
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    offers = allocate(s).length
    times.push(performance.now() - t0)
    const c = process.cpuUsage(c0)
    cpu.push((c.user + c.system) / 1000)
  }
  times.sort((a, b) => a - b)
  cpu.sort((a, b) => a - b)
  const p50 = Math.round(percentile(times, 50) * 100) / 100
  const p99 = Math.round(percentile(times, 99) * 100) / 100
  process.stdout.write(`allocator: ${AGENTS} agents, ${FRAMEWORKS} frameworks, ${ROLES.length} roles, ${snapshot.filters.length} filters, ` +
    `${snapshot.allocations.length} allocations: ${offers} offers a pass; p50 ${p50} ms, p99 ${p99} ms over ${RUNS} runs ` +
    `(min ${times[0].toFixed(2)}, max ${times[times.length - 1].toFixed(2)}; process CPU p50 ${percentile(cpu, 50).toFixed(2)} ms; ` +
    `load average ${loadavg()[0].toFixed(1)} on this machine)\n`)
  process.stdout.write(`${JSON.stringify({ bench: 'allocator', agents: AGENTS, frameworks: FRAMEWORKS, p50_ms: p50, p99_ms: p99 })}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await run()
