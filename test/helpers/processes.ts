// Real `regatta master` and `regatta agent` processes for tests and benchmarks that kill things
// for real (SIGKILL, SIGSTOP/SIGCONT): started from the CLI bin (its esbuild bundle), with pino
// JSON logs collected from stdout, and waited for until they are ready.
//
//   const m = await startMasterProcess({ natsUrl, id: 'm1', leaseTtl: '1500ms' })
//   const a = await startAgentProcess({ natsUrl, workDir })   // resolves once registered
//   m.kill('SIGKILL'); await m.exited
//   await stopAllProcesses()                                   // in t.teardown
import { spawn, type ChildProcess } from 'node:child_process'
import type { NatsConnection } from 'nats'
import { ClusterState, Subjects } from '../../shared/protocol/index.js'
import { request } from '../../shared/nats/index.js'
import { freePort } from './nats-server.js'

const BIN = new URL('../../services/cli/bin/regatta.mjs', import.meta.url).pathname
const ROOT = new URL('../../', import.meta.url).pathname

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** One parsed log line (pino JSON); a line that is not JSON comes back as `{ msg: line }`. */
export type LogLine = Record<string, unknown> & { msg?: string }

export interface RegattaProcess {
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess
  /** Sends a signal (default SIGKILL); a no-op once the process has exited. */
  kill(signal?: NodeJS.Signals): void
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves once it has exited. */
  stop(graceMs?: number): Promise<Exit>
  /** Resolves when the process exits (whatever the cause). */
  readonly exited: Promise<Exit>
  readonly hasExited: boolean
  /** Everything it wrote to stdout and stderr so far. */
  logs(): string
  /** Its log lines, parsed. */
  lines(): LogLine[]
  /** Waits for a log line (a message or a predicate), checked as output arrives. */
  waitForLog(match: string | RegExp | ((l: LogLine) => boolean), timeoutMs?: number, fromLine?: number): Promise<LogLine>
  /** How many log lines have a message matching. */
  count(match: string | RegExp): number
}

export interface MasterProcess extends RegattaProcess {
  readonly id: string
  readonly httpUrl: string
  /** GET /health: `{ status, leader }`. */
  health(): Promise<{ status: string; leader: boolean }>
}

export interface AgentProcess extends RegattaProcess {
  /** The agent's id (kept in its work dir, so a restarted agent has the same one). */
  readonly agentId: string
  readonly workDir: string
}

const live = new Set<RegattaProcess>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // a test that crashes must not leave masters or agents behind
  process.on('exit', () => {
    for (const p of live) p.kill('SIGKILL')
  })
}

const messageOf = (match: string | RegExp): ((l: LogLine) => boolean) =>
  typeof match === 'string' ? (l) => l.msg === match : (l) => typeof l.msg === 'string' && match.test(l.msg)

function spawnRegatta(name: string, args: string[], env: Record<string, string> = {}): RegattaProcess {
  installExitHook()
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REGATTA_LOG_LEVEL: 'info', ...env },
  })
  if (child.pid === undefined) throw new Error(`could not start ${name}`)
  let text = ''
  let partial = ''
  const parsed: LogLine[] = []
  const listeners = new Set<() => void>()
  const onData = (d: Buffer): void => {
    const s = d.toString()
    text += s
    partial += s
    const parts = partial.split('\n')
    partial = parts.pop() ?? ''
    for (const raw of parts) {
      if (!raw.trim()) continue
      try {
        const v = JSON.parse(raw) as unknown
        parsed.push(v !== null && typeof v === 'object' ? v as LogLine : { msg: raw })
      } catch {
        parsed.push({ msg: raw })
      }
    }
    for (const l of [...listeners]) l()
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  let hasExited = false
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      hasExited = true
      live.delete(proc)
      for (const l of [...listeners]) l()
      resolve({ code, signal })
    })
  })
  const proc: RegattaProcess = {
    name,
    pid: child.pid,
    child,
    exited,
    get hasExited() { return hasExited },
    kill(signal = 'SIGKILL') {
      if (hasExited) return
      try {
        process.kill(child.pid!, signal)
      } catch {
        // it has just exited
      }
    },
    async stop(graceMs = 5_000) {
      if (hasExited) return exited
      proc.kill('SIGCONT') // a stopped process cannot handle SIGTERM
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs)
      const e = await exited
      clearTimeout(t)
      return e
    },
    logs: () => text,
    lines: () => parsed,
    count: (match) => parsed.filter(messageOf(match)).length,
    waitForLog(match, timeoutMs = 30_000, fromLine = 0) {
      const pred = typeof match === 'function' ? match : messageOf(match)
      return new Promise<LogLine>((resolve, reject) => {
        let checked = fromLine
        const check = (): void => {
          for (; checked < parsed.length; checked++) {
            if (pred(parsed[checked]!)) {
              done()
              resolve(parsed[checked]!)
              return
            }
          }
          if (hasExited) {
            done()
            reject(new Error(`${name} exited before logging ${String(match)}:\n${text.slice(-3000)}`))
          }
        }
        const timer = setTimeout(() => {
          done()
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name} to log ${String(match)}:\n${text.slice(-3000)}`))
        }, timeoutMs)
        const done = (): void => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
      })
    },
  }
  live.add(proc)
  return proc
}

/** Milliseconds, or a duration as the CLI takes it. */
export type Duration = number | string

export interface MasterProcessOptions {
  natsUrl: string
  id: string
  /** Default: a free loopback port. */
  httpPort?: number
  /** Durations: milliseconds, or text as the CLI takes it ('1500ms', '2s'). */
  leaseTtl?: Duration
  heartbeatInterval?: Duration
  agentUnreachable?: Duration
  agentGone?: Duration
  offerTimeout?: Duration
  /** KV and stream replicas (`--replicas`, for a NATS cluster). */
  replicas?: number
  extraArgs?: string[]
  /** 'started' (default): its HTTP API answers (it has contended once); 'leader': it leads. */
  waitFor?: 'started' | 'leader'
  timeoutMs?: number
}

/** The read-only HTTP token `regatta master` processes started here take (REGATTA_READ_TOKEN). */
export const MASTER_READ_TOKEN = 'test-master-read-token'
/** `{ authorization: 'Bearer <MASTER_READ_TOKEN>' }`, for reads of those masters' HTTP API. */
export const MASTER_READ_HEADERS: Readonly<Record<string, string>> = { authorization: `Bearer ${MASTER_READ_TOKEN}` }

/** Starts `regatta master` and waits until it is up (or leading). */
export async function startMasterProcess(o: MasterProcessOptions): Promise<MasterProcess> {
  const httpPort = o.httpPort ?? await freePort()
  const args = ['master', '--nats', o.natsUrl, '--id', o.id, '--http', `127.0.0.1:${httpPort}`]
  const flag = (name: string, v: string | number | undefined): void => { if (v !== undefined) args.push(name, String(v)) }
  const duration = (v: Duration | undefined): string | undefined => (typeof v === 'number' ? `${v}ms` : v)
  flag('--lease-ttl', duration(o.leaseTtl))
  flag('--heartbeat-interval', duration(o.heartbeatInterval))
  flag('--agent-unreachable', duration(o.agentUnreachable))
  flag('--agent-gone', duration(o.agentGone))
  flag('--offer-timeout', duration(o.offerTimeout))
  flag('--replicas', o.replicas)
  args.push(...(o.extraArgs ?? []))
  // reads need a token outside regatta dev: tests read with MASTER_READ_TOKEN
  const p = spawnRegatta(`master ${o.id}`, args, { REGATTA_READ_TOKEN: MASTER_READ_TOKEN })
  const httpUrl = `http://127.0.0.1:${httpPort}`
  const master: MasterProcess = Object.assign(p, {
    id: o.id,
    httpUrl,
    async health() {
      const res = await fetch(`${httpUrl}/health`, { signal: AbortSignal.timeout(2_000) })
      return await res.json() as { status: string; leader: boolean }
    },
  })
  const timeoutMs = o.timeoutMs ?? 60_000 // the first start builds the CLI bundle
  try {
    await p.waitForLog('master HTTP API listening', timeoutMs)
    if (o.waitFor === 'leader') await p.waitForLog('elected leader', timeoutMs)
  } catch (err) {
    p.kill('SIGKILL')
    throw err
  }
  return master
}

export interface AgentProcessOptions {
  natsUrl: string
  workDir: string
  pool?: string
  /** e.g. 'cpus:2;mem:1024;disk:1000;ports:[31000-31010]'. */
  resources?: string
  attributes?: string
  containerizer?: 'docker' | 'process'
  extraArgs?: string[]
  /** Wait until it has registered with a master (default true). */
  waitRegistered?: boolean
  timeoutMs?: number
}

/** Starts `regatta agent` and waits until it has registered with the leading master. */
export async function startAgentProcess(o: AgentProcessOptions): Promise<AgentProcess> {
  const args = ['agent', '--nats', o.natsUrl, '--work-dir', o.workDir]
  if (o.pool) args.push('--pool', o.pool)
  if (o.resources) args.push('--resources', o.resources)
  if (o.attributes) args.push('--attributes', o.attributes)
  if (o.containerizer) args.push('--containerizer', o.containerizer)
  args.push(...(o.extraArgs ?? []))
  const p = spawnRegatta(`agent ${o.workDir}`, args)
  const timeoutMs = o.timeoutMs ?? 60_000
  let agentId = ''
  try {
    const line = await p.waitForLog((l) => typeof l.agentId === 'string', timeoutMs)
    agentId = line.agentId as string
    if (o.waitRegistered !== false) await p.waitForLog('registered with the master', timeoutMs)
  } catch (err) {
    p.kill('SIGKILL')
    throw err
  }
  return Object.assign(p, { agentId, workDir: o.workDir })
}

/** Stops every master and agent process this test process started and that still runs. */
export async function stopAllProcesses(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(3_000)))
}

/** The leader as the leading master reports it (`regatta.master.state`); throws when none answers. */
export async function leaderOf(nc: NatsConnection, timeoutMs = 2_000): Promise<ClusterState['leader']> {
  const state = await request(nc, Subjects.masterState, {}, ClusterState, timeoutMs)
  return state.leader
}

/** The cluster state from the leading master. */
export function clusterState(nc: NatsConnection, timeoutMs = 2_000): Promise<ClusterState> {
  return request(nc, Subjects.masterState, {}, ClusterState, timeoutMs)
}

/**
 * Waits until a master answers `regatta.master.state` naming a leader that satisfies `pred`
 * (e.g. another id than the killed one); tolerates "no responders" meanwhile.
 */
export async function waitForLeader(
  nc: NatsConnection, pred: (l: NonNullable<ClusterState['leader']>) => boolean = () => true, timeoutMs = 30_000,
): Promise<NonNullable<ClusterState['leader']>> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  for (;;) {
    try {
      const l = await leaderOf(nc, 1_000)
      if (l && pred(l)) return l
      last = JSON.stringify(l)
    } catch (err) {
      last = (err as Error).message
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for a leader (last: ${last})`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
