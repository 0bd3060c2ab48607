// A 3-node nats-server cluster with JetStream on loopback (random client and cluster ports,
// server names n1..n3, a store dir each), for tests that kill a NATS node. Nodes keep their
// ports and stores across kill/restart, so a restarted node rejoins as itself.
//
// nats-server 2.9: losing the leader of a replicated stream makes it unavailable for ~5 s
// (errors read "jetstream is not enabled") until a new leader is elected; see STACK-NOTES.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type NatsConnection } from 'nats'
import { spawnNatsServer, type LocalNatsServer } from '../../shared/nats/server.js'
import { freePort } from './nats-server.js'

export interface NatsClusterNode {
  name: string
  port: number
  clusterPort: number
  /** HTTP monitoring (`/connz`, `/jsz`), for diagnosing which client is on which node. */
  monitorPort: number
  url: string
  storeDir: string
  /** The running server, or undefined while the node is down. */
  server?: LocalNatsServer
}

export interface NatsCluster {
  nodes: NatsClusterNode[]
  /** Every node's client URL, comma-separated (what `--nats` takes). */
  urls: string
  /** A client connection to the cluster (any node), closed by stop(). */
  connect(name?: string): Promise<NatsConnection>
  /** SIGKILLs node i (0-based); its store stays for a restart. */
  kill(i: number): Promise<void>
  /** Starts node i again on the same ports and store. */
  restart(i: number): Promise<void>
  /** The index of the node that leads a stream (e.g. `KV_regatta-leader`), per the cluster. */
  streamLeader(stream: string): Promise<number>
  /** The names of the clients connected to each running node (from its /connz). */
  clients(): Promise<Record<string, string[]>>
  /** Waits until JetStream answers on every running node (meta leader elected). */
  waitReady(timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

/**
 * Starts the cluster; when a node does not come up (a port taken between picking and binding
 * it, by a test file running beside this one), everything is stopped and tried again on new ports.
 */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryStartNatsCluster(size)
    } catch (err) {
      if (attempt >= 3) throw err
    }
  }
}

async function tryStartNatsCluster(size: number): Promise<NatsCluster> {
  const clusterName = `regatta-test-${process.pid}`
  const nodes: NatsClusterNode[] = []
  for (let i = 0; i < size; i++) {
    const port = await freePort()
    const clusterPort = await freePort()
    const monitorPort = await freePort()
    nodes.push({
      name: `n${i + 1}`, port, clusterPort, monitorPort, url: `nats://127.0.0.1:${port}`,
      storeDir: await mkdtemp(join(tmpdir(), `regatta-nats-n${i + 1}-`)),
    })
  }
  const conns: NatsConnection[] = []
  const launch = async (n: NatsClusterNode): Promise<void> => {
    const routes = nodes.filter((x) => x !== n).map((x) => `nats://127.0.0.1:${x.clusterPort}`).join(',')
    n.server = await spawnNatsServer({
      port: n.port, storeDir: n.storeDir,
      args: ['-m', String(n.monitorPort), '--server_name', n.name, '--cluster_name', clusterName, '--cluster', `nats://127.0.0.1:${n.clusterPort}`, '--routes', routes],
    })
  }
  const started = await Promise.allSettled(nodes.map(launch))
  const failed = started.find((r) => r.status === 'rejected')
  if (failed) {
    await Promise.all(nodes.map((n) => n.server?.stop()))
    await Promise.all(nodes.map((n) => rm(n.storeDir, { recursive: true, force: true })))
    throw (failed as PromiseRejectedResult).reason
  }
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    async connect(name = 'test') {
      const nc = await connect({ servers: nodes.map((n) => n.url), name, maxReconnectAttempts: -1, reconnectTimeWait: 100 })
      conns.push(nc)
      return nc
    },
    async kill(i) {
      const n = nodes[i]!
      const s = n.server
      n.server = undefined
      if (!s || s.process.exitCode !== null) return
      const exited = new Promise((r) => s.process.once('exit', r))
      s.process.kill('SIGKILL')
      await exited
    },
    async restart(i) {
      const n = nodes[i]!
      if (n.server) throw new Error(`node ${n.name} is running`)
      await launch(n)
    },
    async streamLeader(stream) {
      const nc = await cluster.connect('stream-leader')
      try {
        const info = await (await nc.jetstreamManager()).streams.info(stream)
        const name = info.cluster?.leader
        const i = nodes.findIndex((n) => n.name === name)
        if (i < 0) throw new Error(`stream ${stream} has no known leader (${JSON.stringify(info.cluster)})`)
        return i
      } finally {
        await nc.close()
      }
    },
    async clients() {
      const out: Record<string, string[]> = {}
      for (const n of nodes) {
        if (!n.server) continue
        const res = await fetch(`http://127.0.0.1:${n.monitorPort}/connz?limit=1024`)
        const body = await res.json() as { connections?: Array<{ name?: string }> }
        out[n.name] = (body.connections ?? []).map((x) => x.name ?? '?')
      }
      return out
    },
    async waitReady(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs
      for (const n of nodes.filter((x) => x.server)) {
        if (n.server && n.server.process.exitCode !== null) throw new Error(`node ${n.name} exited`)
        const nc = await connect({ servers: n.url, name: 'ready-probe' })
        try {
          for (;;) {
            try {
              await (await nc.jetstreamManager({ timeout: 1_000 })).getAccountInfo()
              break
            } catch (err) {
              if (Date.now() > deadline) throw new Error(`JetStream not ready on ${n.name}: ${(err as Error).message}`)
              await new Promise((r) => setTimeout(r, 100))
            }
          }
        } finally {
          await nc.close()
        }
      }
    },
    async stop() {
      for (const nc of conns.splice(0)) await nc.close().catch(() => undefined)
      await Promise.all(nodes.map(async (n) => {
        await n.server?.stop()
        n.server = undefined
      }))
      await Promise.all(nodes.map((n) => rm(n.storeDir, { recursive: true, force: true })))
    },
  }
  try {
    await cluster.waitReady()
  } catch (err) {
    await cluster.stop()
    throw err
  }
  return cluster
}
