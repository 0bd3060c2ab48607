// A real deployment on one machine: three hosts as network namespaces (test/helpers/netns.ts),
// each with a nats-server of one cluster (deploy/nats/nN.conf, routes pointed at the hosts'
// addresses), a `regatta master --replicas 3` and a `regatta agent` (process containerizer); the
// CI service runs on a host that does not lead. A pipeline runs; a second one is running when the
// leading master's host loses its link (the switch port goes down: no RST, no FIN, as when a
// cable is pulled). The other two hosts carry on: a new master leads with a newer epoch, the job
// that was on the cut host is requeued and runs elsewhere, a third pipeline pushed during the
// cut runs, no job is lost; the cut-off master steps down before anyone else leads (no split
// brain) and never leads while cut off. The link comes back: the cut node rejoins the NATS
// cluster, its agent re-registers with the current leader, and its master stays a standby.
// Locked down as deployed: the nodes include a regatta-auth.conf made by authorizationConfig
// (master, one user per agent id, ci, operator; random passwords), every process connects as
// its own user, and one agent's user is refused speaking for another host's agent.
import t from 'tap'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnSync } from 'node:child_process'
import { Subjects, idToken } from '../../../shared/protocol/index.js'
import { authorizationConfig, randomPassword, type NatsUser } from '../../../shared/nats/auth.js'
import { CI_FRAMEWORK_ID } from '../../../services/ci/src/service.js'
import { createNetLab, netnsUnavailable, type NatsCredentials, type NetHost, type NetLab, type NetLogLine, type NetProcess } from '../../helpers/netns.js'
import { createRepo, type TestRepo } from '../../helpers/git-repo.js'
import { pushPayload, webhookHeaders } from '../../helpers/github-api.js'
import type { RunView } from '../../../services/ci/src/views.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const BIN = join(ROOT, 'services/cli/bin/regatta.mjs')
/** As deployed (deploy/ checks >= 10 s on a replicated bucket): outlasts a stream leader election. */
const LEASE_TTL_MS = 10_000
const AGENT_UNREACHABLE = '2s'
const AGENT_GONE = '5s'
const WEBHOOK_SECRET = 'multihost-secret'
/** The operator token of the masters and the CI service (HTTP reads need a token). */
const TOKEN = 'multihost-operator-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const NATS_PORT = 4222
const MONITOR_PORT = 8222
const MASTER_PORT = 5050
const CI_PORT = 8080

/**
 * Lines appended to each node's copy of deploy/nats/nN.conf, for measuring other route liveness
 * settings than the shipped ones (a later key overrides an earlier one), e.g.
 * REGATTA_MULTIHOST_NATS_EXTRA=$'ping_interval: "2m"\nping_max: 2\n' for nats-server's defaults.
 */
const NATS_EXTRA = process.env.REGATTA_MULTIHOST_NATS_EXTRA ?? ''
const LEADER_MOVED = 'when the cut node rejoins, its streams\' raft elections stall the replicated lease bucket longer than the lease TTL allows (0.8 × 10 s), so the leader loses the lease and a master (itself or another) takes it again with a newer epoch'
const LOG_LOSS = 'a job\'s log cannot be read (the read times out) while the output stream elects a leader after the cut, or it lacks the attempt that ran on the cut host'

const skip = netnsUnavailable()

// 105-155 s here (the NATS stall after the cut alone is 12-45 s), more on a loaded 2-core CI
// machine running another file beside it: past the suite's 180 s per-file timeout, so 300 s.
t.setTimeout(300_000)

/**
 * Run by `node -e` inside a host's namespace: connects to its own node as one agent's user,
 * publishes once on a subject it may not publish to (another agent's status update subject) and
 * once on one it may (its own output subject), while a subscriber connected as the operator to
 * another host's node listens to both. Prints what the server refused and what arrived.
 */
const CROSS_PUBLISH_SCRIPT = `
import { connect } from 'nats'
const [agentUrl, watchUrl, forbidden, allowed] = process.argv.slice(1)
const env = process.env
const watcher = await connect({ servers: watchUrl, user: env.WATCH_USER, pass: env.WATCH_PASSWORD, timeout: 3000 })
const arrived = []
for (const subject of [forbidden, allowed]) watcher.subscribe(subject, { callback: (err, m) => { if (!err) arrived.push(m.subject) } })
await watcher.flush()
const nc = await connect({ servers: agentUrl, user: env.AGENT_USER, pass: env.AGENT_PASSWORD, timeout: 3000 })
const refused = []
void (async () => { for await (const s of nc.status()) if (s.permissionContext) refused.push(s.permissionContext.operation + ' ' + s.permissionContext.subject) })()
const data = new TextEncoder().encode('{}')
nc.publish(forbidden, data)
nc.publish(allowed, data)
await nc.flush()
const deadline = Date.now() + 5000
while ((refused.length === 0 || arrived.length === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
await new Promise((r) => setTimeout(r, 300))
await nc.close()
await watcher.close()
process.stdout.write(JSON.stringify({ refused, arrived }))
`

interface Host {
  net: NetHost
  name: string
  natsUrl: string
  nats?: NetProcess
  master?: NetProcess
  agent?: NetProcess
  /** Its agent's id (`regatta agent --id`), also naming its NATS user (agent-<id>). */
  agentId: string
  /** Its agent's NATS user. */
  agentAuth: NatsCredentials
}

interface LeaderView { id: string; epoch: number; httpUrl?: string }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
    await sleep(everyMs)
  }
}

const logTime = (l: NetLogLine): number => Number(l.time)

t.test('Checks that three hosts in network namespaces survive cutting the leader\'s link: a new leader, no job lost, no split brain, and the host rejoins', { skip: skip ?? false }, async (t) => {
  const testStart = Date.now()
  const phase = (what: string): void => { t.comment(`${((Date.now() - testStart) / 1000).toFixed(1)} s: ${what}`) }
  // the CLI bundle is built on first use: build it here, not inside three racing namespaces
  const built = spawnSync(process.execPath, [BIN, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
  t.equal(built.status, 0, 'the regatta CLI runs')

  const lab: NetLab = await createNetLab({ hosts: 3, subnet: '10.213.0' })
  // experiment knob (not a default): the hosts' kernel gives up on unacknowledged data sooner
  if (process.env.REGATTA_MULTIHOST_TCP_RETRIES2) for (const h of lab.hosts) await lab.exec(h, ['sysctl', '-w', `net.ipv4.tcp_retries2=${process.env.REGATTA_MULTIHOST_TCP_RETRIES2}`])
  const base = await mkdtemp(join(tmpdir(), 'regatta-multihost-'))
  let repo: TestRepo | undefined
  let ci: NetProcess | undefined
  t.teardown(async () => {
    await lab.destroy()
    const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.startsWith(lab.prefix))
    if (left.length) console.error(`namespaces left behind: ${left.join(', ')}`)
    await rm(base, { recursive: true, force: true })
    await repo?.remove()
  })
  // NATS users as deployed (deploy/make-secrets.ts): the masters, one per agent id, the CI
  // service, the operator (the CLI and the test's own requests); random passwords
  const hosts: Host[] = lab.hosts.map((net) => {
    const agentId = `host${net.index + 1}`
    return { net, name: `n${net.index + 1}`, natsUrl: `nats://${net.ip}:${NATS_PORT}`, agentId, agentAuth: { user: `agent-${idToken(agentId)}`, password: randomPassword() } }
  })
  const users: NatsUser[] = [
    { user: 'master', password: randomPassword(), role: 'master' },
    ...hosts.map((h) => ({ ...h.agentAuth, role: 'agent' as const, id: h.agentId })),
    { user: 'ci', password: randomPassword(), role: 'ci', id: CI_FRAMEWORK_ID },
    { user: 'operator', password: randomPassword(), role: 'operator' },
  ]
  const natsEnv = (user: string): Record<string, string> => ({ REGATTA_NATS_USER: user, REGATTA_NATS_PASSWORD: users.find((u) => u.user === user)!.password })
  const operator: NatsCredentials = { user: 'operator', password: natsEnv('operator').REGATTA_NATS_PASSWORD! }
  t.teardown(async () => {
    // REGATTA_MULTIHOST_LOGS=DIR keeps every process's whole log there
    const keep = process.env.REGATTA_MULTIHOST_LOGS
    if (keep) {
      for (const p of [...hosts.flatMap((h) => [h.nats, h.master, h.agent]), ci]) if (p) await writeFile(join(keep, `${p.name.replace(/\W+/g, '-')}.log`), p.logs())
    }
    if (t.passing()) return
    for (const h of hosts) {
      for (const p of [h.nats, h.master, h.agent]) if (p) t.comment(`--- ${p.name} (${h.net.ns})\n${p.logs().split('\n').slice(-25).join('\n')}`)
    }
    if (ci) t.comment(`--- ci\n${ci.logs().split('\n').slice(-40).join('\n')}`)
  })
  t.comment(`hosts: ${hosts.map((h) => `${h.net.ns} ${h.net.ip}`).join(', ')}; switch ${lab.switchNs}`)

  // ---- the NATS cluster: deploy/nats/nN.conf with the hosts' addresses and a temp store ----
  // nN.conf includes ./regatta-auth.conf: the users above, beside the copies
  await writeFile(join(base, 'regatta-auth.conf'), authorizationConfig(users), { mode: 0o600 })
  for (const h of hosts) {
    let conf = await readFile(join(ROOT, 'deploy/nats', `${h.name}.conf`), 'utf8')
    conf = conf.replace(`store_dir: "/var/lib/nats/${h.name}"`, `store_dir: "${join(base, h.name)}"`)
    for (const peer of hosts) conf = conf.replace(`nats://${peer.name}:6222`, `nats://${peer.net.ip}:6222`)
    t.notMatch(conf.replace(/#.*$/gm, ''), /nats:\/\/n\d|\/var\/lib\//, `${h.name}: routes to the hosts' addresses, store in the temp dir`)
    t.match(conf.replace(/#.*$/gm, ''), /^include \.\/regatta-auth\.conf$/m, `${h.name}: includes the users block beside it`)
    await writeFile(join(base, `${h.name}.conf`), conf + NATS_EXTRA)
    h.nats = lab.spawn(h.net, `nats-server ${h.name}`, ['nats-server', '-c', join(base, `${h.name}.conf`)])
  }
  const monitor = async (from: Host, of: Host, path: string): Promise<{ status: number; body: string }> => {
    const r = await lab.fetch(from.net, `http://${of.net.ip}:${MONITOR_PORT}${path}`, { timeoutMs: 2_000 })
    if (r.error) throw new Error(r.error)
    return r
  }
  const routesOf = async (h: Host): Promise<number> => (JSON.parse((await monitor(h, h, '/routez')).body) as { num_routes: number }).num_routes
  for (const h of hosts) {
    await waitFor(`${h.name} routed to both peers`, 30_000, async () => ((await routesOf(h)) === 2 ? true : undefined), 300)
    await waitFor(`${h.name} JetStream healthy`, 30_000, async () => ((await monitor(h, h, '/healthz')).status === 200 ? true : undefined), 300)
  }
  t.pass('three NATS nodes, each in its own namespace, routed to each other with JetStream up')
  phase('NATS cluster up')

  // ---- masters and agents, one of each per host ---------------------------------------------
  for (const h of hosts) {
    h.master = lab.spawn(h.net, `master m${h.net.index + 1}`, [
      process.execPath, BIN, 'master', '--nats', h.natsUrl, '--id', `m${h.net.index + 1}`, '--http', `${h.net.ip}:${MASTER_PORT}`,
      '--replicas', '3', '--lease-ttl', `${LEASE_TTL_MS}ms`, '--heartbeat-interval', '500ms',
      '--agent-unreachable', AGENT_UNREACHABLE, '--agent-gone', AGENT_GONE,
    ], { env: { REGATTA_OPERATOR_TOKEN: TOKEN, ...natsEnv('master') } })
  }
  await Promise.all(hosts.map((h) => h.master!.waitForLog('master HTTP API listening', 60_000)))
  for (const h of hosts) {
    h.agent = lab.spawn(h.net, `agent ${h.name}`, [
      process.execPath, BIN, 'agent', '--nats', h.natsUrl, '--id', h.agentId, '--work-dir', join(base, `agent-${h.name}`),
      '--containerizer', 'process', '--resources', 'cpus:1;mem:1024;disk:4000', '--attributes', `host:${h.name}`,
    ], { env: natsEnv(h.agentAuth.user) })
  }
  await Promise.all(hosts.map((h) => h.agent!.waitForLog('registered with the master', 60_000)))

  /** Every answer to one request on the leader-only state subject, asked from inside a host. */
  // 2 s for every answer to arrive: on a loaded 2-core CI machine a reply across two routes
  // can take longer than the 600 ms this waited before (CI failed once at the first such check)
  const stateAnswers = async (from: Host, waitMs = 2_000): Promise<Array<{ masterId: string; leader: LeaderView | null }>> =>
    (await lab.requestAll(from.net, from.natsUrl, Subjects.masterState, waitMs, operator)).map((s) => JSON.parse(s) as { masterId: string; leader: LeaderView | null })
  const cli = async (from: Host, args: string[]): Promise<unknown> => {
    const r = await lab.exec(from.net, [process.execPath, BIN, ...args, '--json', '--nats', from.natsUrl], { timeoutMs: 20_000, env: natsEnv('operator') })
    if (r.code !== 0) throw new Error(`regatta ${args.join(' ')} in ${from.net.ns} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`)
    return JSON.parse(r.stdout)
  }
  const health = async (from: Host, of: Host): Promise<{ leader: boolean } | undefined> => {
    const r = await lab.fetch(from.net, `http://${of.net.ip}:${MASTER_PORT}/health`, { timeoutMs: 1_500 })
    return r.status === 200 ? JSON.parse(r.body) as { leader: boolean } : undefined
  }

  phase('masters and agents up')
  const status = await cli(hosts[0]!, ['status']) as { leader: LeaderView | null; agents: Array<{ id: string; state: string }> }
  const oldLeader = status.leader
  if (!oldLeader) throw new Error(`no leader in regatta status: ${JSON.stringify(status)}`)
  const leaderIdx = hosts.findIndex((h) => `m${h.net.index + 1}` === oldLeader.id)
  const cutHost = hosts[leaderIdx]!
  const connected = hosts.filter((h) => h !== cutHost)
  const ciHost = connected[0]!
  t.ok(leaderIdx >= 0, `regatta status (from ${hosts[0]!.name}) names the leader ${oldLeader.id}, epoch ${oldLeader.epoch}, on ${cutHost.name}`)
  const agentsAtStart = await waitFor('three active agents', 20_000, async () => {
    const list = await cli(hosts[1]!, ['agents', 'ls']) as Array<{ id: string; state: string }>
    return list.length === 3 && list.every((a) => a.state === 'active') ? list : undefined
  }, 500)
  t.same(agentsAtStart.map((a) => a.id).sort(), hosts.map((h) => h.agentId).sort(), 'agents ls: the three hosts\' agents (by the ids they were given), active')
  // one answer, from the leader status named; no answer for a moment is waited out, two fail
  const twoAtStart: string[] = []
  const answersAtStart = await waitFor('one master answering the leader-only state subject', 30_000, async () => {
    const answers = await stateAnswers(hosts[2]!)
    if (answers.length > 1) twoAtStart.push(answers.map((a) => `${a.masterId}@${a.leader?.epoch}`).join(', '))
    return twoAtStart.length > 0 || answers.length === 1 ? answers : undefined
  }, 300)
  t.same(twoAtStart, [], 'never two masters answering the leader-only state subject')
  t.same(answersAtStart.map((a) => a.masterId), [oldLeader.id], `exactly one master answers the leader-only state subject, the leader status named (answers: ${answersAtStart.map((a) => `${a.masterId}@${a.leader?.epoch}`).join(', ')})`)

  // least privilege across hosts: host 1's agent user may not speak for host 2's agent
  {
    const [a, b] = [hosts[0]!, hosts[1]!]
    const forbidden = Subjects.statusUpdate(CI_FRAMEWORK_ID, b.agentId)
    const allowed = Subjects.taskOutput('multihost-probe', a.agentId, 'probe')
    const r = await lab.exec(a.net, [process.execPath, '--input-type=module', '-e', CROSS_PUBLISH_SCRIPT, a.natsUrl, b.natsUrl, forbidden, allowed], {
      timeoutMs: 20_000,
      env: { AGENT_USER: a.agentAuth.user, AGENT_PASSWORD: a.agentAuth.password, WATCH_USER: operator.user, WATCH_PASSWORD: operator.password },
    })
    if (r.code !== 0) throw new Error(`the cross-host publish probe in ${a.net.ns} exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(-500)}`)
    const probe = JSON.parse(r.stdout) as { refused: string[]; arrived: string[] }
    t.same(probe.refused, [`publish ${forbidden}`], `${a.agentAuth.user} (in ${a.net.ns}) is refused publishing on ${b.name}'s agent's update subject ${forbidden}, and only that`)
    t.same(probe.arrived, [allowed], `an operator on ${b.name}'s node gets ${a.agentAuth.user}'s publish on its own output subject, never the refused one`)
  }

  // ---- the CI service on a host that does not lead -----------------------------------------
  const ciUrl = `http://${ciHost.net.ip}:${CI_PORT}`
  ci = lab.spawn(ciHost.net, 'ci', [
    process.execPath, BIN, 'ci', '--nats', ciHost.natsUrl, '--http', `${ciHost.net.ip}:${CI_PORT}`, '--replicas', '3',
    '--github-poll-interval', '0', '--no-cancel-superseded', '--lease-ttl', `${LEASE_TTL_MS}ms`,
  ], { env: { REGATTA_WEBHOOK_SECRET: WEBHOOK_SECRET, REGATTA_OPERATOR_TOKEN: TOKEN, ...natsEnv('ci') } })
  await ci.waitForLog('CI service listening', 60_000)
  phase('CI service up')
  repo = await createRepo()
  const testRepo = repo
  const pipeline = (jobs: string[], script: string): string => [
    'name: ci', 'on: { push: { branches: [main] } }', 'jobs:',
    ...jobs.flatMap((j) => [`  ${j}:`, '    image: any', '    resources: { cpus: 1, mem: 128 }', '    steps:', '      - run: |',
      `          echo "${j} ran on agent=[$REGATTA_AGENT_ID]"`, ...script.split('\n').map((l) => `          ${l}`)]),
  ].join('\n') + '\n'
  const push = async (sha: string): Promise<number> => {
    const body = JSON.stringify(pushPayload({ repo: 'octo/app', cloneUrl: testRepo.url, after: sha, branch: 'main' }))
    const r = await lab.fetch(ciHost.net, `${ciUrl}/webhooks/github`, { method: 'POST', body, headers: webhookHeaders({ event: 'push', body, secret: WEBHOOK_SECRET }), timeoutMs: 10_000 })
    return r.status
  }
  const getJson = async <T>(path: string): Promise<T> => {
    const r = await lab.fetch(ciHost.net, `${ciUrl}${path}`, { headers: AUTH, timeoutMs: 5_000 })
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.error ?? r.body.slice(0, 300)}`)
    return JSON.parse(r.body) as T
  }
  const runOf = async (sha: string): Promise<RunView | undefined> => {
    const { runs } = await getJson<{ runs: RunView[] }>('/api/v1/runs')
    const run = runs.find((r) => r.sha === sha)
    return run ? getJson<RunView>(`/api/v1/runs/${run.runId}`) : undefined
  }
  const waitRun = (sha: string, done: (r: RunView) => boolean, timeoutMs: number, what: string): Promise<RunView> => {
    let last: RunView | undefined
    return waitFor(what, timeoutMs, async () => {
      last = await runOf(sha)
      return last && done(last) ? last : undefined
    }, 300).catch((err: Error) => { throw new Error(`${err.message}; last seen: ${JSON.stringify(last)}`) })
  }
  const finished = (r: RunView): boolean => ['succeeded', 'failed', 'cancelled', 'error'].includes(r.state)
  /** A job's log, attempt by attempt (the log route marks each with `::regatta attempt N` when there are several). */
  const attemptLogs = async (run: RunView, jobId: string): Promise<string[]> => {
    const r = await lab.fetch(ciHost.net, `${ciUrl}/api/v1/runs/${run.runId}/jobs/${encodeURIComponent(jobId)}/log`, { headers: AUTH, timeoutMs: 20_000 })
    const parts = r.body.split(/^::regatta attempt \d+\n/m)
    return parts.length > 1 ? parts.slice(1) : parts
  }
  /** Where the job's last attempt ran, as its log says. */
  const agentOfJob = async (run: RunView, jobId: string): Promise<string | undefined> =>
    /agent=\[([^\]$]+)\]/.exec((await attemptLogs(run, jobId)).at(-1) ?? '')?.[1]
  const hostOfAgent = (id: string | undefined): string => hosts.find((h) => h.agentId === id)?.name ?? `unknown agent ${id}`

  // ---- run 1: before the cut, one job per host --------------------------------------------
  const sha1 = await testRepo.commit({ '.regatta/ci.yml': pipeline(['j1', 'j2', 'j3'], 'sleep 1') }, 'run 1')
  t.equal(await push(sha1), 202, 'the signed push webhook (sent from inside the CI host) is accepted')
  const run1 = await waitRun(sha1, finished, 30_000, 'run 1 to end')
  t.equal(run1.state, 'succeeded', `run 1 succeeded (${run1.jobs.map((j) => `${j.id}:${j.state}`).join(', ')})`)
  const run1Hosts = await Promise.all(run1.jobs.map(async (j) => hostOfAgent(await agentOfJob(run1, j.id))))
  t.comment(`run 1's jobs ran on ${run1Hosts.join(', ')}`)

  // ---- run 2: running when the leader's link is cut ------------------------------------------
  const sha2 = await testRepo.commit({ '.regatta/ci.yml': pipeline(['j1', 'j2', 'j3'], 'sleep 10\necho done') }, 'run 2')
  t.equal(await push(sha2), 202, 'run 2 pushed')
  const run2Running = await waitRun(sha2, (r) => r.jobs.every((j) => j.state === 'running'), 20_000, 'run 2\'s three jobs running')
  const run2Before = new Map(await Promise.all(run2Running.jobs.map(async (j) => [j.id, await agentOfJob(run2Running, j.id)] as const)))
  const jobOnCutHost = [...run2Before].find(([, a]) => a === cutHost.agentId)?.[0]
  t.comment(`run 2's jobs run on ${[...run2Before].map(([j, a]) => `${j}@${hostOfAgent(a)}`).join(', ')}`)

  const cutMasterLines = cutHost.master!.lines().length
  const connectedMasterLines = new Map(connected.map((h) => [h, h.master!.lines().length]))
  const connectedAgentLines = new Map(connected.map((h) => [h, h.agent!.lines().length]))
  await lab.cut(leaderIdx)
  const cutAt = Date.now()
  t.comment(`cut ${cutHost.name}'s link (the leader ${oldLeader.id}) ${cutAt - testStart} ms into the test`)

  // a watcher of the cut master, from inside its own namespace, while it is cut off
  const cutHealth: Array<{ start: number; at: number; leader: boolean | undefined }> = []
  let watching = true
  const watcher = (async () => {
    while (watching) {
      const start = Date.now()
      const h = await health(cutHost, cutHost).catch(() => undefined)
      cutHealth.push({ start, at: Date.now(), leader: h?.leader })
      await sleep(300)
    }
  })()

  // the other two: a new leader (asked from a connected host, where exactly one may answer)
  // the two connected NATS nodes stall until their routes to the cut node are dropped (a write
  // times out once the socket's send buffer is full: 15-40 s measured on nats-server 2.9.10)
  const newLeader = await waitFor('a new leader on the connected hosts', 90_000, async () => {
    const answers = await stateAnswers(connected[0]!, 500)
    const fresh = answers.filter((a) => a.masterId !== oldLeader.id)
    return fresh.length > 0 ? fresh : undefined
  }, 100)
  const newLeaderAt = Date.now()
  t.equal(newLeader.length, 1, `exactly one master answers on the connected side (${newLeader.map((a) => a.masterId).join(', ')})`)
  const fresh = newLeader[0]!.leader!
  t.ok(fresh.id !== oldLeader.id && fresh.epoch > oldLeader.epoch, `${fresh.id} leads with epoch ${fresh.epoch} > ${oldLeader.epoch}, ${newLeaderAt - cutAt} ms after the cut`)
  const freshHost = hosts.find((h) => `m${h.net.index + 1}` === fresh.id)!
  const status2 = await cli(connected[1]!, ['status']) as { leader: LeaderView | null }
  t.same(status2.leader && { id: status2.leader.id, epoch: status2.leader.epoch }, { id: fresh.id, epoch: fresh.epoch }, `regatta status from ${connected[1]!.name} names ${fresh.id}`)

  // fencing: the cut-off master stepped down before the new one was elected
  const stepDown = await cutHost.master!.waitForLog((l) => l.msg === 'stepping down' || l.msg === 'no longer leading', 5_000, cutMasterLines)
  const elected = await freshHost.master!.waitForLog('elected leader', 1_000, connectedMasterLines.get(freshHost))
  t.equal(Number(elected.epoch), fresh.epoch, 'the new leader\'s election is the one logged')
  t.ok(logTime(stepDown) < logTime(elected), `the cut-off master stepped down ${logTime(stepDown) - cutAt} ms after the cut ("${String(stepDown.reason ?? stepDown.msg)}"), ${logTime(elected) - logTime(stepDown)} ms before ${fresh.id} was elected (no overlap)`)
  // A lease holder stops leading 0.8 × TTL after its last refresh (isLeader, which /health and
  // every action check); the lease's next tick (every TTL/4) logs it: so the line comes at most
  // 1.05 × TTL after the cut, plus a loaded machine's timer delay.
  t.ok(logTime(stepDown) - cutAt <= LEASE_TTL_MS * 1.05 + 1_000, `it logged stepping down ${logTime(stepDown) - cutAt} ms after the cut (at most 1.05 × the lease TTL + 1 s)`)

  // run 2: the jobs on the connected hosts finish; the one on the cut host is requeued elsewhere
  const run3Sha = await testRepo.commit({ '.regatta/ci.yml': pipeline(['k1', 'k2'], 'echo after the cut') }, 'run 3')
  t.equal(await push(run3Sha), 202, 'run 3 pushed during the cut')
  // the CI replica may lose its lease in the NATS stall and fail to resume its runs while
  // JetStream is stalled: it then steps down and tries again, so the runs still end
  const run2 = await waitRun(sha2, finished, 75_000, 'run 2 to end')
  const run2EndAt = Date.now()
  const ciRetakes = ci!.lines().filter((l) => l.msg === 'could not take the CI lead; stepping down').length
  t.comment(`run 2 ended ${run2EndAt - cutAt} ms after the cut${ciRetakes ? ` (the CI replica could not take the lead ${ciRetakes} time(s), stepped down and tried again)` : ''}`)
  {
    const run3 = await waitRun(run3Sha, finished, 30_000, 'run 3 to end')
    t.equal(run2.state, 'succeeded', `run 2 (running through the cut) succeeded ${Date.now() - cutAt} ms after the cut (${run2.jobs.map((j) => `${j.id}:${j.state}#${j.attempt}`).join(', ')})`)
    t.equal(run3.state, 'succeeded', `run 3 (pushed during the cut) succeeded (${run3.jobs.map((j) => `${j.id}:${j.state}`).join(', ')})`)
    t.same(run2.jobs.map((j) => j.state), ['succeeded', 'succeeded', 'succeeded'], 'every job of run 2 succeeded: none lost')
    const noLog: string[] = []
    for (const j of run2.jobs) {
      // a log read goes to the object store, then the stream: slow while JetStream is stalled
      const log = await lab.fetch(ciHost.net, `${ciUrl}/api/v1/runs/${run2.runId}/jobs/${encodeURIComponent(j.id)}/log`, { headers: AUTH, timeoutMs: 20_000 })
      if (!/done/.test(log.body)) noLog.push(`${j.id} (${log.status} ${log.error ?? JSON.stringify(log.body.slice(-80))})`)
    }
    if (noLog.length) t.comment(`jobs of run 2 without their whole log: ${noLog.join('; ')}`)
    t.same(noLog, [], 'every job of run 2 has its whole log', { todo: noLog.length ? LOG_LOSS : false })
    const run3Hosts = await Promise.all(run3.jobs.map(async (j) => hostOfAgent(await agentOfJob(run3, j.id))))
    if (run3Hosts.some((h) => h.startsWith('unknown'))) t.comment(`run 3's logs do not say where its jobs ran (${LOG_LOSS})`)
    else t.notOk(run3Hosts.includes(cutHost.name), `run 3 ran on connected hosts only (${run3Hosts.join(', ')})`)
    if (jobOnCutHost) {
      const taskBefore = run2Running.jobs.find((j) => j.id === jobOnCutHost)?.taskId
      const taskAfter = run2.jobs.find((j) => j.id === jobOnCutHost)?.taskId
      t.ok(taskBefore && taskAfter && taskAfter !== taskBefore, `${jobOnCutHost}, running on the cut host as ${taskBefore}, ended as another task (${taskAfter})`)
      const moved = await agentOfJob(run2, jobOnCutHost)
      if (moved) t.not(moved, cutHost.agentId, `${jobOnCutHost}'s last attempt ran on ${hostOfAgent(moved)}, not the cut host`)
      else t.comment(`${jobOnCutHost}'s last attempt (on a connected host) has no output in its log (${LOG_LOSS})`)
    } else {
      t.comment('no job of run 2 was on the cut host')
    }
  }

  // the cut-off master while still cut off: not leading, answering nothing, launching nothing
  const cutAnswers = await stateAnswers(cutHost, 800)
  t.same(cutAnswers, [], 'on the cut host nobody answers the leader-only state subject')
  t.equal((await health(cutHost, cutHost))?.leader, false, 'the cut-off master\'s /health says it does not lead')
  watching = false
  await watcher
  const graceAt = logTime(stepDown)
  const leadingAfter = cutHealth.filter((h) => h.at > graceAt && h.leader === true)
  t.same(leadingAfter, [], `no /health answer of the cut-off master said it leads after it stepped down (${cutHealth.length} probes)`)
  const leadingPastTtl = cutHealth.filter((h) => h.start > cutAt + LEASE_TTL_MS * 0.8 && h.leader === true)
  t.same(leadingPastTtl, [], `no /health probe started 0.8 × the lease TTL after the cut got "leader: true" (${cutHealth.filter((h) => h.start > cutAt + LEASE_TTL_MS * 0.8).length} probes): it stopped leading before its lease could lapse`)
  t.ok(cutHealth.some((h) => h.leader === false), 'and it answered /health while cut off')
  const cutLinesDuring = cutHost.master!.lines().slice(cutMasterLines)
  t.same(cutLinesDuring.filter((l) => l.msg === 'elected leader').map((l) => JSON.stringify(l)), [], 'the cut-off master was never elected while cut off')
  const acting = cutLinesDuring.filter((l) => logTime(l) > graceAt && /^(agent registered|framework subscribed|agent command failed|launch command timed out)/.test(String(l.msg)))
  t.same(acting.map((l) => JSON.stringify(l)), [], 'it registered, subscribed and commanded nothing after stepping down')
  for (const h of connected) {
    const regs = h.agent!.lines().slice(connectedAgentLines.get(h)).filter((l) => l.msg === 'registered with the master')
    t.ok(regs.every((l) => Number(l.epoch) >= fresh.epoch), `${h.name}'s agent registered only with epoch >= ${fresh.epoch} after the cut (${regs.map((l) => String(l.epoch)).join(', ') || 'none'})`)
    t.notOk(h.agent!.lines().slice(connectedAgentLines.get(h)).some((l) => /STALE_EPOCH/.test(JSON.stringify(l))), `${h.name}'s agent got no command of an old epoch`)
  }

  // ---- restore the link: the host rejoins ---------------------------------------------------
  const cutAgentLines = cutHost.agent!.lines().length
  await lab.restore(leaderIdx)
  const restoredAt = Date.now()
  await waitFor(`${cutHost.name} routed to both peers again`, 40_000, async () => {
    for (const h of hosts) if ((await routesOf(h)) !== 2) return undefined
    return true
  }, 300)
  const natsRejoinMs = Date.now() - restoredAt
  t.pass(`${cutHost.name}'s NATS node has routes to both peers again ${natsRejoinMs} ms after the link came back`)
  // its JetStream catching up (/healthz: every stream current) is measured, not waited on long
  const jsCurrent = await waitFor(`${cutHost.name}'s JetStream current`, 15_000, async () => ((await monitor(cutHost, cutHost, '/healthz')).status === 200 ? true : undefined), 500).catch(() => false)
  const jsCurrentMs = Date.now() - restoredAt
  t.ok(jsCurrent, `${cutHost.name}'s JetStream is current again (/healthz 200) ${jsCurrentMs} ms after the link came back`, { todo: jsCurrent ? false : `nats-server 2.9.10: ${(await monitor(cutHost, cutHost, '/healthz').catch((e: Error) => ({ body: e.message }))).body.trim()}` })
  const rereg = await cutHost.agent!.waitForLog((l) => l.msg === 'registered with the master' && Number(l.epoch) >= fresh.epoch, 40_000, cutAgentLines)
  t.ok(Number(rereg.epoch) >= fresh.epoch, `${cutHost.name}'s agent re-registered with the current leader (epoch ${String(rereg.epoch)}) ${logTime(rereg) - restoredAt} ms after the link came back`)
  const agentsAfter = await waitFor('three active agents again', 30_000, async () => {
    const list = await cli(cutHost, ['agents', 'ls']) as Array<{ id: string; state: string }>
    return list.length === 3 && list.every((a) => a.state === 'active') ? list : undefined
  }, 500)
  const rejoinMs = Date.now() - restoredAt
  t.same(agentsAfter.map((a) => a.id).sort(), hosts.map((h) => h.agentId).sort(), `agents ls (from ${cutHost.name}) shows the three agents active, ${rejoinMs} ms after the link came back`)

  // exactly one leader, the same seen from every host, whose /health says it leads, for a whole
  // lease TTL: the rejoining node's raft elections can stall the lease bucket some seconds after
  // the routes are back (a leader election for KV_regatta-leader 6 s later was seen), and the
  // checks below need a settled cluster. A handover in progress (no answer for a moment) is
  // waited out and noted; two answers at once, ever, fail at once.
  const twoAnswers: string[] = []
  const moves: string[] = []
  let settledLeader = ''
  let stableSince = 0
  const seen = await waitFor('one leader, the same from every host and saying so on /health, for a lease TTL', 75_000, async () => {
    const all = await Promise.all(hosts.map(async (h) => ({ h, answers: await stateAnswers(h) })))
    for (const { h, answers } of all) if (answers.length > 1) twoAnswers.push(`from ${h.name}: ${answers.map((a) => `${a.masterId}@${a.leader?.epoch}`).join(', ')}`)
    if (twoAnswers.length > 0) return all
    const heard = new Set(all.map(({ answers }) => (answers.length === 1 ? `${answers[0]!.masterId}@${answers[0]!.leader?.epoch}` : 'none')))
    const one = heard.size === 1 && !heard.has('none') ? [...heard][0]! : undefined
    const host = one && hosts.find((h) => `m${h.net.index + 1}` === all[0]!.answers[0]!.masterId)
    if (!one || !host || (await health(connected[0]!, host))?.leader !== true) {
      stableSince = 0
      return undefined
    }
    if (one !== settledLeader || stableSince === 0) {
      if (settledLeader && one !== settledLeader) moves.push(`${settledLeader} -> ${one}`)
      settledLeader = one
      stableSince = Date.now()
    }
    return Date.now() - stableSince >= LEASE_TTL_MS ? all : undefined
  }, 300)
  if (moves.length) t.comment(`the lead moved while the rejoin settled: ${moves.join(', ')}`)
  const settledMs = Date.now() - restoredAt
  t.same(twoAnswers, [], 'never two masters answering the leader-only state subject after the rejoin')
  for (const { h, answers } of seen) t.equal(answers.length, 1, `from ${h.name}: exactly one master answers the leader-only state subject (${answers.map((a) => `${a.masterId}@${a.leader?.epoch}`).join(', ')})`)
  const leaderNow = seen[0]!.answers[0]?.leader
  t.ok(seen.every(({ answers }) => answers[0]?.masterId === leaderNow?.id), `every host hears the same leader (${leaderNow?.id}@${leaderNow?.epoch})`)
  const nowHost = hosts.find((h) => `m${h.net.index + 1}` === leaderNow?.id) ?? freshHost
  if (leaderNow?.id === fresh.id && leaderNow.epoch === fresh.epoch) {
    t.pass(`${fresh.id} still leads with epoch ${fresh.epoch}`)
  } else {
    // the lease was lost while the rejoining node disturbed the streams and taken again (by the
    // same master or another): allowed only as a clean handover (checked below from the logs)
    t.ok(false, `the lead stays with ${fresh.id}@${fresh.epoch} when ${cutHost.name} rejoins (it is now ${leaderNow?.id}@${leaderNow?.epoch})`, { todo: LEADER_MOVED })
    t.ok(leaderNow && leaderNow.epoch > fresh.epoch, `the new lead has a newer epoch (${leaderNow?.epoch} > ${fresh.epoch})`)
    if (nowHost !== freshHost) t.equal((await health(connected[0]!, freshHost))?.leader, false, `${fresh.id}'s /health says it no longer leads`)
  }
  if (nowHost !== cutHost) {
    t.equal((await health(cutHost, cutHost))?.leader, false, `the rejoined ${oldLeader.id} is a standby`)
    const redirect = await waitFor(`${oldLeader.id} to redirect to ${leaderNow?.id}`, 15_000, async () => {
      const r = await lab.fetch(connected[0]!.net, `http://${cutHost.net.ip}:${MASTER_PORT}/api/v1/state`, { headers: AUTH, timeoutMs: 2_000 })
      return r.status === 307 && r.location === `http://${nowHost.net.ip}:${MASTER_PORT}/api/v1/state` ? r : undefined
    }, 300)
    t.equal(redirect.status, 307, `the rejoined ${oldLeader.id} redirects API calls to ${leaderNow?.id}`)
  }
  t.equal((await health(connected[0]!, nowHost))?.leader, true, `the leader's /health says it leads (the cluster settled ${settledMs} ms after the link came back)`)

  // from the masters' own logs (one clock): never two leaders at once, over the whole test
  const events = hosts.flatMap((h) => h.master!.lines()
    .filter((l) => l.msg === 'elected leader' || l.msg === 'stepping down' || l.msg === 'no longer leading')
    .map((l) => ({ at: logTime(l), id: h.master!.name, up: l.msg === 'elected leader' })))
    .sort((a, b) => a.at - b.at || Number(a.up) - Number(b.up))
  const leading = new Set<string>()
  const overlaps: string[] = []
  for (const e of events) {
    if (!e.up) {
      leading.delete(e.id)
      continue
    }
    if (leading.size > 0) overlaps.push(`${e.id} elected at ${e.at} while ${[...leading].join(', ')} led`)
    leading.add(e.id)
  }
  t.same(overlaps, [], `no two masters led at once (${events.filter((e) => e.up).length} elections: ${events.filter((e) => e.up).map((e) => e.id).join(' -> ')})`)
  // run 2 as it ended, job by job (attempt numbers included: a job run again, even to success,
  // changes them). Reads ask the stream's leader (openKv turns direct gets off, which a rejoined
  // replica answered with an old value); they are retried while a stream election goes on.
  const ended = (r: RunView | undefined): string => JSON.stringify(r && { state: r.state, jobs: r.jobs.map((j) => [j.id, j.state, j.attempt]) })
  const reads: string[] = []
  const run2After = await waitFor('run 2 read back after the rejoin', 30_000, async () => {
    const r = await runOf(sha2).catch((err: Error) => { reads.push(err.message); return undefined })
    if (r && finished(r) && ended(r) === ended(run2)) return r
    if (r) reads.push(ended(r))
    else reads.push('missing')
    return undefined
  }, 500).catch(() => undefined)
  if (reads.length) t.comment(`reads of run 2 before it read back as it ended: ${[...new Set(reads)].join(' | ')}`)
  t.equal(ended(run2After), ended(run2), 'run 2 is still succeeded after the host rejoined, every job on the attempt it ended with (its old copy of a job changed nothing)')

  t.comment(`times: old leader stepped down ${logTime(stepDown) - cutAt} ms, new leader serving ${newLeaderAt - cutAt} ms, run 2 ended ${run2EndAt - cutAt} ms after the cut; NATS routes back ${natsRejoinMs} ms, JetStream current ${jsCurrent ? `${jsCurrentMs} ms` : 'not within 15 s'} and three active agents ${rejoinMs} ms after the restore; whole test ${Date.now() - testStart} ms`)
})
