// The agent's persistent volumes (services/agent/src/volumes.ts) without a cluster: where a
// volume appears for each containerizer, the checks made before a task runs, and the directory's
// life (CREATE empties it, a task's launch keeps what is there, DESTROY deletes it) on a real disk.
import t from 'tap'
import { mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Resource } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { Volumes, checkVolumes, dockerTarget, sandboxPath } from '../../../services/agent/src/volumes.js'

const vol = (id: string, containerPath: string, role = 'ci'): Resource => ({ name: 'disk', scalar: 10, role, disk: { persistence: { id }, containerPath } })

t.test('Checks that a volume\'s container path maps to /sandbox for a relative path in Docker, and into the sandbox for processes', async (t) => {
  t.equal(dockerTarget('cache'), '/sandbox/cache')
  t.equal(dockerTarget('/cache'), '/cache')
  t.equal(dockerTarget('/workspace/.npm/'), '/workspace/.npm')
  t.equal(sandboxPath('cache'), 'cache')
  t.equal(sandboxPath('/sandbox/cache'), 'cache')
  t.equal(sandboxPath('/cache'), 'cache')
  t.equal(sandboxPath('/workspace/.npm'), 'workspace/.npm')
})

t.test('Checks that checkVolumes refuses paths that escape or hide the sandbox or workspace, two volumes at one path, and one volume taken twice', async (t) => {
  checkVolumes([vol('a', 'cache'), vol('b', '/workspace/.npm'), { name: 'disk', scalar: 5 }])
  t.pass('ordinary volumes pass')
  for (const [resources, message] of [
    [[vol('a', '../x')], 'volume "a": container path "../x" has a ".." segment'],
    [[vol('a', '/sandbox')], 'would hide the task\'s sandbox'],
    [[vol('a', '/workspace')], 'would hide the task\'s workspace'],
    [[vol('a', 'x'), vol('b', '/sandbox/x')], 'volume "b": two volumes at "/sandbox/x"'],
    [[vol('a', 'x'), vol('a', 'y')], 'volume "a" is taken twice'],
    [[{ ...vol('a', 'x'), role: '*' }], 'volume "a" is not reserved for a role'],
  ] as Array<[Resource[], string]>) {
    let err: unknown
    try { checkVolumes(resources) } catch (e) { err = e }
    t.ok(err instanceof RegattaError, message)
    t.equal((err as RegattaError).code, 'INVALID_TASK')
    t.match((err as RegattaError).message, message)
  }
})

t.test('Checks that a volume directory keeps its files across launches, CREATE empties it, DESTROY deletes it, and a sandbox symlink points at it', async (t) => {
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-volumes-'))
  t.teardown(() => rm(workDir, { recursive: true, force: true }))
  const volumes = new Volumes(workDir, silentLogger())
  const ref = { role: 'ci/main', id: 'cache' }
  const dir = volumes.dirOf(ref)
  t.equal(dir, join(workDir, 'volumes', 'ci%2Fmain', 'cache'))

  const sandbox1 = join(workDir, 's1')
  const mounts: Array<{ source: string; target: string }> = []
  await volumes.attach([vol('cache', 'cache', 'ci/main')], 'process', sandbox1, mounts)
  t.same(mounts, [], 'no bind mount for a process')
  t.equal(await readlink(join(sandbox1, 'cache')), dir, 'a symlink in the sandbox')
  await writeFile(join(sandbox1, 'cache', 'f'), 'one')
  await rm(sandbox1, { recursive: true, force: true })
  t.equal(await readFile(join(dir, 'f'), 'utf8'), 'one', 'removing the sandbox leaves the volume\'s content')

  const dockerMounts: Array<{ source: string; target: string }> = []
  await volumes.attach([vol('cache', '/cache', 'ci/main')], 'docker', join(workDir, 's2'), dockerMounts)
  t.same(dockerMounts, [{ source: dir, target: '/cache' }], 'a bind mount for Docker')

  // CREATE (a fresh volume of the same id) then a launch, in that order: the launch sees it empty
  void volumes.create([ref])
  const sandbox3 = join(workDir, 's3')
  await volumes.attach([vol('cache', 'cache', 'ci/main')], 'process', sandbox3, [])
  await t.rejects(stat(join(dir, 'f')), 'CREATE emptied it before the launch used it')

  const taken = join(workDir, 's4')
  await volumes.attach([vol('cache', 'cache', 'ci/main')], 'process', taken, [])
  await t.rejects(volumes.attach([vol('cache', 'cache', 'ci/main')], 'process', taken, []), /exists in the task's sandbox already/)

  await volumes.destroy([ref])
  await t.rejects(stat(dir), 'DESTROY deleted it')
})
