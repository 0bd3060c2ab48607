// The CLI's words for drains and pending demand (services/cli/src/agents.ts, format.ts): pure.
import t from 'tap'
import { drainMessage } from '../../../services/cli/src/agents.js'
import { formatDemand } from '../../../services/cli/src/format.js'
import type { AgentView } from '../../../shared/protocol/index.js'

const agent = (tasks: number): AgentView => ({
  id: 'a-1', hostname: 'h', pool: 'ci', attributes: {}, containerizer: 'process', state: 'draining',
  registeredAt: 0, lastHeartbeatAt: 0, resources: [], total: {}, used: {}, offered: {}, tasks,
})

t.test('Checks that drainMessage says how many tasks still run, whether the agent can be stopped, and what undrain did', async (t) => {
  t.equal(drainMessage('DRAIN', 'a-1', agent(2)), 'Agent a-1 is draining: 2 tasks still run and will finish; it takes no new work (see regatta agents ls).')
  t.equal(drainMessage('DRAIN', 'a-1', agent(1)), 'Agent a-1 is draining: 1 task still runs and will finish; it takes no new work (see regatta agents ls).')
  t.equal(drainMessage('DRAIN', 'a-1', agent(0)), 'Agent a-1 is drained: it runs no task and takes no new work; it can be stopped.')
  t.equal(drainMessage('UNDRAIN', 'a-1', agent(3)), 'Agent a-1 takes new work again.')
})

t.test('Checks that formatDemand lists each pool with pending and unmet tasks and their resources', async (t) => {
  t.equal(formatDemand([]), 'No pending demand.')
  t.equal(formatDemand([
    { pool: 'ci', requested: { cpus: 6, mem: 3072, disk: 0 }, unmet: { cpus: 1.5, mem: 512 }, jobs: 6, unmetJobs: 1 },
    { pool: 'gpu-large', requested: { cpus: 1 }, unmet: {}, jobs: 1, unmetJobs: 0 },
  ]), [
    'POOL       PENDING  UNMET  REQUESTED          UNMET RESOURCES',
    'ci         6        1      cpus 6, mem 3 GiB  cpus 1.5, mem 512 MiB',
    'gpu-large  1        0      cpus 1             -',
  ].join('\n'))
})
