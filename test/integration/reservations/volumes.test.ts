// Persistent volumes end to end on a real nats-server with a real master and agents, with the
// process containerizer and with Docker: a framework reserves disk, makes a volume of it and
// launches a task that writes into it, in one ACCEPT; the volume is offered back to its role with
// its id; a second task that takes it reads what the first wrote; DESTROY deletes the directory
// and gives the reserved disk back.
import t from 'tap'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Offer, Resource } from '../../../shared/protocol/index.js'
import { silentLogger } from '../../../shared/log/index.js'
import { scalar } from '../../../shared/resources/index.js'
import { DockerContainerizer, ProcessContainerizer, type Containerizer } from '../../../services/agent/src/containerizer/index.js'
import { shellTask, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { dockerAvailable, ensureBusyboxImage } from '../../helpers/docker.js'
import { waitUntil } from '../../helpers/wait.js'

if (!(await dockerAvailable())) {
  t.fail('no Docker engine answers: `npm test` starts one (deploy/dev/setup.sh)')
  process.exit(1)
}
await ensureBusyboxImage()

let cluster: TestCluster
const workDirs: string[] = []
t.before(async () => {
  cluster = await startCluster()
  await cluster.startMaster('m1')
})
t.teardown(async () => {
  await cluster.stop()
  for (const d of workDirs) await rm(d, { recursive: true, force: true })
})

const volumeOf = (o: Offer, id: string): Resource | undefined => o.resources.find((r) => r.disk?.persistence.id === id)

for (const [kind, containerizer, containerPath] of [
  ['process', (): Containerizer => new ProcessContainerizer({ logger: silentLogger(), limits: false }), 'cache'],
  ['docker', (): Containerizer => new DockerContainerizer({ logger: silentLogger() }), '/cache'],
] as const) {
  t.test(`Checks that a persistent volume (${kind}) keeps what one task wrote for the next task that takes it, and DESTROY deletes it`, async (t) => {
    const workDir = await mkdtemp(join(tmpdir(), `regatta-vol-${kind}-`))
    workDirs.push(workDir)
    const agentId = `vol-${kind}`
    await cluster.startAgent({ containerizer: containerizer(), id: agentId, workDir, pool: kind, resources: 'cpus:2;mem:2048;disk:5000' })
    const role = `ci-${kind}`
    const fw = await cluster.framework({ name: `ci-${kind}`, roles: [role] })
    const onAgent = (o: Offer): boolean => o.agentId === agentId

    // reserve 300 MiB of disk, make a volume of 200 of it, and launch a writer that takes it: one ACCEPT
    const volume: Resource = { name: 'disk', scalar: 200, role, disk: { persistence: { id: 'build-cache' }, containerPath } }
    const first = await fw.nextOffer(onAgent)
    const dir = containerPath.startsWith('/') ? containerPath : `./${containerPath}`
    await fw.scheduler.operate([first.id], [
      { type: 'RESERVE', resources: [{ name: 'disk', scalar: 300, role }] },
      { type: 'CREATE', volumes: [volume] },
      { type: 'LAUNCH', tasks: [shellTask(`${kind}-writer`, `echo "kept by the first task" > ${dir}/note.txt`, { resources: [{ name: 'cpus', scalar: 0.1 }, { name: 'mem', scalar: 32 }, volume] })] },
    ], { refuseSeconds: 0 })
    const written = await fw.terminal(`${kind}-writer`, 30_000)
    t.equal(written.state, 'FINISHED', `the writer finished (${written.message ?? ''})`)
    const volumeDir = join(workDir, 'volumes', encodeURIComponent(role), 'build-cache')
    t.equal(await readFile(join(volumeDir, 'note.txt'), 'utf8'), 'kept by the first task\n', 'the file is in the volume\'s directory on the agent')

    // the volume comes back in an offer to the role, with its id
    const second = await fw.nextOffer((o) => onAgent(o) && volumeOf(o, 'build-cache') !== undefined)
    t.same(volumeOf(second, 'build-cache'), volume, 'offered back whole, with its id and path')
    const reservedNow = cluster.masters[0]!.state().agents.find((a) => a.id === agentId)!.resources.filter((r) => r.role === role)
    t.same(reservedNow.filter((r) => !r.disk), [{ name: 'disk', scalar: 100, role }], 'the agent has the rest of the reserved disk beside the volume')
    t.equal(scalar(reservedNow, 'disk'), 300, 'and 300 MiB reserved in all')
    // the reader names the volume without its role: the master finds it by id
    const { role: _role, ...byId } = volume
    await fw.scheduler.launch(second, [shellTask(`${kind}-reader`, `test "$(cat ${dir}/note.txt)" = "kept by the first task" && echo again >> ${dir}/note.txt`, {
      resources: [{ name: 'cpus', scalar: 0.1 }, { name: 'mem', scalar: 32 }, byId],
    })], { refuseSeconds: 0 })
    const read = await fw.terminal(`${kind}-reader`, 30_000)
    t.equal(read.state, 'FINISHED', `the second task read what the first wrote (${read.message ?? ''})`)
    t.equal(await readFile(join(volumeDir, 'note.txt'), 'utf8'), 'kept by the first task\nagain\n')

    // DESTROY: the directory goes, and the disk is plain reserved disk again
    const third = await fw.nextOffer((o) => onAgent(o) && volumeOf(o, 'build-cache') !== undefined)
    await fw.scheduler.operate([third.id], [{ type: 'DESTROY', volumes: [volume] }], { refuseSeconds: 0 })
    await waitUntil('the volume directory to be deleted', () => stat(volumeDir).then(() => false, () => true))
    const agent = cluster.masters[0]!.state().agents.find((a) => a.id === agentId)!
    t.same(agent.resources.filter((r) => r.role === role), [{ name: 'disk', scalar: 300, role }], 'all 300 MiB are reserved disk again, no volume')
    await fw.scheduler.teardown()
  })
}
