// Pipeline files (.regatta/*.yml): parsing with positioned errors, ${{ }} expressions, and the
// planner that turns the files of a commit and a Trigger into the concrete jobs of a run.
// Pure code: no NATS, no I/O. The format is described in pipelines/README.md.
//
//   import { planRun, pipelineFailure, evaluateCondition } from './pipeline/index.js'
//
//   const { pipelines, errors } = planRun(
//     [{ path: '.regatta/ci.yml', text: yamlText }],
//     trigger,                                   // services/ci/src/trigger.ts
//     { hashFiles: (globs) => hashOfCheckout(globs), runId },
//   )
//   if (errors.length > 0) failRun(pipelineFailure(errors))   // INVALID_PIPELINE, one file:line:col a line
//   for (const job of pipelines.flatMap((p) => p.jobs)) {
//     // job.id 'ci/test (shard=1)', job.context 'regatta/ci/test (shard=1)', job.needs = ids
//     // when its needs are done:
//     const run = evaluateCondition(job.if, { github, matrix: job.matrix, env: job.env, status })
//   }
//
//   const r = parsePipeline('.regatta/ci.yml', text)          // for `regatta pipeline validate`
//   if (!r.ok) r.errors.map(formatPipelineError)              // '.regatta/ci.yml:12:7: jobs.test.needs: unknown job "biuld"'

export { parsePipeline, type ParseResult } from './parse.js'
export { planRun, planPipeline, type PlannedJob, type PlannedPipeline, type PlannedStep, type PlannedService, type PlanOptions, type PlanResult } from './plan.js'
export { formatPipelineError, pipelineFailure, sortPipelineErrors, type PipelineError, type Position } from './errors.js'
export type { Pipeline, Job, Step, Service, Triggers, PushTrigger, PullRequestTrigger, MatrixCombination, MatrixValue } from './model.js'
export {
  ExpressionError, evaluateCondition, evaluateExpression, interpolate, parseExpression, parseCondition, parseTemplate, truthy, toText,
  type ExpressionContext, type JobStatus, type Value, type Expression,
} from './expressions.js'
export { matchesTrigger, githubContext } from './triggers.js'
export { globMatch } from './glob.js'
export { cronProblem, normalizeCron } from './cron.js'
export { pipelineJsonSchema, PipelineFileSchema } from './schema.js'
export { LIMITS, DEFAULTS } from './limits.js'
