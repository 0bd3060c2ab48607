// parsePipeline's errors: each kind of mistake gives file:line:column at the text at fault
// (positions computed from the text with posOf) and a message naming the path and the problem.
import t from 'tap'
import { LIMITS, parsePipeline } from '../../../services/ci/src/pipeline/index.js'
import { FILE, errorsOf, posOf, withJobs } from './fixtures.js'

const JOB = '  build:\n    image: node:20\n    steps:\n      - run: npm ci\n'

/** Checks that the text gives exactly these errors: [needle (where), message] pairs. */
function expectErrors(t: Tap, text: string, expected: Array<[needle: string, message: string, nth?: number, shift?: number]>): void {
  t.same(errorsOf(text), expected.map(([needle, message, nth, shift]) => `${FILE}:${posOf(text, needle, nth ?? 0, shift ?? 0)}: ${message}`))
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

t.test('Checks that a valid file gives a Pipeline and no errors', async (t) => {
  const r = parsePipeline(FILE, withJobs(JOB))
  t.ok(r.ok)
  if (r.ok) {
    t.equal(r.pipeline.name, 'ci', 'the default name is the file name')
    t.same(Object.keys(r.pipeline.jobs), ['build'])
    t.same(r.pipeline.jobs.build.resources, { cpus: 1, mem: 1024 })
    t.equal(r.pipeline.jobs.build.timeoutMs, 3_600_000)
    t.equal(r.pipeline.jobs.build.if, 'success()')
  }
})

t.test('Checks that YAML syntax errors are positioned (duplicate key, tab indentation, unclosed quote)', async (t) => {
  const dup = withJobs('  build:\n    image: a\n    image: b\n    steps: [{ run: x }]\n')
  expectErrors(t, dup, [['image: b', 'YAML: Map keys must be unique']])
  const tab = withJobs('  build:\n\timage: a\n')
  t.match(errorsOf(tab)[0], new RegExp(`^${FILE}:${posOf(tab, '\t')}: YAML: Tabs are not allowed as indentation`))
  const quote = withJobs('  build:\n    image: "node\n')
  t.match(errorsOf(quote)[0], /^\.regatta\/ci\.yml:\d+:\d+: YAML: /)
  const multi = `${withJobs(JOB)}---\non: push\n`
  expectErrors(t, multi, [['---', 'one pipeline a file: this file has more than one YAML document (---)']])
})

t.test('Checks that an empty file and a file that is not a map are errors at 1:1', async (t) => {
  t.same(errorsOf(''), [`${FILE}:1:1: the file is empty; a pipeline has at least "on" and "jobs"`])
  t.same(errorsOf('# only a comment\n'), [`${FILE}:1:1: the file is empty; a pipeline has at least "on" and "jobs"`])
  t.same(errorsOf('- a\n- b\n'), [`${FILE}:1:1: expected a map (key: value), got a list`])
  t.same(errorsOf('jobs:\n' + JOB), [`${FILE}:1:1: missing "on"`])
})

t.test('Checks that unknown keys are reported at the key, with "did you mean" when close', async (t) => {
  const text = withJobs(`${JOB}    timout: 20m\n    colour: red\n`, 'on: push\nenvv: {}\n')
  expectErrors(t, text, [
    ['envv', 'unknown key "envv"; did you mean "env"?'],
    ['timout', 'jobs.build: unknown key "timout"; did you mean "timeout"?'],
    ['colour', 'jobs.build: unknown key "colour" (known: image, steps, needs, matrix, env, resources, timeout, retries, if, services, cache, artifacts, secrets, pool, revocable, priority)'],
  ])
  const onTypo = withJobs(JOB, 'on:\n  push: { branchs: [main] }\n  pul_request: {}\n')
  expectErrors(t, onTypo, [
    ['branchs', 'on.push: unknown key "branchs"; did you mean "branches"?'],
    ['pul_request', 'on: unknown key "pul_request"; did you mean "pull_request"?'],
  ])
  const merge = withJobs(`${JOB}  test:\n    <<: *x\n`).replace('  build:', '  build: &x')
  t.match(errorsOf(merge).join('\n'), 'YAML merge keys (<<) are not supported')
})

t.test('Checks that wrong types and out-of-range values are reported at the value', async (t) => {
  const text = withJobs(`${JOB}    retries: two\n    revocable: "yes"\n    priority: 101\n    resources: { cpus: 0, mem: 1.5 }\n    needs: { a: 1 }\n`)
  expectErrors(t, text, [
    ['{ a: 1 }', 'jobs.build.needs: expected text or a list, got a map (key: value)'],
    ['two', 'jobs.build.retries: expected a whole number, got text ("two")'],
    ['"yes"', 'jobs.build.revocable: expected true or false, got text ("yes")'],
    ['101', 'jobs.build.priority: 101 is out of range: must be between 0 and 100'],
    ['0, mem', 'jobs.build.resources.cpus: 0 is out of range: must be more than 0 and at most 256'],
    ['1.5', 'jobs.build.resources.mem: expected a whole number, got a number (1.5)'],
  ].sort((a, b) => Number(posOf(text, a[0]).split(':')[0]) - Number(posOf(text, b[0]).split(':')[0])) as Array<[string, string]>)
  const image = withJobs('  build:\n    image: 3\n    steps: [{ run: x }]\n')
  expectErrors(t, image, [['3', 'jobs.build.image: expected text, got a number (3)']])
  const on = withJobs(JOB, 'on: pushh\n')
  expectErrors(t, on, [['pushh', 'on: expected "push" or "pull_request" or "manual" or a list or a map (key: value), got text ("pushh"); did you mean "push"?']])
})

t.test('Checks that a missing required key is reported at the key of its map', async (t) => {
  const text = withJobs('  build:\n    steps:\n      - run: x\n  test:\n    image: node\n    steps:\n      - name: only a name\n')
  expectErrors(t, text, [
    ['build:', 'jobs.build: missing "image"'],
    ['- name', 'jobs.test.steps[0]: missing "run"', 0, 2],
  ])
})

t.test('Checks that bad names of jobs, env variables and services are reported at the key', async (t) => {
  const text = withJobs(`${JOB}  my job:\n    image: x\n    steps: [{ run: x }]\n`, 'on: push\nenv: { 1BAD: x }\n')
  expectErrors(t, text, [
    ['1BAD', 'env: "1BAD" is not a valid name: letters, digits and "_", not starting with a digit'],
    ['my job', 'jobs: "my job" is not a valid name: letters, digits, "_" and "-", starting with a letter or "_"'],
  ])
  const svc = withJobs(`${JOB}    services:\n      my_db: { image: postgres }\n`)
  expectErrors(t, svc, [['my_db', 'jobs.build.services: "my_db" is not a valid name: letters, digits and "-", starting with a letter (it is the sidecar\'s host name)']])
})

t.test('Checks that bad durations are reported at the value', async (t) => {
  const text = withJobs(`${JOB}  a:\n    image: x\n    steps: [{ run: x }]\n    timeout: 20 minutes\n  b:\n    image: x\n    steps: [{ run: x }]\n    timeout: 25h\n  c:\n    image: x\n    steps: [{ run: x }]\n    timeout: 500ms\n`)
  expectErrors(t, text, [
    ['20 minutes', 'jobs.a.timeout: "20 minutes" is not valid: a duration such as 90s, 20m, 1h or 1h30m'],
    ['25h', 'jobs.b.timeout: 25h is out of range: a timeout is between 1s and 24h'],
    ['500ms', 'jobs.c.timeout: 500ms is out of range: a timeout is between 1s and 24h'],
  ])
  const ok = parsePipeline(FILE, withJobs(`${JOB}    timeout: 1h30m\n`))
  t.equal(ok.ok && ok.pipeline.jobs.build.timeoutMs, 5_400_000)
})

t.test('Checks that bad cron expressions are reported at the expression, saying which field', async (t) => {
  const text = withJobs(JOB, 'on:\n  schedule:\n    - "61 * * * *"\n    - cron: "* * *"\n    - "@sometimes"\n    - "0 3 * * FUNDAY"\n    - "0 3 * 13 *"\n    - "5-1 * * * *"\n    - "*/0 * * * *"\n')
  expectErrors(t, text, [
    ['"61', 'on.schedule[0]: "61 * * * *": minute 61 is out of range 0-59'],
    ['"* * *"', 'on.schedule[1].cron: "* * *": has 3 fields; a cron expression has 5: minute hour day-of-month month day-of-week (e.g. "0 3 * * *")'],
    ['"@sometimes"', 'on.schedule[2]: "@sometimes": unknown shorthand "@sometimes" (use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)'],
    ['"0 3 * * FUNDAY"', 'on.schedule[3]: "0 3 * * FUNDAY": day of week "FUNDAY" is not a number or a name (SUN, MON, TUE, WED, THU, FRI, SAT)'],
    ['"0 3 * 13 *"', 'on.schedule[4]: "0 3 * 13 *": month 13 is out of range 1-12'],
    ['"5-1', 'on.schedule[5]: "5-1 * * * *": minute range 5-1 goes backwards'],
    ['"*/0', 'on.schedule[6]: "*/0 * * * *": minute step 0 is out of range 1-59'],
  ])
  const ok = parsePipeline(FILE, withJobs(JOB, 'on:\n  schedule: ["0 3 * * *", "*/15 9-17 * JAN-MAR mon-fri", "@daily", { cron: "0  4 1,15 * 7" }]\n'))
  t.same(ok.ok && ok.pipeline.on.schedule, ['0 3 * * *', '*/15 9-17 * JAN-MAR mon-fri', '@daily', '0 4 1,15 * 7'])
})

t.test('Checks that needs naming unknown jobs, the job itself, or a job twice are errors at the name', async (t) => {
  const text = withJobs(`${JOB}  test:\n    image: x\n    steps: [{ run: x }]\n    needs: [biuld, test, build, build]\n  lint:\n    image: x\n    steps: [{ run: x }]\n    needs: deploy\n`)
  expectErrors(t, text, [
    ['biuld', 'jobs.test.needs[0]: unknown job "biuld"; did you mean "build"?'],
    ['test, build', 'jobs.test.needs[1]: a job cannot need itself ("test")'],
    ['build]', 'jobs.test.needs[3]: "build" is listed twice'],
    ['deploy', 'jobs.lint.needs: unknown job "deploy"'],
  ])
})

t.test('Checks that cycles in needs are errors naming the cycle, each reported once', async (t) => {
  const job = (name: string, needs: string): string => `  ${name}:\n    image: x\n    steps: [{ run: x }]\n    needs: ${needs}\n`
  const text = withJobs(job('a', '[b]') + job('b', '[c]') + job('c', '[a]') + job('d', 'e') + job('e', '[d, a]'))
  expectErrors(t, text, [
    ['[b]', 'jobs.a.needs[0]: needs make a cycle: a -> b -> c -> a', 0, 1],
    ['e\n', 'jobs.d.needs: needs make a cycle: d -> e -> d'],
  ])
  const dag = parsePipeline(FILE, withJobs(job('a', '[]') + job('b', '[a]') + job('c', '[a, b]')))
  t.ok(dag.ok, 'a diamond is not a cycle')
})

t.test('Checks that empty steps and empty scripts are errors', async (t) => {
  const text = withJobs('  a:\n    image: x\n    steps: []\n  b:\n    image: x\n    steps:\n  c:\n    image: x\n    steps:\n      - run: ""\n  d:\n    image: x\n    steps:\n      - run: "   "\n')
  expectErrors(t, text, [
    ['[]', 'jobs.a.steps: must not be an empty list'],
    ['steps:', 'jobs.b.steps: expected a list, got an empty value', 1],
    ['""', 'jobs.c.steps[0].run: must not be empty'],
    ['"   "', 'jobs.d.steps[0].run: the step has nothing to run'],
  ])
})

t.test('Checks that bad matrices are errors: empty lists, non-lists, odd values, bad keys, nothing left, too many', async (t) => {
  const job = (name: string, matrix: string): string => `  ${name}:\n    image: x\n    steps: [{ run: x }]\n    matrix: ${matrix}\n`
  const text = withJobs(
    job('a', '{ shard: [] }') + job('b', '{ shard: 1 }') + job('c', '{ shard: [{ x: 1 }] }') + job('d', '{ "bad key": [1] }') +
    job('e', '{ os: [x], exclude: [{ nope: 1 }] }') + job('f', '{ os: [x, y], exclude: [{ os: x }, { os: y }] }') +
    job('g', `{ a: [${Array.from({ length: 17 }, (_, i) => i).join(', ')}], b: [${Array.from({ length: 16 }, (_, i) => i).join(', ')}] }`) +
    job('h', '{}'),
  )
  expectErrors(t, text, [
    ['[] }', 'jobs.a.matrix.shard: must not be an empty list'],
    ['1 }', 'jobs.b.matrix.shard: expected a list, got a number (1)'],
    ['{ x: 1 }', 'jobs.c.matrix.shard[0]: expected text or a number or true or false, got a map (key: value)'],
    ['"bad key"', 'jobs.d.matrix: "bad key" is not a valid matrix key: letters, digits, "_" and "-", starting with a letter or "_"'],
    ['nope', 'jobs.e.matrix.exclude[0]: "nope" is not a key of the matrix (os)'],
    ['matrix', 'jobs.f.matrix: the matrix has no combinations left (everything is excluded)', 5],
    ['matrix', 'jobs.g.matrix: the matrix has 272 combinations; at most 256 jobs can run from one matrix', 6],
    ['matrix', 'jobs.h.matrix: must not be empty', 7],
  ])
})

t.test('Checks that expressions are checked where they are written, with the column of the mistake', async (t) => {
  const text = withJobs(
    '  build:\n    image: node:${{ matrix.node }}\n    matrix: { node: [18, 20] }\n    steps:\n' +
    '      - run: echo ${{ matrix.nod }}\n' +
    '      - run: echo ${{ matirx.node }}\n' +
    '      - run: echo ${{ success() }}\n' +
    '      - run: echo ${{ hashFiles(\'x\') }}\n' +
    '      - run: echo ${{ secrets.TOKEN }}\n' +
    '      - run: echo ${{ github.sha\n' +
    '      - run: |\n          line one\n          echo ${{ github.ref == }}\n' +
    "    if: github.ref = 'refs/heads/main'\n" +
    '  lint:\n    image: x\n    steps:\n      - run: echo ${{ matrix.node }}\n    if: ${{ needs.build.result }}\n',
  )
  expectErrors(t, text, [
    ['nod }', 'jobs.build.steps[0].run: the matrix has no "nod"; did you mean "node"? (it has node)'],
    ['matirx', 'jobs.build.steps[1].run: unknown name "matirx"; did you mean "matrix"? (contexts here: github, matrix, env)'],
    ['success', 'jobs.build.steps[2].run: success() can only be used in if'],
    ['hashFiles', 'jobs.build.steps[3].run: hashFiles() can only be used in cache.key'],
    ['secrets', 'jobs.build.steps[4].run: secrets can only be a whole env value (env: { TOKEN: ${{ secrets.NAME }} }) or listed in secrets: [NAME]'],
    ['${{ github.sha\n', 'jobs.build.steps[5].run: "${{" without a closing "}}"'],
    ['== }}', 'jobs.build.steps[6].run: unexpected end of expression', 0, 3],
    ['= \'refs', 'jobs.build.if: unexpected character "=" (comparison is ==)'],
    ['matrix.node }}\n    if', 'jobs.lint.steps[0].run: this job has no matrix'],
    ['build.result', 'jobs.lint.if: "build" is not in this job\'s needs'],
  ])
})

t.test('Checks that secrets are accepted only as a whole env value, and collected into the job\'s secrets', async (t) => {
  const text = withJobs(`${JOB}    env:\n      TOKEN: \${{ secrets.NPM_TOKEN }}\n      MIXED: "x-\${{ secrets.NPM_TOKEN }}"\n    secrets: [OTHER]\n`)
  expectErrors(t, text, [['secrets.NPM_TOKEN }}"', 'jobs.build.env.MIXED: secrets can only be a whole env value (env: { TOKEN: ${{ secrets.NAME }} }) or listed in secrets: [NAME]']])
  const ok = parsePipeline(FILE, withJobs(`${JOB}    env:\n      TOKEN: \${{ secrets.NPM_TOKEN }}\n    secrets: [OTHER]\n`))
  t.same(ok.ok && ok.pipeline.jobs.build.secrets, ['OTHER', 'NPM_TOKEN'])
})

t.test('Checks the limits: file size, jobs, matrix size, nesting, [ { nesting, alias bombs', async (t) => {
  const big = withJobs(JOB) + `# ${'x'.repeat(LIMITS.fileBytes)}\n`
  t.match(errorsOf(big), [new RegExp(`^${FILE}:1:1: the file is \\d+ bytes; a pipeline file may have at most 262144 \\(256 KiB\\)$`)])

  const many = withJobs(Array.from({ length: LIMITS.jobs + 1 }, (_, i) => `  j${i}:\n    image: x\n    steps: [{ run: x }]\n`).join(''))
  t.same(errorsOf(many), [`${FILE}:${posOf(many, 'jobs')}: jobs: has 257 entries; at most 256 are allowed`])
  t.same(errorsOf(withJobs(Array.from({ length: LIMITS.jobs }, (_, i) => `  j${i}:\n    image: x\n    steps: [{ run: x }]\n`).join(''))), [], '256 jobs are fine')

  const wide = withJobs(`${JOB}    matrix: { a: [${Array.from({ length: 16 }, (_, i) => i)}], b: [${Array.from({ length: 16 }, (_, i) => i)}], c: [1, 2] }\n`)
  t.same(errorsOf(wide), [`${FILE}:${posOf(wide, 'matrix')}: jobs.build.matrix: the matrix has 512 combinations; at most 256 jobs can run from one matrix`])

  const planned = withJobs(Array.from({ length: 5 }, (_, i) => `  j${i}:\n    image: x\n    steps: [{ run: x }]\n    matrix: { a: [${Array.from({ length: 16 }, (_, k) => k)}], b: [${Array.from({ length: 16 }, (_, k) => k)}] }\n`).join(''))
  t.same(errorsOf(planned), [`${FILE}:${posOf(planned, 'jobs')}: jobs: expands to 1280 jobs with its matrices; at most 512 jobs a pipeline`])

  const deep = withJobs(`${JOB}    artifacts: ${'['.repeat(40)}x${']'.repeat(40)}\n`)
  // the file's map is level 1, jobs 2, build 3, artifacts 4: the 30th [ is level 33
  t.same(errorsOf(deep), [`${FILE}:${posOf(deep, '[', 29)}: values are nested deeper than 32 levels`])
  const deepBlock = withJobs(`${JOB}    artifacts:\n      ${'- '.repeat(40)}x\n`)
  // (the first "- " of the text is the step's)
  t.same(errorsOf(deepBlock), [`${FILE}:${posOf(deepBlock, '- ', 30)}: values are nested deeper than 32 levels`])

  const flow = withJobs(`${JOB}    artifacts: ${'['.repeat(100)}x${']'.repeat(100)}\n`)
  t.same(errorsOf(flow), [`${FILE}:${posOf(flow, '[', LIMITS.flowDepth)}: [ and { are nested deeper than 64 levels`])

  const lol = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
  for (const [name, prev] of [['b', 'a'], ['c', 'b'], ['d', 'c'], ['e', 'd'], ['f', 'e'], ['g', 'f']]) {
    lol.push(`${name}: &${name} [${Array(10).fill(`*${prev}`).join(', ')}]`)
  }
  const bomb = `on: push\nenv: { X: y }\njobs:\n${JOB}\n${lol.map((l) => `# ${l}`).join('\n')}\nbomb:\n${lol.map((l) => `  ${l}`).join('\n')}\n`
  const started = Date.now()
  const bombErrors = errorsOf(bomb)
  t.ok(Date.now() - started < 2000, 'an alias bomb is refused quickly')
  t.match(bombErrors[0], /aliases \(\*name\) expand to too much \(at most 100 expansions\)/)
})

t.test('Checks that anchors and aliases within bounds are read as usual', async (t) => {
  const text = 'on: push\njobs:\n  a:\n    image: &img node:20\n    steps: &steps\n      - run: npm ci\n      - run: npm test\n  b:\n    image: *img\n    steps: *steps\n'
  const r = parsePipeline(FILE, text)
  t.ok(r.ok)
  if (r.ok) t.same(r.pipeline.jobs.b.steps, r.pipeline.jobs.a.steps)
  const bad = 'on: push\nx: &bad [1]\njobs:\n  a:\n    image: x\n    steps: *bad\n'
  t.same(errorsOf(bad), [
    `${FILE}:${posOf(bad, 'x:')}: unknown key "x" (known: name, on, env, jobs)`,
    // inside an alias, the value at fault is where the anchor wrote it
    `${FILE}:${posOf(bad, '1]')}: jobs.a.steps[0]: expected a map (key: value), got a number (1)`,
  ])
})

t.test('Checks the name: default from the file, invalid file names need name:', async (t) => {
  const r = parsePipeline('.regatta/release-2.yaml', withJobs(JOB))
  t.equal(r.ok && r.pipeline.name, 'release-2')
  t.same(errorsOf(withJobs(JOB), '.regatta/my ci.yml'), ['.regatta/my ci.yml:1:1: the file name "my ci.yml" does not make a pipeline name (letters, digits, ".", "_", "-"); set name:'])
  t.same(errorsOf(`name: "my ci"\n${withJobs(JOB)}`), [`${FILE}:1:7: name: "my ci" is not valid: letters, digits, ".", "_" and "-", starting with a letter or digit`])
})

t.test('Checks that errors in several parts are all reported, sorted by position', async (t) => {
  const text = 'on:\n  push: { branch: [main] }\njobs:\n  a:\n    image: x\n    steps: [{ run: x }]\n    needs: [zz]\n  b:\n    image: 5\n    steps: [{ run: x }]\n'
  expectErrors(t, text, [
    ['branch', 'on.push: unknown key "branch"; did you mean "branches"?'],
    ['zz', 'jobs.a.needs[0]: unknown job "zz"'],
    ['5', 'jobs.b.image: expected text, got a number (5)'],
  ])
})

t.test('Checks that a job failing the schema still has its needs checked, and is part of cycles', async (t) => {
  const text = withJobs('  a:\n    image: x\n    steps: [{ run: x }]\n    needs: [b]\n  b:\n    image: 7\n    steps: [{ run: x }]\n    needs: [a, zz]\n')
  expectErrors(t, text, [
    ['[b]', 'jobs.a.needs[0]: needs make a cycle: a -> b -> a', 0, 1],
    ['7', 'jobs.b.image: expected text, got a number (7)'],
    ['zz', 'jobs.b.needs[1]: unknown job "zz"'],
  ])
})
