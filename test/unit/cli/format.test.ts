// The CLI's human output from a ClusterState.
import t from 'tap'
import { formatAgents, formatStatus, humanDuration, humanMem, table } from '../../../services/cli/src/format.js'
import type { AgentView, ClusterState } from '../../../shared/protocol/index.js'

const NOW = 1_700_000_000_000

function agent(over: Partial<AgentView> & { id: string }): AgentView {
  return {
    hostname: `${over.id}.local`, pool: 'ci', attributes: {}, containerizer: 'docker', state: 'active',
    registeredAt: NOW - 3_600_000, lastHeartbeatAt: NOW - 2_000, resources: [],
    total: { cpus: 4, mem: 8192, disk: 40960 }, used: {}, offered: {}, tasks: 0,
    ...over,
  }
}

function state(over: Partial<ClusterState> = {}): ClusterState {
  return {
    masterId: 'master-a',
    leader: { id: 'master-a', epoch: 12 },
    startedAt: NOW - 7_200_000,
    now: NOW,
    total: { cpus: 8, mem: 16384, disk: 81920 },
    used: { cpus: 1.5, mem: 3072, disk: 512 },
    offered: {},
    agents: [
      agent({ id: 'agent-1', hostname: 'build-1', used: { cpus: 1.5, mem: 3072 }, tasks: 2, lastHeartbeatAt: NOW - 4_000 }),
      agent({ id: 'agent-22', hostname: 'build-22', pool: 'gpu', state: 'draining', idleSince: NOW - 125_000, lastHeartbeatAt: NOW - 61_000 }),
    ],
    frameworks: [
      { id: 'fw-ci', name: 'regatta-ci', roles: ['ci/main'], active: true, revocable: false, registeredAt: NOW, tasks: 2, offers: 1, used: {} },
      { id: 'fw-x', name: 'batch', roles: ['batch'], active: false, revocable: false, registeredAt: NOW, tasks: 0, offers: 0, used: {} },
    ],
    tasks: [
      { taskId: 't1', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/main', state: 'RUNNING', resources: {}, updatedAt: NOW },
      { taskId: 't2', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/main', state: 'RUNNING', resources: {}, updatedAt: NOW },
      { taskId: 't3', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/main', state: 'FAILED', resources: {}, updatedAt: NOW },
      { taskId: 't4', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/main', state: 'STAGING', resources: {}, updatedAt: NOW },
    ],
    offers: [{ id: 'o1', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/main', resources: {}, createdAt: NOW }],
    roles: [],
    demand: [],
    ...over,
  }
}

t.test('Checks that table pads columns to the widest cell with no trailing spaces', async (t) => {
  t.equal(table(['ID', 'NAME', 'N'], [['a', 'longer name', 1], ['bbbb', 'x', 22]]), [
    'ID    NAME         N',
    'a     longer name  1',
    'bbbb  x            22',
  ].join('\n'))
  t.equal(table(['A', 'B'], []), 'A  B', 'headers alone when there are no rows')
  t.equal(table(['A', 'B', 'C'], [['x']]), 'A  B  C\nx', 'missing cells are empty, and the line is trimmed')
})

t.test('Checks that humanDuration reads like kubectl ages', async (t) => {
  t.equal(humanDuration(0), '0s')
  t.equal(humanDuration(999), '0s')
  t.equal(humanDuration(-5_000), '0s', 'clock skew does not print a negative age')
  t.equal(humanDuration(45_000), '45s')
  t.equal(humanDuration(60_000), '1m')
  t.equal(humanDuration(192_000), '3m12s')
  t.equal(humanDuration(3_600_000), '1h')
  t.equal(humanDuration(2 * 3_600_000 + 5 * 60_000 + 59_000), '2h5m')
  t.equal(humanDuration(3 * 86_400_000 + 4 * 3_600_000 + 1), '3d4h')
  t.equal(humanDuration(86_400_000), '1d')
})

t.test('Checks that humanMem picks MiB, GiB or TiB', async (t) => {
  t.equal(humanMem(0), '0 MiB')
  t.equal(humanMem(512), '512 MiB')
  t.equal(humanMem(1023), '1023 MiB')
  t.equal(humanMem(1024), '1 GiB')
  t.equal(humanMem(1536), '1.5 GiB')
  t.equal(humanMem(16384), '16 GiB')
  t.equal(humanMem(100_000), '97.7 GiB')
  t.equal(humanMem(1024 * 1024 * 1.25), '1.3 TiB')
})

t.test('Checks that formatStatus names the leader, resources, agents, tasks and frameworks', async (t) => {
  const text = formatStatus(state())
  const lines = text.split('\n')
  t.equal(lines[0], 'Leader:     master-a (epoch 12, this master)')
  t.notMatch(text, /^Master:/m, 'no second master line when the leader answered')
  t.ok(lines.includes('Agents:     2 (1 active, 1 draining)'))
  t.ok(lines.includes('Offers:     1 outstanding'))
  t.ok(lines.includes('Tasks:      4 (1 STAGING, 2 RUNNING, 1 FAILED)'), 'tasks counted in lifecycle order')
  t.ok(lines.includes('RESOURCE  USED     TOTAL   USE%'))
  t.ok(lines.includes('cpus      1.5      8       19%'))
  t.ok(lines.includes('mem       3 GiB    16 GiB  19%'))
  t.ok(lines.includes('disk      512 MiB  80 GiB  1%'))
  t.ok(lines.includes('FRAMEWORK   ID     ACTIVE  TASKS'))
  t.ok(lines.includes('regatta-ci  fw-ci  yes     2'))
  t.ok(lines.includes('batch       fw-x   no      0'))
  for (const line of lines) t.equal(line, line.trimEnd(), 'no trailing spaces')
})

t.test('Checks that formatStatus says when no leader is known and that a standby answered', async (t) => {
  const text = formatStatus(state({
    masterId: 'master-b', leader: null, agents: [], frameworks: [], tasks: [], offers: [],
    total: {}, used: {},
  }))
  const lines = text.split('\n')
  t.equal(lines[0], 'Leader:     none (no leading master is known)')
  t.equal(lines[1], 'Master:     master-b (standby)')
  t.ok(lines.includes('Agents:     0'))
  t.ok(lines.includes('Tasks:      0'))
  t.ok(lines.includes('cpus      0      0      -'), 'no percentage of nothing')
  t.ok(lines.includes('mem       0 MiB  0 MiB  -'))
  t.ok(lines.includes('No frameworks subscribed.'))

  const standby = formatStatus(state({ masterId: 'master-c', leader: { id: 'master-a', epoch: 3 } }))
  t.match(standby, /^Leader: {5}master-a \(epoch 3\)$/m)
  t.match(standby, /^Master: {5}master-c \(standby\)$/m)
})

t.test('Checks that formatAgents lists each agent with usage, idle time and last heartbeat', async (t) => {
  t.equal(formatAgents(state()), [
    'ID        HOSTNAME  POOL  STATE     CPUS   MEM          TASKS  IDLE  LAST SEEN',
    'agent-1   build-1   ci    active    1.5/4  3 GiB/8 GiB  2      -     4s ago',
    'agent-22  build-22  gpu   draining  0/4    0 MiB/8 GiB  0      2m5s  1m1s ago',
  ].join('\n'))

  const noIdle = formatAgents(state({ agents: [agent({ id: 'a', tasks: 0 })] }))
  t.match(noIdle.split('\n')[1], /\s0\s+-\s+2s ago$/, 'no idleSince reported: IDLE is -')

  t.equal(formatAgents(state({ agents: [] })), 'No agents registered.')
})
