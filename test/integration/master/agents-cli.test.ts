// `regatta agents ls|drain|undrain` and `regatta status` as users run them (real processes)
// against a real master and agents: columns and --json, drain with a running task and the
// pending demand, bad ids and missing arguments as one line with a non-zero exit.
import t from 'tap'
import { ProcessContainerizer } from '../../../services/agent/src/containerizer/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import type { AgentView, ClusterState } from '../../../shared/protocol/index.js'
import { shellTask, startCluster, type RecordingFramework, type TestCluster } from '../../helpers/cluster.js'
import { regatta } from '../../helpers/cli.js'
import { waitUntil } from '../../helpers/wait.js'

const lines = (s: string): string[] => s.split('\n').filter((l) => l.trim() !== '')

let cluster: TestCluster
let fw: RecordingFramework
let nats: string
t.before(async () => {
  cluster = await startCluster()
  nats = cluster.nats.url
  await cluster.startMaster('m1')
  const containerizer = (): ProcessContainerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false })
  await cluster.startAgent({ containerizer: containerizer(), id: 'cli-a', pool: 'ci', resources: 'cpus:2;mem:2048;disk:1000' })
  await cluster.startAgent({ containerizer: containerizer(), id: 'cli-b', pool: 'gpu', resources: 'cpus:1;mem:1024;disk:1000' })
  fw = await cluster.framework()
  // the first run bundles the CLI (esbuild)
  await regatta(['--help'], { timeoutMs: 60_000 })
})
t.teardown(() => cluster.stop())

t.test('Checks that `regatta agents ls` shows each agent\'s id, pool, state, used/total, tasks and idle time, --pool filters and --json parses', async (t) => {
  const human = await regatta(['agents', 'ls', '--nats', nats])
  t.equal(human.code, 0, human.stderr)
  const [header, ...rows] = lines(human.stdout)
  t.match(header, /^ID\s+HOSTNAME\s+POOL\s+STATE\s+CPUS\s+MEM\s+TASKS\s+IDLE/)
  t.equal(rows.length, 2)
  t.match(rows.find((r) => r.startsWith('cli-a')), /\sci\s+active\s+0\/2\s+0 MiB\/2 GiB\s+0\s+\d+s/)

  const gpu = await regatta(['agents', 'ls', '--pool', 'gpu', '--json', '--nats', nats])
  t.equal(gpu.code, 0, gpu.stderr)
  const agents = JSON.parse(gpu.stdout) as AgentView[]
  t.same(agents.map((a) => [a.id, a.pool, a.state, a.total.cpus]), [['cli-b', 'gpu', 'active', 1]])
})

t.test('Checks that `regatta agents drain ID` drains an agent with a running task, says so, and `undrain` brings it back', async (t) => {
  const offer = await fw.nextOffer((o) => o.agentId === 'cli-a')
  await fw.scheduler.launch(offer, [shellTask('cli-long', 'sleep 30')], { refuseSeconds: 0 })
  await fw.waitFor('the task to run', () => fw.statesOf('cli-long').includes('RUNNING'))

  const drain = await regatta(['agents', 'drain', 'cli-a', '--nats', nats])
  t.equal(drain.code, 0, drain.stderr)
  t.equal(lines(drain.stdout).length, 1)
  t.match(drain.stdout, /^Agent cli-a is draining: 1 task still runs/)
  await fw.waitFor('the inverse offer', () => fw.events.some((e) => e.type === 'INVERSE_OFFERS' && e.inverseOffers[0]?.agentId === 'cli-a'))

  const ls = await regatta(['agents', 'ls', '--nats', nats])
  t.match(lines(ls.stdout).find((r) => r.startsWith('cli-a')), /\sdraining\s+0\.1\/2\s+32 MiB\/2 GiB\s+1\s+-/)

  await fw.scheduler.kill('cli-long')
  await fw.terminal('cli-long')
  const again = await regatta(['agents', 'drain', 'cli-a', '--json', '--nats', nats])
  t.equal(again.code, 0, again.stderr)
  const view = JSON.parse(again.stdout) as AgentView
  t.equal(view.state, 'draining')
  t.equal(view.tasks, 0, 'drained: nothing runs')
  const human = await regatta(['agents', 'drain', 'cli-a', '--nats', nats])
  t.match(human.stdout, /^Agent cli-a is drained: it runs no task and takes no new work; it can be stopped\./)

  const undrain = await regatta(['agents', 'undrain', 'cli-a', '--nats', nats])
  t.equal(undrain.code, 0, undrain.stderr)
  t.match(undrain.stdout, /^Agent cli-a takes new work again\./)
  await waitUntil('the agent active', () => cluster.masters[0]!.state().agents.find((a) => a.id === 'cli-a')?.state === 'active')
})

t.test('Checks that `regatta status` shows pending demand per pool, and --json carries it', async (t) => {
  await fw.scheduler.request([{ pool: 'ci', resources: { cpus: 1, mem: 512 }, count: 4 }])
  const human = await regatta(['status', '--nats', nats])
  t.equal(human.code, 0, human.stderr)
  const at = lines(human.stdout).findIndex((l) => /^POOL\s+PENDING\s+UNMET\s+REQUESTED\s+UNMET RESOURCES$/.test(l))
  t.ok(at >= 0, 'a demand table')
  t.match(lines(human.stdout)[at + 1], /^ci\s+4\s+2\s+cpus 4, mem 2 GiB\s+cpus 2, mem 1 GiB$/)
  const json = JSON.parse((await regatta(['status', '--json', '--nats', nats])).stdout) as ClusterState
  t.same(json.demand, [{ pool: 'ci', requested: { cpus: 4, mem: 2048 }, unmet: { cpus: 2, mem: 1024 }, jobs: 4, unmetJobs: 2 }])
  await fw.scheduler.request([])
  t.match((await regatta(['status', '--nats', nats])).stdout, /No pending demand\./)
})

t.test('Checks that a bad agent id or a missing one exits non-zero with one line naming it', async (t) => {
  for (const cmd of ['drain', 'undrain']) {
    const r = await regatta(['agents', cmd, 'no-such-agent', '--nats', nats])
    t.equal(r.code, 1, `${cmd}: exit 1`)
    t.equal(lines(r.stderr).length, 1, `one line: ${JSON.stringify(r.stderr)}`)
    t.match(r.stderr, /^regatta: agent no-such-agent is not known/)
    t.equal(r.stdout, '')
  }
  const missing = await regatta(['agents', 'drain', '--nats', nats])
  t.equal(missing.code, 2)
  t.equal(lines(missing.stderr).length, 1)
  t.match(missing.stderr, /missing required argument 'id'/)
  const empty = await regatta(['agents', 'drain', ' ', '--nats', nats])
  t.equal(empty.code, 2)
  t.match(empty.stderr, /^regatta: agent id: empty/)
})
