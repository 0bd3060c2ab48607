// The checks a schema cannot express, on a file that passed the schema: durations, cron,
// `needs` (unknown jobs, cycles), matrices, expressions in each field and what they may read,
// secrets, limits. Builds the typed Pipeline with defaults applied.
import { basename } from 'node:path'
import { cronProblem, normalizeCron } from './cron.js'
import { didYouMean } from './did-you-mean.js'
import { formatDurationMs, parseDurationMs } from './duration.js'
import { childPath, pipelineError, type PipelineError, type Position } from './errors.js'
import {
  ExpressionError, checkExpression, parseCondition, parseTemplate,
  type ContextName, type Expression, type ExpressionRules,
} from './expressions.js'
import { DEFAULTS, LIMITS } from './limits.js'
import { expandMatrix } from './matrix.js'
import type { Job, MatrixValue, Pipeline, PullRequestTrigger, PushTrigger, Service, Triggers } from './model.js'
import { PATTERNS, type JobFile, type PipelineFile } from './schema.js'

/** Positions by rendered path (`jobs.test.needs[0]`), from the YAML. */
export interface Locator {
  at(path: string): Position
  /** The position of a map key (`jobs.test` -> where `test:` is). */
  keyAt(path: string): Position
  /** The position of character `index` of a string value. */
  inValue(path: string, index: number): Position
  /** The source text of a scalar (e.g. `20.10` for a number read as 20.1). */
  source(path: string): string | undefined
  /** Every recorded position, for the Pipeline. */
  all(): Record<string, Position>
}

const JOB_NAME = new RegExp(PATTERNS.jobName)

class Checker {
  readonly errors: PipelineError[] = []
  constructor(readonly file: string, readonly loc: Locator) {}

  error(path: string, what: string, at = this.loc.at(path)): void {
    this.errors.push(pipelineError(this.file, at, path, what))
  }

  /**
   * Checks the ${{ }} of a string value against `rules`. With `secretWhole`, a value that is
   * exactly `${{ secrets.NAME }}` is accepted and NAME returned.
   */
  template(path: string, value: string, rules: ExpressionRules, secretWhole = false): { secret?: string } {
    if (!value.includes('${{')) return {}
    let parts
    try {
      parts = parseTemplate(value)
    } catch (e) {
      this.expressionError(path, e, 0)
      return {}
    }
    if (secretWhole) {
      const only = parts.length === 1 && parts[0].kind === 'expr' ? parts[0] : undefined
      const name = only ? secretName(only.expr) : undefined
      if (name !== undefined) return { secret: name }
    }
    for (const p of parts) {
      if (p.kind !== 'expr') continue
      for (const e of checkExpression(p.expr, rules)) this.expressionError(path, e, p.exprStart)
    }
    return {}
  }

  expressionError(path: string, e: unknown, offset: number): void {
    if (!(e instanceof ExpressionError)) throw e
    this.error(path, e.reason, this.loc.inValue(path, offset + e.index))
  }
}

/** NAME when a value is exactly `${{ secrets.NAME }}` (how env passes a secret), else undefined. */
export function wholeSecret(value: string): string | undefined {
  if (!value.includes('${{')) return undefined
  try {
    const parts = parseTemplate(value)
    return parts.length === 1 && parts[0].kind === 'expr' ? secretName(parts[0].expr) : undefined
  } catch {
    return undefined
  }
}

/** NAME when the expression is exactly `secrets.NAME`. */
function secretName(expr: Expression): string | undefined {
  const a = expr.ast
  return a.kind === 'property' && a.object.kind === 'name' && a.object.name === 'secrets' && new RegExp(PATTERNS.envName).test(a.name)
    ? a.name
    : undefined
}

/**
 * Checks and builds the Pipeline. `dropped`: jobs that failed the schema, left out of `data`,
 * with their `needs` (still checked: other jobs may name them, and they may close a cycle).
 * `order`: every job name in file order.
 */
export function buildPipeline(
  file: string, data: PipelineFile, loc: Locator, dropped: Record<string, string[]> = {}, order: string[] = Object.keys(data.jobs),
): { pipeline?: Pipeline; errors: PipelineError[] } {
  const c = new Checker(file, loc)
  const name = data.name ?? basename(file).replace(/\.ya?ml$/, '')
  if (data.name === undefined && !new RegExp(PATTERNS.pipelineName).test(name)) {
    c.error('', `the file name "${basename(file)}" does not make a pipeline name (letters, digits, ".", "_", "-"); set name:`, { line: 1, column: 1 })
  }
  const on = triggers(c, data.on)
  const env = envOf(c, 'env', data.env, { contexts: ['github'] })
  const jobNames = order
  const jobs: Record<string, Job> = {}
  const graph: Record<string, string[]> = {}
  let planned = 0
  for (const jobName of order) {
    if (Object.hasOwn(dropped, jobName)) {
      graph[jobName] = needsOf(c, `jobs.${jobName}`, jobName, dropped[jobName], jobNames)
      continue
    }
    const job = buildJob(c, jobName, data.jobs[jobName], jobNames)
    jobs[jobName] = job
    graph[jobName] = job.needs
    planned += job.matrix?.length ?? 1
  }
  if (planned > LIMITS.plannedJobs) {
    c.error('jobs', `expands to ${planned} jobs with its matrices; at most ${LIMITS.plannedJobs} jobs a pipeline`, loc.keyAt('jobs'))
  }
  checkCycles(c, graph)
  if (c.errors.length > 0) return { errors: c.errors }
  return {
    pipeline: { file, name, on, env: env.values, jobs, positions: loc.all() },
    errors: [],
  }
}

function triggers(c: Checker, on: PipelineFile['on']): Triggers {
  const out: Triggers = { schedule: [], manual: false }
  const events = typeof on === 'string' ? { [on]: null } : Array.isArray(on) ? Object.fromEntries(on.map((e) => [e, null])) : on
  const map = events as Record<string, unknown>
  if ('push' in map) {
    const p = (map.push ?? {}) as Record<string, string[] | undefined>
    const push: PushTrigger = {}
    if (p.branches) push.branches = p.branches
    if (p['branches-ignore']) push.branchesIgnore = p['branches-ignore']
    if (p.tags) push.tags = p.tags
    if (p['tags-ignore']) push.tagsIgnore = p['tags-ignore']
    if (p.paths) push.paths = p.paths
    if (p['paths-ignore']) push.pathsIgnore = p['paths-ignore']
    out.push = push
  }
  if ('pull_request' in map) {
    const p = (map.pull_request ?? {}) as Record<string, string[] | undefined>
    const pr: PullRequestTrigger = { types: (p.types as PullRequestTrigger['types'] | undefined) ?? ['opened', 'synchronize', 'reopened'] }
    if (p.branches) pr.branches = p.branches
    if (p['branches-ignore']) pr.branchesIgnore = p['branches-ignore']
    if (p.paths) pr.paths = p.paths
    if (p['paths-ignore']) pr.pathsIgnore = p['paths-ignore']
    out.pullRequest = pr
  }
  if ('manual' in map) out.manual = true
  const schedule = (map.schedule ?? []) as Array<string | { cron: string }>
  schedule.forEach((s, i) => {
    const path = typeof s === 'string' ? `on.schedule[${i}]` : `on.schedule[${i}].cron`
    const cron = typeof s === 'string' ? s : s.cron
    const problem = cronProblem(cron)
    if (problem) c.error(path, `"${cron}": ${problem}`)
    else if (!out.schedule.includes(normalizeCron(cron))) out.schedule.push(normalizeCron(cron))
  })
  return out
}

/** Env values as text, their expressions checked; `${{ secrets.X }}` values are kept as they are. */
function envOf(c: Checker, path: string, env: Record<string, string | number | boolean> | undefined, rules: ExpressionRules): { values: Record<string, string>; secrets: string[] } {
  const values: Record<string, string> = {}
  const secrets: string[] = []
  for (const [k, v] of Object.entries(env ?? {})) {
    const p = childPath(path, k)
    // a number keeps the digits written (20.10 is not 20.1)
    const text = typeof v === 'string' ? v : c.loc.source(p) ?? String(v)
    values[k] = text
    if (typeof v !== 'string') continue
    const { secret } = c.template(p, v, rules, true)
    if (secret !== undefined && !secrets.includes(secret)) secrets.push(secret)
  }
  return { values, secrets }
}

function buildJob(c: Checker, name: string, j: JobFile, jobNames: string[]): Job {
  const base = `jobs.${name}`
  const needs = needsOf(c, base, name, j.needs, jobNames)

  let matrix: Job['matrix']
  let matrixKeys: string[] | undefined
  if (j.matrix) {
    const m = matrixOf(c, `${base}.matrix`, j.matrix)
    if (m) ({ combinations: matrix, keys: matrixKeys } = m)
    else matrixKeys = Object.keys(j.matrix).filter((k) => k !== 'include' && k !== 'exclude')
  }

  const rules = (contexts: ContextName[], more: Partial<ExpressionRules> = {}): ExpressionRules => ({
    contexts,
    needs: new Set(needs),
    ...(matrixKeys ? { matrixKeys: new Set(matrixKeys) } : {}),
    ...more,
  })
  const plain = rules(['github', 'matrix', 'env'])

  const env = envOf(c, `${base}.env`, j.env, plain)

  let timeoutMs: number = DEFAULTS.timeoutMs
  if (j.timeout !== undefined) {
    const ms = parseDurationMs(j.timeout)
    if (ms === undefined) c.error(`${base}.timeout`, `"${j.timeout}" is not a duration such as 90s, 20m or 1h`)
    else if (ms < LIMITS.minTimeoutMs || ms > LIMITS.maxTimeoutMs) {
      c.error(`${base}.timeout`, `${j.timeout} is out of range: a timeout is between ${formatDurationMs(LIMITS.minTimeoutMs)} and ${formatDurationMs(LIMITS.maxTimeoutMs)}`)
    } else timeoutMs = ms
  }

  let condition: string = DEFAULTS.if
  if (typeof j.if === 'boolean') condition = String(j.if)
  else if (typeof j.if === 'string') {
    const path = `${base}.if`
    try {
      const { expr, offset } = parseCondition(j.if)
      for (const e of checkExpression(expr, rules(['github', 'matrix', 'env', 'needs'], { status: true }))) c.expressionError(path, e, offset)
      condition = expr.text.trim()
    } catch (e) {
      c.expressionError(path, e, 0)
    }
  }

  c.template(`${base}.image`, j.image, plain)
  const steps = j.steps.map((s, i) => {
    const p = `${base}.steps[${i}]`
    if (s.name !== undefined) c.template(`${p}.name`, s.name, plain)
    c.template(`${p}.run`, s.run, plain)
    if (s.run.trim() === '') c.error(`${p}.run`, 'the step has nothing to run')
    return { name: s.name ?? stepTitle(s.run), run: s.run }
  })

  const services: Record<string, Service> = {}
  const secrets = [...new Set([...(j.secrets ?? []), ...env.secrets])]
  for (const [svcName, svc] of Object.entries(j.services ?? {})) {
    const p = `${base}.services.${svcName}`
    c.template(`${p}.image`, svc.image, plain)
    const svcEnv = envOf(c, `${p}.env`, svc.env, plain)
    for (const s of svcEnv.secrets) if (!secrets.includes(s)) secrets.push(s)
    const command = svc.command === undefined ? undefined : typeof svc.command === 'string' ? splitCommand(svc.command) : svc.command
    command?.forEach((arg, i) => c.template(typeof svc.command === 'string' ? `${p}.command` : `${p}.command[${i}]`, arg, plain))
    services[svcName] = { image: svc.image, env: svcEnv.values, ...(command ? { command } : {}) }
  }

  if (j.cache) {
    c.template(`${base}.cache.key`, j.cache.key, rules(['github', 'matrix', 'env'], { hashFiles: true }))
    j.cache.paths.forEach((p, i) => c.template(`${base}.cache.paths[${i}]`, p, plain))
    // a volume cache's paths are linked by the steps script, not checked by the agent: check them here
    if (j.cache.volume) {
      j.cache.paths.forEach((p, i) => {
        const problem = p.includes('${{') ? undefined : volumeCachePathProblem(p)
        if (problem) c.error(`${base}.cache.paths[${i}]`, `cache path "${p}" ${problem}`)
      })
    }
  }
  ;(j.artifacts ?? []).forEach((a, i) => c.template(`${base}.artifacts[${i}]`, a, plain))

  return {
    name,
    image: j.image,
    steps,
    needs,
    ...(matrix ? { matrix, matrixKeys } : {}),
    env: env.values,
    resources: {
      cpus: j.resources?.cpus ?? DEFAULTS.cpus,
      mem: j.resources?.mem ?? DEFAULTS.mem,
      ...(j.resources?.disk !== undefined ? { disk: j.resources.disk } : {}),
    },
    timeoutMs,
    retries: j.retries ?? DEFAULTS.retries,
    if: condition,
    services,
    ...(j.cache ? { cache: { key: j.cache.key, paths: j.cache.paths, ...volumeOf(j.cache.volume) } } : {}),
    artifacts: j.artifacts ?? [],
    secrets,
    pool: j.pool ?? DEFAULTS.pool,
    revocable: j.revocable ?? DEFAULTS.revocable,
    priority: j.priority ?? DEFAULTS.priority,
  }
}

/** A command line split at spaces, except inside ${{ }} (quotes are not interpreted: use a list). */
export function splitCommand(text: string): string[] {
  const out: string[] = []
  let cur = ''
  for (let i = 0; i < text.length; i++) {
    if (text.startsWith('${{', i)) {
      const end = text.indexOf('}}', i + 3)
      const stop = end < 0 ? text.length : end + 2
      cur += text.slice(i, stop)
      i = stop - 1
    } else if (/\s/.test(text[i])) {
      if (cur) out.push(cur)
      cur = ''
    } else cur += text[i]
  }
  if (cur) out.push(cur)
  return out
}

/** The first line of a script, as a step's default name. */
function stepTitle(run: string): string {
  const line = run.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? ''
  if (line.length <= 60) return line
  let cut = line.slice(0, 59)
  // the name is interpolated too: an expression cut in two would fail the run on a name the
  // file never wrote, so the title ends before it
  try {
    parseTemplate(cut)
  } catch (e) {
    if (!(e instanceof ExpressionError)) throw e
    const open = cut.lastIndexOf('${{')
    if (open >= 0) cut = cut.slice(0, open).trimEnd()
  }
  return `${cut}…`
}

function needsOf(c: Checker, base: string, name: string, raw: string | string[] | undefined, jobNames: string[]): string[] {
  if (raw === undefined) return []
  const list = typeof raw === 'string' ? [raw] : raw
  const out: string[] = []
  list.forEach((n, i) => {
    const path = typeof raw === 'string' ? `${base}.needs` : `${base}.needs[${i}]`
    if (n === name) c.error(path, `a job cannot need itself ("${n}")`)
    else if (!jobNames.includes(n)) c.error(path, `unknown job "${n}"${didYouMean(n, jobNames.filter((j) => j !== name))}`)
    else if (out.includes(n)) c.error(path, `"${n}" is listed twice`)
    else out.push(n)
  })
  return out
}

function matrixOf(c: Checker, path: string, m: NonNullable<JobFile['matrix']>): { combinations: NonNullable<Job['matrix']>; keys: string[] } | undefined {
  const axes: Array<[string, MatrixValue[]]> = []
  let ok = true
  for (const [k, v] of Object.entries(m)) {
    if (k === 'include' || k === 'exclude') continue
    if (!JOB_NAME.test(k)) {
      c.error(path, `"${k}" is not a valid matrix key: letters, digits, "_" and "-", starting with a letter or "_"`, c.loc.keyAt(childPath(path, k)))
      ok = false
    }
    axes.push([k, v as unknown as MatrixValue[]])
  }
  for (const list of ['include', 'exclude'] as const) {
    (m[list] ?? []).forEach((row, i) => {
      for (const k of Object.keys(row)) {
        if (!JOB_NAME.test(k)) {
          c.error(`${path}.${list}[${i}]`, `"${k}" is not a valid matrix key: letters, digits, "_" and "-", starting with a letter or "_"`)
          ok = false
        }
      }
    })
  }
  if (!ok) return undefined
  const r = expandMatrix({ axes, include: m.include ?? [], exclude: m.exclude ?? [] })
  if (r.ok) return { combinations: r.combinations, keys: r.keys }
  if (r.where) {
    const row = `${path}.${r.where.list}[${r.where.row}]`
    c.error(row, r.problem, r.where.key ? c.loc.keyAt(childPath(row, r.where.key)) : undefined)
  } else c.error(path, `the matrix ${r.problem}`, c.loc.keyAt(path))
  return undefined
}

/** Reports each cycle of `needs` once, at the need that closes it in the first job of the cycle. */
function checkCycles(c: Checker, graph: Record<string, string[]>): void {
  const names = Object.keys(graph)
  const state = new Map<string, 'active' | 'done'>()
  const reported = new Set<string>()
  const stack: string[] = []
  const visit = (n: string): void => {
    state.set(n, 'active')
    stack.push(n)
    for (const dep of graph[n].filter((d) => Object.hasOwn(graph, d))) {
      if (state.get(dep) === 'active') {
        const cycle = stack.slice(stack.indexOf(dep))
        const key = [...cycle].sort().join(' ')
        if (!reported.has(key)) {
          reported.add(key)
          // start the cycle at its job declared first, so the report is the same however it was found
          const first = cycle.reduce((a, b) => (names.indexOf(a) <= names.indexOf(b) ? a : b))
          const rotated = [...cycle.slice(cycle.indexOf(first)), ...cycle.slice(0, cycle.indexOf(first))]
          const next = rotated[1] ?? rotated[0]
          const i = graph[first].indexOf(next)
          const raw = c.loc.source(`jobs.${first}.needs`) !== undefined ? `jobs.${first}.needs` : `jobs.${first}.needs[${i}]`
          c.error(raw, `needs make a cycle: ${[...rotated, first].join(' -> ')}`)
        }
      } else if (state.get(dep) === undefined) visit(dep)
    }
    stack.pop()
    state.set(n, 'done')
  }
  for (const n of names) if (state.get(n) === undefined) visit(n)
}

/** `cache.volume` as the model has it: absent when false, the default size when true. */
function volumeOf(v: NonNullable<JobFile['cache']>['volume']): { volume?: { size: number } } {
  if (v === undefined || v === false) return {}
  return { volume: { size: (v === true ? undefined : v.size) ?? DEFAULTS.cacheVolumeMb } }
}

/**
 * What a path of a volume cache may be: relative to the checkout, inside it, not the checkout
 * itself (the rule the agent applies to an object-store cache's paths). Undefined when fine.
 */
export function volumeCachePathProblem(path: string): string | undefined {
  if (path.startsWith('/')) return 'is absolute: cache paths are relative to the checkout'
  const segments = path.split('/').filter((s) => s !== '' && s !== '.')
  if (segments.includes('..')) return 'leaves the checkout (a ".." segment)'
  if (segments.length === 0) return 'is the checkout itself'
  return undefined
}
