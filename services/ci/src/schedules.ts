// Cron schedules: pipelines with `on.schedule` run on their repository's default branch at each
// tick. Which repositories have which schedules is learned from the runs of the default branch
// (kept in NATS KV); a tick is claimed in KV with `create`, so that with several CI replicas each
// tick starts one run, not one per replica.
import { createHash } from 'node:crypto'
import type { KV, NatsConnection } from 'nats'
import { Cron } from 'croner'
import type { Logger } from '../../../shared/log/index.js'
import { systemClock, type Clock, type Timer } from '../../../shared/clock/index.js'
import { manualTrigger } from './manual.js'
import type { Trigger } from './trigger.js'
import { openKv } from '../../../shared/nats/kv.js'

export const SCHEDULES_BUCKET = 'regatta-schedules'
export const TICKS_BUCKET = 'regatta-schedule-ticks'

export interface ScheduleEntry {
  repo: Trigger['repo']
  crons: string[]
  updatedAt: number
}

const keyOf = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 32)

export class Schedules {
  private entries?: KV
  private ticks?: KV
  private timer?: Timer
  private lastCheck: number
  private readonly clock: Clock

  constructor(
    private readonly nc: NatsConnection,
    private readonly start: (t: Trigger) => Promise<unknown>,
    private readonly log: Logger,
    private readonly o: { clock?: Clock; replicas?: number; intervalMs?: number } = {},
  ) {
    this.clock = o.clock ?? systemClock
    this.lastCheck = this.clock.now()
  }

  async open(): Promise<void> {
    this.entries = await openKv(this.nc, SCHEDULES_BUCKET, { history: 1, replicas: this.o.replicas ?? 1 })
    this.ticks = await openKv(this.nc, TICKS_BUCKET, { history: 1, ttl: 7 * 24 * 3600_000, replicas: this.o.replicas ?? 1 })
    this.timer = this.clock.setInterval(() => void this.check().catch((err: Error) => this.log.warn({ err: err.message }, 'schedule check failed')), this.o.intervalMs ?? 15_000)
  }

  stop(): void {
    this.timer?.cancel()
  }

  /** The schedules a repository's default branch declares now (an empty list removes them). */
  async record(repo: Trigger['repo'], crons: string[]): Promise<void> {
    const key = keyOf(repo.cloneUrl)
    if (crons.length === 0) {
      await this.entries?.delete(key).catch(() => undefined)
      return
    }
    const entry: ScheduleEntry = { repo, crons: [...new Set(crons)].sort(), updatedAt: this.clock.now() }
    await this.entries?.put(key, JSON.stringify(entry))
  }

  /** Starts the runs of the ticks that fell due since the last check (at most the latest tick of each schedule). */
  async check(now = this.clock.now()): Promise<number> {
    if (!this.entries || !this.ticks) return 0
    const since = this.lastCheck
    this.lastCheck = now
    let started = 0
    const keys: string[] = []
    for await (const k of await this.entries.keys()) keys.push(k)
    for (const k of keys) {
      const e = await this.entries.get(k)
      if (!e || e.operation !== 'PUT') continue
      const entry = e.json<ScheduleEntry>()
      for (const cron of entry.crons) {
        const tick = latestTick(cron, since, now)
        if (tick === undefined) continue
        try {
          // one replica wins each tick
          await this.ticks.create(`${k}.${keyOf(cron)}.${tick}`, new Uint8Array([1]))
        } catch {
          continue
        }
        try {
          const base = await manualTrigger(entry.repo.cloneUrl, entry.repo.defaultBranch)
          await this.start({ ...base, kind: 'schedule', repo: entry.repo, schedule: cron, actor: 'schedule' })
          started++
        } catch (err) {
          this.log.warn({ repo: entry.repo.fullName, cron, err: (err as Error).message }, 'a scheduled run could not start')
        }
      }
    }
    return started
  }
}

/** The latest tick of `cron` in (since, now], in UTC; undefined when none. */
export function latestTick(cron: string, since: number, now: number): number | undefined {
  let job: Cron
  try {
    job = new Cron(cron, { paused: true, timezone: 'UTC' })
  } catch {
    return undefined
  }
  let last: number | undefined
  let at = new Date(since)
  for (let i = 0; i < 10_000; i++) {
    const next = job.nextRun(at)
    if (!next || next.getTime() > now) break
    last = next.getTime()
    at = next
  }
  return last
}
