// Turns a planned job into the task the agent runs: the commit checked out as /workspace, the
// steps in order in one container (each announced by a marker line, the first failing step
// ends the job with its exit code), the job's env, and its resources.
import { createHash } from 'node:crypto'
import type { Resource, TaskSpec } from '../../../shared/protocol/index.js'
import type { PlannedJob } from './pipeline/index.js'
import type { Trigger } from './trigger.js'

/** Printed before each step: `::regatta step <n> <name>`; the log view splits on it. */
export const STEP_MARKER = '::regatta step'

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** One POSIX shell script running the steps in order; a failing step stops it with its exit code. */
export function stepsScript(steps: PlannedJob['steps']): string {
  const lines = ['set -u']
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

/** A task id for attempt `attempt` of a job: the allowed characters, unique per run, job and attempt. */
export function taskIdFor(runId: string, jobId: string, attempt: number): string {
  const slug = jobId.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60) || 'job'
  const hash = createHash('sha256').update(jobId).digest('hex').slice(0, 6)
  return `${runId}.${slug}.${hash}.${attempt}`
}

export interface TaskSpecInput {
  runId: string
  job: PlannedJob
  attempt: number
  trigger: Trigger
  resources: Resource[]
  /** Secret values by env var, resolved by the service (never stored in the run). */
  secretEnv?: Record<string, string>
  githubToken?: string
}

export function taskSpecFor(i: TaskSpecInput): TaskSpec {
  const { job, trigger } = i
  return {
    taskId: taskIdFor(i.runId, job.id, i.attempt),
    name: job.context,
    resources: i.resources,
    container: {
      image: job.image,
      command: ['sh', '-c', stepsScript(job.steps)],
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
        ...i.secretEnv,
      },
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
      })),
    } : {}),
    ...(job.cache && job.cache.paths.length > 0 ? { cache: { key: job.cache.key, paths: job.cache.paths } } : {}),
    ...(job.artifacts.length > 0 ? { artifacts: { name: artifactName(taskIdFor(i.runId, job.id, i.attempt)), paths: job.artifacts } } : {}),
  }
}
