// pipelines/examples: each parses and plans without errors for a trigger that runs it, and the
// README documents every key of the schema and every limit.
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { LIMITS, formatPipelineError, parsePipeline, planRun } from '../../../services/ci/src/pipeline/index.js'
import { pipelineJsonSchema } from '../../../services/ci/src/pipeline/schema.js'
import { pushTo, tagged, trigger } from './fixtures.js'

const dir = fileURLToPath(new URL('../../../pipelines/', import.meta.url))
const examples = readdirSync(`${dir}examples`).filter((f) => f.endsWith('.yml')).sort()
const read = (f: string): string => readFileSync(`${dir}examples/${f}`, 'utf8')
const hashFiles = (p: string[]): string => `h(${p.join(',')})`

t.test('Checks that there are 3 to 5 examples and each parses without errors', async (t) => {
  t.ok(examples.length >= 3 && examples.length <= 5, examples.join(', '))
  for (const f of examples) {
    const r = parsePipeline(`.regatta/${f}`, read(f))
    t.same(r.ok ? [] : r.errors.map(formatPipelineError), [], f)
  }
})

t.test('Checks that each example plans without errors for a trigger that runs it', async (t) => {
  const triggers = [pushTo('main', ['src/a.ts']), tagged('v1.0'), trigger({ kind: 'schedule', schedule: '30 2 * * MON-FRI' }), trigger({ kind: 'manual' })]
  for (const f of examples) {
    const files = [{ path: `.regatta/${f}`, text: read(f) }]
    const planned = triggers.map((tr) => planRun(files, tr, { hashFiles, runId: '1' }))
    for (const p of planned) t.same(p.errors.map(formatPipelineError), [], `${f}: no errors`)
    t.ok(planned.some((p) => p.pipelines.length === 1 && p.pipelines[0].jobs.length > 0), `${f} runs for one of the triggers`)
  }
})

t.test('Checks the matrix + services example plans the expected jobs', async (t) => {
  const r = planRun([{ path: '.regatta/backend.yml', text: read('matrix-services.yml') }], tagged('v2.0.0'), { hashFiles })
  t.same(r.errors, [])
  const jobs = r.pipelines[0].jobs
  t.same(jobs.map((j) => j.context), [
    'regatta/backend/lint',
    'regatta/backend/test (node=18, db=postgres, url=postgres://ci:ci@postgres:5432/app)',
    'regatta/backend/test (node=20, db=postgres, url=postgres://ci:ci@postgres:5432/app)',
    'regatta/backend/test (node=20, db=mysql, url=mysql://root:ci@mysql:3306/app)',
    'regatta/backend/deploy',
  ])
  const deploy = jobs[4]
  t.equal(deploy.needs.length, 3)
  t.same(deploy.secretEnv, { DEPLOY_TOKEN: 'DEPLOY_TOKEN' })
  t.same(deploy.steps[1].run, './scripts/deploy.sh "v2.0.0"')
  t.equal(jobs[1].image, 'node:18')
  t.equal(jobs[1].cache?.key, 'npm-18-h(package-lock.json)')
})

t.test('Checks that the README documents every key of the schema, the limits and the status context', async (t) => {
  const readme = readFileSync(`${dir}README.md`, 'utf8')
  const keys = new Set<string>()
  const walk = (s: unknown): void => {
    if (typeof s !== 'object' || s === null) return
    const o = s as Record<string, unknown>
    for (const k of Object.keys((o.properties as object | undefined) ?? {})) keys.add(k)
    for (const v of Object.values(o)) walk(v)
  }
  walk(pipelineJsonSchema())
  for (const k of keys) t.match(readme, `\`${k}\``, `documents ${k}`)
  for (const [name, value] of Object.entries(LIMITS)) {
    const shown = name === 'fileBytes' ? '256 KiB' : name === 'runPlanBytes' ? '384 KiB' : name === 'expressionResult' ? '1 MiB' : name.endsWith('Ms') ? (value === 1000 ? '1s' : '24h') : String(value)
    t.match(readme, shown, `states the limit ${name} (${shown})`)
  }
  t.match(readme, 'regatta/<pipeline>/<job>')
  t.match(readme, 'regatta/ci/test (shard=1)')
})
