// Turns a planned job into the task the agent runs: the commit checked out as /workspace, the
// steps in order in one container (each announced by a marker line, the first failing step
// ends the job with its exit code), the job's env, and its resources; a cache in a volume is
// linked into the checkout before the first step (cache-volumes.ts), any other cache is the
// agent's to restore and save (object store).
import { createHash } from 'node:crypto'
import type { Resource, TaskSpec } from '../../../shared/protocol/index.js'
import type { PlannedJob } from './pipeline/index.js'
import type { Trigger } from './trigger.js'
import { cacheVolumeScript } from './cache-volumes.js'

/** Printed before each step: `::regatta step <n> <name>`; the log view splits on it. */
export const STEP_MARKER = '::regatta step'

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** One POSIX shell script running the steps in order; a failing step stops it with its exit code. */
export function stepsScript(steps: PlannedJob['steps'], warnings: string[] = [], before: string[] = []): string {
  const lines = ['set -u', ...warnings.map((w) => `printf '%s\\n' ${quote(`::regatta warning ${w}`)} >&2`), ...before]
  steps.forEach((step, i) => {
    const n = i + 1
    lines.push(
      `printf '%s\\n' ${quote(`${STEP_MARKER} ${n} ${step.name}`)}`,
      `sh -e -c ${quote(step.run)} || { code=$?; printf '%s\\n' ${quote(`::regatta step ${n} failed with exit code`)}" $code" >&2; exit $code; }`,
    )
  })
  return lines.join('\n')
}

/** The object (bucket `regatta-artifacts`) holding an attempt's artifacts: a tar.gz of the job's `artifacts` paths. */
export function artifactName(taskId: string): string {
  return `${taskId}.tar.gz`
}

/**
 * A task id for attempt `attempt` of a job (and its `requeue`-th relaunch after a lost or
 * preempted task): the allowed characters, unique per run, job, attempt and relaunch.
 */
export function taskIdFor(runId: string, jobId: string, attempt: number, requeue = 0): string {
  const slug = jobId.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60) || 'job'
  const hash = createHash('sha256').update(jobId).digest('hex').slice(0, 6)
  return `${runId}.${slug}.${hash}.${attempt}${requeue > 0 ? `r${requeue}` : ''}`
}

export interface TaskSpecInput {
  runId: string
  job: PlannedJob
  /** The task's id (taskIdFor). */
  taskId: string
  attempt: number
  trigger: Trigger
  resources: Resource[]
  /** The values of the secrets the job names, opened at launch (never stored in the run). */
  secrets?: { values: Record<string, string>; missing: string[] }
  githubToken?: string
  /** The id of the volume the job's cache lives in (its resources hold it); absent: the object store keeps the cache. */
  cacheVolume?: string
}

/** Env var -> value for the secrets of `secretEnv` (env var -> secret name) that have a value. */
function secretValues(secretEnv: Record<string, string>, values: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [envVar, name] of Object.entries(secretEnv)) if (values[name] !== undefined) out[envVar] = values[name]
  return out
}

export function taskSpecFor(i: TaskSpecInput): TaskSpec {
  const { job, trigger } = i
  const values = i.secrets?.values ?? {}
  // each secret the job names is an env var of its name; `VAR: ${{ secrets.NAME }}` adds VAR
  const secretEnv = { ...secretValues(Object.fromEntries(job.secrets.map((n) => [n, n])), values), ...secretValues(job.secretEnv, values) }
  const missing = i.secrets?.missing ?? []
  const warnings = missing.length > 0 ? [`secret${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not set for ${trigger.repo.fullName} (regatta secrets set ${trigger.repo.fullName} NAME)`] : []
  const cache = job.cache && job.cache.paths.length > 0 ? job.cache : undefined
  const inVolume = cache && i.cacheVolume !== undefined
  if (cache?.volume && !inVolume) warnings.push('no cache volume could be had on this agent (no free disk, or every slot in use): the cache comes from the object store this time')
  const before = inVolume ? cacheVolumeScript({ volumeId: i.cacheVolume!, key: cache.key, paths: cache.paths, runId: i.runId, jobId: job.id }) : []
  return {
    taskId: i.taskId,
    name: job.context,
    resources: i.resources,
    container: {
      image: job.image,
      command: ['sh', '-c', stepsScript(job.steps, warnings, before)],
      env: {
        CI: 'true',
        REGATTA: 'true',
        REGATTA_RUN_ID: i.runId,
        REGATTA_JOB: job.id,
        REGATTA_ATTEMPT: String(i.attempt),
        GITHUB_SHA: trigger.sha,
        GITHUB_REF: trigger.ref,
        GITHUB_REPOSITORY: trigger.repo.fullName,
        ...job.env,
      },
      ...(Object.keys(secretEnv).length > 0 ? { secretEnv } : {}),
    },
    killGracePeriodMs: 10_000,
    streamOutput: true,
    checkout: {
      url: trigger.repo.cloneUrl,
      sha: trigger.sha,
      ref: trigger.ref,
      ...(i.githubToken && trigger.repo.cloneUrl.startsWith('https://') ? { token: i.githubToken } : {}),
    },
    labels: { 'regatta.run': i.runId, 'regatta.job': job.id },
    ...(job.services.length > 0 ? {
      sidecars: job.services.map((svc) => ({
        name: svc.name, image: svc.image, env: { ...svc.env }, ...(svc.command ? { command: svc.command } : {}),
        ...(Object.keys(svc.secretEnv).length > 0 ? { secretEnv: secretValues(svc.secretEnv, values) } : {}),
      })),
    } : {}),
    ...(cache && !inVolume ? { cache: { key: cache.key, paths: cache.paths } } : {}),
    ...(job.artifacts.length > 0 ? { artifacts: { name: artifactName(i.taskId), paths: job.artifacts } } : {}),
  }
}
