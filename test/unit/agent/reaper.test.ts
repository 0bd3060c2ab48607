// The reaper's sandbox rules on real directories (no NATS, no Docker): an unowned sandbox past its
// retention is removed, a younger one is adopted and removed when its retention passes, owned
// ones (a running task's, a kept one's, a recently ended task's) stay; counters never count one
// orphan twice. And the status lines `regatta status` prints from the counters.
import t from 'tap'
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../../shared/log/index.js'
import type { AgentView, ClusterState } from '../../../shared/protocol/index.js'
import { SandboxDisk } from '../../../services/agent/src/disk-budget.js'
import { Reaper } from '../../../services/agent/src/reaper.js'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { orphansLine, sandboxesLine } from '../../../services/cli/src/format.js'
import { waitUntil } from '../../helpers/wait.js'

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false)

t.test('Checks that unowned sandboxes are removed past their retention, adopted within it, and owned ones are left alone', async (t) => {
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-reaper-'))
  t.teardown(() => rm(workDir, { recursive: true, force: true }))
  const retentionMs = 1_500
  const sandboxes = join(workDir, 'sandboxes')
  const make = async (fw: string, task: string, ageMs: number): Promise<string> => {
    const dir = join(sandboxes, encodeURIComponent(fw), encodeURIComponent(task))
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'stdout'), 'x\n')
    const when = new Date(Date.now() - ageMs)
    await utimes(join(dir, 'stdout'), when, when)
    await utimes(dir, when, when)
    return dir
  }
  const stale = await make('fw-a', 'old', 60_000)
  const young = await make('fw-a', 'young', 0)
  const running = await make('fw-b', 'running', 60_000)
  const ended = await make('fw/b', 'ended:1', 60_000)
  const keptPath = await make('fw-b', 'kept', 60_000)
  const lonely = await make('fw-lonely', 'old', 60_000)

  const disk = new SandboxDisk({ retentionMs, logger: silentLogger(), live: () => [running] })
  disk.retain(keptPath, Date.now())
  const reaper = new Reaper({
    agentId: `unit-${process.pid}`, workDir, containerizer: new ProcessContainerizer({ logger: silentLogger(), limits: false }),
    disk, retentionMs, logger: silentLogger(), intervalMs: 60_000,
    ownsTask: (fw, task) => fw === 'fw/b' && task === 'ended:1',
    liveSandboxes: () => new Set([running]),
  })
  t.teardown(async () => { await reaper.stop(); disk.stop() })

  const first = await reaper.pass()
  t.same(first.sandboxes.sort(), [lonely, stale].sort(), 'the unowned sandboxes past their retention were removed')
  t.same(first.adopted, [young], 'the young one is adopted, not removed')
  t.same(first.containers, [])
  t.same(first.processes, [])
  t.notOk(await exists(stale))
  t.notOk(await exists(join(sandboxes, 'fw-lonely')), 'a framework directory left empty goes')
  t.ok(await exists(young), 'the adopted one waits for its retention')
  t.ok(await exists(running), 'a running task\'s sandbox stays')
  t.ok(await exists(ended), 'a recently ended task\'s sandbox stays (by its framework and task id, decoded)')
  t.ok(await exists(keptPath), 'a kept sandbox stays')
  t.ok(disk.has(young))
  t.same(reaper.orphans().sandboxes, { found: 3, reaped: 2 })

  const second = await reaper.pass()
  t.same([second.sandboxes, second.adopted], [[], []], 'nothing new on the next pass')
  t.same(reaper.orphans().sandboxes, { found: 3, reaped: 2 }, 'and nothing counted twice')

  await waitUntil('the adopted sandbox removed after its retention', async () => !(await exists(young)), 5_000)
  await waitUntil('counted as reaped', () => reaper.orphans().sandboxes.reaped === 3, 2_000)
  t.same(reaper.orphans(), {
    found: 3, reaped: 3, containers: { found: 0, reaped: 0 }, processes: { found: 0, reaped: 0 }, sandboxes: { found: 3, reaped: 3 },
  })
})

t.test('Checks that regatta status words the orphans and the sandboxes\' disk from the agents\' counters', async (t) => {
  const agent = (id: string, over: Partial<AgentView>): AgentView => ({
    id, hostname: id, pool: 'ci', attributes: {}, containerizer: 'docker', state: 'active', registeredAt: 0, lastHeartbeatAt: 0,
    resources: [], total: {}, used: {}, offered: {}, tasks: 0, ...over,
  })
  const count = (found: number, reaped: number) => ({ found, reaped })
  const s: ClusterState = {
    masterId: 'm', leader: { id: 'm', epoch: 1 }, startedAt: 0, now: 0, total: {}, used: {}, offered: {},
    agents: [
      agent('a', { orphans: { found: 3, reaped: 2, containers: count(2, 1), processes: count(0, 0), sandboxes: count(1, 1) }, disk: { usedMb: 1536, budgetMb: 10_240, retained: 4, evicted: 1 } }),
      agent('b', { orphans: { found: 1, reaped: 1, containers: count(0, 0), processes: count(1, 1), sandboxes: count(0, 0) }, disk: { usedMb: 512, budgetMb: 10_240, retained: 0, evicted: 2 } }),
    ],
    frameworks: [], tasks: [], offers: [], roles: [], demand: [], orphans: { found: 4, reaped: 3 },
  }
  t.equal(orphansLine(s), '4 found, 3 reaped (containers 2/1, processes 1/1, sandboxes 1/1 found/reaped)')
  t.equal(sandboxesLine(s), '2 GiB used of 20 GiB budget, 4 kept after their task, 3 evicted')
  t.equal(orphansLine({ ...s, agents: [], orphans: { found: 0, reaped: 0 } }), '0 found, 0 reaped')
  t.equal(orphansLine({ ...s, orphans: undefined } as unknown as ClusterState), undefined, 'a master that does not count: no line')
  t.equal(sandboxesLine({ ...s, agents: [agent('c', { disk: { usedMb: 100, retained: 1, evicted: 0 } })] }), '100 MiB used, 1 kept after their task, 0 evicted', 'no budget: none said')
  t.equal(sandboxesLine({ ...s, agents: [agent('c', {})] }), undefined)
})
