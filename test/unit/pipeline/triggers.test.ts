// Which pipelines a trigger runs: branch and tag globs, ignore lists, path filters, the base
// branch of pull requests and their actions, schedules and manual runs; the glob matcher.
import t from 'tap'
import fc from 'fast-check'
import { globMatch, parsePipeline, planRun, type Pipeline } from '../../../services/ci/src/pipeline/index.js'
import { selectedBy } from '../../../services/ci/src/pipeline/glob.js'
import { githubContext, matchesTrigger } from '../../../services/ci/src/pipeline/triggers.js'
import { pullRequest, pushTo, tagged, trigger } from './fixtures.js'

const JOBS = 'jobs:\n  a:\n    image: x\n    steps: [{ run: x }]\n'

function pipeline(on: string): Pipeline {
  const r = parsePipeline('.regatta/p.yml', `on: ${on}\n${JOBS}`)
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('\n'))
  return r.pipeline
}

const runs = (on: string, tr: Parameters<typeof matchesTrigger>[1]): boolean => matchesTrigger(pipeline(on).on, tr)

t.test('Checks globs: * within a segment, ** across, **/ for any directories, ?, classes, escapes', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['main', 'main', true], ['main', 'mainline', false],
    ['release/*', 'release/1.0', true], ['release/*', 'release/1.0/hotfix', false], ['release/*', 'release/', true],
    ['release/**', 'release/1.0/hotfix', true], ['**', 'anything/at/all', true], ['*', 'a/b', false],
    ['feature-?', 'feature-a', true], ['feature-?', 'feature-ab', false], ['?', '/', false],
    ['v[0-9]*', 'v1.2', true], ['v[0-9]*', 'vx', false], ['v[!0-9]*', 'vx', true], ['[abc]', 'b', true],
    ['**/*.md', 'README.md', true], ['**/*.md', 'docs/a/b.md', true], ['**/*.md', 'docs/a/b.mdx', false],
    ['docs/**', 'docs/a/b', true], ['docs/**', 'docs', false], ['src/**/test/*.ts', 'src/test/a.ts', true],
    ['src/**/test/*.ts', 'src/x/y/test/a.ts', true], ['src/**/test/*.ts', 'src/xtest/a.ts', false],
    ['\\*', '*', true], ['\\*', 'a', false], ['a*b*c', 'aXbYc', true], ['a*b*c', 'aXbY', false], ['', '', true], ['[', '[', true],
  ]
  for (const [pattern, name, want] of cases) t.equal(globMatch(pattern, name), want, `${pattern} ${want ? 'matches' : 'does not match'} ${name}`)
})

t.test('Checks that matching stays fast on patterns that make backtracking matchers slow', async (t) => {
  const started = Date.now()
  t.equal(globMatch('*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(5000)), false)
  t.equal(globMatch('**a**a**a**a**a**a**b', 'a'.repeat(5000)), false)
  t.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`)
})

t.test('Checks (property) that a glob without wildcards matches exactly itself', async (t) => {
  fc.assert(fc.property(fc.stringMatching(/^[a-z0-9/._-]{0,20}$/), fc.stringMatching(/^[a-z0-9/._-]{0,20}$/), (a, b) =>
    globMatch(a, b) === (a === b)))
  t.pass()
})

t.test('Checks ordered pattern lists: the last matching pattern decides, ! excludes', async (t) => {
  t.equal(selectedBy(['release/**', '!release/**-alpha'], 'release/1-alpha'), false)
  t.equal(selectedBy(['release/**', '!release/**-alpha'], 'release/1'), true)
  t.equal(selectedBy(['release/**', '!release/**-alpha', 'release/2-alpha'], 'release/2-alpha'), true)
  t.equal(selectedBy(['!main'], 'dev'), false, 'only exclusions select nothing')
})

t.test('Checks push branch filters: branches, globs, branches-ignore, no filter', async (t) => {
  t.ok(runs('push', pushTo('anything')))
  t.ok(runs('[push, pull_request]', pushTo('main')))
  t.ok(runs('{ push: }', pushTo('main')), 'push: with nothing runs on every push')
  const filtered = '{ push: { branches: [main, "release/*"] } }'
  t.ok(runs(filtered, pushTo('main')))
  t.ok(runs(filtered, pushTo('release/2.0')))
  t.notOk(runs(filtered, pushTo('release/2.0/fix')))
  t.notOk(runs(filtered, pushTo('feature/x')))
  const ignore = '{ push: { branches-ignore: ["dependabot/**", "wip-*"] } }'
  t.ok(runs(ignore, pushTo('main')))
  t.notOk(runs(ignore, pushTo('dependabot/npm/x')))
  t.notOk(runs(ignore, pushTo('wip-1')))
  t.notOk(runs('{ push: { branches: ["**"], branches-ignore: [main] } }', pushTo('main')))
  t.notOk(runs('pull_request', pushTo('main')), 'no push trigger')
  t.ok(runs('{ push: { branches: [main] } }', trigger({ kind: 'push', ref: 'refs/heads/main', branch: undefined })), 'the branch from the ref')
})

t.test('Checks tags: tag filters, tags-ignore, and which of branches and tags a push filter selects', async (t) => {
  t.ok(runs('push', tagged('v1.0')), 'no filter: tags too')
  t.ok(runs('{ push: { tags: ["v*"] } }', tagged('v1.0')))
  t.notOk(runs('{ push: { tags: ["v*"] } }', tagged('nightly')))
  t.notOk(runs('{ push: { tags: ["v*"] } }', pushTo('main')), 'tags only: no branch runs')
  t.notOk(runs('{ push: { branches: [main] } }', tagged('v1.0')), 'branches only: no tag runs')
  t.ok(runs('{ push: { branches: [main], tags: ["v*"] } }', tagged('v2')))
  t.ok(runs('{ push: { branches: [main], tags: ["v*"] } }', pushTo('main')))
  t.notOk(runs('{ push: { tags-ignore: ["*-rc*"] } }', tagged('v1-rc1')))
  t.ok(runs('{ push: { tags-ignore: ["*-rc*"] } }', tagged('v1')))
  t.ok(runs('{ push: { tags: ["v*"], paths: ["src/**"] } }', { ...tagged('v1'), changedFiles: ['README.md'] }), 'paths do not filter tags')
})

t.test('Checks path filters against changed files; unknown changes run', async (t) => {
  const paths = '{ push: { paths: ["src/**", "package.json"] } }'
  t.ok(runs(paths, pushTo('main', ['src/a/b.ts'])))
  t.ok(runs(paths, pushTo('main', ['docs/x.md', 'package.json'])))
  t.notOk(runs(paths, pushTo('main', ['docs/x.md'])))
  t.notOk(runs(paths, pushTo('main', [])), 'nothing changed: no match')
  t.ok(runs(paths, pushTo('main')), 'changes unknown: run')
  const ignore = '{ push: { paths-ignore: ["docs/**", "**/*.md"] } }'
  t.notOk(runs(ignore, pushTo('main', ['docs/a.txt', 'README.md'])))
  t.ok(runs(ignore, pushTo('main', ['docs/a.txt', 'src/a.ts'])))
  t.notOk(runs('{ push: { paths: ["src/**", "!src/**/*.md"] } }', pushTo('main', ['src/notes.md'])))
  t.ok(runs('{ push: { paths: ["src/**", "!src/**/*.md"] } }', pushTo('main', ['src/notes.md', 'src/a.ts'])))
  t.notOk(runs('{ push: { paths: ["src/**"], paths-ignore: ["src/gen/**"] } }', pushTo('main', ['src/gen/x.ts'])))
})

t.test('Checks pull requests: branch filters apply to the base branch; actions; paths', async (t) => {
  t.ok(runs('pull_request', pullRequest('main')))
  t.ok(runs('{ pull_request: {} }', pullRequest('anything')))
  const toMain = '{ pull_request: { branches: [main, "release/**"] } }'
  t.ok(runs(toMain, pullRequest('main')), 'into main')
  t.ok(runs(toMain, pullRequest('release/1/2')))
  t.notOk(runs(toMain, pullRequest('develop')), 'into develop')
  t.notOk(runs('{ pull_request: { branches: ["feature/*"] } }', pullRequest('main')), 'the head branch (feature/x) does not count')
  t.notOk(runs('{ pull_request: { branches-ignore: [main] } }', pullRequest('main')))
  t.ok(runs('{ pull_request: { branches: [main] } }', pullRequest('refs/heads/main')), 'a base given as a full ref')
  t.notOk(runs('{ pull_request: { types: [opened] } }', pullRequest('main', { action: 'synchronize' })))
  t.ok(runs('{ pull_request: { types: [opened, synchronize] } }', pullRequest('main', { action: 'synchronize' })))
  t.notOk(runs('{ pull_request: { paths: ["src/**"] } }', pullRequest('main', {}, ['README.md'])))
  t.ok(runs('{ pull_request: { paths: ["src/**"] } }', pullRequest('main', {}, ['src/x'])))
  t.notOk(runs('push', pullRequest('main')), 'a push-only pipeline')
})

t.test('Checks schedules match only schedule triggers with one of their crons; manual only manual', async (t) => {
  const on = '{ schedule: ["0 3 * * *", { cron: "*/15 * * * 1-5" }], manual: {} }'
  t.ok(runs(on, trigger({ kind: 'schedule', schedule: '0 3 * * *', actor: 'schedule' })))
  t.ok(runs(on, trigger({ kind: 'schedule', schedule: '*/15  *  * * 1-5' })), 'whitespace does not matter')
  t.notOk(runs(on, trigger({ kind: 'schedule', schedule: '0 4 * * *' })), 'another cron of another pipeline')
  t.notOk(runs(on, trigger({ kind: 'schedule' })), 'a schedule trigger without its cron')
  t.notOk(runs(on, pushTo('main')))
  t.ok(runs(on, trigger({ kind: 'manual' })))
  t.notOk(runs('push', trigger({ kind: 'manual' })))
  t.notOk(runs('push', trigger({ kind: 'schedule', schedule: '0 3 * * *' })))
  t.ok(runs('manual', trigger({ kind: 'manual' })))
})

t.test('Checks planRun keeps only the pipelines whose on matches', async (t) => {
  const files = [
    { path: '.regatta/main.yml', text: `on: { push: { branches: [main] } }\n${JOBS}` },
    { path: '.regatta/pr.yml', text: `on: pull_request\n${JOBS}` },
    { path: '.regatta/nightly.yml', text: `on: { schedule: ["0 3 * * *"] }\n${JOBS}` },
  ]
  const names = (tr: Parameters<typeof planRun>[1]): string[] => planRun(files, tr).pipelines.map((p) => p.name)
  t.same(names(pushTo('main')), ['main'])
  t.same(names(pushTo('dev')), [])
  t.same(names(pullRequest('main')), ['pr'])
  t.same(names(trigger({ kind: 'schedule', schedule: '0 3 * * *' })), ['nightly'])
})

t.test('Checks the github context read by expressions, for each kind of trigger', async (t) => {
  t.same(githubContext(pushTo('release/1'), 'run-9'), {
    sha: '0123456789abcdef0123456789abcdef01234567', ref: 'refs/heads/release/1', ref_name: 'release/1', ref_type: 'branch',
    event_name: 'push', repository: 'acme/app', repository_owner: 'acme', actor: 'octocat', base_ref: '', head_ref: '', run_id: 'run-9',
  })
  const tag = githubContext(tagged('v1.2'))
  t.match(tag, { ref: 'refs/tags/v1.2', ref_name: 'v1.2', ref_type: 'tag', event_name: 'push', run_id: '' })
  const pr = githubContext(pullRequest('main'))
  t.match(pr, { event_name: 'pull_request', ref_name: '7/head', base_ref: 'main', head_ref: 'feature/x' })
  t.match(githubContext(trigger({ kind: 'manual' })), { event_name: 'manual', ref_name: 'main' })
})
