// What is past its bound (`regatta runs ls --stuck`, `GET /api/v1/runs?stuck=true`), as a pure
// function of stored run documents and a time. Each wait of a job or run has a bound:
//
//   job waiting   (for an offer that fits)        > maxWaitingMs   (default 10m)   bound "waiting"
//   job starting  (task STAGING or STARTING)      > maxStartingMs  (default 11m)   bound "starting"
//   job running                                   > its `timeout` + 1m             bound "timeout"
//   run not ended, no job waiting/starting/running, unchanged > maxIdleMs (5m)     bound "idle"
//
// The starting bound is the master's task start timeout (10m by default), at which the master
// kills the task and reports it LOST, plus a minute for that update to arrive: a job still
// `starting` past it never heard of its task (a launch that was lost on the way). A running
// job is ended by its own timer at its timeout; one still running a minute later belongs to a
// run no live CI service drives. An idle run has nothing that could move it forward.
import { FINAL_RUN_STATES, duration, jobStateName, type JobContext, type RunStateName } from './machines/index.js'
import type { RunDocument } from './service.js'

export interface StuckBounds {
  maxWaitingMs: number
  maxStartingMs: number
  maxIdleMs: number
}

export const DEFAULT_STUCK_BOUNDS: StuckBounds = {
  maxWaitingMs: 10 * 60_000,
  maxStartingMs: 11 * 60_000,
  maxIdleMs: 5 * 60_000,
}

/** How long past its own timeout a job may still show `running` (its timer ends it at the timeout). */
export const TIMEOUT_GRACE_MS = 60_000

export type StuckBound = 'waiting' | 'starting' | 'timeout' | 'idle'

export interface StuckItem {
  runId: string
  repo: string
  ref: string
  sha: string
  /** The job past its bound; null when the run itself is (bound `idle`). */
  jobId: string | null
  /** The job's state (the run's, for `idle`). */
  state: string
  bound: StuckBound
  /** The bound it passed (for `timeout`, the job's own timeout; the grace comes on top). */
  boundMs: number
  /** Since when it has been in that state (ms since the epoch). */
  since: number
  forMs: number
  /** One line for people, naming the bound. */
  description: string
}

/** Everything past its bound in these runs at `now`, oldest wait first. */
export function stuckItems(docs: readonly RunDocument[], now: number, bounds: StuckBounds = DEFAULT_STUCK_BOUNDS): StuckItem[] {
  const out: StuckItem[] = []
  for (const doc of docs) {
    if (FINAL_RUN_STATES.has(doc.machine.state as RunStateName)) continue
    const c = doc.machine.snapshot.context
    const t = doc.meta.trigger
    const base = { runId: doc.meta.runId, repo: t.repo.fullName, ref: t.ref, sha: t.sha }
    let busy = false
    for (const jobId of c.order) {
      const job = c.jobs[jobId]
      if (!job) continue
      const state = jobStateName(job.value)
      const j = job.context
      const item = (bound: StuckBound, boundMs: number, since: number, description: (forMs: number) => string): void => {
        const forMs = now - since
        const limit = bound === 'timeout' ? boundMs + TIMEOUT_GRACE_MS : boundMs
        if (forMs > limit) out.push({ ...base, jobId, state, bound, boundMs, since, forMs, description: description(forMs) })
      }
      if (state === 'waiting') {
        busy = true
        item('waiting', bounds.maxWaitingMs, waitingSince(j, c.startedAt ?? c.createdAt ?? doc.meta.createdAt, (id) => c.jobs[id]?.context.finishedAt ?? null),
          (forMs) => `waiting for resources for ${duration(forMs)} (bound ${duration(bounds.maxWaitingMs)})`)
      } else if (state === 'starting') {
        busy = true
        item('starting', bounds.maxStartingMs, j.launchedAt ?? c.updatedAt ?? doc.meta.createdAt,
          (forMs) => `launched ${duration(forMs)} ago and its task is not RUNNING (bound ${duration(bounds.maxStartingMs)}: the master's task start timeout and a minute)`)
      } else if (state === 'running') {
        busy = true
        item('timeout', j.timeoutMs, j.startedAt ?? j.launchedAt ?? doc.meta.createdAt,
          (forMs) => `running for ${duration(forMs)}, past its timeout of ${duration(j.timeoutMs)}`)
      }
    }
    if (!busy) {
      const since = c.updatedAt ?? c.createdAt ?? doc.meta.createdAt
      const forMs = now - since
      if (forMs > bounds.maxIdleMs) {
        out.push({
          ...base, jobId: null, state: doc.machine.state, bound: 'idle', boundMs: bounds.maxIdleMs, since, forMs,
          description: `not ended, no job waiting, starting or running, and no change for ${duration(forMs)} (bound ${duration(bounds.maxIdleMs)})`,
        })
      }
    }
  }
  return out.sort((a, b) => a.since - b.since)
}

/**
 * When the job began its current wait for resources: its last attempt's end (a retry or a
 * requeue), else when its needs ended, else the run's start. Never earlier than any of them.
 */
function waitingSince(j: JobContext, runStart: number, finishedAt: (jobId: string) => number | null): number {
  let since = runStart
  for (const need of j.needs) since = Math.max(since, finishedAt(need) ?? since)
  const last = j.history.at(-1)
  if (last) since = Math.max(since, last.finishedAt)
  return since
}
