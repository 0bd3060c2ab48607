// The task a planned job becomes: the steps script really run by sh, ids, checkout and env.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { stepsScript, taskIdFor, taskSpecFor, STEP_MARKER } from '../../../services/ci/src/task-spec.js'
import { TaskSpec, validate } from '../../../shared/protocol/index.js'
import type { PlannedJob } from '../../../services/ci/src/pipeline/index.js'
import type { Trigger } from '../../../services/ci/src/trigger.js'

const run = (script: string): { code: number | null; out: string; err: string } => {
  const r = spawnSync('sh', ['-c', script], { encoding: 'utf8' })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

t.test('Checks that the steps run in order, each announced, and quoting survives', async (t) => {
  const r = run(stepsScript([
    { name: 'first', run: "echo 'one'" },
    { name: "it's second", run: 'x="two"; echo "$x"\necho three' },
  ]))
  t.equal(r.code, 0)
  t.equal(r.out, `${STEP_MARKER} 1 first\none\n${STEP_MARKER} 2 it's second\ntwo\nthree\n`)
})

t.test('Checks that the first failing step ends the script with its exit code and the rest do not run', async (t) => {
  const r = run(stepsScript([
    { name: 'ok', run: 'echo fine' },
    { name: 'bad', run: 'echo before; false; echo never' },
    { name: 'after', run: 'echo after' },
  ]))
  t.equal(r.code, 1)
  t.notMatch(r.out, /never|after/)
  t.match(r.err, /step 2 failed with exit code 1/)
  t.equal(run(stepsScript([{ name: 'x', run: 'exit 7' }])).code, 7)
})

t.test('Checks that task ids are valid, differ per job, attempt and relaunch, and stay short', async (t) => {
  const a = taskIdFor('run-1', 'ci/test (shard=1)', 1)
  const b = taskIdFor('run-1', 'ci/test (shard=2)', 1)
  const c = taskIdFor('run-1', 'ci/test (shard=1)', 2)
  const d = taskIdFor('run-1', 'ci/test (shard=1)', 1, 1)
  t.not(a, b)
  t.not(a, c)
  t.not(a, d, 'a relaunch after a lost or preempted task is a new task')
  t.not(c, d)
  t.equal(taskIdFor('run-1', 'ci/test (shard=1)', 1, 0), a)
  for (const id of [a, b, c, d]) t.match(id, /^[A-Za-z0-9._:/@+-]+$/)
  t.ok(taskIdFor('r', 'x'.repeat(500), 1).length < 100)
})

t.test('Checks that a job becomes a valid task with its checkout, env and resources', async (t) => {
  const job = {
    id: 'ci/build', pipeline: 'ci', job: 'build', file: '.regatta/ci.yml', matrix: {}, context: 'regatta/ci/build',
    image: 'node:20', steps: [{ name: 'b', run: 'npm run build' }], env: { NODE_ENV: 'test' }, secretEnv: {}, needs: [],
    resources: { cpus: 1, mem: 1024 }, timeoutMs: 60_000, retries: 0, if: 'success()', services: [], artifacts: [],
    secrets: [], revocable: false, priority: 0,
  } as unknown as PlannedJob
  const trigger: Trigger = {
    kind: 'push', repo: { fullName: 'o/r', cloneUrl: 'https://github.com/o/r.git', defaultBranch: 'main', private: true },
    ref: 'refs/heads/main', sha: 'a'.repeat(40), branch: 'main', actor: 'me',
  }
  const spec = taskSpecFor({ runId: 'run-9', job, taskId: taskIdFor('run-9', job.id, 1), attempt: 1, trigger, resources: [{ name: 'cpus', scalar: 1 }], githubToken: 'tok' })
  validate(TaskSpec, spec, 'task')
  t.equal(spec.checkout?.sha, trigger.sha)
  t.equal(spec.checkout?.token, 'tok', 'the token goes with an https clone')
  t.equal(spec.container.env?.NODE_ENV, 'test')
  t.equal(spec.container.env?.GITHUB_SHA, trigger.sha)
  t.equal(spec.name, 'regatta/ci/build')
  const local = taskSpecFor({ runId: 'run-9', job, taskId: taskIdFor('run-9', job.id, 1), attempt: 1, trigger: { ...trigger, repo: { ...trigger.repo, cloneUrl: 'file:///tmp/r' } }, resources: [], githubToken: 'tok' })
  t.equal(local.checkout?.token, undefined, 'never to a non-https URL')
})
