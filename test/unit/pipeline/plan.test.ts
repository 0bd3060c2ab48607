// planRun: matrices expanded into jobs with ids and status contexts, needs as ids, ${{ }}
// interpolated in steps, env, image, services, cache keys and artifacts; defaults; secrets
// kept out of the plan; errors of every file and of planning.
import t from 'tap'
import { formatPipelineError, pipelineFailure, planRun, type PlannedJob } from '../../../services/ci/src/pipeline/index.js'
import { expandMatrix } from '../../../services/ci/src/pipeline/matrix.js'
import { posOf, pullRequest, pushTo, trigger } from './fixtures.js'

const HANDBOOK = `name: ci
on:
  push: { branches: [main, "release/*"] }
  pull_request: {}
  schedule: ["0 3 * * *"]
env: { NODE_ENV: test }
jobs:
  build:
    image: node:20
    resources: { cpus: 1, mem: 1024 }
    steps:
      - name: install
        run: npm ci
      - run: npm run build
    artifacts: [dist/]
  test:
    needs: [build]
    matrix: { shard: [1, 2, 3] }
    image: node:20
    revocable: true          # may run on oversubscribed capacity
    timeout: 20m
    retries: 1
    cache: { key: "npm-\${{ hashFiles('package-lock.json') }}", paths: [.npm] }
    steps:
      - run: npm test -- --shard=\${{ matrix.shard }}/3
`

const hashFiles = (patterns: string[]): string => `sha256:${patterns.join(',')}`

function plan(text: string, tr = pushTo('main'), path = '.regatta/ci.yml'): PlannedJob[] {
  const r = planRun([{ path, text }], tr, { hashFiles, runId: 'r1' })
  if (r.errors.length > 0) throw new Error(r.errors.map(formatPipelineError).join('\n'))
  return r.pipelines.flatMap((p) => p.jobs)
}

t.test('Checks the handbook pipeline: ids, contexts, needs on every expansion, steps, defaults', async (t) => {
  const jobs = plan(HANDBOOK)
  t.same(jobs.map((j) => j.id), ['ci/build', 'ci/test (shard=1)', 'ci/test (shard=2)', 'ci/test (shard=3)'])
  t.same(jobs.map((j) => j.context), ['regatta/ci/build', 'regatta/ci/test (shard=1)', 'regatta/ci/test (shard=2)', 'regatta/ci/test (shard=3)'])
  const [build, test1] = jobs
  t.same(build, {
    id: 'ci/build', pipeline: 'ci', job: 'build', file: '.regatta/ci.yml', matrix: {}, context: 'regatta/ci/build',
    image: 'node:20', steps: [{ name: 'install', run: 'npm ci' }, { name: 'npm run build', run: 'npm run build' }],
    env: { NODE_ENV: 'test' }, secretEnv: {}, needs: [], resources: { cpus: 1, mem: 1024 }, timeoutMs: 3_600_000, retries: 0,
    if: 'success()', services: [], artifacts: ['dist/'], secrets: [], pool: 'default', revocable: false, priority: 50,
  })
  t.same(test1.matrix, { shard: 1 })
  t.same(test1.needs, ['ci/build'])
  t.same(test1.steps, [{ name: 'npm test -- --shard=1/3', run: 'npm test -- --shard=1/3' }])
  t.same(test1.cache, { key: 'npm-sha256:package-lock.json', paths: ['.npm'] })
  t.equal(test1.timeoutMs, 20 * 60_000)
  t.equal(test1.retries, 1)
  t.equal(test1.revocable, true)
})

t.test('Checks that a job needing a matrix job waits for all its expansions, and matrix needs matrix', async (t) => {
  const jobs = plan(`on: push
jobs:
  test:
    matrix: { os: [linux, mac], node: [18, 20] }
    image: x
    steps: [{ run: x }]
  package:
    needs: test
    matrix: { arch: [amd64, arm64] }
    image: x
    steps: [{ run: x }]
  publish:
    needs: [package, test]
    image: x
    steps: [{ run: x }]
`)
  const tests = ['ci/test (os=linux, node=18)', 'ci/test (os=linux, node=20)', 'ci/test (os=mac, node=18)', 'ci/test (os=mac, node=20)']
  t.same(jobs.filter((j) => j.job === 'test').map((j) => j.id), tests, 'declaration order, first key slowest')
  for (const p of jobs.filter((j) => j.job === 'package')) t.same(p.needs, tests)
  t.same(jobs.find((j) => j.job === 'publish')!.needs, ['ci/package (arch=amd64)', 'ci/package (arch=arm64)', ...tests])
  t.equal(new Set(jobs.map((j) => j.id)).size, jobs.length, 'ids are unique')
})

t.test('Checks matrix include/exclude as on GitHub (the documented fruit/animal example)', async (t) => {
  const r = expandMatrix({
    axes: [['fruit', ['apple', 'pear']], ['animal', ['cat', 'dog']]],
    include: [
      { color: 'green' }, { color: 'pink', animal: 'cat' }, { fruit: 'apple', shape: 'circle' }, { fruit: 'banana' }, { fruit: 'banana', animal: 'cat' },
    ],
    exclude: [],
  })
  t.same(r.ok && r.combinations, [
    { fruit: 'apple', animal: 'cat', color: 'pink', shape: 'circle' },
    { fruit: 'apple', animal: 'dog', color: 'green', shape: 'circle' },
    { fruit: 'pear', animal: 'cat', color: 'pink' },
    { fruit: 'pear', animal: 'dog', color: 'green' },
    { fruit: 'banana' },
    { fruit: 'banana', animal: 'cat' },
  ])
  const ex = expandMatrix({ axes: [['os', ['linux', 'mac']], ['node', [18, 20]]], include: [], exclude: [{ os: 'mac', node: 18 }] })
  t.same(ex.ok && ex.combinations, [{ os: 'linux', node: 18 }, { os: 'linux', node: 20 }, { os: 'mac', node: 20 }])
  const partial = expandMatrix({ axes: [['os', ['linux', 'mac']], ['node', [18, 20]]], include: [], exclude: [{ os: 'mac' }] })
  t.same(partial.ok && partial.combinations, [{ os: 'linux', node: 18 }, { os: 'linux', node: 20 }], 'a partial row excludes all it matches')
  const only = expandMatrix({ axes: [], include: [{ a: 1 }, { a: 2, b: true }], exclude: [] })
  t.same(only.ok && only.combinations, [{ a: 1 }, { a: 2, b: true }], 'include alone makes combinations')
  const dup = expandMatrix({ axes: [['a', [1, 1]]], include: [], exclude: [] })
  t.same(dup.ok && dup.combinations, [{ a: 1 }], 'duplicates are one job')
})

t.test('Checks matrix contexts with include values, and values interpolated everywhere', async (t) => {
  const jobs = plan(`name: backend
on: push
env: { REGION: eu, LEVEL: 1.10 }
jobs:
  test:
    image: "node:\${{ matrix.node }}"
    matrix:
      node: ["18", "20"]
      db: [postgres]
      include: [{ db: postgres, port: 5432 }]
    env:
      URL: "\${{ matrix.db }}:\${{ matrix.port }}"
      WHERE: "\${{ env.REGION }}-\${{ github.ref_name }}"
    services:
      db:
        image: "\${{ matrix.db }}:16"
        env: { PORT: "\${{ matrix.port }}" }
        command: "serve --port \${{ matrix.port }}"
    cache:
      key: "\${{ format('deps-{0}-{1}', matrix.node, hashFiles('package-lock.json', 'yarn.lock')) }}"
      paths: [".cache/\${{ matrix.node }}"]
    artifacts: ["out/\${{ matrix.node }}/", "log-\${{ github.run_id }}.txt"]
    steps:
      - name: "test on \${{ matrix.db }}"
        run: |
          echo \${{ github.sha }} \${{ env.URL }}
          test "\${{ github.event_name }}" = push
`)
  t.same(jobs.map((j) => j.context), ['regatta/backend/test (node=18, db=postgres, port=5432)', 'regatta/backend/test (node=20, db=postgres, port=5432)'])
  const [j] = jobs
  t.equal(j.image, 'node:18')
  t.same(j.env, { REGION: 'eu', LEVEL: '1.10', URL: 'postgres:5432', WHERE: 'eu-main' }, 'pipeline env then job env; numbers as written')
  t.same(j.services, [{ name: 'db', image: 'postgres:16', env: { PORT: '5432' }, secretEnv: {}, command: ['serve', '--port', '5432'] }])
  t.same(j.cache, { key: 'deps-18-sha256:package-lock.json,yarn.lock', paths: ['.cache/18'] })
  t.same(j.artifacts, ['out/18/', 'log-r1.txt'])
  t.same(j.steps, [{ name: 'test on postgres', run: 'echo 0123456789abcdef0123456789abcdef01234567 postgres:5432\ntest "push" = push\n' }])
})

t.test('Checks if, resources, priority, retries and revocable pass through; if is kept as text', async (t) => {
  const [j] = plan(`on: push
jobs:
  deploy:
    image: x
    if: \${{ github.ref == 'refs/heads/main' && success() }}
    resources: { cpus: 0.5, mem: 256, disk: 1000 }
    priority: 90
    retries: 3
    revocable: true
    steps: [{ run: x }]
`)
  t.equal(j.if, "github.ref == 'refs/heads/main' && success()")
  t.same(j.resources, { cpus: 0.5, mem: 256, disk: 1000 })
  t.same([j.priority, j.retries, j.revocable], [90, 3, true])
  const [k] = plan('on: push\njobs:\n  a:\n    image: x\n    if: false\n    steps: [{ run: x }]\n')
  t.equal(k.if, 'false')
})

t.test('Checks secrets: whole env values become secretEnv, never values in the plan; none for forks', async (t) => {
  const text = `on: [push, pull_request]
env:
  GLOBAL_TOKEN: \${{ secrets.GLOBAL }}
jobs:
  publish:
    image: x
    secrets: [NPM_TOKEN]
    env:
      DEPLOY_KEY: \${{ secrets.DEPLOY }}
      PLAIN: visible
    services:
      vault:
        image: vault
        env: { ROOT: "\${{ secrets.VAULT_ROOT }}" }
    steps: [{ run: npm publish }]
`
  const [j] = plan(text)
  t.same(j.env, { PLAIN: 'visible' })
  t.same(j.secretEnv, { GLOBAL_TOKEN: 'GLOBAL', DEPLOY_KEY: 'DEPLOY' })
  t.same(j.secrets.sort(), ['DEPLOY', 'GLOBAL', 'NPM_TOKEN', 'VAULT_ROOT'])
  t.same(j.services[0].secretEnv, { ROOT: 'VAULT_ROOT' })
  t.notMatch(JSON.stringify(j), /\$\{\{/, 'no expression is left for later')
  const [fork] = plan(text, pullRequest('main', { fromFork: true }))
  t.same([fork.secrets, fork.secretEnv, fork.services[0].secretEnv], [[], {}, {}], 'a fork\'s pull request gets no secrets')
})

t.test('Checks that a value from the trigger is not evaluated again (no injection through branch names)', async (t) => {
  const [j] = plan('on: pull_request\njobs:\n  a:\n    image: x\n    steps:\n      - run: echo "${{ github.head_ref }}"\n',
    pullRequest('main', { headRef: '${{ secrets.TOKEN }}' }))
  t.equal(j.steps[0].run, 'echo "${{ secrets.TOKEN }}"')
})

t.test('Checks planning errors: hashFiles without a checkout, duplicate names, invalid files fail the run', async (t) => {
  const noHash = planRun([{ path: '.regatta/ci.yml', text: HANDBOOK }], pushTo('main'))
  const keyAt = posOf(HANDBOOK, '"npm-')
  t.same(noHash.errors.map(formatPipelineError), [
    `.regatta/ci.yml:${keyAt}: jobs.test.cache.key: hashFiles() is not available here (no checkout) (at character 9 of the value)`,
  ], 'once, not once per matrix expansion')
  t.same(noHash.pipelines, [])

  const other = 'name: ci\non: push\njobs:\n  x:\n    image: x\n    steps: [{ run: x }]\n'
  const dup = planRun([{ path: '.regatta/a.yml', text: HANDBOOK }, { path: '.regatta/b.yml', text: other }], pushTo('main'), { hashFiles })
  t.same(dup.errors.map(formatPipelineError), ['.regatta/b.yml:1:7: name: pipeline "ci" is also defined in .regatta/a.yml; names must differ'])
  t.same(dup.pipelines.map((p) => p.file), ['.regatta/a.yml'])

  const broken = planRun([{ path: '.regatta/ci.yml', text: HANDBOOK }, { path: '.regatta/bad.yml', text: 'on: push\njobs:\n  a:\n    needs: [zz]\n' }], pushTo('dev'), { hashFiles })
  t.same(broken.errors.map(formatPipelineError), [
    '.regatta/bad.yml:3:3: jobs.a: missing "image"',
    '.regatta/bad.yml:3:3: jobs.a: missing "steps"',
    '.regatta/bad.yml:4:13: jobs.a.needs[0]: unknown job "zz"',
  ], 'an invalid file is reported even when the trigger would not run it, with every error')
  const failure = pipelineFailure(broken.errors)
  t.equal(failure.code, 'INVALID_PIPELINE')
  t.equal(failure.message, broken.errors.map(formatPipelineError).join('\n'))
})

t.test('Checks the limit on pipeline files of a run', async (t) => {
  const files = Array.from({ length: 101 }, (_, i) => ({ path: `.regatta/p${String(i).padStart(3, '0')}.yml`, text: 'on: manual\njobs:\n  a:\n    image: x\n    steps: [{ run: x }]\n' }))
  const r = planRun(files, trigger({ kind: 'manual' }))
  t.same(r.errors.map(formatPipelineError), ['.regatta/p100.yml:1:1: a repository may have at most 100 pipeline files'])
  t.equal(r.pipelines.length, 100)
})

t.test('Checks the limits of a run (all pipelines a push starts): 512 jobs and 384 KiB of planned jobs, named at the file that crosses them', async (t) => {
  const file = (name: string, jobs: number, script = 'make'): { path: string; text: string } => ({
    path: `.regatta/${name}.yml`,
    text: `name: ${name}\non: push\njobs:\n  build:\n    image: x\n    matrix: { shard: [${Array.from({ length: jobs }, (_, i) => i)}] }\n    steps: [{ run: "${script}" }]\n`,
  })
  const fits = planRun([file('a', 256), file('b', 256)], pushTo('main'))
  t.same(fits.errors, [], '512 jobs in two files fit')
  t.equal(fits.pipelines.flatMap((p) => p.jobs).length, 512)

  const many = [file('a', 256), file('b', 200), file('c', 100)]
  t.same(planRun(many, pushTo('main')).errors.map(formatPipelineError),
    [`.regatta/c.yml:${posOf(many[2]!.text, 'jobs')}: jobs: the run comes to 556 jobs with this file's; at most 512 jobs a run (all pipelines a push starts)`])

  // 200 jobs of a 2 KiB script each: about 430 KiB of JSON
  const heavy = [file('small', 10), file('heavy', 200, 'x'.repeat(2048))]
  const errors = planRun(heavy, pushTo('main')).errors.map(formatPipelineError)
  t.equal(errors.length, 1)
  t.match(errors[0], new RegExp(`^\\.regatta/heavy\\.yml:${posOf(heavy[1]!.text, 'jobs')}: jobs: the run's planned jobs come to \\d+ KiB of JSON with this file's; at most 384 KiB a run$`))
})
