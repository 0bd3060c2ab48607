// `regatta pipeline validate` (validatePipelines): one line per error as file:line:column:
// message, then a summary; directories mean their .regatta/*.yml; ok only without errors.
import t from 'tap'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validatePipelines } from '../../../services/cli/src/pipeline-validate.js'

const GOOD = 'on: push\njobs:\n  build:\n    image: node:20\n    steps:\n      - run: npm ci\n'
const BAD = 'on: push\njobs:\n  build:\n    image: node:20\n    steps:\n      - run: npm ci\n  test:\n    needs: [biuld]\n    image: node:20\n    timout: 5m\n    steps:\n      - run: npm test\n'

function repo(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'regatta-validate-'))
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), text)
  }
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('Checks a valid repository: no error lines, a summary, ok', async (t) => {
  const dir = repo({ '.regatta/ci.yml': GOOD, '.regatta/nightly.yaml': GOOD.replace('on: push', 'on: { schedule: ["0 3 * * *"] }'), '.regatta/notes.txt': 'x' })
  const r = await validatePipelines([dir])
  t.same(r, { ok: true, output: '2 pipeline files checked: no errors' })
})

t.test('Checks that each error is one file:line:column: message line, sorted, then the summary', async (t) => {
  const dir = repo({ '.regatta/a.yml': BAD, '.regatta/b.yml': GOOD, '.regatta/c.yml': 'on: push\njobs: [oops\n' })
  const r = await validatePipelines([dir])
  t.equal(r.ok, false)
  const a = join(dir, '.regatta', 'a.yml')
  const c = join(dir, '.regatta', 'c.yml')
  const lines = r.output.split('\n')
  t.same(lines.slice(0, 2), [
    `${a}:10:5: jobs.test: unknown key "timout"; did you mean "timeout"?`,
    `${a}:8:13: jobs.test.needs[0]: unknown job "biuld"; did you mean "build"?`,
  ].sort((x, y) => Number(x.split(':')[1]) - Number(y.split(':')[1])))
  t.match(lines[2], new RegExp(`^${c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: YAML: `))
  t.equal(lines.at(-1), `3 pipeline files checked: ${lines.length - 1} errors in 2 files`)
})

t.test('Checks files given by path, a folder without .regatta, and the current directory by default', async (t) => {
  const dir = repo({ 'x/one.yml': GOOD, 'x/two.yml': BAD, 'x/sub/three.yml': BAD })
  const single = await validatePipelines([join(dir, 'x', 'one.yml')])
  t.same(single, { ok: true, output: '1 pipeline file checked: no errors' })
  const folder = await validatePipelines([join(dir, 'x')])
  t.equal(folder.ok, false)
  t.match(folder.output, /\n2 pipeline files checked: 2 errors in 1 file$/, 'its own *.yml, not sub-folders')
  const cwd = process.cwd()
  process.chdir(repo({ '.regatta/ci.yml': GOOD }))
  t.teardown(() => process.chdir(cwd))
  t.same(await validatePipelines([]), { ok: true, output: '1 pipeline file checked: no errors' })
})

t.test('Checks unreadable paths, folders without pipelines, too large files, duplicate names', async (t) => {
  const dir = repo({
    'empty/README.md': '# nothing',
    'big/.regatta/huge.yml': `${GOOD}#${'x'.repeat(300 * 1024)}\n`,
    'dup/.regatta/a.yml': `name: ci\n${GOOD}`,
    'dup/.regatta/b.yml': `name: ci\n${GOOD}`,
  })
  const missing = join(dir, 'nope')
  const r = await validatePipelines([missing, join(dir, 'empty'), join(dir, 'big'), join(dir, 'dup')])
  t.equal(r.ok, false)
  t.same(r.output.split('\n'), [
    `${missing}: cannot read: no such file or directory`,
    `${join(dir, 'empty')}: no pipeline files here (.regatta/*.yml, or *.yml)`,
    `${join(dir, 'big', '.regatta', 'huge.yml')}:1:1: the file is ${GOOD.length + 2 + 300 * 1024} bytes; a pipeline file may have at most 262144 (256 KiB)`,
    `${join(dir, 'dup', '.regatta', 'b.yml')}:1:7: name: pipeline "ci" is also defined in ${join(dir, 'dup', '.regatta', 'a.yml')}; names must differ`,
    '3 pipeline files checked: 2 errors in 2 files, 2 paths not readable',
  ])
})
