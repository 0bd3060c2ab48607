// Placing waiting jobs on offers: role, pool, fit, priority, revocable capacity.
import t from 'tap'
import { placeJobs, type WaitingJob } from '../../../services/ci/src/placement.js'
import type { Offer, Resource } from '../../../shared/protocol/index.js'

const offer = (id: string, role: string, resources: Resource[], pool = 'p'): Offer => ({ id, frameworkId: 'f', agentId: `a-${id}`, hostname: 'h', pool, attributes: {}, role, resources })
const job = (key: string, o: Partial<WaitingJob> = {}): WaitingJob => ({ key, role: 'ci/push', pool: 'p', cpus: 1, mem: 512, revocable: false, priority: 0, since: 0, ...o })

t.test('Checks that jobs take offers of their role only, as many as fit', async (t) => {
  const { placements, unused } = placeJobs(
    [offer('o1', 'ci/push', [{ name: 'cpus', scalar: 2 }, { name: 'mem', scalar: 4096 }]), offer('o2', 'ci/pull_request', [{ name: 'cpus', scalar: 8 }, { name: 'mem', scalar: 8192 }])],
    [job('a'), job('b'), job('c')],
  )
  t.equal(placements.length, 1)
  t.same(placements[0]!.jobs.map((j) => j.job.key), ['a', 'b'], 'two fit in two cpus; the third waits')
  t.same(unused.map((o) => o.id), ['o2'])
})

t.test('Checks that higher priority and then older jobs go first', async (t) => {
  const { placements } = placeJobs([offer('o1', 'ci/push', [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 4096 }])], [
    job('old', { since: 1 }), job('new', { since: 2 }), job('urgent', { since: 3, priority: 5 }),
  ])
  t.same(placements[0]!.jobs.map((j) => j.job.key), ['urgent'])
  const second = placeJobs([offer('o1', 'ci/push', [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 4096 }])], [job('new', { since: 2 }), job('old', { since: 1 })])
  t.same(second.placements[0]!.jobs.map((j) => j.job.key), ['old'])
})

t.test('Checks that revocable jobs use revocable capacity when there is enough, and only they do', async (t) => {
  const o = offer('o1', 'ci/push', [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 1024 }, { name: 'cpus', scalar: 2, revocable: true }, { name: 'mem', scalar: 2048, revocable: true }])
  const { placements } = placeJobs([o], [job('plain'), job('pr', { revocable: true }), job('plain2')])
  const by = new Map(placements[0]!.jobs.map((j) => [j.job.key, j.resources]))
  t.ok(by.get('pr')!.every((r) => r.revocable), 'the revocable job runs on revocable capacity')
  t.ok(by.get('plain')!.every((r) => !r.revocable), 'an ordinary job never does')
  t.notOk(by.has('plain2'), 'ordinary capacity is used up by the first ordinary job')
})

t.test('Checks that a job takes offers from agents of its pool only', async (t) => {
  const big = [{ name: 'cpus', scalar: 8 }, { name: 'mem', scalar: 8192 }]
  const { placements, unused } = placeJobs(
    [offer('o1', 'ci/push', big, 'default'), offer('o2', 'ci/push', big, 'gpu')],
    [job('a', { pool: 'gpu' }), job('b', { pool: 'arm' })],
  )
  t.same(placements.map((p) => [p.offer.id, p.jobs.map((j) => j.job.key)]), [['o2', ['a']]], 'the gpu job on the gpu agent; the arm job nowhere')
  t.same(unused.map((o) => o.id), ['o1'])
})
