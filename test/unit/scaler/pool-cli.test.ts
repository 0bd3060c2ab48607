// `regatta pool ls|set` without a server: flag checks (one-line reasons naming the flag), the
// policy a `pool set` writes over an existing one, the table, and the --wait progress.
import t from 'tap'
import type { AgentView, ClusterState } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { formatPools, parsePoolSet, policyFromFlags, poolNow, progressBar, progressLine, reached } from '../../../services/cli/src/pool.js'
import { checkPoolPolicy } from '../../../shared/protocol/pool.js'
import type { TapTest } from '../../helpers/tap-types.js'

/** `fn` throws INVALID_CONFIG (exit 2) with a one-line message matching `message`. */
function invalid(t: TapTest, fn: () => unknown, message: RegExp): void {
  try {
    fn()
    t.fail(`expected INVALID_CONFIG matching ${message}`)
  } catch (err) {
    t.ok(err instanceof RegattaError && err.code === 'INVALID_CONFIG', `INVALID_CONFIG (${(err as Error).message})`)
    t.match((err as Error).message, message)
    t.notOk((err as Error).message.includes('\n'), 'one line')
  }
}

t.test('Checks that pool set refuses bad flags with a one-line reason naming the flag', async (t) => {
  invalid(t, () => parsePoolSet('ci', { min: '3', max: '1' }), /--min 3 is above --max 1/)
  invalid(t, () => parsePoolSet('ci', { max: '-1' }), /--max: "-1" is not a whole number/)
  invalid(t, () => parsePoolSet('ci', { max: '2.5' }), /--max: "2.5"/)
  invalid(t, () => parsePoolSet('ci', { min: 'two' }), /--min: "two"/)
  invalid(t, () => parsePoolSet('ci', { max: '100000' }), /--max: "100000" is not a whole number from 0 to 10000/)
  invalid(t, () => parsePoolSet('ci', { idle: 'soon' }), /--idle: "soon" is not a duration/)
  invalid(t, () => parsePoolSet('ci', { provider: 'aws' }), /--provider: "aws" is not a provider \(one of process, docker\)/)
  invalid(t, () => parsePoolSet('a b', { max: '1' }), /pool name: "a b"/)
  invalid(t, () => parsePoolSet('-x', { max: '1' }), /pool name: "-x"/)
  t.same(parsePoolSet('ci.main', { min: '0', max: '20', idle: '90s', provider: 'docker' }), { min: 0, max: 20, idleMs: 90_000, provider: 'docker' })
})

t.test('Checks that a new pool needs --max and gets defaults, and that changes apply over the existing policy', async (t) => {
  invalid(t, () => policyFromFlags('ci', { min: '1' }, undefined), /--max: pool ci has no policy yet/)
  const fresh = policyFromFlags('ci', { max: '4' }, undefined)
  t.same(fresh, { pool: 'ci', min: 0, max: 4, idleMs: 300_000, provider: 'process' })
  t.same(policyFromFlags('ci', { min: '2' }, fresh), { ...fresh, min: 2 })
  t.same(policyFromFlags('ci', { idle: '1m', provider: 'docker' }, fresh), { ...fresh, idleMs: 60_000, provider: 'docker' })
  invalid(t, () => policyFromFlags('ci', { min: '5' }, fresh), /--min 5 is above the pool's max 4/)
  invalid(t, () => policyFromFlags('ci', { max: '1' }, { ...fresh, min: 2 }), /--max 1 is below the pool's min 2/)
  t.throws(() => checkPoolPolicy({ ...fresh, min: 9 }), /pool ci: min \(9\) is above max \(4\)/)
})

const agent = (id: string, pool: string, state: AgentView['state']): AgentView => ({
  id, hostname: 'h', pool, attributes: {}, containerizer: 'process', state, registeredAt: 0, lastHeartbeatAt: 0,
  resources: [], total: {}, used: {}, offered: {}, tasks: 0,
})

const state = (agents: AgentView[], demand: ClusterState['demand'] = []): ClusterState => ({
  masterId: 'm1', leader: { id: 'm1', epoch: 1 }, startedAt: 0, now: 0, total: {}, used: {}, offered: {},
  agents, frameworks: [], tasks: [], offers: [], roles: [], demand,
})

t.test('Checks that pool ls shows each policy with its agents now and its demand', async (t) => {
  const s = state(
    [agent('a1', 'ci', 'active'), agent('a2', 'ci', 'draining'), agent('a3', 'ci', 'unreachable'), agent('b1', 'other', 'active')],
    [{ pool: 'ci', requested: { cpus: 3 }, unmet: { cpus: 1 }, jobs: 3, unmetJobs: 1 }],
  )
  t.same(poolNow(s, 'ci'), { serving: 1, draining: 1, unreachable: 1, jobs: 3, unmetJobs: 1 })
  const policies = [
    { pool: 'ci', min: 0, max: 20, idleMs: 300_000, provider: 'process' },
    { pool: 'gpu', min: 1, max: 2, idleMs: 90_000, provider: 'docker' },
  ]
  t.equal(formatPools(policies, s), [
    'POOL  MIN  MAX  IDLE   PROVIDER  AGENTS           DEMAND',
    'ci    0    20   5m     process   1 (+1 draining)  3 tasks, 1 unmet',
    'gpu   1    2    1m30s  docker    0                -',
  ].join('\n'))
  t.match(formatPools(policies, undefined), /ci\s+0\s+20\s+5m\s+process\s+\?\s+\?/, 'no master: agents and demand unknown')
  t.match(formatPools([], s), /No pool policies/)
})

t.test('Checks that --wait counts the pool as reached within min and max, and draws its progress', async (t) => {
  const policy = { pool: 'ci', min: 2, max: 3, idleMs: 1000, provider: 'process' }
  const now = (serving: number, draining = 0, unmetJobs = 0) => ({ serving, draining, unreachable: 0, jobs: unmetJobs, unmetJobs })
  t.notOk(reached(policy, now(1)))
  t.ok(reached(policy, now(2)))
  t.ok(reached(policy, now(3)))
  t.notOk(reached(policy, now(3, 1)), 'a draining agent still counts until it is gone')
  t.equal(progressBar(0, 4, 8), '[--------]')
  t.equal(progressBar(2, 4, 8), '[####----]')
  t.equal(progressBar(9, 4, 8), '[########]')
  t.equal(progressBar(0, 0, 4), '[####]', 'nothing to wait for is done')
  t.equal(progressLine(policy, now(1, 0, 2)), 'pool ci [############------------] 1/2 agents, 2 tasks waiting')
  t.equal(progressLine({ ...policy, min: 0, max: 1 }, now(2, 2)), 'pool ci [######------------------] 4 agents, down to 1 (2 draining)')
})
