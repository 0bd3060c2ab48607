// The `process` provider: agents as local child processes (`regatta agent ...`), one work dir
// each under `baseDir`. Each instance is recorded in `baseDir/<id>/instance.json` with its pid,
// so a restarted scaler on the same host finds (and can stop) the agents it started before.
// Agents run in their own process group with their output in a log file: they outlive a
// scaler that dies, as machines of a cloud provider would.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Amounts } from '../../../../shared/protocol/index.js'
import { RegattaError } from '../../../../shared/errors/index.js'
import { parseResources, totals } from '../../../../shared/resources/index.js'
import type { Logger } from '../../../../shared/log/index.js'
import { INSTANCE_ATTRIBUTE, type Instance, type Provider } from './types.js'

/** The `regatta` command of this checkout. */
export const REGATTA_BIN = fileURLToPath(new URL('../../../cli/bin/regatta.mjs', import.meta.url))

export interface ProcessProviderOptions {
  natsUrl: string
  /** Where instances keep their work dirs, records and logs. */
  baseDir: string
  logger: Logger
  /** The started agents' containerizer (default: theirs to detect, as `regatta dev`). */
  containerizer?: 'docker' | 'process'
  /** The started agents' `--resources` (default: detected, i.e. the whole host for each). */
  resources?: string
  /** Log level of the started agents (default: REGATTA_LOG_LEVEL or info). */
  logLevel?: string
  /** How long a stopping agent gets after SIGTERM before SIGKILL (default 10 s). */
  stopGraceMs?: number
  /** More `regatta agent` arguments. */
  extraArgs?: string[]
  /**
   * NATS with a user per agent (`regatta dev --nats-auth`): each agent started gets the instance
   * id as its agent id and its own credentials (in its environment, never on its command line),
   * from `url` (no credentials in it) instead of the scaler's own `natsUrl`.
   */
  agentNats?: AgentNats
}

export interface AgentNats {
  url: string
  /** The NATS user of this agent id, made (and usable) by the time it resolves. */
  credentials(agentId: string): Promise<{ user: string; password: string }>
}

interface Record {
  id: string
  pool: string
  startedAt: number
  pid: number
}

interface Running extends Record {
  child?: ChildProcess
  state: Instance['state']
  exited: Promise<void>
}

const ID_RE = /^[a-z0-9][a-z0-9-]{0,80}$/

/** An instance id: the pool's name made safe, and a random suffix (no `;` or `:`: it is an attribute value). */
export function instanceId(pool: string): string {
  const stem = pool.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 24) || 'pool'
  return `${stem}-${randomBytes(4).toString('hex')}`
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether `pid` is still the agent of instance `id` (and not a process that reused the pid). */
async function isOurs(pid: number, id: string): Promise<boolean> {
  if (!alive(pid)) return false
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(`${INSTANCE_ATTRIBUTE}:${id}`)
  } catch {
    return true // no /proc: trust the pid
  }
}

export class ProcessProvider implements Provider {
  readonly name = 'process'
  readonly instanceResources?: Amounts
  private readonly baseDir: string
  private readonly instances = new Map<string, Running>()
  private adopted?: Promise<void>

  constructor(private readonly o: ProcessProviderOptions) {
    this.baseDir = resolve(o.baseDir)
    if (o.resources) {
      const scalars = totals(parseResources(o.resources))
      delete scalars.ports
      this.instanceResources = scalars
    }
  }

  /** Instances a previous scaler on this host recorded and that still run. */
  private adopt(): Promise<void> {
    this.adopted ??= (async () => {
      await mkdir(this.baseDir, { recursive: true })
      for (const e of await readdir(this.baseDir, { withFileTypes: true })) {
        if (!e.isDirectory() || !ID_RE.test(e.name) || this.instances.has(e.name)) continue
        let rec: Record
        try {
          rec = JSON.parse(await readFile(join(this.baseDir, e.name, 'instance.json'), 'utf8')) as Record
        } catch {
          continue
        }
        if (rec.id !== e.name || typeof rec.pid !== 'number') continue
        const ours = await isOurs(rec.pid, rec.id)
        this.instances.set(rec.id, { ...rec, state: ours ? 'running' : 'exited', exited: ours ? this.pollExit(rec) : Promise.resolve() })
        this.o.logger.info({ instanceId: rec.id, pool: rec.pool, pid: rec.pid, running: ours }, 'found an instance started before')
      }
    })()
    return this.adopted
  }

  /** Watches a process that is not our child for its end. */
  private pollExit(rec: Record): Promise<void> {
    return new Promise((done) => {
      const t = setInterval(() => {
        if (alive(rec.pid)) return
        clearInterval(t)
        const r = this.instances.get(rec.id)
        if (r && r.state === 'running') r.state = 'exited'
        done()
      }, 500)
      t.unref()
    })
  }

  async start(pool: string, count: number): Promise<Instance[]> {
    await this.adopt()
    const out: Instance[] = []
    for (let i = 0; i < count; i++) out.push(await this.startOne(pool))
    return out
  }

  private async startOne(pool: string): Promise<Instance> {
    const id = instanceId(pool)
    const dir = join(this.baseDir, id)
    const workDir = join(dir, 'agent')
    await mkdir(workDir, { recursive: true })
    const nats = this.o.agentNats
    const creds = nats ? await nats.credentials(id) : undefined
    const args = [
      REGATTA_BIN, 'agent', '--nats', nats ? nats.url : this.o.natsUrl, ...(nats ? ['--id', id] : []), '--pool', pool, '--attributes', `${INSTANCE_ATTRIBUTE}:${id}`, '--work-dir', workDir,
      ...(this.o.containerizer ? ['--containerizer', this.o.containerizer] : []),
      ...(this.o.resources ? ['--resources', this.o.resources] : []),
      ...(this.o.extraArgs ?? []),
    ]
    const log = openSync(join(dir, 'agent.log'), 'a')
    let child: ChildProcess
    try {
      // its own process group: a Ctrl-C meant for the scaler does not reach it, and stop()
      // can signal the agent together with the tasks it runs as processes
      child = spawn(process.execPath, args, {
        cwd: dir, detached: true, stdio: ['ignore', log, log],
        env: {
          ...process.env, REGATTA_LOG_LEVEL: this.o.logLevel ?? process.env.REGATTA_LOG_LEVEL ?? 'info',
          ...(creds ? { REGATTA_NATS_USER: creds.user, REGATTA_NATS_PASSWORD: creds.password } : {}),
        },
      })
    } finally {
      closeSync(log)
    }
    if (child.pid === undefined) {
      const err = await new Promise<Error>((r) => child.once('error', r))
      throw new RegattaError('PROVIDER_FAILED', `process provider: could not start an agent for pool ${pool}: ${err.message}`)
    }
    child.unref()
    const rec: Record = { id, pool, startedAt: Date.now(), pid: child.pid }
    await writeFile(join(dir, 'instance.json'), `${JSON.stringify(rec)}\n`)
    const running: Running = {
      ...rec, child, state: 'running',
      exited: new Promise((done) => child.once('exit', () => {
        if (running.state === 'running') {
          running.state = 'exited'
          this.o.logger.warn({ instanceId: id, pool, code: child.exitCode, signal: child.signalCode }, 'an agent process exited by itself')
        }
        done()
      })),
    }
    this.instances.set(id, running)
    this.o.logger.info({ instanceId: id, pool, pid: child.pid }, 'agent process started')
    return { id, pool, startedAt: rec.startedAt, state: 'running' }
  }

  async stop(instanceId: string): Promise<void> {
    if (!this.instances.has(instanceId)) await this.adopt()
    const r = this.instances.get(instanceId)
    if (!r) return
    const crashed = r.state === 'exited'
    if (!crashed) {
      r.state = 'stopping'
      const signal = (s: NodeJS.Signals): void => {
        try {
          process.kill(-r.pid, s) // its process group: the agent and the tasks it runs as processes
        } catch {
          // the group is gone
        }
      }
      signal('SIGTERM')
      const timer = setTimeout(() => signal('SIGKILL'), this.o.stopGraceMs ?? 10_000)
      await r.exited
      clearTimeout(timer)
      signal('SIGKILL') // whatever of the group is left
    }
    const dir = join(this.baseDir, instanceId)
    // the log of an agent that died by itself is kept, to tell why
    if (crashed) await rename(join(dir, 'agent.log'), join(this.baseDir, `${instanceId}.crashed.log`)).catch(() => undefined)
    await rm(dir, { recursive: true, force: true }).catch((err: Error) =>
      this.o.logger.warn({ instanceId, err: err.message }, 'could not remove an instance\'s directory'))
    // listed until its directory is gone: list() would otherwise adopt the half-removed directory again
    this.instances.delete(instanceId)
    this.o.logger.info({ instanceId, pool: r.pool }, 'agent process stopped')
  }

  async list(): Promise<Instance[]> {
    await this.adopt()
    return [...this.instances.values()].map((r) => ({ id: r.id, pool: r.pool, startedAt: r.startedAt, state: r.state }))
  }

  /** Stops every instance (what `regatta dev` does when it ends). */
  async stopAll(): Promise<void> {
    await this.adopt()
    await Promise.all([...this.instances.keys()].map((id) => this.stop(id)))
  }
}
