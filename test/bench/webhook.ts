// Benchmark `webhook`: on an idle one-agent cluster (a real nats-server, a master and an agent in
// this process, the CI service with a webhook secret and a local stand-in for GitHub's API) and a
// local git repository with a one-job, one-step pipeline whose first instruction prints a marker:
//
//  - 30 signed pushes one after another (each a new commit, each run waited for): latency from
//    just before the webhook POST to the arrival, on NATS (`regatta.output.>`), of the first
//    output chunk holding the marker, so the figure includes the output's delivery. Once with
//    the Docker containerizer, once with the process containerizer (a second cluster).
//  - 50 pushes at once (50 commits, each on its own branch so that no push supersedes another,
//    50 signed POSTs in parallel) on the Docker agent: seconds until the CI API lists all 50 runs
//    as finished.
//  - `docker run --rm --network none IMAGE true`, 20 times in the same run, interleaved with the
//    Docker pushes: the target is a Docker median within 1.5x of it.
//
// Each push's milestones (webhook answered, ACCEPT sent to the master, LAUNCH received by the
// agent, STARTING and RUNNING stamped by the agent, marker seen) are printed as medians: where
// the time goes. Env: BENCH_RUNS (30), BENCH_BURST (50), BENCH_DOCKER_RUNS (20).
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection, Subscription } from 'nats'
import { connectNats } from '../../shared/nats/index.js'
import { silentLogger } from '../../shared/log/index.js'
import { httpAuthFrom } from '../../shared/http/index.js'
import { parseResources } from '../../shared/resources/index.js'
import { Subjects } from '../../shared/protocol/index.js'
import { checkoutCommit } from '../../shared/git/checkout.js'
import { Master } from '../../services/master/src/master.js'
import { Agent } from '../../services/agent/src/agent.js'
import { DockerContainerizer, LABEL_AGENT, ProcessContainerizer } from '../../services/agent/src/containerizer/index.js'
import { runCi, type RunningCi } from '../../services/ci/src/main.js'
import { CI_FRAMEWORK_ID } from '../../services/ci/src/service.js'
import { startNatsServer, type NatsServer } from '../helpers/nats-server.js'
import { ensureBusyboxImage, removeContainersByLabel } from '../helpers/docker.js'
import { startFakeGitHubApi, pushPayload, webhookHeaders, type FakeGitHubApi } from '../helpers/github-api.js'
import { createRepo, type TestRepo } from '../helpers/git-repo.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 30)
const BURST = Number(process.env.BENCH_BURST ?? 50)
const DOCKER_RUNS = Number(process.env.BENCH_DOCKER_RUNS ?? 20)
const SECRET = 'bench-webhook-secret'
const REPO = 'octo/app'
const AGENT_RESOURCES = 'cpus:2;mem:4096;disk:10000'
const MARKER = 'bench-marker'
const FINAL = new Set(['succeeded', 'failed', 'error', 'cancelled'])
/** A short pause after each run ends, so that every push finds an idle cluster. */
const IDLE_MS = 200

const pipeline = (image: string): string => `
name: bench
on:
  push: {}
jobs:
  hello:
    image: ${image}
    resources: { cpus: 0.1, mem: 32 }
    steps:
      - name: marker
        run: echo "${MARKER} \${{ github.sha }}"
`

// ---- figures --------------------------------------------------------------------------------

const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b)
function median(xs: number[]): number {
  const s = sorted(xs)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
/** Nearest-rank percentile. */
function percentile(xs: number[], p: number): number {
  const s = sorted(xs)
  if (s.length === 0) return NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}
const ms = (x: number): string => (Number.isFinite(x) ? `${Math.round(x)}` : '-')

function timeCommand(cmd: string, args: string[]): Promise<number> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.once('error', reject)
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`))
      else resolve(performance.now() - started)
    })
  })
}

// ---- what crosses NATS, timed as it arrives ---------------------------------------------------

/** Milestones of one push, in ms from just before its POST. */
interface Timeline {
  /** performance.now() and Date.now() just before the POST. */
  t0: number
  wall0: number
  /** The webhook's answer (planning, checkout of the commit included, happens before it). */
  answered?: number
  /** The CI service's ACCEPT of an offer with the job's task, seen on the master's subject. */
  accepted?: number
  /** The master's LAUNCH, seen on the agent's command subject. */
  launched?: number
  /** STARTING and RUNNING as the agent stamped them (before the checkout; after the container started). */
  starting?: number
  running?: number
  /** First output chunk holding the marker line. */
  marker?: number
  /** First terminal status update (arrival). */
  ended?: number
}

type Milestone = 'answered' | 'accepted' | 'launched' | 'starting' | 'running' | 'marker' | 'ended'
const MILESTONES: Milestone[] = ['answered', 'accepted', 'launched', 'starting', 'running', 'marker', 'ended']

interface LaunchOp { type?: string; tasks?: Array<{ taskId?: string; checkout?: { sha?: string } }> }

class Observer {
  readonly timelines = new Map<string, Timeline>()
  private readonly shaOfTask = new Map<string, string>()
  private readonly markerWaiters = new Map<string, () => void>()
  private readonly subs: Subscription[] = []
  /** Terminal status updates seen, by task id, with the arrival time. */
  readonly terminal = new Map<string, { state: string; at: number }>()
  /** Arrival time of each marker, by sha (the burst's pushes too). */
  readonly markers = new Map<string, number>()

  constructor(private readonly nc: NatsConnection) {
    const listen = (subject: string, on: (data: Uint8Array, subject: string, at: number) => void): void => {
      this.subs.push(nc.subscribe(subject, {
        callback: (err, m) => {
          if (err) return
          const at = performance.now()
          try {
            on(m.data, m.subject, at)
          } catch {
            // not a message this benchmark reads
          }
        },
      }))
    }
    const text = (d: Uint8Array): string => new TextDecoder().decode(d)
    // the CI service's scheduler calls: ACCEPT with LAUNCH operations
    listen(Subjects.schedulerCall, (d, _s, at) => {
      const call = JSON.parse(text(d)) as { type?: string; operations?: LaunchOp[] }
      if (call.type !== 'ACCEPT') return
      for (const op of call.operations ?? []) this.tasksOf(op, (taskId, sha) => this.mark(sha, 'accepted', at, taskId))
    })
    // the master's commands to agents: LAUNCH
    listen('regatta.agent.*.cmd', (d, _s, at) => this.tasksOf(JSON.parse(text(d)) as LaunchOp, (_t, sha) => this.mark(sha, 'launched', at)))
    // status updates (JetStream subjects; a core subscription sees them as they are published)
    listen(Subjects.frameworkStatusUpdates(CI_FRAMEWORK_ID), (d, _s, at) => {
      const { updates } = JSON.parse(text(d)) as { updates: Array<{ taskId: string; state: string; timestamp: number }> }
      for (const u of updates) {
        const sha = this.shaOfTask.get(u.taskId)
        const tl = sha ? this.timelines.get(sha) : undefined
        if (tl && (u.state === 'STARTING' || u.state === 'RUNNING')) {
          const k = u.state === 'STARTING' ? 'starting' : 'running'
          tl[k] ??= u.timestamp - tl.wall0
        }
        if (['FINISHED', 'FAILED', 'KILLED', 'LOST', 'ERROR', 'DROPPED', 'GONE'].includes(u.state)) {
          if (!this.terminal.has(u.taskId)) this.terminal.set(u.taskId, { state: u.state, at })
          if (sha) this.mark(sha, 'ended', at)
        }
      }
    })
    // task output
    listen(Subjects.taskOutputAll, (d, _s, at) => {
      const chunk = JSON.parse(text(d)) as { data?: string }
      const found = new RegExp(`${MARKER} ([0-9a-f]{40})`).exec(chunk.data ?? '')
      if (!found) return
      const sha = found[1]!
      if (!this.markers.has(sha)) this.markers.set(sha, at)
      this.mark(sha, 'marker', at)
      const w = this.markerWaiters.get(sha)
      if (w) {
        this.markerWaiters.delete(sha)
        w()
      }
    })
  }

  private tasksOf(op: LaunchOp, each: (taskId: string, sha: string) => void): void {
    if (op.type !== 'LAUNCH') return
    for (const t of op.tasks ?? []) if (t.taskId && t.checkout?.sha) each(t.taskId, t.checkout.sha)
  }

  private mark(sha: string, k: Exclude<Milestone, 'starting' | 'running'>, at: number, taskId?: string): void {
    if (taskId) this.shaOfTask.set(taskId, sha)
    const tl = this.timelines.get(sha)
    if (tl && tl[k] === undefined) tl[k] = at - tl.t0
  }

  /** Starts a timeline for `sha`; returns it and a promise of the marker's arrival. */
  begin(sha: string, t0 = performance.now(), wall0 = Date.now()): { timeline: Timeline; marker: Promise<void> } {
    const timeline: Timeline = { t0, wall0 }
    this.timelines.set(sha, timeline)
    const marker = new Promise<void>((resolve) => { this.markerWaiters.set(sha, resolve) })
    return { timeline, marker }
  }

  async close(): Promise<void> {
    for (const s of this.subs) s.unsubscribe()
    await this.nc.close().catch(() => undefined)
  }
}

// ---- a one-agent cluster with the CI service ---------------------------------------------------

interface Env {
  kind: 'docker' | 'process'
  nats: NatsServer
  ci: RunningCi
  agent: Agent
  observer: Observer
  stop(): Promise<void>
}

async function startEnv(kind: 'docker' | 'process', api: FakeGitHubApi, image: string): Promise<Env> {
  const steps: Array<() => Promise<unknown>> = []
  const stop = async (): Promise<void> => {
    for (const s of steps.reverse()) await s().catch((err: Error) => process.stderr.write(`cleanup: ${err.message}\n`))
  }
  try {
    const nats = await startNatsServer()
    steps.push(() => nats.stop())
    const workDir = await mkdtemp(join(tmpdir(), `regatta-bench-webhook-${kind}-`))
    steps.push(() => rm(workDir, { recursive: true, force: true }))
    const agentId = `bench-webhook-${kind}-${process.pid}`
    if (kind === 'docker') steps.push(() => removeContainersByLabel(LABEL_AGENT, agentId))
    const masterNc = await connectNats(nats.url, 'bench-master')
    steps.push(() => masterNc.close())
    const master = new Master({ nc: masterNc, id: 'bench-master', logger: silentLogger() })
    await master.start()
    steps.push(() => master.stop())
    const agentNc = await connectNats(nats.url, 'bench-agent')
    steps.push(() => agentNc.close())
    const agent = new Agent({
      nc: agentNc, workDir, pool: 'default', resources: parseResources(AGENT_RESOURCES), attributes: {}, id: agentId,
      containerizer: kind === 'docker' ? new DockerContainerizer({ logger: silentLogger() }) : new ProcessContainerizer({ logger: silentLogger() }),
      logger: silentLogger(), defaultImage: image, sandboxRetentionMs: 0,
    })
    await agent.start()
    steps.push(() => agent.stop())
    const observer = new Observer(await connectNats(nats.url, 'bench-observer'))
    steps.push(() => observer.close())
    const ci = await runCi({
      natsUrl: nats.url, http: { host: '127.0.0.1', port: 0 }, webhookSecret: SECRET,
      githubApiUrl: api.url, githubToken: 'bench-token', publicUrl: 'http://ci.example.test', logger: silentLogger(),
      auth: httpAuthFrom({ openReads: true }, {}),
    })
    steps.push(() => ci.stop())
    return { kind, nats, ci, agent, observer, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

interface RunRow { runId: string; sha: string; state: string; error: string | null }

async function listRuns(env: Env): Promise<RunRow[]> {
  const res = await fetch(`${env.ci.url}/api/v1/runs?limit=1000`)
  if (!res.ok) throw new Error(`GET /api/v1/runs: ${res.status} ${await res.text()}`)
  return ((await res.json()) as { runs: RunRow[] }).runs
}

async function waitRunsFinished(env: Env, shas: string[], timeoutMs: number, everyMs: number): Promise<RunRow[]> {
  const wanted = new Set(shas)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const runs = (await listRuns(env)).filter((r) => wanted.has(r.sha))
    if (runs.length === wanted.size && runs.every((r) => FINAL.has(r.state))) return runs
    if (Date.now() > deadline) {
      const states: Record<string, number> = {}
      for (const r of runs) states[r.state] = (states[r.state] ?? 0) + 1
      throw new Error(`timed out after ${timeoutMs} ms: ${runs.length}/${wanted.size} runs listed, states ${JSON.stringify(states)}`)
    }
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** One push, waited for: its timeline once its run has finished. */
async function onePush(env: Env, repo: TestRepo, i: number): Promise<Timeline> {
  const sha = await repo.commit({ 'n.txt': `${env.kind} ${i}\n` }, `push ${env.kind} ${i}`)
  const body = JSON.stringify(pushPayload({ repo: REPO, cloneUrl: repo.url, after: sha, branch: 'main' }))
  const headers = webhookHeaders({ event: 'push', body, secret: SECRET })
  const { timeline, marker } = env.observer.begin(sha)
  const res = await fetch(`${env.ci.url}/webhooks/github`, { method: 'POST', headers, body })
  timeline.answered = performance.now() - timeline.t0
  const answer = await res.text()
  if (res.status !== 202) throw new Error(`push ${i}: webhook answered ${res.status}: ${answer}`)
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    marker,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`push ${i} (${sha}): no marker within 60 s; timeline ${JSON.stringify(timeline)}`)), 60_000) }),
  ]).finally(() => clearTimeout(timer))
  const [run] = await waitRunsFinished(env, [sha], 60_000, 20)
  if (run?.state !== 'succeeded') throw new Error(`push ${i}: run ${run?.runId} ended ${run?.state}: ${run?.error ?? ''}`)
  await new Promise((r) => setTimeout(r, IDLE_MS))
  return timeline
}

function milestoneLine(kind: string, timelines: Timeline[]): string {
  const parts = MILESTONES.map((k) => `${k} ${ms(median(timelines.map((t) => t[k]).filter((x): x is number => x !== undefined)))}`)
  return `${kind}: median milestones from the POST (ms): ${parts.join(', ')}`
}

function latencyLine(kind: string, lat: number[]): string {
  return `${kind}: ${lat.length} sequential pushes, POST -> marker line observed on NATS (includes output delivery): ` +
    `median ${ms(median(lat))} ms, p90 ${ms(percentile(lat, 90))} ms (min ${ms(Math.min(...lat))}, max ${ms(Math.max(...lat))})`
}

// ---- the benchmark ------------------------------------------------------------------------

export async function run(): Promise<void> {
  const image = await ensureBusyboxImage()
  const api = await startFakeGitHubApi()
  const repo = await createRepo()
  const out = (line: string): void => { process.stdout.write(`${line}\n`) }
  try {
    await repo.commit({ '.regatta/ci.yml': pipeline(image), 'n.txt': 'start\n' }, 'pipeline')

    // a checkout of the repository on its own: the CI service makes one to plan, the agent one per task
    const checkoutMs: number[] = []
    for (let i = 0; i < 10; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'regatta-bench-checkout-'))
      const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repo.dir }).toString().trim()
      try {
        const started = performance.now()
        await checkoutCommit(dir, { url: repo.url, sha, ref: 'refs/heads/main' })
        checkoutMs.push(performance.now() - started)
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    }

    // ---- Docker: sequential pushes, docker run baseline interleaved, then the burst
    let dockerLat: number[] = []
    const dockerRunMs: number[] = []
    let burstS = NaN
    const dockerTimelines: Timeline[] = []
    {
      const env = await startEnv('docker', api, image)
      try {
        // warm-up (not counted): tsx's transform cache, the first offer cycle, the image's first use
        await onePush(env, repo, -1)
        await timeCommand('docker', ['run', '--rm', '--network', 'none', image, 'true'])
        for (let i = 0; i < RUNS; i++) {
          dockerTimelines.push(await onePush(env, repo, i))
          if (i < DOCKER_RUNS) dockerRunMs.push(await timeCommand('docker', ['run', '--rm', '--network', 'none', image, 'true']))
        }
        for (let i = dockerRunMs.length; i < DOCKER_RUNS; i++) dockerRunMs.push(await timeCommand('docker', ['run', '--rm', '--network', 'none', image, 'true']))
        dockerLat = dockerTimelines.map((t) => t.marker!)
        out(latencyLine('docker', dockerLat))
        out(milestoneLine('docker', dockerTimelines))

        // the burst: BURST commits, each on its own branch (a newer push to a branch cancels the older run)
        const shas: string[] = []
        for (let i = 0; i < BURST; i++) {
          const sha = await repo.commit({ 'n.txt': `burst ${i}\n` }, `burst ${i}`)
          execFileSync('git', ['branch', '-f', `burst-${i}`, sha], { cwd: repo.dir })
          shas.push(sha)
        }
        const requests = shas.map((sha, i) => {
          const body = JSON.stringify(pushPayload({ repo: REPO, cloneUrl: repo.url, after: sha, branch: `burst-${i}` }))
          return { body, headers: webhookHeaders({ event: 'push', body, secret: SECRET }) }
        })
        const terminalBefore = env.observer.terminal.size
        const t0 = performance.now()
        const wall0 = Date.now()
        const timelines = shas.map((sha) => env.observer.begin(sha, t0, wall0).timeline)
        const answers = await Promise.all(requests.map(async (r, i) => {
          const res = await fetch(`${env.ci.url}/webhooks/github`, { method: 'POST', headers: r.headers, body: r.body })
          timelines[i]!.answered = performance.now() - t0
          const text = await res.text()
          return { status: res.status, text, ms: performance.now() - t0 }
        }))
        const refused = answers.filter((a) => a.status !== 202)
        if (refused.length > 0) throw new Error(`${refused.length} burst webhooks refused: ${refused[0]!.status} ${refused[0]!.text}`)
        const runs = await waitRunsFinished(env, shas, 600_000, 100)
        burstS = (performance.now() - t0) / 1000
        const states: Record<string, number> = {}
        for (const r of runs) states[r.state] = (states[r.state] ?? 0) + 1
        const markerTimes = shas.map((s) => env.observer.markers.get(s)).filter((x): x is number => x !== undefined).map((x) => x - t0)
        const lastEnd = Math.max(...[...env.observer.terminal.values()].slice(terminalBefore).map((x) => x.at - t0))
        const answerMs = answers.map((a) => a.ms)
        out(`burst: ${BURST} pushes at once (own branches, job cpus 0.1 mem 32 on an agent with ${AGENT_RESOURCES}): ` +
          `all runs finished per GET /api/v1/runs (polled every 100 ms) after ${burstS.toFixed(2)} s; states ${JSON.stringify(states)}; ` +
          `webhook answers median ${ms(median(answerMs))} ms, max ${ms(Math.max(...answerMs))} ms; ` +
          `markers first ${ms(Math.min(...markerTimes))} ms, median ${ms(median(markerTimes))} ms, last ${ms(Math.max(...markerTimes))} ms; ` +
          `last terminal task update ${ms(lastEnd)} ms`)
        out(`burst: milestones from the first POST (ms), first/median/last: ${MILESTONES.map((k) => {
          const xs = timelines.map((t) => t[k]).filter((x): x is number => x !== undefined)
          return `${k} ${ms(Math.min(...xs))}/${ms(median(xs))}/${ms(Math.max(...xs))}`
        }).join(', ')}`)
        const edges = timelines.flatMap((t) => (t.launched !== undefined && t.ended !== undefined ? [[t.launched, 1], [t.ended, -1]] as const : []))
        let now = 0
        let peak = 0
        for (const [, d] of [...edges].sort((a, b) => a[0] - b[0] || a[1] - b[1])) peak = Math.max(peak, now += d)
        const agentSide = timelines.filter((t) => t.starting !== undefined && t.running !== undefined).map((t) => t.running! - t.starting!)
        out(`burst: at most ${peak} tasks at once on the agent (LAUNCH seen .. terminal update); STARTING -> RUNNING (checkout + container start) median ${ms(median(agentSide))} ms, p90 ${ms(percentile(agentSide, 90))} ms`)
      } finally {
        await env.stop()
      }
    }

    // ---- process containerizer: a second cluster, the same sequential pushes
    let processLat: number[] = []
    {
      const env = await startEnv('process', api, image)
      try {
        await onePush(env, repo, -1)
        const timelines: Timeline[] = []
        for (let i = 0; i < RUNS; i++) timelines.push(await onePush(env, repo, i))
        processLat = timelines.map((t) => t.marker!)
        out(latencyLine('process', processLat))
        out(milestoneLine('process', timelines))
      } finally {
        await env.stop()
      }
    }

    const dockerP50 = median(dockerLat)
    const dockerRunP50 = median(dockerRunMs)
    const ratio = dockerP50 / dockerRunP50
    out(`checkout of the commit on its own (git init + fetch --depth 1 + checkout, file://): median ${ms(median(checkoutMs))} ms of ${checkoutMs.length} (the CI service makes one before answering the webhook, the agent one between STARTING and the container start)`)
    out(`docker run --rm --network none ${image} true: ${dockerRunMs.length} runs, median ${ms(dockerRunP50)} ms, p90 ${ms(percentile(dockerRunMs, 90))} ms`)
    out(`docker push latency / docker run: ${ratio.toFixed(2)}x (target <= 1.5x: ${ratio <= 1.5 ? 'met' : 'NOT met'})`)
    out('milestones: answered = webhook answer (signature, delivery log, planning checkout, run stored); accepted = ACCEPT seen on the master subject; ' +
      'launched = LAUNCH seen on the agent subject; starting/running = agent stamps (checkout and container start between them); marker = first chunk with the marker (output delivery included); ended = first terminal update')
    out(JSON.stringify({ bench: 'webhook', docker_p50_ms: Math.round(dockerP50), process_p50_ms: Math.round(median(processLat)), burst50_s: Math.round(burstS * 100) / 100 }))
  } finally {
    await api.close()
    await repo.remove()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await run()
