// An agent sends a status update only once its checkpoint is written. Killed (-9) in between,
// the agent sent nothing: the restarted agent finds the task's container and reports its end,
// once. Were the update sent before the checkpoint, the framework would hear the end twice, with
// two uuids (the dead agent's, and the restarted agent's new one).
//
// The checkpoint write is held with a named pipe (FIFO) where the agent writes its checkpoint
// file's temporary copy: the write blocks until someone reads the pipe, which nobody does.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isTerminal } from '../../../shared/protocol/index.js'
import { shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage, removeContainersByLabel } from '../../helpers/docker.js'
import { startAgentProcess, stopAllProcesses } from '../../helpers/processes.js'
import { LABEL_AGENT } from '../../../services/agent/src/containerizer/index.js'
import { waitUntil } from '../../helpers/wait.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

const AGENT_ID = 'crash-before-checkpoint'

let cluster: TestCluster
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
})
t.teardown(async () => {
  await stopAllProcesses()
  await removeContainersByLabel(LABEL_AGENT, AGENT_ID).catch(() => undefined)
  await cluster.stop()
})

t.test('Checks that an agent killed before its end update is checkpointed sent nothing, and its restart reports the end once', async (t) => {
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-crash-cp-'))
  t.teardown(() => rm(workDir, { recursive: true, force: true, maxRetries: 5 }))
  const fw = await cluster.framework()
  const agentArgs = { natsUrl: cluster.nats.url, workDir, containerizer: 'docker' as const, resources: 'cpus:2;mem:1024;disk:1000', extraArgs: ['--id', AGENT_ID] }
  const first = await startAgentProcess(agentArgs)

  await fw.launch(shellTask('crash-1', 'sleep 2; exit 0'))
  await fw.waitFor('RUNNING', () => fw.statesOf('crash-1').includes('RUNNING'), 30_000)
  // RUNNING's checkpoint is on disk once the update is out; from now on its writes block
  execFileSync('mkfifo', [join(workDir, 'tasks.json.tmp')])

  // the task ends (after its 2 s): the agent sees it, and can neither checkpoint nor send it
  await new Promise((r) => setTimeout(r, 4_000))
  t.same(fw.updates.filter((u) => u.taskId === 'crash-1' && isTerminal(u.state)).map((u) => u.state), [], 'no end was sent while its checkpoint could not be written')

  first.kill('SIGKILL')
  await first.exited
  await rm(join(workDir, 'tasks.json.tmp'))
  await startAgentProcess(agentArgs)
  const end = await fw.terminal('crash-1', 30_000)
  t.equal(end.state, 'FINISHED', 'the restarted agent found the container and reported how it ended')
  // anything else in flight would have arrived by now
  await new Promise((r) => setTimeout(r, 2_000))
  const ends = fw.updates.filter((u) => u.taskId === 'crash-1' && isTerminal(u.state) && u.reason !== 'RECONCILIATION')
  t.equal(new Set(ends.map((u) => u.uuid)).size, 1, `one end, under one uuid (${ends.map((u) => `${u.state}/${u.uuid}`).join(', ')})`)
  await waitUntil('the task to leave the master', () => !cluster.masters[0]!.state().tasks.some((x) => x.taskId === 'crash-1' && !isTerminal(x.state)), 10_000)
})
