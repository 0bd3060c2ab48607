// A job's cache in a persistent volume, end to end: a real master, one agent (process
// containerizer), the CI service and a local git repository. The first push's job reserves
// disk, makes a volume and writes into its cache; the second push's job gets the volume back
// and finds what the first wrote; two jobs of the pipeline running at once each get their own
// volume; the master's state shows the volumes reserved for the push role. A volume id taken
// behind the service's back (another framework's task holds it) makes the master refuse the
// CREATE: the job runs at once without a volume, and the next one takes the next slot. Then
// the same with Docker, where the volume is a bind mount at /cache and the checkout /workspace.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { shellTask } from '../../helpers/cluster.js'
import { ensureBusyboxImage } from '../../helpers/docker.js'
import { CACHE_VOLUME_PATH, cacheVolumeBase, cacheVolumeId, cacheVolumeResource, keyDir, pathDir } from '../../../services/ci/src/cache-volumes.js'

// a directory both jobs of a matrix touch, to run at the same time (the process containerizer runs on this host)
const BARRIER = `/tmp/regatta-barrier-${process.pid}-${randomBytes(3).toString('hex')}`

const BUILD = `
name: warm
on: { push: { branches: [main] } }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    cache: { key: deps, paths: [.deps], volume: { size: 256 } }
    steps:
      - name: use the cache
        run: |
          if [ -f .deps/stamp ]; then echo "found $(cat .deps/stamp) in the cache"; else echo "cold cache"; fi
          mkdir -p .deps && echo "$REGATTA_RUN_ID" > .deps/stamp
`

const TOGETHER = `
name: warm
on: { push: { branches: [main] } }
jobs:
  build:
    image: regatta/busybox:latest
    matrix: { shard: [1, 2] }
    resources: { cpus: 0.5, mem: 128 }
    cache: { key: deps, paths: [.deps], volume: { size: 256 } }
    steps:
      - name: wait for each other
        run: |
          mkdir -p ${BARRIER} && touch ${BARRIER}/\${{ matrix.shard }}
          i=0; while [ ! -e ${BARRIER}/1 ] || [ ! -e ${BARRIER}/2 ]; do i=$((i+1)); [ $i -lt 400 ] || exit 9; sleep 0.05; done
          echo "volume $(cd "$REGATTA_CACHE_VOLUME" && pwd -P)"
`

let f: CiFixture
t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', agentResources: 'cpus:4;mem:4096;disk:10000' })
})
t.teardown(async () => {
  await f?.stop()
  await rm(BARRIER, { recursive: true, force: true })
})

const base = cacheVolumeBase('octo/app', 'warm')
const volumesOfAgent = () => f.cluster.masters[0]!.state().agents[0]!.resources.filter((r) => r.disk)

t.test('Checks that the next job of a pipeline finds in its cache volume what the previous one wrote, and jobs at once get a volume each', async (t) => {
  // 1. the first push: the volume is made, the cache starts empty
  const sha1 = await f.repo.commit({ '.regatta/warm.yml': BUILD, 'README': 'one\n' })
  t.equal((await f.push(sha1)).status, 202)
  const first = await f.waitForRun({ sha: sha1 }, undefined, 30_000)
  t.equal(first.state, 'succeeded', JSON.stringify(first.jobs))
  const log1 = await f.jobLog(first.runId, 'warm/build')
  t.match(log1, `::regatta cache volume ${cacheVolumeId(base, 0)}: nothing kept for key deps yet`)
  t.match(log1, 'cold cache')
  t.same(volumesOfAgent(), [{ name: 'disk', scalar: 256, role: 'ci/push', disk: { persistence: { id: cacheVolumeId(base, 0) }, containerPath: CACHE_VOLUME_PATH } }],
    'the master\'s state shows the volume, made of 256 MiB reserved for ci/push')

  // 2. the next push: the same volume comes back, with what the first job wrote
  const sha2 = await f.repo.commit({ 'README': 'two\n' })
  t.equal((await f.push(sha2)).status, 202)
  const second = await f.waitForRun({ sha: sha2 }, undefined, 30_000)
  t.equal(second.state, 'succeeded', JSON.stringify(second.jobs))
  const log2 = await f.jobLog(second.runId, 'warm/build')
  t.match(log2, `::regatta cache volume ${cacheVolumeId(base, 0)}: key deps warm, last used by run ${first.runId} (warm/build)`)
  t.match(log2, `found ${first.runId} in the cache`, 'the second job read what the first wrote')
  t.equal(volumesOfAgent().length, 1, 'no second volume was made')

  // 3. two jobs of the pipeline at once: a volume serves one task at a time, so the second gets a volume of its own
  const sha3 = await f.repo.commit({ '.regatta/warm.yml': TOGETHER })
  t.equal((await f.push(sha3)).status, 202)
  const third = await f.waitForRun({ sha: sha3 }, undefined, 30_000)
  t.equal(third.state, 'succeeded', `both ran at once: ${JSON.stringify(third.jobs)}`)
  const dirs: string[] = []
  for (const id of ['warm/build (shard=1)', 'warm/build (shard=2)']) {
    const m = /^volume (.+)$/m.exec(await f.jobLog(third.runId, id))
    t.ok(m, `${id} says where its volume is`)
    if (m) dirs.push(m[1]!)
  }
  t.same(dirs.map((d) => d.split('/').at(-1)).sort(), [cacheVolumeId(base, 0), cacheVolumeId(base, 1)], 'each job had its own volume: slot 0 and a new slot 1')
  const held = dirs.find((d) => d.endsWith(`.${0}`))!
  t.equal(await readFile(join(held, keyDir('deps'), pathDir('.deps'), 'stamp'), 'utf8'), `${second.runId}\n`, 'the volume on the agent holds what the second run wrote')
  t.same(volumesOfAgent().map((r) => r.disk!.persistence.id).sort(), [cacheVolumeId(base, 0), cacheVolumeId(base, 1)], 'the state shows both volumes')
})

t.test('Checks that a volume id the service did not know to be in use gets the job launched without a volume, and the next job the next slot', async (t) => {
  const blocked = cacheVolumeBase('octo/app', 'blocked')
  // another framework of the role makes the pipeline's slot 0 and holds it with a long task
  const squatter = await f.cluster.framework({ name: 'squatter', roles: ['ci/push'] })
  const offer = await squatter.nextOffer((o) => o.role === 'ci/push')
  const volume = cacheVolumeResource(cacheVolumeId(blocked, 0), 64, 'ci/push')
  await squatter.scheduler.operate([offer.id], [
    { type: 'RESERVE', resources: [{ name: 'disk', scalar: 64, role: 'ci/push' }] },
    { type: 'CREATE', volumes: [volume] },
    { type: 'LAUNCH', tasks: [shellTask('squat', 'sleep 60', { resources: [{ name: 'cpus', scalar: 0.1 }, { name: 'mem', scalar: 32 }, volume] })] },
  ], { refuseSeconds: 0 })
  await squatter.waitFor('the squatting task to run', () => squatter.statesOf('squat').includes('RUNNING'))
  // it takes no more offers (those it holds go back), so the CI service gets the agent
  await squatter.scheduler.suppress()
  await new Promise((r) => setTimeout(r, 300))
  if (squatter.offers.length > 0) await squatter.scheduler.decline(squatter.offers.map((o) => o.id))
  t.teardown(() => squatter.scheduler.teardown())

  const pipeline = BUILD.replace('name: warm', 'name: blocked')
  const sha1 = await f.repo.commit({ '.regatta/warm.yml': pipeline, 'README': 'blocked one\n' })
  t.equal((await f.push(sha1)).status, 202)
  const first = await f.waitForRun({ sha: sha1 }, undefined, 30_000)
  t.equal(first.state, 'succeeded', `the job ran though its CREATE was refused: ${JSON.stringify(first.jobs)}`)
  t.equal(first.jobs[0]!.attempt, 1, 'on its first attempt')
  const log1 = await f.jobLog(first.runId, 'blocked/build')
  t.match(log1, 'no cache volume could be had on this agent', 'its log says the cache came from the object store')
  t.notMatch(log1, /::regatta cache volume/)

  const sha2 = await f.repo.commit({ 'README': 'blocked two\n' })
  t.equal((await f.push(sha2)).status, 202)
  const second = await f.waitForRun({ sha: sha2 }, undefined, 30_000)
  t.equal(second.state, 'succeeded', JSON.stringify(second.jobs))
  t.match(await f.jobLog(second.runId, 'blocked/build'), `::regatta cache volume ${cacheVolumeId(blocked, 1)}: nothing kept for key deps yet`,
    'the service learned slot 0 is taken and made slot 1')
  t.same(squatter.statesOf('squat').filter((s) => s !== 'RUNNING' && s !== 'STARTING' && s !== 'STAGING'), [], 'the task holding slot 0 was never disturbed')
})

t.test('Checks that with Docker the volume is mounted at /cache and the next job finds what the first wrote', async (t) => {
  await ensureBusyboxImage()
  const d = await startCiFixture({ containerizer: 'docker', agentResources: 'cpus:4;mem:4096;disk:10000' })
  t.teardown(() => d.stop())
  const runs = []
  for (const n of [1, 2]) {
    const sha = await d.repo.commit({ '.regatta/warm.yml': BUILD.replace('then echo', 'then test -L .deps && test "$REGATTA_CACHE_VOLUME" = /cache && echo'), 'README': `${n}\n` })
    t.equal((await d.push(sha)).status, 202)
    const run = await d.waitForRun({ sha }, undefined, 30_000)
    t.equal(run.state, 'succeeded', JSON.stringify(run.jobs))
    runs.push(run)
  }
  t.match(await d.jobLog(runs[0]!.runId, 'warm/build'), 'cold cache')
  const log = await d.jobLog(runs[1]!.runId, 'warm/build')
  t.match(log, `key deps warm, last used by run ${runs[0]!.runId} (warm/build)`)
  t.match(log, `found ${runs[0]!.runId} in the cache`, 'the second container read what the first wrote, through the link into /cache')
})
