// The agent checks a git commit out into the task's workspace (/workspace in a container).
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DockerContainerizer, ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { startCluster, shellTask, type TestCluster } from '../../helpers/cluster.js'
import { ensureBusyboxImage } from '../../helpers/docker.js'

await ensureBusyboxImage()
let cluster: TestCluster
let repo: string
let shas: string[] = []
t.before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'regatta-repo-'))
  const git = (...args: string[]): string => execFileSync('git', args, { cwd: repo, env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } }).toString().trim()
  git('init', '-q', '-b', 'main')
  await writeFile(join(repo, 'hello.txt'), 'first\n')
  git('add', '.')
  git('commit', '-q', '-m', 'one')
  shas.push(git('rev-parse', 'HEAD'))
  await writeFile(join(repo, 'hello.txt'), 'second\n')
  git('commit', '-q', '-am', 'two')
  shas.push(git('rev-parse', 'HEAD'))
  cluster = await startCluster()
  await cluster.startMaster()
  await cluster.startAgent({ containerizer: new DockerContainerizer({ logger: silentLogger() }), id: 'agent-docker', pool: 'docker' })
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'agent-process', pool: 'process' })
})
t.teardown(async () => {
  await cluster.stop()
  await rm(repo, { recursive: true, force: true })
})

for (const pool of ['docker', 'process']) {
  t.test(`Checks that a ${pool} task runs in a checkout of the commit it names`, async (t) => {
    const fw = await cluster.framework()
    t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
    const offer = await fw.nextOffer((o) => o.pool === pool)
    // the older commit, not the branch head
    // exit 8: not in the workspace; exit 9: not the content of the first commit
    await fw.scheduler.launch(offer, [shellTask(`co-${pool}`, 'case "$(pwd)" in */workspace) ;; *) exit 8;; esac; grep -qx first hello.txt || exit 9', {
      checkout: { url: `file://${repo}`, sha: shas[0]!, ref: 'refs/heads/main' },
    })])
    const end = await fw.terminal(`co-${pool}`)
    t.equal(end.state, 'FINISHED', `exit ${end.exitCode}: ${end.message ?? ''}`)
  })
}

t.test('Checks that a checkout of a missing commit fails the task with the reason', async (t) => {
  const fw = await cluster.framework()
  t.teardown(() => fw.scheduler.teardown().catch(() => undefined))
  const offer = await fw.nextOffer((o) => o.pool === 'process')
  await fw.scheduler.launch(offer, [shellTask('co-missing', 'true', { checkout: { url: `file://${repo}`, sha: 'deadbeefdeadbeefdeadbeefdeadbeefdeadbeef' } })])
  const end = await fw.terminal('co-missing')
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'CHECKOUT_FAILED')
  t.match(end.message, /deadbeefdead/)
})
