// The JSON shape of runs for the API, the CLI and the web UI, derived from stored run documents.
import { jobStateName, jobStatus } from './machines/index.js'
import type { RunDocument } from './service.js'
import type { StuckBounds, StuckItem } from './stuck.js'

export type { StuckBound, StuckItem } from './stuck.js'

/** `GET /api/v1/runs?stuck=true`: what is past its bound (stuck.ts), the bounds used, and the runs concerned. */
export interface StuckView {
  stuck: StuckItem[]
  bounds: StuckBounds & { timeoutGraceMs: number }
  /** The CI service's clock when it looked (ms since the epoch). */
  now: number
  runs: RunView[]
}

export interface JobView {
  id: string
  context: string
  needs: string[]
  state: string
  /** The commit status: pending, success, failure or error. */
  status: string
  description: string
  attempt: number
  taskId: string | null
  exitCode: number | null
  reason: string | null
  message: string | null
  startedAt: number | null
  finishedAt: number | null
  /** The tar.gz its latest attempt saved (its `artifacts` paths), to download; null if none (or in a list of runs). */
  artifacts: { url: string; size: number } | null
}

export interface RunView {
  runId: string
  repo: string
  kind: string
  ref: string
  sha: string
  actor: string
  state: string
  error: string | null
  supersededBy: string | null
  createdAt: number
  startedAt: number | null
  finishedAt: number | null
  jobs: JobView[]
}

/** The view of a run; `artifacts` (job id -> bytes saved) comes from the object store, see savedArtifacts(). */
export function runView(doc: RunDocument, artifacts: Record<string, number> = {}): RunView {
  const c = doc.machine.snapshot.context
  const t = doc.meta.trigger
  return {
    runId: doc.meta.runId,
    repo: t.repo.fullName,
    kind: t.kind,
    ref: t.ref,
    sha: t.sha,
    actor: t.actor,
    state: doc.machine.state,
    error: doc.meta.error ?? c.error ?? null,
    supersededBy: doc.meta.supersededBy ?? null,
    createdAt: doc.meta.createdAt,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    jobs: c.order.map((id) => {
      const j = c.jobs[id]!
      const state = jobStateName(j.value)
      const report = jobStatus(state, j.context)
      return {
        id,
        context: doc.meta.jobs[id]?.context ?? id,
        needs: j.context.needs,
        state,
        status: report.status,
        description: report.description,
        attempt: j.context.attempt,
        taskId: j.context.taskId,
        exitCode: j.context.exitCode,
        reason: j.context.reason,
        message: j.context.message,
        startedAt: j.context.startedAt,
        finishedAt: j.context.finishedAt,
        artifacts: artifacts[id] !== undefined
          ? { url: `/api/v1/runs/${encodeURIComponent(doc.meta.runId)}/jobs/${encodeURIComponent(id)}/artifacts`, size: artifacts[id] }
          : null,
      }
    }),
  }
}
