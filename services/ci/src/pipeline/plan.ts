// From the pipeline files of a commit and what happened (a Trigger) to the concrete jobs of a
// run: the pipelines whose `on` matches, their matrices expanded, ${{ }} interpolated, `needs`
// turned into job ids. Pure: files in, plan out; `if` stays an expression for run time.
import type { Trigger } from '../trigger.js'
import { pipelineError, sortPipelineErrors, type PipelineError, type Position } from './errors.js'
import { ExpressionError, hasExpression, parseTemplate, renderTemplate, type ExpressionContext, type TemplatePart } from './expressions.js'
import { LIMITS } from './limits.js'
import { describeCombination } from './matrix.js'
import type { Job, MatrixCombination, Pipeline } from './model.js'
import { parsePipeline } from './parse.js'
import { wholeSecret } from './semantics.js'
import { githubContext, matchesTrigger } from './triggers.js'

export interface PlannedStep {
  name: string
  run: string
}

export interface PlannedService {
  name: string
  image: string
  env: Record<string, string>
  /** Env var -> secret name: the runner sets these from the secret store at launch. */
  secretEnv: Record<string, string>
  command?: string[]
}

export interface PlannedJob {
  /** Unique in the run: `ci/build`, `ci/test (shard=1)`. */
  id: string
  pipeline: string
  /** The job's name in the file. */
  job: string
  /** The pipeline file. */
  file: string
  /** This expansion's matrix values ({} without matrix). */
  matrix: MatrixCombination
  /** The GitHub commit status context: `regatta/ci/test (shard=1)`. */
  context: string
  image: string
  steps: PlannedStep[]
  /** Pipeline env then job env, interpolated. Secrets are never here: see secretEnv. */
  env: Record<string, string>
  /** Env var -> secret name, from `VAR: ${{ secrets.NAME }}`. */
  secretEnv: Record<string, string>
  /** Ids of the planned jobs this one waits for (every expansion of a matrix job it needs). */
  needs: string[]
  resources: { cpus: number; mem: number; disk?: number }
  timeoutMs: number
  retries: number
  /** The condition, evaluated when the job is ready (see evaluateCondition); `success()` by default. */
  if: string
  services: PlannedService[]
  /** `volume`: kept in a persistent volume of the agent (cache-volumes.ts), not the object store. */
  cache?: { key: string; paths: string[]; volume?: { size: number } }
  artifacts: string[]
  /** Secret names the job reads (each as an env var of its name); empty for a pull request from a fork. */
  secrets: string[]
  /** The agents' pool it runs on (offers of other pools are not used). */
  pool: string
  revocable: boolean
  priority: number
}

export interface PlannedPipeline {
  name: string
  file: string
  jobs: PlannedJob[]
}

export interface PlanOptions {
  /** hashFiles() of cache keys: a hash of the checkout's files matching the globs ('' for none). */
  hashFiles?: (patterns: string[]) => string
  /** `${{ github.run_id }}`. */
  runId?: string
}

export interface PlanResult {
  pipelines: PlannedPipeline[]
  /** Errors of every file (valid or not for this trigger) and of planning. */
  errors: PipelineError[]
}

/**
 * Parses every pipeline file of a commit, keeps those whose `on` matches the trigger and
 * expands them into jobs. A run with errors should fail with them (pipelineFailure).
 */
export function planRun(files: Array<{ path: string; text: string }>, trigger: Trigger, options: PlanOptions = {}): PlanResult {
  const errors: PipelineError[] = []
  if (files.length > LIMITS.files) {
    errors.push(pipelineError(files[LIMITS.files].path, { line: 1, column: 1 }, '', `a repository may have at most ${LIMITS.files} pipeline files`))
  }
  const parsed: Pipeline[] = []
  for (const f of files.slice(0, LIMITS.files)) {
    const r = parsePipeline(f.path, f.text)
    if (r.ok) parsed.push(r.pipeline)
    else errors.push(...r.errors)
  }
  const byName = new Map<string, Pipeline>()
  const unique: Pipeline[] = []
  for (const p of parsed) {
    const other = byName.get(p.name)
    if (other) {
      errors.push(pipelineError(p.file, p.positions.name ?? { line: 1, column: 1 }, 'name', `pipeline "${p.name}" is also defined in ${other.file}; names must differ`))
      continue
    }
    byName.set(p.name, p)
    unique.push(p)
  }
  const pipelines: PlannedPipeline[] = []
  let jobs = 0
  let bytes = 0
  for (const p of unique) {
    if (!matchesTrigger(p.on, trigger)) continue
    const r = planPipeline(p, trigger, options)
    if (r.errors.length > 0) {
      errors.push(...r.errors)
      continue
    }
    pipelines.push(r.pipeline!)
    // the run is stored as one KV value: the first file to cross a run's limit says so
    const before = { jobs, bytes }
    jobs += r.pipeline!.jobs.length
    bytes += Buffer.byteLength(JSON.stringify(r.pipeline!.jobs))
    const where = p.positions['jobs#key'] ?? p.positions.jobs ?? { line: 1, column: 1 }
    if (jobs > LIMITS.runJobs && before.jobs <= LIMITS.runJobs) {
      errors.push(pipelineError(p.file, where, 'jobs', `the run comes to ${jobs} jobs with this file's; at most ${LIMITS.runJobs} jobs a run (all pipelines a push starts)`))
    } else if (bytes > LIMITS.runPlanBytes && before.bytes <= LIMITS.runPlanBytes && jobs <= LIMITS.runJobs) {
      errors.push(pipelineError(p.file, where, 'jobs', `the run's planned jobs come to ${Math.ceil(bytes / 1024)} KiB of JSON with this file's; at most ${LIMITS.runPlanBytes / 1024} KiB a run`))
    }
  }
  return { pipelines, errors: sortPipelineErrors(errors) }
}

/** Expands one parsed pipeline for a trigger (whether its `on` matches is not checked here). */
export function planPipeline(p: Pipeline, trigger: Trigger, options: PlanOptions = {}): { pipeline?: PlannedPipeline; errors: PipelineError[] } {
  const errors: PipelineError[] = []
  const github = githubContext(trigger, options.runId)
  const fromFork = trigger.pullRequest?.fromFork === true
  const at = (path: string): Position => {
    for (let q = path; ; q = q.replace(/(\.[^.[]+|\[[^\]]+\])$/, '')) {
      if (p.positions[q]) return p.positions[q]
      if (!/(\.|\[)/.test(q)) return { line: 1, column: 1 }
    }
  }
  // Each template is parsed once, not once per matrix combination, and the text every job of
  // the pipeline comes to is bounded (LIMITS.plannedText): a matrix must not multiply one file
  // into minutes of work and gigabytes of job specs.
  const templates = new Map<string, TemplatePart[] | ExpressionError>()
  const reported = new Set<string>()
  let produced = 0
  /** Interpolates one value; on error records it and returns the text as it was. */
  const text = (path: string, template: string, ctx: ExpressionContext): string => {
    if (produced > LIMITS.plannedText) return template
    try {
      let out = template
      if (hasExpression(template)) {
        let parts = templates.get(template)
        if (parts === undefined) {
          try {
            parts = parseTemplate(template)
          } catch (e) {
            parts = e instanceof ExpressionError ? e : new ExpressionError(0, String(e))
          }
          templates.set(template, parts)
        }
        if (parts instanceof ExpressionError) throw parts
        out = renderTemplate(parts, ctx)
      }
      produced += out.length
      if (produced > LIMITS.plannedText) {
        errors.push(pipelineError(p.file, at('jobs'), 'jobs', `the jobs come to more than ${LIMITS.plannedText / (1024 * 1024)} MiB of text (scripts, names, env... of every matrix combination, after \${{ }}); at most ${LIMITS.plannedText / (1024 * 1024)} MiB a pipeline`))
      }
      return out
    } catch (e) {
      if (!(e instanceof ExpressionError)) throw e
      const err = pipelineError(p.file, at(path), path, `${e.reason} (at character ${e.column} of the value)`)
      // every expansion of a matrix job would report it again
      const key = `${err.line}:${err.column}:${err.message}`
      if (!reported.has(key)) {
        reported.add(key)
        errors.push(err)
      }
      return template
    }
  }

  const env: Record<string, string> = {}
  const secretEnv: Record<string, string> = {}
  for (const [k, v] of Object.entries(p.env)) {
    const secret = wholeSecret(v)
    if (secret !== undefined) secretEnv[k] = secret
    else env[k] = text(`env.${k}`, v, { github })
  }

  const ids = new Map<string, string[]>()
  for (const [name, job] of Object.entries(p.jobs)) {
    ids.set(name, (job.matrix ?? [undefined]).map((combo) => jobId(p.name, name, combo)))
  }
  const jobs: PlannedJob[] = []
  for (const [name, job] of Object.entries(p.jobs)) {
    for (const combo of job.matrix ?? [undefined]) {
      jobs.push(planJob(p, name, job, combo, { github, env, secretEnv, ids, text, fromFork, hashFiles: options.hashFiles }))
    }
  }
  if (errors.length > 0) return { errors }
  return { pipeline: { name: p.name, file: p.file, jobs }, errors }
}

function jobId(pipeline: string, job: string, combo: MatrixCombination | undefined): string {
  return combo ? `${pipeline}/${job} (${describeCombination(combo)})` : `${pipeline}/${job}`
}

interface JobInputs {
  github: Record<string, string>
  env: Record<string, string>
  secretEnv: Record<string, string>
  ids: Map<string, string[]>
  text: (path: string, template: string, ctx: ExpressionContext) => string
  fromFork: boolean
  hashFiles?: (patterns: string[]) => string
}

function planJob(p: Pipeline, name: string, job: Job, combo: MatrixCombination | undefined, inp: JobInputs): PlannedJob {
  const base = `jobs.${name}`
  const { github, text } = inp
  const matrix = combo ?? {}
  const jobCtx: ExpressionContext = { github, env: inp.env, ...(combo ? { matrix } : {}) }

  const env = { ...inp.env }
  const secretEnv = { ...inp.secretEnv }
  for (const [k, v] of Object.entries(job.env)) {
    const secret = wholeSecret(v)
    if (secret !== undefined) {
      secretEnv[k] = secret
      delete env[k]
    } else {
      env[k] = text(`${base}.env.${k}`, v, jobCtx)
      delete secretEnv[k]
    }
  }
  const ctx: ExpressionContext = { github, env, ...(combo ? { matrix } : {}) }

  const services: PlannedService[] = Object.entries(job.services).map(([svcName, svc]) => {
    const sp = `${base}.services.${svcName}`
    const svcEnv: Record<string, string> = {}
    const svcSecrets: Record<string, string> = {}
    for (const [k, v] of Object.entries(svc.env)) {
      const secret = wholeSecret(v)
      if (secret !== undefined) svcSecrets[k] = secret
      else svcEnv[k] = text(`${sp}.env.${k}`, v, ctx)
    }
    return {
      name: svcName,
      image: text(`${sp}.image`, svc.image, ctx),
      env: svcEnv,
      secretEnv: inp.fromFork ? {} : svcSecrets,
      ...(svc.command ? { command: svc.command.map((a, i) => text(`${sp}.command[${i}]`, a, ctx)) } : {}),
    }
  })

  const id = jobId(p.name, name, combo)
  return {
    id,
    pipeline: p.name,
    job: name,
    file: p.file,
    matrix,
    context: `regatta/${id}`,
    image: text(`${base}.image`, job.image, ctx),
    steps: job.steps.map((s, i) => ({
      name: text(`${base}.steps[${i}].name`, s.name, ctx),
      run: text(`${base}.steps[${i}].run`, s.run, ctx),
    })),
    env,
    secretEnv: inp.fromFork ? {} : secretEnv,
    needs: job.needs.flatMap((n) => inp.ids.get(n) ?? []),
    resources: { ...job.resources },
    timeoutMs: job.timeoutMs,
    retries: job.retries,
    if: job.if,
    services,
    ...(job.cache
      ? {
          cache: {
            key: text(`${base}.cache.key`, job.cache.key, { ...ctx, ...(inp.hashFiles ? { hashFiles: inp.hashFiles } : {}) }),
            paths: job.cache.paths.map((c, i) => text(`${base}.cache.paths[${i}]`, c, ctx)),
            ...(job.cache.volume ? { volume: { ...job.cache.volume } } : {}),
          },
        }
      : {}),
    artifacts: job.artifacts.map((a, i) => text(`${base}.artifacts[${i}]`, a, ctx)),
    secrets: inp.fromFork ? [] : [...new Set([...job.secrets, ...Object.values(inp.secretEnv)])],
    pool: job.pool,
    revocable: job.revocable,
    priority: job.priority,
  }
}
