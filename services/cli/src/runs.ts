// The run commands of `regatta`: `runs ls|show|cancel|rerun`, `logs RUN[/JOB] [-f]` and
// `trigger`. Each asks the CI service's HTTP API (ci-client.ts) and prints human text, or one
// JSON document (JSON lines for a followed log) with --json.
import { RegattaError } from '../../../shared/errors/index.js'
import type { JobView, RunView, StuckView } from '../../ci/src/views.js'
import { CiClient, type LogOutput } from './ci-client.js'
import { formatRun, formatRuns, humanDuration, shortRef, table } from './format.js'

/** Where a command writes: stdout in the CLI, a buffer in tests. */
export type Write = (text: string) => void

const SHA = /^[0-9a-f]{40}$/

/**
 * `RUN` or `RUN/JOB`. Run ids never contain `/`, job ids do (`ci/test (shard=1)`): the job is
 * everything after the first `/`.
 */
export function splitRunJob(arg: string): { runId: string; jobId?: string } {
  const i = arg.indexOf('/')
  const runId = i < 0 ? arg : arg.slice(0, i)
  const jobId = i < 0 ? '' : arg.slice(i + 1)
  if (!runId.trim()) throw new RegattaError('INVALID_CONFIG', `"${arg}" is not RUN or RUN/JOB (e.g. r1a2b3c/ci/build)`)
  return jobId ? { runId, jobId } : { runId }
}

export async function runsLs(client: CiClient, o: { limit?: number; json?: boolean }, out: Write): Promise<void> {
  const runs = await client.listRuns(o.limit)
  out(o.json ? `${JSON.stringify(runs)}\n` : `${formatRuns(runs)}\n`)
}

/**
 * `regatta runs ls --stuck`: every job and run past its bound (waiting for resources, task not
 * started, running past its timeout, a run with nothing moving), naming the bound; --json prints
 * the items (each with `bound` and `boundMs`).
 */
export async function runsStuck(client: CiClient, o: { maxWaitingMs?: number; maxStartingMs?: number; maxIdleMs?: number; json?: boolean }, out: Write): Promise<void> {
  const view = await client.stuck({ maxWaitingMs: o.maxWaitingMs, maxStartingMs: o.maxStartingMs, maxIdleMs: o.maxIdleMs })
  out(o.json ? `${JSON.stringify(view.stuck)}\n` : `${formatStuck(view)}\n`)
}

const BOUND_NAMES: Record<string, string> = {
  waiting: 'waiting for resources',
  starting: 'task start',
  timeout: 'job timeout',
  idle: 'no progress',
}

/** The stuck items as a table (RUN, JOB, STATE, FOR, BOUND, WHY), then the bounds that were applied. */
export function formatStuck(view: StuckView): string {
  const b = view.bounds
  const bounds = `bounds: waiting ${humanDuration(b.maxWaitingMs)}, starting ${humanDuration(b.maxStartingMs)}, ` +
    `running: each job's timeout + ${humanDuration(b.timeoutGraceMs)}, no progress ${humanDuration(b.maxIdleMs)}`
  if (view.stuck.length === 0) return `Nothing is past its bound (${bounds}).`
  const rows = view.stuck.map((x) => [
    x.runId, x.jobId ?? '-', x.state, humanDuration(x.forMs),
    `${BOUND_NAMES[x.bound] ?? x.bound} > ${humanDuration(x.boundMs)}${x.bound === 'timeout' ? ` + ${humanDuration(b.timeoutGraceMs)}` : ''}`,
    `${x.repo} ${shortRef(x.ref)} ${x.sha.slice(0, 7)}`,
  ])
  const n = view.stuck.length
  return `${table(['RUN', 'JOB', 'STATE', 'FOR', 'BOUND PASSED', 'COMMIT'], rows)}\n\n${n} past ${n === 1 ? 'its bound' : 'their bounds'} (${bounds}).`
}

export async function runsShow(client: CiClient, runId: string, o: { json?: boolean }, out: Write): Promise<void> {
  const run = await client.getRun(runId)
  out(o.json ? `${JSON.stringify(run)}\n` : `${formatRun(run)}\n`)
}

export async function runsCancel(client: CiClient, runId: string, o: { json?: boolean }, out: Write): Promise<void> {
  const run = await client.cancel(runId)
  if (o.json) return out(`${JSON.stringify(run)}\n`)
  const stopping = run.jobs.filter((j) => j.state === 'running' || j.state === 'starting').length
  out(run.state === 'cancelled'
    ? `Cancelled run ${run.runId}.\n`
    : `Cancelling run ${run.runId} (${run.state}${stopping ? `; stopping ${stopping} job${stopping === 1 ? '' : 's'}` : ''}).\n`)
}

export async function runsRerun(client: CiClient, runId: string, o: { json?: boolean }, out: Write): Promise<void> {
  const run = await client.rerun(runId)
  if (o.json) return out(`${JSON.stringify(run)}\n`)
  out(`${started(client, run, `rerun of ${runId}`)}\n`)
  failIfInvalid(run)
}

export async function trigger(client: CiClient, o: { repo: string; ref: string; sha?: string; json?: boolean }, out: Write): Promise<void> {
  if (!o.repo.trim()) throw new RegattaError('INVALID_CONFIG', '--repo: empty clone URL')
  if (!o.ref.trim()) throw new RegattaError('INVALID_CONFIG', '--ref: empty ref')
  if (o.sha !== undefined && !SHA.test(o.sha)) throw new RegattaError('INVALID_CONFIG', `--sha: "${o.sha}" is not a full commit sha (40 lowercase hex digits)`)
  const run = await client.trigger({ repo: o.repo, ref: o.ref, ...(o.sha ? { sha: o.sha } : {}) })
  if (o.json) return out(`${JSON.stringify(run)}\n`)
  out(`${started(client, run)}\n`)
  failIfInvalid(run)
}

/** `Started run r1 (octo/app main 1a2b3c4, 3 jobs): http://.../runs/r1`. */
function started(client: CiClient, run: RunView, why?: string): string {
  const jobs = run.state === 'error' ? 'no job: its pipelines are not valid'
    : run.jobs.length === 0 ? 'no job: no pipeline of the commit runs on this trigger'
      : `${run.jobs.length} job${run.jobs.length === 1 ? '' : 's'}`
  return `Started run ${run.runId} (${why ? `${why}, ` : ''}${run.repo} ${shortRef(run.ref)} ${run.sha.slice(0, 7)}, ${jobs}): ${client.baseUrl}/runs/${run.runId}`
}

/** A run whose pipelines do not parse ends `error` at once: say why in one line, and fail. */
function failIfInvalid(run: RunView): void {
  if (run.state !== 'error') return
  const lines = (run.error ?? 'the run could not start').split('\n')
  const more = lines.length > 1 ? ` (and ${lines.length - 1} more; see regatta runs show ${run.runId})` : ''
  throw new RegattaError('INVALID_PIPELINE', `run ${run.runId} ended error: ${lines[0]}${more}`)
}

/**
 * `regatta logs RUN[/JOB] [-f]`: one job's log, or every job's in the run's order, each
 * headed by `==> JOB <==`. With `follow`, each log is followed live until its job ends.
 */
export async function logs(client: CiClient, arg: string, o: { follow?: boolean; json?: boolean }, out: Write): Promise<void> {
  const { runId, jobId } = splitRunJob(arg)
  if (jobId !== undefined) {
    await jobLog(client, runId, jobId, o, out).catch(async (err: unknown) => {
      throw await explainMissingJob(client, runId, jobId, err)
    })
    return
  }
  const run = await client.getRun(runId)
  if (run.jobs.length === 0) {
    if (!o.json) out(run.error ? `Run ${runId} has no jobs: it ended ${run.state} (see regatta runs show ${runId}).\n` : `Run ${runId} has no jobs.\n`)
    return
  }
  for (const [i, job] of run.jobs.entries()) {
    if (!o.json) out(`${i > 0 ? '\n' : ''}==> ${job.id} <==\n`)
    await jobLog(client, runId, job.id, o, out, job)
  }
}

async function jobLog(client: CiClient, runId: string, jobId: string, o: { follow?: boolean; json?: boolean }, out: Write, job?: JobView): Promise<void> {
  if (o.follow) {
    let endsInNewline = true
    await client.followJobLog(runId, jobId, (chunk: LogOutput) => {
      if (o.json) return out(`${JSON.stringify({ job: jobId, ...chunk })}\n`)
      out(chunk.data)
      if (chunk.data) endsInNewline = chunk.data.endsWith('\n')
    })
    if (!endsInNewline) out('\n')
    return
  }
  const text = await client.jobLog(runId, jobId)
  if (o.json) return out(`${JSON.stringify({ job: jobId, ...(job ? { state: job.state } : {}), log: text })}\n`)
  out(text && !text.endsWith('\n') ? `${text}\n` : text)
}

/** A job id that is not in the run: name the ones that are (ids with spaces are easy to mistype). */
async function explainMissingJob(client: CiClient, runId: string, jobId: string, err: unknown): Promise<unknown> {
  if (!(err instanceof RegattaError) || err.code !== 'NOT_FOUND') return err
  let run: RunView
  try {
    run = await client.getRun(runId)
  } catch (e) {
    return e // no such run: say that
  }
  const ids = run.jobs.map((j) => j.id)
  return new RegattaError('NOT_FOUND', `no job "${jobId}" in run ${runId}; its jobs: ${ids.length ? ids.join(', ') : 'none'}`)
}
