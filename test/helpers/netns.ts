// Several "hosts" on one machine for partition tests: each host is a Linux network namespace
// with one veth link to a "switch" namespace that holds a bridge. Addresses exist only inside
// the namespaces, so nothing here touches the machine's own network. Cutting a host's link sets
// its switch-side veth down (packets are dropped, as when a cable is pulled: no RST, no FIN).
//
//   const reason = netnsUnavailable()            // root and `ip`, or why not (skip with it)
//   const lab = await createNetLab({ hosts: 3 }) // rgmh<pid>-sw, rgmh<pid>-h1..h3, 10.213.0.1..3/24
//   const p = lab.spawn(lab.hosts[0], 'nats n1', ['nats-server', '-c', conf])
//   await lab.exec(lab.hosts[1], ['ip', '-br', 'addr'])
//   await lab.cut(0); await lab.restore(0)
//   await lab.destroy()                          // kills every process in the namespaces, deletes them
//
// Every namespace is removed (and every process inside killed) by destroy(), and also when the
// test process exits or gets SIGINT/SIGTERM/SIGHUP half way; namespaces left by a test process
// that was SIGKILLed (its pid no longer runs) are removed by the next createNetLab.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PREFIX_RE = /^rgmh(\d+)-/

export interface NetHost {
  /** 0-based. */
  index: number
  /** The namespace (`ip netns exec <ns> ...`). */
  ns: string
  /** Its address on the switch (e.g. 10.213.0.1); it exists only inside `ns`. */
  ip: string
  /** The switch-side end of its link (in the switch namespace). */
  switchVeth: string
}

export interface ExecResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** One parsed log line (pino JSON); a line that is not JSON comes back as `{ msg: line }`. */
export type NetLogLine = Record<string, unknown> & { msg?: string }

export interface NetProcess {
  readonly name: string
  readonly host: NetHost
  readonly pid: number
  readonly child: ChildProcess
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly hasExited: boolean
  /** Signals its process group (default SIGKILL); a no-op once it has exited. */
  kill(signal?: NodeJS.Signals): void
  /** SIGTERM to its group, SIGKILL after graceMs; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>
  logs(): string
  lines(): NetLogLine[]
  count(match: string | RegExp | ((l: NetLogLine) => boolean)): number
  waitForLog(match: string | RegExp | ((l: NetLogLine) => boolean), timeoutMs?: number, fromLine?: number): Promise<NetLogLine>
}

export interface NetLab {
  prefix: string
  switchNs: string
  hosts: NetHost[]
  /** Runs a command inside a host's namespace to its end (killed after timeoutMs); never rejects. */
  exec(host: NetHost, argv: string[], o?: { timeoutMs?: number; stdin?: string; env?: Record<string, string> }): Promise<ExecResult>
  /** Starts a long-running command inside a host's namespace, in a process group of its own. */
  spawn(host: NetHost, name: string, argv: string[], o?: { env?: Record<string, string> }): NetProcess
  /** An HTTP request made from inside a host's namespace (node's fetch); never rejects. */
  fetch(host: NetHost, url: string, o?: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number }): Promise<FetchResult>
  /**
   * Publishes one request on a NATS subject from inside a host's namespace and collects every
   * reply that arrives within waitMs (0 replies: nobody answers there); as `auth`'s user if given.
   */
  requestAll(host: NetHost, natsUrl: string, subject: string, waitMs?: number, auth?: NatsCredentials): Promise<string[]>
  /** Takes the host's link down (at the switch). */
  cut(i: number): Promise<void>
  /** Brings the host's link up again. */
  restore(i: number): Promise<void>
  /** Kills every process inside the namespaces (SIGTERM to what it spawned first) and deletes them. */
  destroy(): Promise<void>
}

/** A NATS user and password (a server with an `authorization` block). */
export interface NatsCredentials { user: string; password: string }

export interface FetchResult { status: number; location: string | null; body: string; error?: string }

/** Why network namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)'
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' })
  if (ip.error || ip.status !== 0) return '`ip` (iproute2) is not installed: deploy/dev/setup.sh installs it'
  const probe = `rgmh${process.pid}-probe`
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' })
  if (add.status !== 0) return `ip netns add fails here: ${add.stderr.trim()}`
  spawnSync('ip', ['netns', 'del', probe])
  return undefined
}

function ipSync(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.stdout).trim() || `exit ${r.status}`}`)
}

function namespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean) : []
}

/** Kills (SIGKILL) every process inside a namespace, then deletes it. Synchronous: runs at exit too. */
function removeNamespaceSync(ns: string): void {
  for (let round = 0; round < 5; round++) {
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split(/\s+/).filter(Boolean).map(Number) ?? []
    if (pids.length === 0) break
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    spawnSync('sleep', ['0.05'])
  }
  spawnSync('ip', ['netns', 'del', ns])
}

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Namespaces of earlier test processes that died without cleaning up (SIGKILL). */
function sweepStale(): void {
  for (const ns of namespaces()) {
    const m = PREFIX_RE.exec(ns)
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) removeNamespaceSync(ns)
  }
}

const liveLabs = new Set<{ namespaces: string[]; procs: Set<NetProcess> }>()
let hooksInstalled = false

function cleanupAllSync(): void {
  for (const lab of liveLabs) {
    for (const p of lab.procs) p.kill('SIGKILL')
    for (const ns of lab.namespaces) removeNamespaceSync(ns)
  }
  liveLabs.clear()
}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', cleanupAllSync)
  for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]] as const) {
    process.once(sig, () => {
      cleanupAllSync()
      process.exit(128 + n)
    })
  }
}

const messageOf = (match: string | RegExp | ((l: NetLogLine) => boolean)): ((l: NetLogLine) => boolean) =>
  typeof match === 'function' ? match : typeof match === 'string' ? (l) => l.msg === match : (l) => typeof l.msg === 'string' && match.test(l.msg)

/** The environment of processes in the lab: the test runner's, without any Regatta URL or token. */
function labEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const k of Object.keys(env)) if (k.startsWith('REGATTA_')) delete env[k]
  return { ...env, ...extra }
}

// Run inside a namespace by `node --input-type=module -e`, with the request as JSON on stdin.
const FETCH_SCRIPT = `
let input = ''
for await (const c of process.stdin) input += c
const r = JSON.parse(input)
try {
  const res = await fetch(r.url, { method: r.method, headers: r.headers, body: r.body, redirect: 'manual', signal: AbortSignal.timeout(r.timeoutMs) })
  process.stdout.write(JSON.stringify({ status: res.status, location: res.headers.get('location'), body: await res.text() }))
} catch (err) {
  process.stdout.write(JSON.stringify({ status: 0, location: null, body: '', error: String(err?.cause?.code ?? err?.message ?? err) }))
}
`
const REQUEST_ALL_SCRIPT = `
import { connect, createInbox } from 'nats'
const [url, subject, waitMs] = process.argv.slice(1)
const auth = process.env.REGATTA_NATS_USER ? { user: process.env.REGATTA_NATS_USER, pass: process.env.REGATTA_NATS_PASSWORD ?? '' } : {}
const nc = await connect({ servers: url, name: 'netns-probe', timeout: 10000, ...auth })
const inbox = createInbox()
const replies = []
// an empty message with a 503 status is NATS's "no responders", not a reply
const sub = nc.subscribe(inbox, { callback: (err, m) => { if (!err && m.data.length > 0) replies.push(new TextDecoder().decode(m.data)) } })
await nc.flush()
nc.publish(subject, new Uint8Array(), { reply: inbox })
await new Promise((r) => setTimeout(r, Number(waitMs)))
sub.unsubscribe()
await nc.close()
process.stdout.write(JSON.stringify(replies))
`

export async function createNetLab(o: { hosts?: number; subnet?: string } = {}): Promise<NetLab> {
  const count = o.hosts ?? 3
  const subnet = o.subnet ?? '10.213.0'
  installHooks()
  sweepStale()
  const prefix = `rgmh${process.pid}-`
  const switchNs = `${prefix}sw`
  const record = { namespaces: [] as string[], procs: new Set<NetProcess>() }
  liveLabs.add(record)
  const hosts: NetHost[] = []
  try {
    ipSync(['netns', 'add', switchNs])
    record.namespaces.push(switchNs)
    ipSync(['-n', switchNs, 'link', 'set', 'lo', 'up'])
    // STP off (the default): a port forwards as soon as it is up
    ipSync(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge'])
    ipSync(['-n', switchNs, 'link', 'set', 'br0', 'up'])
    for (let i = 0; i < count; i++) {
      const ns = `${prefix}h${i + 1}`
      ipSync(['netns', 'add', ns])
      record.namespaces.push(ns)
      const host: NetHost = { index: i, ns, ip: `${subnet}.${i + 1}`, switchVeth: `veth-h${i + 1}` }
      // both ends are created inside the namespaces: nothing appears in the machine's own
      ipSync(['-n', switchNs, 'link', 'add', host.switchVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      ipSync(['-n', switchNs, 'link', 'set', host.switchVeth, 'master', 'br0'])
      ipSync(['-n', switchNs, 'link', 'set', host.switchVeth, 'up'])
      ipSync(['-n', ns, 'link', 'set', 'lo', 'up'])
      ipSync(['-n', ns, 'addr', 'add', `${host.ip}/24`, 'dev', 'eth0'])
      ipSync(['-n', ns, 'link', 'set', 'eth0', 'up'])
      hosts.push(host)
    }
  } catch (err) {
    for (const ns of record.namespaces) removeNamespaceSync(ns)
    liveLabs.delete(record)
    throw err
  }

  const exec: NetLab['exec'] = (host, argv, eo = {}) => new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', host.ns, ...argv], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: labEnv(eo.env) })
    child.stdin.on('error', () => undefined) // a command that exits without reading its stdin
    child.stdin.end(eo.stdin ?? '')
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), eo.timeoutMs ?? 30_000)
    child.once('error', (err) => { stderr += String(err) })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })

  const spawnIn: NetLab['spawn'] = (host, name, argv, so = {}) => {
    const child = spawn('ip', ['netns', 'exec', host.ns, ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: labEnv({ REGATTA_LOG_LEVEL: 'info', ...so.env }), detached: true })
    if (child.pid === undefined) throw new Error(`could not start ${name} in ${host.ns}`)
    const pid = child.pid
    let text = ''
    let partial = ''
    const parsed: NetLogLine[] = []
    const listeners = new Set<() => void>()
    const onData = (d: Buffer): void => {
      const s = d.toString()
      if (text.length < 4_000_000) text += s
      partial += s
      const parts = partial.split('\n')
      partial = parts.pop() ?? ''
      for (const raw of parts) {
        if (!raw.trim()) continue
        try {
          const v = JSON.parse(raw) as unknown
          parsed.push(v !== null && typeof v === 'object' ? v as NetLogLine : { msg: raw })
        } catch {
          parsed.push({ msg: raw })
        }
      }
      for (const l of [...listeners]) l()
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    let hasExited = false
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => {
        hasExited = true
        record.procs.delete(proc)
        for (const l of [...listeners]) l()
        resolve({ code, signal })
      })
    })
    const proc: NetProcess = {
      name, host, pid, child, exited,
      get hasExited() { return hasExited },
      kill(signal = 'SIGKILL') {
        if (hasExited) return
        try {
          process.kill(-pid, signal)
        } catch {
          // it has just exited
        }
      },
      async stop(graceMs = 3_000) {
        if (hasExited) return
        proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), graceMs)
        await exited
        clearTimeout(t)
      },
      logs: () => text,
      lines: () => parsed,
      count: (match) => parsed.filter(messageOf(match)).length,
      waitForLog(match, timeoutMs = 30_000, fromLine = 0) {
        const pred = messageOf(match)
        return new Promise<NetLogLine>((resolve, reject) => {
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
              reject(new Error(`${name} (in ${host.ns}) exited before logging ${String(match)}:\n${text.slice(-3000)}`))
            }
          }
          const timer = setTimeout(() => {
            done()
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name} (in ${host.ns}) to log ${String(match)}:\n${text.slice(-3000)}`))
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
    record.procs.add(proc)
    return proc
  }

  const setLink = async (i: number, state: 'up' | 'down'): Promise<void> => {
    const host = hosts[i]
    if (!host) throw new Error(`no host ${i} (have ${hosts.length})`)
    ipSync(['-n', switchNs, 'link', 'set', host.switchVeth, state])
  }

  let destroyed = false
  return {
    prefix, switchNs, hosts,
    exec,
    spawn: spawnIn,
    async fetch(host, url, fo = {}) {
      const input = JSON.stringify({ url, method: fo.method ?? 'GET', headers: fo.headers ?? {}, body: fo.body, timeoutMs: fo.timeoutMs ?? 3_000 })
      const r = await exec(host, [process.execPath, '--input-type=module', '-e', FETCH_SCRIPT], { stdin: input, timeoutMs: (fo.timeoutMs ?? 3_000) + 10_000 })
      try {
        return JSON.parse(r.stdout) as FetchResult
      } catch {
        return { status: 0, location: null, body: '', error: `fetch in ${host.ns} exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(-500)}` }
      }
    },
    async requestAll(host, natsUrl, subject, waitMs = 700, auth) {
      const env: Record<string, string> = auth ? { REGATTA_NATS_USER: auth.user, REGATTA_NATS_PASSWORD: auth.password } : {}
      const r = await exec(host, [process.execPath, '--input-type=module', '-e', REQUEST_ALL_SCRIPT, natsUrl, subject, String(waitMs)], { timeoutMs: waitMs + 15_000, env })
      if (r.code !== 0) throw new Error(`request on ${subject} from ${host.ns} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim().slice(-500)}`)
      return JSON.parse(r.stdout) as string[]
    },
    cut: (i) => setLink(i, 'down'),
    restore: (i) => setLink(i, 'up'),
    async destroy() {
      if (destroyed) return
      destroyed = true
      await Promise.all([...record.procs].map((p) => p.stop(3_000)))
      for (const ns of record.namespaces) removeNamespaceSync(ns)
      liveLabs.delete(record)
    },
  }
}
