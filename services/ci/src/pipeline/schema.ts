// The shape of a pipeline file, declared once: this TypeBox schema is the JSON Schema that
// pipelines/schema.json is generated from (for editors) and that parse.ts checks files against.
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { LIMITS } from './limits.js'

export const PATTERNS = {
  pipelineName: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  jobName: '^[A-Za-z_][A-Za-z0-9_-]*$',
  serviceName: '^[A-Za-z][A-Za-z0-9-]*$',
  envName: '^[A-Za-z_][A-Za-z0-9_]*$',
  duration: '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$',
} as const

/** What each pattern means, for error messages. */
export const PATTERN_HINTS: Record<string, string> = {
  [PATTERNS.pipelineName]: 'letters, digits, ".", "_" and "-", starting with a letter or digit',
  [PATTERNS.jobName]: 'letters, digits, "_" and "-", starting with a letter or "_"',
  [PATTERNS.serviceName]: 'letters, digits and "-", starting with a letter (it is the sidecar\'s host name)',
  [PATTERNS.envName]: 'letters, digits and "_", not starting with a digit',
  [PATTERNS.duration]: 'a duration such as 90s, 20m, 1h or 1h30m',
}

const text = (description: string, extra: object = {}) => Type.String({ minLength: 1, description, ...extra })
const strings = (description: string, max = 100) =>
  Type.Array(Type.String({ minLength: 1 }), { maxItems: max, description })

const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()])

const Env = Type.Record(Type.String({ pattern: PATTERNS.envName }), Scalar, {
  additionalProperties: false,
  maxProperties: 1000,
  description: 'Environment variables. Values may use ${{ }} expressions; a whole value `${{ secrets.NAME }}` passes a secret.',
})

const Cron = Type.String({
  minLength: 1,
  description: 'A cron expression: minute hour day-of-month month day-of-week (e.g. "0 3 * * *"), or @hourly, @daily, @weekly, @monthly, @yearly.',
})

const PushFilter = Type.Object({
  branches: Type.Optional(strings('Branches that trigger (globs: *, **, ?, [abc]; a leading ! excludes). Without branches nor tags, every branch and tag triggers.')),
  'branches-ignore': Type.Optional(strings('Branches that do not trigger (globs).')),
  tags: Type.Optional(strings('Tags that trigger (globs). With tags but no branches, only tags trigger.')),
  'tags-ignore': Type.Optional(strings('Tags that do not trigger (globs).')),
  paths: Type.Optional(strings('Run only when a changed file matches one of these globs.', 1000)),
  'paths-ignore': Type.Optional(strings('Do not run when every changed file matches one of these globs.', 1000)),
}, { additionalProperties: false, description: 'Run on pushes of branches and tags.' })

const PullRequestType = Type.Union([Type.Literal('opened'), Type.Literal('synchronize'), Type.Literal('reopened')])

const PullRequestFilter = Type.Object({
  branches: Type.Optional(strings('Base branches (the branch the pull request goes into) that trigger (globs).')),
  'branches-ignore': Type.Optional(strings('Base branches that do not trigger (globs).')),
  paths: Type.Optional(strings('Run only when a changed file matches one of these globs.', 1000)),
  'paths-ignore': Type.Optional(strings('Do not run when every changed file matches one of these globs.', 1000)),
  types: Type.Optional(Type.Array(PullRequestType, { minItems: 1, description: 'Pull request actions that trigger (default: all three).' })),
}, { additionalProperties: false, description: 'Run on pull requests (opened, synchronize, reopened).' })

const EventName = Type.Union([Type.Literal('push'), Type.Literal('pull_request'), Type.Literal('manual')])

const On = Type.Union([
  EventName,
  Type.Array(EventName, { minItems: 1, maxItems: 3 }),
  Type.Object({
    push: Type.Optional(Type.Union([Type.Null(), PushFilter])),
    pull_request: Type.Optional(Type.Union([Type.Null(), PullRequestFilter])),
    schedule: Type.Optional(Type.Array(
      Type.Union([Cron, Type.Object({ cron: Cron }, { additionalProperties: false })]),
      { minItems: 1, maxItems: LIMITS.schedules, description: 'Cron schedules (UTC); a scheduled run builds the default branch.' },
    )),
    manual: Type.Optional(Type.Union([Type.Null(), Type.Object({}, { additionalProperties: false })], {
      description: 'Allow runs started by `regatta trigger` or POST /api/v1/runs.',
    })),
  }, { additionalProperties: false, minProperties: 1 }),
], { description: 'What starts the pipeline: push, pull_request, schedule, manual.' })

const Step = Type.Object({
  name: Type.Optional(text('Shown in the log and the UI (default: the first line of run).')),
  run: text('A shell script, run with sh -e in the job\'s container, in the checkout (/workspace).'),
}, { additionalProperties: false })

const MatrixRow = Type.Record(Type.String(), Scalar, { additionalProperties: false, minProperties: 1 })

const Matrix = Type.Object({
  include: Type.Optional(Type.Array(MatrixRow, { maxItems: LIMITS.matrixCombinations, description: 'Extra values for matching combinations, or extra combinations.' })),
  exclude: Type.Optional(Type.Array(MatrixRow, { maxItems: LIMITS.matrixCombinations, description: 'Combinations to leave out (a row matches every combination having its values).' })),
}, {
  additionalProperties: Type.Array(Scalar, { minItems: 1, maxItems: LIMITS.matrixCombinations }),
  minProperties: 1,
  description: 'Run the job once for each combination of these values (each a list of strings, numbers or booleans); read them as ${{ matrix.NAME }}.',
})

const Service = Type.Object({
  image: text('The sidecar\'s image.'),
  env: Type.Optional(Env),
  command: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String(), { minItems: 1 })], { description: 'Command and arguments (default: the image\'s).' })),
}, { additionalProperties: false })

const Job = Type.Object({
  image: text('The container image the steps run in.'),
  steps: Type.Array(Step, { minItems: 1, maxItems: LIMITS.steps, description: 'Run in order; the job fails at the first failing step.' }),
  needs: Type.Optional(Type.Union([
    Type.String({ minLength: 1 }),
    Type.Array(Type.String({ minLength: 1 }), { maxItems: LIMITS.jobs }),
  ], { description: 'Jobs that must finish first (one name or a list).' })),
  matrix: Type.Optional(Matrix),
  env: Type.Optional(Env),
  resources: Type.Optional(Type.Object({
    cpus: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 256, description: 'CPUs (default 1).' })),
    mem: Type.Optional(Type.Integer({ minimum: 16, maximum: 1048576, description: 'Memory in MiB (default 1024).' })),
    disk: Type.Optional(Type.Integer({ minimum: 0, maximum: 16777216, description: 'Disk in MiB.' })),
  }, { additionalProperties: false, description: 'What the job\'s task asks of an agent.' })),
  timeout: Type.Optional(Type.String({ pattern: PATTERNS.duration, description: 'Time limit of the job (default 60m; between 1s and 24h).' })),
  retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 10, description: 'Runs again after a failure or a lost task, up to this many times (default 0).' })),
  if: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Boolean()], {
    description: 'Run the job only when this expression is true (with or without ${{ }}); success(), failure(), always(), cancelled() are available. Default: success().',
  })),
  services: Type.Optional(Type.Record(Type.String({ pattern: PATTERNS.serviceName }), Service, {
    additionalProperties: false,
    maxProperties: LIMITS.services,
    description: 'Sidecar containers, reachable from the steps by their name.',
  })),
  cache: Type.Optional(Type.Object({
    key: text('The cache key; usually with ${{ hashFiles(...) }}.', { maxLength: 512 }),
    paths: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 100, description: 'Paths (relative to the checkout) saved after and restored before the steps.' }),
    volume: Type.Optional(Type.Union([
      Type.Boolean(),
      Type.Object({
        size: Type.Optional(Type.Integer({ minimum: 1, maximum: 16777216, description: 'MiB of disk reserved for a new volume (default 1024).' })),
      }, { additionalProperties: false }),
    ], {
      description: 'Keep the cache in a persistent volume on the agent (one per repository, pipeline and role on each agent), linked into the checkout before the steps, instead of the object store.',
    })),
  }, { additionalProperties: false })),
  artifacts: Type.Optional(strings('Paths kept after the job, downloadable from the run page.')),
  secrets: Type.Optional(Type.Array(Type.String({ pattern: PATTERNS.envName }), {
    maxItems: 100,
    description: 'Secrets the job reads, each as an environment variable of its name; masked in logs.',
  })),
  pool: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$', description: 'The pool of agents the job runs on (`regatta agent --pool`); the scaler grows that pool for it. Default `default`.' })),
  revocable: Type.Optional(Type.Boolean({ description: 'May run on revocable (oversubscribed) capacity and be preempted (then retried).' })),
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'Among ready jobs waiting for resources, higher goes first (default 50).' })),
}, { additionalProperties: false })

export const PipelineFileSchema = Type.Object({
  name: Type.Optional(Type.String({
    pattern: PATTERNS.pipelineName,
    maxLength: 100,
    description: 'The pipeline\'s name (default: the file name without .yml); statuses are regatta/<name>/<job>.',
  })),
  on: On,
  env: Type.Optional(Env),
  jobs: Type.Record(Type.String({ pattern: PATTERNS.jobName, maxLength: 100 }), Job, {
    additionalProperties: false,
    minProperties: 1,
    maxProperties: LIMITS.jobs,
    description: 'The jobs, by name.',
  }),
}, { additionalProperties: false })

/** A pipeline file as written, once it passed the schema (before defaults and checks). */
export type PipelineFile = Static<typeof PipelineFileSchema>
export type JobFile = Static<typeof Job>

export const SCHEMA_ID = 'urn:regatta:pipeline'

/** The JSON Schema document of pipelines/schema.json (plain JSON: TypeBox's symbols dropped). */
export function pipelineJsonSchema(): Record<string, unknown> {
  const plain = JSON.parse(JSON.stringify(PipelineFileSchema)) as Record<string, unknown>
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: SCHEMA_ID,
    title: 'Regatta pipeline (.regatta/*.yml)',
    ...plain,
  }
}

export type { TSchema }
