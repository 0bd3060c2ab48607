// `regatta agent --oversubscribe ...` as a real process: the flags reach the agent (its
// heartbeats carry a revocable estimate that follows --revocable-margin), and bad values end it
// at once with one line and exit 2.
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AgentHeartbeat, Subjects, decode } from '../../../shared/protocol/index.js'
import { scalar } from '../../../shared/resources/index.js'
import { startCluster, shellTask, type TestCluster } from '../../helpers/cluster.js'
import { startAgentProcess, stopAllProcesses } from '../../helpers/processes.js'
import { waitUntil } from '../../helpers/wait.js'

let cluster: TestCluster
const dirs: string[] = []

t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster()
})
t.teardown(async () => {
  await stopAllProcesses()
  await cluster.stop()
  for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined)
})

t.test('Checks that --oversubscribe and its settings reach the agent', async (t) => {
  const workDir = await mkdtemp(join(tmpdir(), 'regatta-ovs-cli-'))
  dirs.push(workDir)
  const beats: Array<{ agentId: string; cpus: number; memMb: number }> = []
  const watcher = await cluster.connect('heartbeat-watcher')
  watcher.subscribe(Subjects.agentHeartbeat, {
    callback: (err, m) => {
      if (err) return
      const hb = decode(AgentHeartbeat, m.data, 'heartbeat')
      if (hb.revocable) beats.push({ agentId: hb.agentId, cpus: scalar(hb.revocable, 'cpus'), memMb: scalar(hb.revocable, 'mem') })
    },
  })
  const agent = await startAgentProcess({
    natsUrl: cluster.nats.url, workDir, containerizer: 'process', resources: 'cpus:2;mem:512;disk:1000',
    extraArgs: ['--oversubscribe', '--qos-interval', '200ms', '--revocable-margin', '0.5'],
  })
  const started = await agent.waitForLog('agent started')
  t.same(started.oversubscription, { intervalMs: 200, margin: 0.5 }, 'the settings as the agent took them')

  const fw = await cluster.framework({ name: 'plain' })
  const offer = await fw.nextOffer((o) => o.agentId === agent.agentId)
  await fw.scheduler.launch(offer, [shellTask('idle', 'sleep 600', {
    resources: [{ name: 'cpus', scalar: 1 }, { name: 'mem', scalar: 256 }],
  })])
  await fw.waitFor('idle running', () => fw.statesOf('idle').includes('RUNNING'))
  // idle: ~256 MiB unused, less half of 256 as the margin
  const beat = await waitUntil('a revocable estimate', () => beats.find((b) => b.agentId === agent.agentId && b.memMb > 0), 15_000)
  t.ok(beat.memMb > 100 && beat.memMb <= 128, `revocable memory ${beat.memMb} MiB: at most 256 - 0.5 x 256`)
  t.ok(beat.cpus > 0.3 && beat.cpus <= 0.5, `revocable cpus ${beat.cpus}: at most 1 - 0.5 x 1`)
  await fw.scheduler.kill('idle')
  await fw.terminal('idle')
  await fw.scheduler.teardown()
})

t.test('Checks that bad oversubscription flags end the agent with one line and exit 2', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--revocable-margin', '0.3'], /^regatta: --revocable-margin needs --oversubscribe\n$/],
    [['--oversubscribe', '--revocable-margin', '1.5'], /^regatta: --revocable-margin: "1\.5" is not a fraction from 0 to 1\n$/],
    [['--oversubscribe', '--qos-interval', 'often'], /^regatta: --qos-interval: "often" is not a duration/],
    [['--oversubscribe', '--qos-min-free-mem', 'lots'], /^regatta: --qos-min-free-mem: "lots" is not a number/],
  ]
  const bin = new URL('../../../services/cli/bin/regatta.mjs', import.meta.url).pathname
  for (const [args, message] of cases) {
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, 'agent', '--nats', cluster.nats.url, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr })
      })
    })
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.match(r.stderr, message)
    t.equal(r.stdout, '', 'nothing else printed')
  }
})
