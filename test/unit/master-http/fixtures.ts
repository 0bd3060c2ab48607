// A small ClusterState to drive the master's HTTP server and metrics in tests.
import type { ClusterState } from '../../../shared/protocol/index.js'

export const NOW = 1_700_000_000_000

export function clusterState(overrides: Partial<ClusterState> = {}): ClusterState {
  return {
    masterId: 'master-a',
    leader: { id: 'master-a', epoch: 7 },
    startedAt: NOW - 3_600_000,
    now: NOW,
    total: { cpus: 8, mem: 16384, disk: 100000 },
    used: { cpus: 1.5, mem: 2048, disk: 1000 },
    offered: { cpus: 2, mem: 4096 },
    agents: [
      {
        id: 'agent-1', hostname: 'build-1', pool: 'ci', attributes: { os: 'linux' }, containerizer: 'docker',
        state: 'active', registeredAt: NOW - 600_000, lastHeartbeatAt: NOW - 4_000,
        resources: [{ name: 'cpus', scalar: 4 }, { name: 'mem', scalar: 8192 }, { name: 'ports', ranges: [{ begin: 31000, end: 32000 }] }],
        total: { cpus: 4, mem: 8192, disk: 50000 }, used: { cpus: 1.5, mem: 2048, disk: 1000 }, offered: { cpus: 2, mem: 4096 },
        tasks: 2,
      },
      {
        id: 'agent-2', hostname: 'build-2', pool: 'ci', attributes: {}, containerizer: 'process',
        state: 'active', registeredAt: NOW - 600_000, lastHeartbeatAt: NOW - 1_000,
        resources: [{ name: 'cpus', scalar: 2 }, { name: 'mem', scalar: 4096, role: 'ci/main' }],
        total: { cpus: 2, mem: 4096, disk: 25000 }, used: {}, offered: {},
        tasks: 0, idleSince: NOW - 125_000,
      },
      {
        id: 'agent-3', hostname: 'build-3', pool: 'gpu', attributes: {}, containerizer: 'docker',
        state: 'draining', registeredAt: NOW - 900_000, lastHeartbeatAt: NOW - 30_000,
        resources: [], total: { cpus: 2, mem: 4096, disk: 25000 }, used: {}, offered: {},
        tasks: 0, idleSince: NOW - 60_000,
      },
    ],
    frameworks: [
      {
        id: 'fw-ci', name: 'regatta-ci', roles: ['ci/main', 'ci/pr'], active: true, revocable: true,
        registeredAt: NOW - 500_000, tasks: 2, offers: 1, used: { cpus: 1.5, mem: 2048 },
      },
      {
        id: 'fw-old', name: 'old', roles: ['batch'], active: false, revocable: false,
        registeredAt: NOW - 800_000, tasks: 0, offers: 0, used: {},
      },
    ],
    tasks: [
      { taskId: 't-1', name: 'build', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/main', state: 'RUNNING', resources: { cpus: 1, mem: 1024 }, updatedAt: NOW - 5_000 },
      { taskId: 't-2', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/pr', state: 'STAGING', resources: { cpus: 0.5, mem: 1024 }, updatedAt: NOW - 1_000 },
      { taskId: 't-0', name: 'lint', frameworkId: 'fw-ci', agentId: 'agent-2', role: 'ci/pr', state: 'FINISHED', resources: { cpus: 1 }, updatedAt: NOW - 200_000 },
    ],
    offers: [
      { id: 'o-1', frameworkId: 'fw-ci', agentId: 'agent-1', role: 'ci/main', resources: { cpus: 2, mem: 4096 }, createdAt: NOW - 2_000 },
    ],
    roles: [
      { name: 'ci/main', weight: 2, quota: { cpus: 2 }, allocated: { cpus: 1, mem: 1024 } },
      { name: 'ci/pr', weight: 1, allocated: { cpus: 0.5, mem: 1024 } },
    ],
    demand: [],
    ...overrides,
  }
}
