// Caches and artifacts in the NATS object store, on a real nats-server, master, agents (Docker
// and process) and a local git repository: a cache saved by one task is in the workspace of the
// next task with its key before its command runs; another key is a miss; artifacts are saved
// (also after a failure) and untar to what the task wrote; paths leaving the workspace are
// refused at launch, and symlinks never lead a save or a restore out of it.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { nanos, type NatsConnection, type ObjectStore } from 'nats'
import { Buckets, type TaskSpec } from '../../../shared/protocol/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { DockerContainerizer, ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import {
  ARTIFACT_MAX_AGE_MS, CACHE_MAX_AGE_MS, checkWorkspacePath, restoreCache, saveArtifacts, saveCache,
} from '../../../services/agent/src/workspace-store.js'
import { startCluster, shellTask, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { ensureBusyboxImage } from '../../helpers/docker.js'
import { waitUntil } from '../../helpers/wait.js'

await ensureBusyboxImage()
let cluster: TestCluster
let fw: RecordingFramework
let nc: NatsConnection
let repo: string
let sha = ''
const dirs: string[] = []

t.before(async () => {
  repo = await mkdtemp(join(tmpdir(), 'regatta-repo-'))
  const git = (...args: string[]): string => execFileSync('git', args, { cwd: repo, env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } }).toString().trim()
  git('init', '-q', '-b', 'main')
  await writeFile(join(repo, 'README'), 'the repository\n')
  git('add', '.')
  git('commit', '-q', '-m', 'one')
  sha = git('rev-parse', 'HEAD')
  cluster = await startCluster()
  await cluster.startMaster()
  await cluster.startAgent({ containerizer: new DockerContainerizer({ logger: silentLogger() }), id: 'ws-docker', pool: 'docker' })
  await cluster.startAgent({ containerizer: new ProcessContainerizer({ logger: silentLogger() }), id: 'ws-process', pool: 'process' })
  fw = await cluster.framework()
  nc = await cluster.connect('test')
})
t.teardown(async () => {
  await fw.scheduler.teardown().catch(() => undefined)
  await cluster.stop()
  await rm(repo, { recursive: true, force: true })
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'regatta-ws-'))
  dirs.push(d)
  return d
}

async function run(pool: string, task: TaskSpec): Promise<Awaited<ReturnType<RecordingFramework['terminal']>>> {
  const offer = await fw.nextOffer((o) => o.pool === pool)
  await fw.scheduler.launch(offer, [task])
  return fw.terminal(task.taskId)
}

const checkout = (): TaskSpec['checkout'] => ({ url: `file://${repo}`, sha, ref: 'refs/heads/main' })
const bucket = (name: string): Promise<ObjectStore> => nc.jetstream().views.os(name)

/** Untars an object of the store into a new directory. */
async function untar(os: ObjectStore, name: string): Promise<string> {
  const dir = await tempDir()
  const found = await os.get(name)
  if (!found) throw new Error(`no object ${name}`)
  const tar = spawn('tar', ['-xzf', '-', '-C', dir], { stdio: ['pipe', 'ignore', 'inherit'] })
  const closed = new Promise<number | null>((r) => tar.once('close', r))
  await pipeline(Readable.fromWeb(found.data as WebReadableStream<Uint8Array>), tar.stdin)
  if (await closed !== 0) throw new Error('tar failed')
  return dir
}

t.test('Checks that a cache saved by one task is in the workspace of the next task with the same key before its command runs, and that another key is a miss', async (t) => {
  const cache = { key: 'deps-v1', paths: ['cache/'] }
  const first = await run('docker', shellTask('cache-1', 'pwd | grep -q /workspace || exit 8; mkdir -p cache/sub && echo v1 > cache/sub/data.txt', { checkout: checkout(), cache }))
  t.equal(first.state, 'FINISHED', first.message ?? '')
  t.same(first.cache, { key: 'deps-v1', restored: false, saved: true }, 'a miss, then saved')
  const info = await (await bucket(Buckets.cache)).info('deps-v1')
  t.ok(info && info.size > 0, 'the object is in the regatta-cache bucket')

  // exit 9: the file is not there when the command starts
  const second = await run('docker', shellTask('cache-2', '[ "$(cat cache/sub/data.txt)" = v1 ] || exit 9; echo v2 > cache/sub/data.txt', { checkout: checkout(), cache }))
  t.equal(second.state, 'FINISHED', `exit ${second.exitCode}: ${second.message ?? ''}`)
  t.same(second.cache, { key: 'deps-v1', restored: true, saved: false }, 'restored, so not saved again')
  const kept = await untar(await bucket(Buckets.cache), 'deps-v1')
  t.equal(await readFile(join(kept, 'cache/sub/data.txt'), 'utf8'), 'v1\n', 'a restored key is not overwritten')

  const other = await run('docker', shellTask('cache-3', '[ ! -e cache ] || exit 9', { checkout: checkout(), cache: { key: 'deps-v2', paths: ['cache'] } }))
  t.equal(other.state, 'FINISHED', `exit ${other.exitCode}: ${other.message ?? ''}`)
  t.same(other.cache, { key: 'deps-v2', restored: false, saved: false }, 'a miss, and nothing to save')
  t.match(other.message, 'none of its paths exist (cache)')
  t.equal(await (await bucket(Buckets.cache)).info('deps-v2'), null, 'an empty set saves nothing')
})

t.test('Checks that without a checkout the cache lives in the sandbox (process containerizer)', async (t) => {
  const cache = { key: 'sandbox-cache', paths: ['.cache/tool', 'missing-dir'] }
  const first = await run('process', shellTask('pcache-1', 'mkdir -p .cache/tool && echo p1 > .cache/tool/x', { cache }))
  t.equal(first.state, 'FINISHED', first.message ?? '')
  t.same(first.cache, { key: 'sandbox-cache', restored: false, saved: true })
  const second = await run('process', shellTask('pcache-2', '[ "$(cat .cache/tool/x)" = p1 ] || exit 9', { cache }))
  t.equal(second.state, 'FINISHED', `exit ${second.exitCode}: ${second.message ?? ''}`)
  t.same(second.cache, { key: 'sandbox-cache', restored: true, saved: false })
})

t.test('Checks that a task\'s artifact is saved, named in its terminal status, and untars to what the task wrote', async (t) => {
  const end = await run('docker', shellTask('art-1', 'mkdir -p dist && printf "built %s\\n" 42 > dist/out.txt', { checkout: checkout(), artifacts: { name: 'runs/1/build', paths: ['dist/out.txt'] } }))
  t.equal(end.state, 'FINISHED', end.message ?? '')
  const os = await bucket(Buckets.artifacts)
  const info = await os.info('runs/1/build')
  t.ok(info, 'the object is in the regatta-artifacts bucket')
  t.same(end.artifact, { bucket: 'regatta-artifacts', name: 'runs/1/build', size: info!.size })
  const dir = await untar(os, 'runs/1/build')
  t.equal(await readFile(join(dir, 'dist/out.txt'), 'utf8'), 'built 42\n')
})

t.test('Checks that a failed task saves its artifacts (test reports) but not its cache', async (t) => {
  const end = await run('docker', shellTask('art-fail', 'mkdir -p reports cache && echo "1 failed" > reports/junit.txt && echo c > cache/c; exit 3', {
    artifacts: { name: 'runs/2/reports', paths: ['reports'] }, cache: { key: 'never-saved', paths: ['cache'] },
  }))
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'COMMAND_FAILED', 'the failure stays the command\'s')
  t.equal(end.exitCode, 3)
  t.equal(end.artifact?.name, 'runs/2/reports')
  t.same(end.cache, { key: 'never-saved', restored: false, saved: false })
  const dir = await untar(await bucket(Buckets.artifacts), 'runs/2/reports')
  t.equal(await readFile(join(dir, 'reports/junit.txt'), 'utf8'), '1 failed\n')
  t.equal(await (await bucket(Buckets.cache)).info('never-saved'), null)
})

t.test('Checks that cache and artifact paths (and mount sources) that leave the workspace are refused at launch (ERROR, TASK_INVALID)', async (t) => {
  const cases: Array<[string, Partial<TaskSpec>, string]> = [
    ['esc-abs', { artifacts: { name: 'x', paths: ['dist', '/etc/passwd'] } }, 'path "/etc/passwd" is absolute'],
    ['esc-up', { cache: { key: 'x', paths: ['../other-task'] } }, 'path "../other-task" climbs out of the workspace'],
    ['esc-mid', { artifacts: { name: 'x', paths: ['dist/../../x'] } }, 'path "dist/../../x" climbs out'],
    // mount sources, checked the same way since
    ['esc-mount', { container: { command: ['sh', '-c', 'exit 9'], mounts: [{ source: '../other-task', target: '/x' }] } }, 'mount source "../other-task" is outside the task\'s sandbox'],
  ]
  for (const [taskId, extra, message] of cases) {
    // exit 9 would mean the command ran
    const end = await run('docker', shellTask(taskId, 'exit 9', { checkout: checkout(), ...extra }))
    t.equal(end.state, 'ERROR', taskId)
    t.equal(end.reason, 'TASK_INVALID', taskId)
    t.match(end.message, message, taskId)
    t.notOk(fw.statesOf(taskId).includes('RUNNING'), `${taskId} never ran`)
  }
})

t.test('Checks that a symlink made by the task does not lead an artifact out of the workspace', async (t) => {
  // `dist` points at the root of the host: dist/etc/hostname must not be archived
  const end = await run('docker', shellTask('art-link', 'ln -s / dist && echo ok > fine.txt', { artifacts: { name: 'runs/3/linked', paths: ['dist/etc/hostname', 'fine.txt'] } }))
  t.equal(end.state, 'FINISHED', end.message ?? '')
  t.match(end.message, 'saved without dist/etc/hostname (leaves the workspace through a symlink)')
  const dir = await untar(await bucket(Buckets.artifacts), 'runs/3/linked')
  t.equal(await readFile(join(dir, 'fine.txt'), 'utf8'), 'ok\n')
  t.notOk(await lstat(join(dir, 'dist')).then(() => true, () => false), 'nothing of dist was archived')
})

t.test('Checks that artifacts that cannot be saved turn a success into FAILED (ARTIFACTS_FAILED), the exit code kept', async (t) => {
  // a bucket too small for any archive: the put fails and its partial chunks are purged
  const jsm = await nc.jetstreamManager()
  const stream = `OBJ_${Buckets.artifacts}`
  await jsm.streams.delete(stream).catch(() => undefined)
  await nc.jetstream().views.os(Buckets.artifacts, { max_bytes: 64 })
  t.teardown(() => jsm.streams.delete(stream).then(() => undefined, () => undefined))
  const end = await run('docker', shellTask('art-full', 'mkdir -p dist && head -c 20000 /dev/urandom > dist/blob', { artifacts: { name: 'runs/4/big', paths: ['dist'] } }))
  t.equal(end.state, 'FAILED')
  t.equal(end.reason, 'ARTIFACTS_FAILED')
  t.equal(end.exitCode, 0)
  t.match(end.message, 'the artifacts were not saved: cannot save artifact "runs/4/big"')
  t.notOk(end.artifact)
})

t.test('Checks the store directly: buckets and their max ages, a missing key is a miss, nothing to save saves nothing, a restore never follows a symlink in the workspace', async (t) => {
  const dir = await tempDir()
  t.equal(await restoreCache(nc, dir, 'no-such-key'), false, 'a missing key is a miss, not an error')
  const jsm = await nc.jetstreamManager()
  t.equal((await jsm.streams.info(`OBJ_${Buckets.cache}`)).config.max_age, nanos(CACHE_MAX_AGE_MS), 'caches are kept 7 days')
  t.equal(CACHE_MAX_AGE_MS, 7 * 24 * 3600_000)

  t.same(await saveCache(nc, dir, 'nothing', ['a', 'b/c']), { saved: false, size: 0, skipped: ['a', 'b/c'], reason: 'empty' })
  t.equal(await (await bucket(Buckets.cache)).info('nothing'), null)
  t.same(await saveArtifacts(nc, dir, 'nothing', ['a']), { saved: false, size: 0, skipped: ['a'], reason: 'empty' })

  await mkdir(join(dir, 'node_modules/pkg'), { recursive: true })
  await writeFile(join(dir, 'node_modules/pkg/index.js'), 'module.exports = 1\n')
  t.match(await saveArtifacts(nc, dir, 'direct', ['node_modules', 'gone']), { saved: true, skipped: ['gone'] })
  t.equal((await jsm.streams.info(`OBJ_${Buckets.artifacts}`)).config.max_age, nanos(ARTIFACT_MAX_AGE_MS), 'artifacts are kept 30 days')
  t.equal(ARTIFACT_MAX_AGE_MS, 30 * 24 * 3600_000)
  const saved = await saveCache(nc, dir, 'modules', ['node_modules'])
  t.ok(saved.saved && saved.size > 0)
  t.same(await saveCache(nc, dir, 'modules', ['node_modules']), { saved: false, size: 0, skipped: [], reason: 'exists' }, 'a key is saved once')

  // a workspace (a checkout) where node_modules is a symlink to a directory outside it
  const outside = await tempDir()
  const target = await tempDir()
  await symlink(outside, join(target, 'node_modules'))
  t.equal(await restoreCache(nc, target, 'modules'), true)
  t.notOk((await lstat(join(target, 'node_modules'))).isSymbolicLink(), 'the symlink gave way to the cached directory')
  t.equal(await readFile(join(target, 'node_modules/pkg/index.js'), 'utf8'), 'module.exports = 1\n')
  t.notOk(await lstat(join(outside, 'pkg')).then(() => true, () => false), 'nothing was written through the symlink')

  // merging: a directory of the checkout keeps its own files
  const merged = await tempDir()
  await mkdir(join(merged, 'node_modules'))
  await writeFile(join(merged, 'node_modules/.keep'), '')
  await symlink('/nonexistent', join(merged, 'link'))
  t.equal(await restoreCache(nc, merged, 'modules'), true)
  t.ok(await lstat(join(merged, 'node_modules/.keep')), 'the checkout\'s file stays')
  t.ok(await lstat(join(merged, 'node_modules/pkg/index.js')), 'the cached files are added')
  t.equal(await readlink(join(merged, 'link')), '/nonexistent', 'entries the cache does not have are left alone')

  t.equal(checkWorkspacePath('./dist//out/'), 'dist/out')
  t.equal(checkWorkspacePath('.'), '.')
  t.throws(() => checkWorkspacePath('a/..'), { code: 'INVALID_TASK' })
})

t.test('Checks that an aborted save purges what it sent and reports why', async (t) => {
  const dir = await tempDir()
  await mkdir(join(dir, 'big'))
  // incompressible, so archiving takes a while
  await writeFile(join(dir, 'big/blob'), randomBytes(48 * 1024 * 1024))
  const jsm = await nc.jetstreamManager()
  const stored = async (): Promise<number> => (await jsm.streams.info(`OBJ_${Buckets.artifacts}`)).state.bytes
  const before = await stored()
  const ac = new AbortController()
  const saving = saveArtifacts(nc, dir, 'aborted', ['big'], { signal: ac.signal }).then(() => undefined, (e: unknown) => e)
  // abort once chunks have reached the stream
  await waitUntil('chunks in the stream', async () => await stored() > before + 1024 * 1024, 20_000, 5)
  ac.abort(new Error('the task was killed'))
  const err = await saving
  t.match(err, { code: 'WORKSPACE_STORE_FAILED', message: 'cannot save artifact "aborted": the task was killed' })
  t.equal(await (await bucket(Buckets.artifacts)).info('aborted'), null, 'no object')
  await waitUntil('the partial chunks to be purged', async () => await stored() === before)
  t.pass('the chunks sent were purged')
})
