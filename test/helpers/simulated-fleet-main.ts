// Runs a simulated agent fleet in its own process (for benchmarks):
//   node --import tsx test/helpers/simulated-fleet-main.ts NATS_URL COUNT RESOURCES WORKDIR
// Prints "ready" once every agent has registered; stops on SIGTERM.
import type { NatsConnection } from 'nats'
import { connectNats } from '../../shared/nats/index.js'
import { Agent } from '../../services/agent/src/agent.js'
import { silentLogger } from '../../shared/log/index.js'
import { parseResources } from '../../shared/resources/index.js'
import { InstantContainerizer } from './simulated-fleet.js'

const [url, countText, resourcesText, workDir] = process.argv.slice(2)
if (!url || !countText || !resourcesText || !workDir) {
  process.stderr.write('usage: simulated-fleet-main NATS_URL COUNT RESOURCES WORKDIR\n')
  process.exit(2)
}
const count = Number(countText)
const perConnection = 20
const conns: NatsConnection[] = []
const agents: Agent[] = []
for (let i = 0; i < count; i++) {
  if (i % perConnection === 0) conns.push(await connectNats(url, `sim-fleet-${conns.length}`))
  agents.push(new Agent({
    nc: conns[conns.length - 1]!, workDir: `${workDir}/sim-agent-${i}`, pool: 'sim', id: `sim-agent-${i}`,
    resources: parseResources(resourcesText), attributes: { simulated: 'true' },
    containerizer: new InstantContainerizer(), logger: silentLogger(), sandboxRetentionMs: 0,
  }))
}
await Promise.all(agents.map((a) => a.start()))
process.stdout.write('ready\n')
process.on('SIGTERM', () => {
  void Promise.all(agents.map((a) => a.stop())).then(async () => {
    for (const nc of conns) await nc.close()
    process.exit(0)
  })
})
