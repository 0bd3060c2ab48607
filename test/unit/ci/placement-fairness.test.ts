// Fair share between repositories in placeJobs: a per-repository DRF over what their jobs hold,
// weights, and priority then age between equal shares.
import t from 'tap'
import { parseRepoWeights, placeJobs, usageByRepo, type WaitingJob } from '../../../services/ci/src/placement.js'
import type { Offer, Resource } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { ciEnv } from '../../../services/ci/src/main.js'

const offer = (id: string, resources: Resource[]): Offer => ({ id, frameworkId: 'f', agentId: `a-${id}`, hostname: 'h', pool: 'p', attributes: {}, role: 'ci/push', resources })
const room = (cpus: number, mem = 65536): Resource[] => [{ name: 'cpus', scalar: cpus }, { name: 'mem', scalar: mem }]
const job = (key: string, repo: string | undefined, o: Partial<WaitingJob> = {}): WaitingJob => ({
  key, role: 'ci/push', pool: 'p', cpus: 1, mem: 512, revocable: false, priority: 0, since: 0, ...(repo ? { repo } : {}), ...o,
})
const flood = (repo: string, n: number, since = 0): WaitingJob[] => Array.from({ length: n }, (_, i) => job(`${repo}-${String(i).padStart(3, '0')}`, repo, { since: since + i }))
const placed = (r: ReturnType<typeof placeJobs>): string[] => r.placements.flatMap((p) => p.jobs.map((j) => j.job.key))

t.test('Checks that a lone job of one repository is placed beside a flood of 200 older jobs of another', async (t) => {
  const waiting = [...flood('a/flood', 200), job('b-lone', 'b/lone', { since: 10_000 })]
  const r = placeJobs([offer('o1', room(2))], waiting)
  const keys = placed(r)
  t.equal(keys.length, 2, 'room for two')
  t.ok(keys.includes('b-lone'), `the lone job is one of them (${keys.join(', ')})`)
  t.ok(keys.includes('a/flood-000'), 'the other is the flood\'s oldest')
  // without repositories the old order holds: the flood's two oldest
  const plain = placeJobs([offer('o1', room(2))], waiting.map(({ repo: _r, ...j }) => j))
  t.same(placed(plain), ['a/flood-000', 'a/flood-001'], 'jobs with no repository keep priority then FIFO')
})

t.test('Checks that a repository already running jobs waits behind one running none', async (t) => {
  for (const n of [1, 2, 5]) {
    const running = usageByRepo(Array.from({ length: n }, () => ({ repo: 'a/flood', cpus: 1, mem: 512 })))
    const r = placeJobs([offer('o1', room(1))], [...flood('a/flood', 200), job('b-lone', 'b/lone', { since: 10_000 })], undefined, { running })
    t.same(placed(r), ['b-lone'], `with ${n} of a's running, b's only job takes the only room`)
  }
  // the other way round: b runs more, so a's oldest goes first
  const running = usageByRepo([{ repo: 'b/lone', cpus: 2, mem: 512 }])
  const r = placeJobs([offer('o1', room(1))], [...flood('a/flood', 3), job('b-next', 'b/lone', { since: -5 })], undefined, { running })
  t.same(placed(r), ['a/flood-000'])
})

t.test('Checks that repositories alternate as each placement raises their share', async (t) => {
  const r = placeJobs([offer('o1', room(6))], [...flood('a/r', 10), ...flood('b/r', 10, 100), ...flood('c/r', 10, 200)])
  const keys = placed(r)
  t.equal(keys.length, 6)
  for (const repo of ['a/r', 'b/r', 'c/r']) t.equal(keys.filter((k) => k.startsWith(repo)).length, 2, `${repo} gets two of six`)
  t.same(keys.filter((k) => k.startsWith('a/r')), ['a/r-000', 'a/r-001'], 'oldest first within a repository')
})

t.test('Checks that the order follows the dominant share, not one resource', async (t) => {
  // a holds 1 cpu and 6000 MiB (mem-dominant), b holds 2 cpus and 512 MiB (cpu-dominant):
  // totals 7 cpus and 14704 MiB, so a's share is 0.41 and b's 0.29: b goes first though it holds more cpus
  const running = usageByRepo([{ repo: 'a/mem', cpus: 1, mem: 6000 }, { repo: 'b/cpu', cpus: 2, mem: 512 }])
  const r = placeJobs([offer('o1', room(4, 8192))], [job('a1', 'a/mem', { since: 1 }), job('b1', 'b/cpu', { since: 2 })].map((j) => ({ ...j, cpus: 4 })), undefined, { running })
  t.same(placed(r), ['b1'])
})

t.test('Checks that between equal shares priority goes first, then the older job', async (t) => {
  const one = [offer('o1', room(1))]
  t.same(placed(placeJobs(one, [job('a-old', 'a/r', { since: 1 }), job('b-urgent', 'b/r', { since: 5, priority: 3 })])), ['b-urgent'], 'higher priority first')
  t.same(placed(placeJobs(one, [job('b-new', 'b/r', { since: 5 }), job('a-old', 'a/r', { since: 1 })])), ['a-old'], 'then the older')
  t.same(placed(placeJobs(one, [job('a-old', 'a/r', { since: 1 }), job('a-urgent', 'a/r', { since: 9, priority: 1 })])), ['a-urgent'], 'within a repository too')
  // a higher share is not overtaken by priority: fairness between repositories comes first
  const running = usageByRepo([{ repo: 'a/r', cpus: 1, mem: 512 }])
  t.same(placed(placeJobs(one, [job('a-urgent', 'a/r', { priority: 9 }), job('b-low', 'b/r', { since: 9 })], undefined, { running })), ['b-low'])
})

t.test('Checks that weights divide the share: weight 2 gets twice the jobs', async (t) => {
  const r = placeJobs([offer('o1', room(6))], [...flood('a/heavy', 10), ...flood('b/light', 10, 100)], undefined, { weights: { 'a/heavy': 2 } })
  const keys = placed(r)
  t.equal(keys.filter((k) => k.startsWith('a/heavy')).length, 4)
  t.equal(keys.filter((k) => k.startsWith('b/light')).length, 2)
  const bad = placeJobs([offer('o1', room(2))], [...flood('a/r', 3), ...flood('b/r', 3, 100)], undefined, { weights: { 'a/r': -1 } })
  t.equal(placed(bad).filter((k) => k.startsWith('a/r')).length, 1, 'a non-positive weight counts as 1')
})

t.test('Checks that a job that fits nowhere does not hold its repository\'s turn', async (t) => {
  const r = placeJobs([offer('o1', room(2))], [job('a-huge', 'a/r', { cpus: 64 }), job('a-small', 'a/r', { since: 1 }), job('b', 'b/r', { since: 2 })])
  t.same(placed(r).sort(), ['a-small', 'b'])
})

t.test('Checks that REGATTA_REPO_WEIGHTS entries parse, and a bad one is named', async (t) => {
  t.same(parseRepoWeights(' octo/app=2, octo/lib=0.5 ,'), { 'octo/app': 2, 'octo/lib': 0.5 })
  t.same(parseRepoWeights(''), {})
  for (const bad of ['octo/app', 'octo/app=0', 'octo/app=-1', 'app=2', 'octo/app=x']) {
    let err: unknown
    try { parseRepoWeights(bad, '--repo-weights') } catch (e) { err = e }
    t.ok(err instanceof RegattaError && err.code === 'INVALID_CONFIG', `${bad}: INVALID_CONFIG`)
    t.match((err as Error).message, `--repo-weights: "${bad}" is not owner/repo=`, bad)
  }
  t.same(ciEnv({ REGATTA_REPO_WEIGHTS: 'octo/app=3' }).repoWeights, { 'octo/app': 3 }, 'the CI service reads them from its environment')
  t.equal(ciEnv({}).repoWeights, undefined)
  t.throws(() => ciEnv({ REGATTA_REPO_WEIGHTS: 'app=3' }), /^REGATTA_REPO_WEIGHTS: "app=3"/)
})
