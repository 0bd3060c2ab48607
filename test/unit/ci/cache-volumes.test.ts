// Caches in persistent volumes, the pure parts: volume ids and slots, what the service knows of
// the volumes on each agent, placement (reuse a free volume, make one in a free slot, fall back
// to the object store), the ACCEPT's operations as the master checks them, the steps script's
// links really run by sh, the task spec, and `cache.volume` in pipeline files.
import t from 'tap'
import fc from 'fast-check'
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CACHE_VOLUME_PATH, KEPT_CACHE_KEYS, KnownVolumes, MAX_CACHE_VOLUME_SLOTS, cacheVolumeBase, cacheVolumeId, cacheVolumeResource,
  cacheVolumeScript, freeSlot, keyDir, slotOf,
} from '../../../services/ci/src/cache-volumes.js'
import { operationsFor, placeJobs, type WaitingJob } from '../../../services/ci/src/placement.js'
import { stepsScript, taskSpecFor } from '../../../services/ci/src/task-spec.js'
import { checkOperations, takeForTask } from '../../../services/master/src/reservations.js'
import { formatPipelineError, parsePipeline, planRun, type PlannedJob } from '../../../services/ci/src/pipeline/index.js'
import type { Trigger } from '../../../services/ci/src/trigger.js'
import { TaskSpec, VolumeId, validate, type Offer, type Operation, type Resource, type TaskSpec as Task } from '../../../shared/protocol/index.js'

const ROLE = 'ci/push'
const BASE = cacheVolumeBase('octo/app', 'ci')
const offer = (id: string, resources: Resource[], o: Partial<Offer> = {}): Offer => ({
  id, frameworkId: 'regatta-ci', agentId: `agent-${id}`, hostname: 'h', pool: 'default', attributes: {}, role: ROLE, resources, ...o,
})
const plain = (disk = 10_000): Resource[] => [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 4096 }, { name: 'disk', scalar: disk }]
const volume = (slot: number, size = 1024, base = BASE): Resource => cacheVolumeResource(cacheVolumeId(base, slot), size, ROLE)
const job = (key: string, o: Partial<WaitingJob> = {}): WaitingJob => ({
  key, role: ROLE, pool: 'default', cpus: 1, mem: 512, revocable: false, priority: 0, since: 0, volume: { base: BASE, size: 1024 }, ...o,
})
const none = (): Set<string> => new Set()

/** The master's own check of an ACCEPT (throws INVALID_OPERATION naming what does not fit). */
function masterAccepts(o: Offer, ops: Operation[]): void {
  checkOperations(o.resources, ops, { reserved: [], volumes: [] }, { offerRoles: [o.role], frameworkRoles: [ROLE] }, takeForTask([o]))
}
const task = (id: string, resources: Resource[]): Task => ({ taskId: id, name: id, resources, container: { command: ['true'] } })
const opsOf = (o: Offer, placed: ReturnType<typeof placeJobs>['placements'][number]): Operation[] =>
  operationsFor(placed, placed.jobs.map((j) => task(j.job.key, j.resources)))

t.test('Checks that volume ids are valid, stable, short enough and differ per repository and pipeline (property)', async (t) => {
  fc.assert(fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 300 }), fc.nat({ max: MAX_CACHE_VOLUME_SLOTS - 1 }), (repo, pipeline, slot) => {
    const id = cacheVolumeId(cacheVolumeBase(repo, pipeline), slot)
    validate(VolumeId, id, 'volume id')
    return id === cacheVolumeId(cacheVolumeBase(repo, pipeline), slot) && slotOf(id, cacheVolumeBase(repo, pipeline)) === slot
  }))
  t.match(BASE, /^octo-app\.ci\.[0-9a-f]{10}$/, 'readable: repository and pipeline, then a hash')
  t.not(cacheVolumeBase('a/b', 'c'), cacheVolumeBase('a-b', 'c'), 'names that slug alike still differ')
  t.not(cacheVolumeBase('a/b', 'c.d'), cacheVolumeBase('a/b.c', 'd'))
})

t.test('Checks that slots are found by id, the lowest missing one is taken, and none past the limit', async (t) => {
  t.equal(slotOf(`${BASE}.2`, BASE), 2)
  t.equal(slotOf(`${BASE}.x`, BASE), undefined)
  t.equal(slotOf(`${BASE}.01`, BASE), undefined)
  t.equal(slotOf(cacheVolumeId(cacheVolumeBase('octo/app', 'other'), 0), BASE), undefined, 'another pipeline\'s volume is no slot of this one')
  t.equal(freeSlot(BASE, new Set()), 0)
  t.equal(freeSlot(BASE, new Set([`${BASE}.0`, `${BASE}.2`])), 1)
  const all = new Set(Array.from({ length: MAX_CACHE_VOLUME_SLOTS }, (_, n) => cacheVolumeId(BASE, n)))
  t.equal(freeSlot(BASE, all), undefined)
})

t.test('Checks that known volumes come from offers, the master\'s state and the service itself, per agent and role', async (t) => {
  const k = new KnownVolumes()
  k.noteOffer(offer('o1', [...plain(), volume(0)]))
  k.noteState({ agents: [{ id: 'agent-o1', resources: [volume(1), { ...volume(0), role: 'ci/pull_request' }, { ...volume(3), role: 'other' }] }] as never }, ['ci/push', 'ci/pull_request'])
  k.note('agent-o2', ROLE, `${BASE}.0`)
  t.same([...k.ids('agent-o1', ROLE)].sort(), [`${BASE}.0`, `${BASE}.1`])
  t.same([...k.ids('agent-o1', 'ci/pull_request')], [`${BASE}.0`], 'a role has its own volumes')
  t.same([...k.ids('agent-o1', 'other')], [], 'roles not of the service are not kept')
  t.same([...k.ids('agent-o2', ROLE)], [`${BASE}.0`])
  t.same([...k.ids('agent-o3', ROLE)], [])
})

t.test('Checks that a job makes its volume (reserve, create, launch) where none is, and the master accepts the ACCEPT', async (t) => {
  const o = offer('o1', plain())
  const { placements } = placeJobs([o], [job('a')], none)
  const p = placements[0]!
  t.same(p.jobs[0]!.volume, { id: `${BASE}.0`, create: { volume: volume(0), reserve: true } })
  const ops = opsOf(o, p)
  t.same(ops.map((op) => op.type), ['RESERVE', 'CREATE', 'LAUNCH'])
  t.same(ops[0], { type: 'RESERVE', resources: [{ name: 'disk', scalar: 1024, role: ROLE }] }, 'the disk reserved for the offer\'s role')
  t.same(p.jobs[0]!.resources.find((r) => r.disk), { name: 'disk', scalar: 1024, disk: { persistence: { id: `${BASE}.0` }, containerPath: CACHE_VOLUME_PATH } },
    'the task names its volume by id, without role')
  masterAccepts(o, ops)
  t.pass('the master\'s check accepts it')
})

t.test('Checks that a job takes a free volume of its pipeline, preferring that offer, with no reservation', async (t) => {
  const cold = offer('o1', plain())
  const warm = offer('o2', [...plain(), volume(1)])
  const { placements, unused } = placeJobs([cold, warm], [job('a')], none)
  t.equal(placements.length, 1)
  t.equal(placements[0]!.offer.id, 'o2', 'the agent holding a volume of the pipeline, though listed second')
  t.same(placements[0]!.jobs[0]!.volume, { id: `${BASE}.1` })
  const ops = opsOf(warm, placements[0]!)
  t.same(ops.map((op) => op.type), ['LAUNCH'])
  masterAccepts(warm, ops)
  t.same(unused.map((o) => o.id), ['o1'])
})

t.test('Checks that a volume in use elsewhere on the agent is not made again: the next slot is', async (t) => {
  const o = offer('o1', plain())
  const { placements } = placeJobs([o], [job('a')], (agentId, role) => (agentId === 'agent-o1' && role === ROLE ? new Set([`${BASE}.0`]) : new Set()))
  t.same(placements[0]!.jobs[0]!.volume?.id, `${BASE}.1`)
})

t.test('Checks that jobs of one pipeline placed together each get their own volume, and the ACCEPT fits', async (t) => {
  const o = offer('o1', [...plain(), volume(0)])
  const { placements } = placeJobs([o], [job('a', { since: 1 }), job('b', { since: 2 }), job('c', { since: 3, volume: { base: cacheVolumeBase('octo/app', 'docs'), size: 512 } })], none)
  const byJob = Object.fromEntries(placements[0]!.jobs.map((j) => [j.job.key, j.volume]))
  t.same(byJob.a, { id: `${BASE}.0` }, 'the oldest takes the free volume')
  t.equal(byJob.b?.id, `${BASE}.1`, 'the next makes slot 1')
  t.equal(byJob.c?.id, `${cacheVolumeBase('octo/app', 'docs')}.0`, 'another pipeline has its own family')
  const ops = opsOf(o, placements[0]!)
  t.same(ops.map((op) => op.type), ['RESERVE', 'CREATE', 'LAUNCH'])
  masterAccepts(o, ops)
  t.pass('the master\'s check accepts reserving and creating two volumes and launching three tasks')
})

t.test('Checks that disk reserved for the role is made into a volume without a new reservation', async (t) => {
  const o = offer('o1', [{ name: 'cpus', scalar: 2 }, { name: 'mem', scalar: 2048 }, { name: 'disk', scalar: 2000, role: ROLE }])
  const { placements } = placeJobs([o], [job('a')], none)
  t.same(placements[0]!.jobs[0]!.volume?.create?.reserve, false)
  const ops = opsOf(o, placements[0]!)
  t.same(ops.map((op) => op.type), ['CREATE', 'LAUNCH'])
  masterAccepts(o, ops)
})

t.test('Checks that without disk for a volume, or with every slot in use, the job runs without one', async (t) => {
  const small = offer('o1', plain(500))
  const a = placeJobs([small], [job('a')], none)
  t.equal(a.placements[0]!.jobs[0]!.volume, undefined, '500 MiB of disk cannot hold a 1024 MiB volume')
  t.notOk(a.placements[0]!.jobs[0]!.resources.some((r) => r.disk))
  const full = new Set(Array.from({ length: MAX_CACHE_VOLUME_SLOTS }, (_, n) => cacheVolumeId(BASE, n)))
  const b = placeJobs([offer('o1', plain())], [job('a')], () => full)
  t.equal(b.placements[0]!.jobs[0]!.volume, undefined, `all ${MAX_CACHE_VOLUME_SLOTS} slots exist (in use): none is made`)
  const c = placeJobs([offer('o1', plain(1500))], [job('a', { disk: 1000 })], none)
  t.equal(c.placements[0]!.jobs[0]!.volume, undefined, 'the job\'s own disk and the volume must fit together')
})

t.test('Checks that volumes are no disk for other jobs, and jobs without a volume cache never take one', async (t) => {
  const o = offer('o1', [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 4096 }, volume(0, 4000)])
  const { placements } = placeJobs([o], [job('disky', { volume: undefined, disk: 100 }), job('plain', { volume: undefined })], none)
  t.same(placements[0]!.jobs.map((j) => j.job.key), ['plain'], 'the 4000 MiB volume is not disk for a job asking 100 MiB')
  t.notOk(placements[0]!.jobs[0]!.resources.some((r) => r.disk), 'a job without a volume cache takes no volume')
  t.same(placements[0]!.jobs[0]!.volume, undefined)
})

t.test('Checks that a volume of another role is not used (volumes are per role)', async (t) => {
  const o = offer('o1', [...plain(), { ...volume(0), role: 'ci/pull_request' }])
  const { placements } = placeJobs([o], [job('a')], none)
  t.same(placements[0]!.jobs[0]!.volume?.create?.volume.role, ROLE, 'a new volume of its own role, not the pull requests\' one')
})

// ---- the steps script, run by sh -----------------------------------------------------------

async function sandbox(t: { teardown(fn: () => unknown): void }): Promise<{ root: string; workspace: () => Promise<string> }> {
  const root = await mkdtemp(join(tmpdir(), 'regatta-cachevol-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  await mkdir(join(root, 'cache'))
  let n = 0
  return {
    root,
    // each run gets a fresh checkout beside the same volume, as on the agent
    async workspace() {
      const dir = join(root, `sandbox${++n}`)
      await mkdir(join(dir, 'workspace'), { recursive: true })
      await symlink(join(root, 'cache'), join(dir, 'cache'))
      return join(dir, 'workspace')
    },
  }
}

function runIn(cwd: string, script: string): { code: number | null; out: string; err: string } {
  const r = spawnSync('sh', ['-c', script], { cwd, encoding: 'utf8' })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

const script = (key: string, runId: string, steps: string, paths = ['.deps', 'sub/dir']): string =>
  stepsScript([{ name: 'go', run: steps }], [], cacheVolumeScript({ volumeId: `${BASE}.0`, key, paths, runId, jobId: 'ci/build' }))

t.test('Checks (sh) that cache paths are linked into the volume: the next run finds what the first wrote', async (t) => {
  const s = await sandbox(t)
  const first = runIn(await s.workspace(), script('deps v1', 'r1', 'test ! -e .deps/stamp && echo cold; echo one > .deps/stamp; echo two > sub/dir/f; echo "$REGATTA_CACHE_VOLUME"'))
  t.equal(first.code, 0, first.err)
  t.match(first.out, `::regatta cache volume ${BASE}.0: nothing kept for key deps v1 yet\n`)
  t.match(first.out, /cold\n/)
  t.match(first.out, new RegExp(`${join(s.root, 'sandbox1', 'cache').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n`), 'REGATTA_CACHE_VOLUME is the volume, for the steps')
  const second = runIn(await s.workspace(), script('deps v1', 'r2', 'cat .deps/stamp sub/dir/f'))
  t.equal(second.code, 0, second.err)
  t.match(second.out, `::regatta cache volume ${BASE}.0: key deps v1 warm, last used by run r1 (ci/build)\n`)
  t.match(second.out, /one\ntwo\n/, 'both paths kept their content')
  const other = runIn(await s.workspace(), script('deps v2', 'r3', 'test ! -e .deps/stamp && echo fresh'))
  t.match(other.out, /nothing kept for key deps v2 yet\n[\s\S]*fresh/, 'another key starts empty')
  t.same((await readdir(join(s.root, 'cache'))).sort(), [keyDir('deps v1'), keyDir('deps v2')].sort())
  t.equal(await readFile(join(s.root, 'cache', keyDir('deps v1'), '.key'), 'utf8'), 'deps v1\n')
})

t.test(`Checks (sh) that a volume keeps the ${KEPT_CACHE_KEYS} most recently used keys`, async (t) => {
  const s = await sandbox(t)
  const keys = ['k1', 'k2', 'k3', 'k4']
  for (const [i, key] of keys.entries()) {
    t.equal(runIn(await s.workspace(), script(key, `r${i}`, 'true')).code, 0)
    // one second apart, oldest first, whatever the file system's time resolution
    const at = new Date(Date.now() - (10 - i) * 1000)
    await utimes(join(s.root, 'cache', keyDir(key)), at, at)
  }
  t.equal(runIn(await s.workspace(), script('k2', 'r9', 'true')).code, 0)
  t.same((await readdir(join(s.root, 'cache'))).sort(), ['k2', 'k3', 'k4'].map(keyDir).sort(), 'k1, least recently used, is gone; k2 was used again')
})

t.test('Checks (sh) that a path present in the checkout is left alone, and a missing volume only warns', async (t) => {
  const s = await sandbox(t)
  const ws = await s.workspace()
  await writeFile(join(ws, '.deps'), 'committed\n')
  const r = runIn(ws, script('k', 'r1', 'cat .deps; test -L sub/dir && echo linked'))
  t.equal(r.code, 0, r.err)
  t.match(r.err, 'cache path .deps is in the checkout already: it is not linked')
  t.match(r.out, /committed\nlinked\n/)
  const lonely = await mkdtemp(join(tmpdir(), 'regatta-novol-'))
  t.teardown(() => rm(lonely, { recursive: true, force: true }))
  await mkdir(join(lonely, 'workspace'))
  const missing = runIn(join(lonely, 'workspace'), script('k', 'r1', 'echo steps ran'))
  t.equal(missing.code, 0)
  t.match(missing.err, `the cache volume ${BASE}.0 is not at ${CACHE_VOLUME_PATH}: the job runs without its cache`)
  t.match(missing.out, /steps ran/)
})

t.test('Checks (sh) that keys and paths with quotes and spaces are safe', async (t) => {
  const s = await sandbox(t)
  const odd = stepsScript([{ name: 'go', run: "echo x > \"it's here/f\"" }], [], cacheVolumeScript({ volumeId: `${BASE}.0`, key: `it's "a" $(key)`, paths: ["it's here"], runId: 'r1', jobId: 'ci/b' }))
  t.equal(runIn(await s.workspace(), odd).code, 0)
  const again = runIn(await s.workspace(), stepsScript([{ name: 'go', run: "cat \"it's here/f\"" }], [], cacheVolumeScript({ volumeId: `${BASE}.0`, key: `it's "a" $(key)`, paths: ["it's here"], runId: 'r2', jobId: 'ci/b' })))
  t.equal(again.code, 0, again.err)
  t.match(again.out, `key it's "a" $(key) warm, last used by run r1 (ci/b)\n`)
  t.match(again.out, /\nx\n/)
})

// ---- the task ------------------------------------------------------------------------------

const trigger: Trigger = {
  kind: 'push', repo: { fullName: 'octo/app', cloneUrl: 'file:///tmp/r', defaultBranch: 'main', private: false },
  ref: 'refs/heads/main', sha: 'a'.repeat(40), branch: 'main', actor: 'me',
}
const plannedJob = (volumeSize?: number): PlannedJob => ({
  id: 'ci/build', pipeline: 'ci', job: 'build', file: '.regatta/ci.yml', matrix: {}, context: 'regatta/ci/build', image: 'busybox',
  steps: [{ name: 'b', run: 'true' }], env: {}, secretEnv: {}, needs: [], resources: { cpus: 1, mem: 256 }, timeoutMs: 60_000, retries: 0,
  if: 'success()', services: [], artifacts: [], secrets: [], pool: 'default', revocable: false, priority: 50,
  cache: { key: 'deps', paths: ['.deps'], ...(volumeSize ? { volume: { size: volumeSize } } : {}) },
})

t.test('Checks that a task with its cache volume has the links and no object-store cache; without one, the object store and a warning', async (t) => {
  const vol = { name: 'disk', scalar: 1024, disk: { persistence: { id: `${BASE}.0` }, containerPath: CACHE_VOLUME_PATH } }
  const inVolume = taskSpecFor({ runId: 'r1', job: plannedJob(1024), taskId: 't1', attempt: 1, trigger, resources: [{ name: 'cpus', scalar: 1 }, vol], cacheVolume: `${BASE}.0` })
  validate(TaskSpec, inVolume, 'task')
  t.equal(inVolume.cache, undefined, 'the agent neither restores nor saves it')
  t.match(inVolume.container.command[2], `cache volume ${BASE}.0`)
  t.ok(inVolume.resources.some((r) => r.disk?.persistence.id === `${BASE}.0`))
  const fallback = taskSpecFor({ runId: 'r1', job: plannedJob(1024), taskId: 't1', attempt: 1, trigger, resources: [{ name: 'cpus', scalar: 1 }] })
  t.same(fallback.cache, { key: 'deps', paths: ['.deps'] })
  t.match(fallback.container.command[2], 'no cache volume could be had on this agent')
  const classic = taskSpecFor({ runId: 'r1', job: plannedJob(), taskId: 't1', attempt: 1, trigger, resources: [{ name: 'cpus', scalar: 1 }] })
  t.same(classic.cache, { key: 'deps', paths: ['.deps'] }, 'a cache without volume is the object store\'s, as before')
  t.notMatch(classic.container.command[2], /cache volume|::regatta warning/)
})

// ---- pipeline files ------------------------------------------------------------------------

const pipeline = (cache: string): string => `on: push\njobs:\n  build:\n    image: busybox\n    cache: ${cache}\n    steps:\n      - run: make\n`
const planned = (cache: string): PlannedJob => {
  const r = planRun([{ path: '.regatta/ci.yml', text: pipeline(cache) }], trigger, { runId: 'r1' })
  if (r.errors.length > 0) throw new Error(r.errors.map(formatPipelineError).join('\n'))
  return r.pipelines[0]!.jobs[0]!
}
const errors = (cache: string): string[] => {
  const r = parsePipeline('.regatta/ci.yml', pipeline(cache))
  return r.ok ? [] : r.errors.map(formatPipelineError)
}

t.test('Checks that cache.volume is read: true takes 1024 MiB, a size is kept, false is the object store', async (t) => {
  t.same(planned('{ key: deps, paths: [.deps], volume: true }').cache, { key: 'deps', paths: ['.deps'], volume: { size: 1024 } })
  t.same(planned('{ key: deps, paths: [.deps], volume: { size: 300 } }').cache, { key: 'deps', paths: ['.deps'], volume: { size: 300 } })
  t.same(planned('{ key: deps, paths: [.deps], volume: false }').cache, { key: 'deps', paths: ['.deps'] })
  t.same(planned('{ key: deps, paths: [.deps] }').cache, { key: 'deps', paths: ['.deps'] })
})

/** Where `needle` is in the pipeline's cache line (line 5), as line:column. */
const at = (cache: string, needle: string): string => `5:${'    cache: '.length + cache.indexOf(needle) + 1}`

t.test('Checks that bad volume caches are refused with file:line:column', async (t) => {
  for (const [path, problem] of [
    ['../up', 'leaves the checkout (a ".." segment)'],
    ['/root/.npm', 'is absolute: cache paths are relative to the checkout'],
    ['./', 'is the checkout itself'],
  ]) {
    const cache = `{ key: deps, paths: [.ok, ${path}], volume: true }`
    t.same(errors(cache), [`.regatta/ci.yml:${at(cache, path)}: jobs.build.cache.paths[1]: cache path "${path}" ${problem}`])
  }
  t.match(errors('{ key: deps, paths: [.deps], volume: { size: 0 } }').join('\n'), /^\.regatta\/ci\.yml:5:\d+: jobs\.build\.cache\.volume/)
  t.match(errors('{ key: deps, paths: [.deps], volume: { sise: 10 } }').join('\n'), /jobs\.build\.cache\.volume.*sise/)
  t.same(errors('{ key: deps, paths: [../up] }'), [], 'an object-store cache\'s paths are the agent\'s to check, as before')
})
