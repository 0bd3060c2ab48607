// The `regatta` command line: one binary for every service and every operator command.
import { Command, CommanderError, Option } from 'commander'
import { ClusterState, Subjects } from '../../../shared/protocol/index.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { connectNats, requestWithRetry, type NatsConnection } from '../../../shared/nats/index.js'
import { createLogger } from '../../../shared/log/index.js'
import { natsUrl, parseDuration, parseHostPort, parseIntArg, parseNumberArg } from '../../../shared/config/index.js'
import { formatStatus } from './format.js'
import { httpTlsFrom } from '../../../shared/http/index.js'
import type { CiClient } from './ci-client.js'

const program = new Command()
program
  .name('regatta')
  .description('Regatta: an elastic CI/CD executor pool on a Mesos-style cluster core')
  // a bad argument: one line, exit 2 (commander would print the help and exit 1)
  .exitOverride()
  .configureOutput({ outputError: () => undefined })

const natsOption = (): Option => new Option('--nats <url>', 'NATS URL (env REGATTA_NATS_URL)')
// HTTPS of the master's and the CI service's HTTP APIs (shared/http/tls.ts)
const httpCertOption = (): Option => new Option('--http-cert <file>', 'serve HTTPS with this PEM certificate (chain) (env REGATTA_HTTP_CERT; needs --http-key)')
const httpKeyOption = (): Option => new Option('--http-key <file>', 'the PEM private key of --http-cert (env REGATTA_HTTP_KEY)')
const jsonOption = (): Option => new Option('--json', 'print JSON for scripts')

/** Runs a long-lived service until SIGINT/SIGTERM. */
async function serveUntilSignal(start: () => Promise<{ stop(): Promise<void> }>): Promise<void> {
  const running = await start()
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      void running.stop().finally(resolve)
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}

async function withNats<T>(url: string | undefined, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectNats(natsUrl(url), 'regatta-cli', { maxReconnectAttempts: 3 })
  try {
    return await fn(nc)
  } finally {
    await nc.close().catch(() => undefined)
  }
}

async function clusterState(url: string | undefined): Promise<ClusterState> {
  return withNats(url, (nc) => requestWithRetry(nc, Subjects.masterState, {}, ClusterState, { deadlineMs: 10_000, timeoutMs: 3_000 }))
}

program.command('dev')
  .description('run everything on one machine: nats-server, master, agent')
  .option('--nats-port <n>', 'NATS port', '4222')
  .option('--master-port <n>', 'master HTTP port', '5050')
  .option('--ci-port <n>', 'CI HTTP port', '8080')
  .option('--data <dir>', 'data directory', '.regatta')
  .addOption(new Option('--containerizer <kind>', 'force a containerizer').choices(['docker', 'process']))
  .option('--nats-auth', 'one NATS user per component with least-privilege permissions (kept in DATA/nats-auth.json)')
  .addOption(httpCertOption())
  .addOption(httpKeyOption())
  .action(async (opts: { natsPort: string; masterPort: string; ciPort: string; data: string; containerizer?: 'docker' | 'process'; natsAuth?: boolean; httpCert?: string; httpKey?: string }) => {
    const { runDev } = await import('./dev.js')
    const tls = httpTlsFrom({ certFile: opts.httpCert, keyFile: opts.httpKey })
    await serveUntilSignal(() => runDev({
      natsPort: parseIntArg(opts.natsPort, '--nats-port', 1, 65535),
      masterPort: parseIntArg(opts.masterPort, '--master-port', 0, 65535),
      ciPort: parseIntArg(opts.ciPort, '--ci-port', 0, 65535),
      dataDir: opts.data,
      ...(opts.containerizer ? { containerizer: opts.containerizer } : {}),
      ...(opts.natsAuth ? { natsAuth: true } : {}),
      ...(tls ? { tls } : {}),
    }))
  })

/** --task-start-timeout: at least a second (every start takes some), at most a day. */
function taskStartTimeout(text: string): number {
  const ms = parseDuration(text, '--task-start-timeout')
  if (ms < 1_000 || ms > 86_400_000) throw new RegattaError('INVALID_CONFIG', `--task-start-timeout: "${text}" must be from 1s to 24h`)
  return ms
}

program.command('master')
  .description('run one master (run 3 for HA)')
  .addOption(natsOption())
  .option('--id <id>', 'master id (default: host name and a random suffix)')
  .option('--http <host:port>', 'operator HTTP API address', '0.0.0.0:5050')
  .option('--advertise <url>', 'URL other masters redirect to (default from --http)')
  .option('--lease-ttl <duration>', 'leader lease TTL: a dead leader is replaced after about this long', '3s')
  .option('--heartbeat-interval <duration>', 'how often agents heartbeat', '1s')
  .option('--agent-unreachable <duration>', 'an agent silent this long is unreachable', '5s')
  .option('--agent-gone <duration>', 'an unreachable agent is gone after this long', '60s')
  .option('--offer-timeout <duration>', 'offers held longer are rescinded', '20s')
  .option('--task-start-timeout <duration>', 'a task still STAGING or STARTING (checkout, image pull, container start) this long after its launch is killed and reported LOST (TASK_START_TIMEOUT)', '10m')
  .option('--replicas <n>', 'JetStream stream and KV replicas (3 on a 3- or 5-node NATS cluster)', '1')
  .option('--operator-token <token>', 'bearer token of the operator HTTP routes (drain, undrain...); env REGATTA_OPERATOR_TOKEN; none: they answer 403')
  .addOption(httpCertOption())
  .addOption(httpKeyOption())
  .action(async (opts: {
    nats?: string; id?: string; http: string; advertise?: string; leaseTtl: string; heartbeatInterval: string
    agentUnreachable: string; agentGone: string; offerTimeout: string; replicas: string; operatorToken?: string; taskStartTimeout: string
    httpCert?: string; httpKey?: string
  }) => {
    const { runMaster, operatorTokenFrom } = await import('../../master/src/main.js')
    const operatorToken = operatorTokenFrom(opts.operatorToken)
    const tls = httpTlsFrom({ certFile: opts.httpCert, keyFile: opts.httpKey })
    await serveUntilSignal(() => runMaster({
      natsUrl: natsUrl(opts.nats), http: parseHostPort(opts.http, '--http'),
      ...(operatorToken ? { operatorToken } : {}), ...(tls ? { tls } : {}),
      ...(opts.id ? { id: opts.id } : {}), ...(opts.advertise ? { advertiseUrl: opts.advertise } : {}),
      config: {
        leaseTtlMs: parseDuration(opts.leaseTtl, '--lease-ttl'),
        heartbeatIntervalMs: parseDuration(opts.heartbeatInterval, '--heartbeat-interval'),
        agentUnreachableMs: parseDuration(opts.agentUnreachable, '--agent-unreachable'),
        agentGoneMs: parseDuration(opts.agentGone, '--agent-gone'),
        offerTimeoutMs: parseDuration(opts.offerTimeout, '--offer-timeout'),
        taskStartTimeoutMs: taskStartTimeout(opts.taskStartTimeout),
        replicas: parseIntArg(opts.replicas, '--replicas', 1, 5),
      },
    }))
  })

program.command('agent')
  .description('run one build agent')
  .addOption(natsOption())
  .option('--id <id>', 'the agent\'s id, also its NATS user\'s (env REGATTA_AGENT_ID; default: kept in the work dir, made from the host name once)')
  .option('--pool <name>', 'pool the agent belongs to', 'default')
  .option('--resources <spec>', 'e.g. "cpus:2;mem:4096;disk:20000;ports:[31000-32000]" (default: detected)')
  .option('--attributes <spec>', 'e.g. "os:linux;arch:amd64"')
  .addOption(new Option('--containerizer <kind>', 'default: docker when an engine answers').choices(['docker', 'process']))
  .option('--work-dir <dir>', 'checkpoints and task sandboxes', '.regatta/agent')
  .option('--default-image <image>', 'image for tasks that name none', 'regatta/busybox:latest')
  .option('--oversubscribe', 'offer what tasks leave unused as revocable; preempt revocable tasks when it is needed back')
  .option('--revocable-margin <fraction>', 'with --oversubscribe: part of the allocation kept back from the estimate (default 0.2)')
  .option('--qos-interval <duration>', 'with --oversubscribe: how often usage is sampled and the QoS decision taken (default 2s)')
  .option('--qos-min-free-mem <mib>', 'with --oversubscribe: host memory pressure below this much available (default 5% of memory)')
  .option('--qos-max-cpu-busy <fraction>', 'with --oversubscribe: host CPU pressure at or above this busy fraction (default: not acted on)')
  .option('--reap-interval <duration>', 'how often orphans (containers, processes, sandboxes no task owns) are looked for and removed (default 30s)')
  .option('--disk-budget <mib>', 'most MiB the task sandboxes may take; kept sandboxes of ended tasks are evicted least recently used first (default: the agent\'s disk resource)')
  .option('--sandbox-retention <duration>', 'how long an ended task\'s sandbox is kept (default 10m; 0: removed at once)')
  .action(async (opts: {
    nats?: string; id?: string; pool: string; resources?: string; attributes?: string; containerizer?: 'docker' | 'process'; workDir: string; defaultImage: string
    oversubscribe?: boolean; revocableMargin?: string; qosInterval?: string; qosMinFreeMem?: string; qosMaxCpuBusy?: string
    reapInterval?: string; diskBudget?: string; sandboxRetention?: string
  }) => {
    const { runAgent, oversubscriptionFromFlags, diskFromFlags } = await import('../../agent/src/main.js')
    const oversubscription = oversubscriptionFromFlags(opts)
    const disk = diskFromFlags(opts)
    const id = agentIdArg(opts.id, process.env.REGATTA_AGENT_ID)
    await serveUntilSignal(() => runAgent({
      natsUrl: natsUrl(opts.nats), pool: opts.pool, workDir: opts.workDir, defaultImage: opts.defaultImage, disk, ...(id ? { id } : {}),
      ...(oversubscription ? { oversubscription } : {}),
      ...(opts.resources ? { resources: opts.resources } : {}),
      ...(opts.attributes ? { attributes: opts.attributes } : {}),
      ...(opts.containerizer ? { containerizer: opts.containerizer } : {}),
    }))
  })

/** `--id`, else REGATTA_AGENT_ID: letters, digits, `.`, `_` and `-` (it names NATS subjects and users). */
function agentIdArg(flag: string | undefined, env: string | undefined): string | undefined {
  const [value, where] = flag !== undefined ? [flag, '--id'] : [env, 'REGATTA_AGENT_ID']
  if (value === undefined || value === '') return undefined
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(value)) throw new RegattaError('INVALID_CONFIG', `${where}: "${value.slice(0, 80)}" is not an agent id (1 to 64 of letters, digits, . _ -)`)
  return value
}

program.command('exec')
  .description('run one task on the cluster, stream its output, exit with its exit code')
  .addOption(natsOption())
  .option('--image <image>', 'container image (default: the agent\'s default image)')
  .option('--cpus <n>', 'CPUs', '0.1')
  .option('--mem <mib>', 'memory in MiB', '64')
  .option('--role <role>', 'role to take resources under', '*')
  .addOption(new Option('--network <mode>', 'container network').choices(['none', 'host']))
  .argument('<command...>', 'the command (after --)')
  .action(async (command: string[], opts: { nats?: string; image?: string; cpus: string; mem: string; role: string; network?: 'none' | 'host' }) => {
    const { execTask } = await import('./exec.js')
    const cpus = parseNumberArg(opts.cpus, '--cpus', 0.001)
    const mem = parseNumberArg(opts.mem, '--mem', 1)
    const result = await withNats(opts.nats, (nc) => execTask({
      nc, command, cpus, mem, role: opts.role, logger: createLogger('exec', { level: 'error' }),
      stdout: process.stdout, stderr: process.stderr,
      ...(opts.image ? { image: opts.image } : {}), ...(opts.network ? { network: opts.network } : {}),
    }))
    if (result.status.state !== 'FINISHED' && result.status.state !== 'FAILED') {
      process.stderr.write(`regatta: task ${result.status.state}${result.status.message ? `: ${result.status.message}` : ''}\n`)
    } else if (result.status.reason && result.status.reason !== 'COMMAND_FAILED' && result.status.message) {
      process.stderr.write(`regatta: ${result.status.message}\n`)
    }
    process.exitCode = result.exitCode
  })

program.command('status')
  .description('leader, agents, resources used/total, frameworks')
  .addOption(natsOption())
  .addOption(jsonOption())
  .action(async (opts: { nats?: string; json?: boolean }) => {
    const state = await clusterState(opts.nats)
    process.stdout.write(opts.json ? `${JSON.stringify(state)}\n` : `${formatStatus(state)}\n`)
  })

const agents = program.command('agents').description('the pool\'s agents')
agents.command('ls')
  .description('list agents with state, pool, resources used/total, tasks, idle time')
  .addOption(natsOption())
  .addOption(jsonOption())
  .option('--pool <name>', 'only the agents of this pool')
  .action(async (opts: { nats?: string; json?: boolean; pool?: string }) => {
    const { agentsLs } = await import('./agents.js')
    await withNats(opts.nats, (nc) => agentsLs(nc, opts, (text) => { process.stdout.write(text) }))
  })
for (const [name, type, what] of [
  ['drain', 'DRAIN', 'take no new work on the agent: its offers are withdrawn, running tasks finish, frameworks get inverse offers'],
  ['undrain', 'UNDRAIN', 'let a drained agent take new work again'],
] as const) {
  agents.command(name)
    .description(what)
    .argument('<id>', 'agent id (see regatta agents ls)')
    .addOption(natsOption())
    .addOption(jsonOption())
    .action(async (id: string, opts: { nats?: string; json?: boolean }) => {
      const { agentsDrain } = await import('./agents.js')
      await withNats(opts.nats, (nc) => agentsDrain(nc, type, id, opts, (text) => { process.stdout.write(text) }))
    })
}

const roles = program.command('roles').description('roles: weights, quota guarantees, allocations and reservations')
roles.command('ls')
  .description('list roles: weight, quota, what each holds (allocated) and what agents reserve for it')
  .addOption(natsOption())
  .addOption(jsonOption())
  .action(async (opts: { nats?: string; json?: boolean }) => {
    const { rolesLs } = await import('./roles.js')
    await withNats(opts.nats, (nc) => rolesLs(nc, opts, (text) => { process.stdout.write(text) }))
  })
roles.command('set')
  .description('set a role\'s weight and/or quota guarantee (kept by the masters across failovers)')
  .argument('<role>', 'the role, e.g. ci or ci/main')
  .option('--weight <n>', 'share divisor against sibling roles (default 1)')
  .option('--quota <spec>', 'guarantee, e.g. "cpus:4;mem:8192"; "none" removes it')
  .addOption(natsOption())
  .addOption(jsonOption())
  .action(async (role: string, opts: { nats?: string; json?: boolean; weight?: string; quota?: string }) => {
    const { parseRolesSet, rolesSet } = await import('./roles.js')
    const settings = parseRolesSet(role, opts)
    await withNats(opts.nats, (nc) => rolesSet(nc, role, settings, opts, (text) => { process.stdout.write(text) }))
  })

const pool = program.command('pool').description('pool policies: how the scaler sizes each pool of agents')
pool.command('ls')
  .description('list pool policies: min, max, idle timeout, provider, agents now, pending demand')
  .addOption(natsOption())
  .addOption(jsonOption())
  .action(async (opts: { nats?: string; json?: boolean }) => {
    const { poolLs } = await import('./pool.js')
    await withNats(opts.nats, (nc) => poolLs(nc, opts, (text) => { process.stdout.write(text) }, (text) => { process.stderr.write(text) }))
  })
pool.command('set')
  .description('set a pool\'s policy (a new pool needs --max); --wait shows a progress bar until the pool has its new size')
  .argument('<name>', 'the pool (agents\' --pool)')
  .option('--min <n>', 'agents kept even when idle (new pool: 0)')
  .option('--max <n>', 'agents never exceeded')
  .option('--idle <duration>', 'an agent idle this long above min is drained and stopped (new pool: 5m)')
  .option('--provider <name>', 'what starts the agents: process or docker (new pool: process)')
  .option('--wait', 'wait, with a progress bar, until the pool has at least min and at most max agents')
  .option('--timeout <duration>', 'how long --wait waits', '5m')
  .addOption(natsOption())
  .addOption(jsonOption())
  .action(async (name: string, opts: { nats?: string; json?: boolean; min?: string; max?: string; idle?: string; provider?: string; wait?: boolean; timeout: string }) => {
    const { parsePoolSet, poolSet } = await import('./pool.js')
    parsePoolSet(name, opts)
    const timeoutMs = parseDuration(opts.timeout, '--timeout')
    await withNats(opts.nats, (nc) => poolSet(nc, name, { ...opts, timeoutMs, tty: process.stdout.isTTY === true }, (text) => { process.stdout.write(text) }))
  })

program.command('scaler')
  .description('run the pool scaler: starts and stops agents per pool policy (regatta pool set) through its providers')
  .addOption(natsOption())
  .option('--data <dir>', 'work dirs and records of the agents it starts', '.regatta/scaler')
  .option('--providers <list>', 'providers to run, comma-separated', 'process,docker')
  .addOption(new Option('--agent-containerizer <kind>', 'containerizer of the agents it starts (default: theirs to detect)').choices(['docker', 'process']))
  .option('--agent-resources <spec>', 'resources of the agents it starts, e.g. "cpus:2;mem:4096" (default: detected)')
  .option('--docker-image <image>', 'image of the docker provider\'s agents whose entrypoint is regatta (default: built locally from this host\'s node, this checkout mounted)')
  .option('--interval <duration>', 'how often it decides', '250ms')
  .option('--register-deadline <duration>', 'an agent that has not registered this long after its start is stopped', '60s')
  .option('--agent-lost <duration>', 'an agent unreachable or gone this long has its instance stopped', '30s')
  .option('--cooldown <duration>', 'after a scale-up, no idle agent of the pool is drained for this long', '10s')
  .option('--lease-ttl <duration>', 'scaler lease TTL (several replicas: one acts)', '5s')
  .option('--replicas <n>', 'JetStream KV replicas (3 on a 3- or 5-node NATS cluster)', '1')
  .option('--id <id>', 'scaler id (default: host name and a random suffix)')
  .action(async (opts: {
    nats?: string; data: string; providers: string; agentContainerizer?: 'docker' | 'process'; agentResources?: string; dockerImage?: string
    interval: string; registerDeadline: string; agentLost: string; cooldown: string; leaseTtl: string; replicas: string; id?: string
  }) => {
    const { runScaler } = await import('../../scaler/src/main.js')
    const providers = opts.providers.split(',').map((s) => s.trim()).filter(Boolean)
    for (const p of providers) {
      if (p !== 'process' && p !== 'docker') throw new RegattaError('INVALID_CONFIG', `--providers: "${p}" is not a provider (process, docker)`)
    }
    if (opts.agentResources) {
      const { parseResources } = await import('../../../shared/resources/index.js')
      try {
        parseResources(opts.agentResources)
      } catch (err) {
        throw new RegattaError('INVALID_CONFIG', `--agent-resources: ${(err as Error).message}`)
      }
    }
    const config = {
      natsUrl: natsUrl(opts.nats), dataDir: opts.data, providers: providers as Array<'process' | 'docker'>,
      intervalMs: parseDuration(opts.interval, '--interval'), leaseTtlMs: parseDuration(opts.leaseTtl, '--lease-ttl'),
      replicas: parseIntArg(opts.replicas, '--replicas', 1, 5),
      policy: {
        registerDeadlineMs: parseDuration(opts.registerDeadline, '--register-deadline'),
        agentLostMs: parseDuration(opts.agentLost, '--agent-lost'),
        cooldownMs: parseDuration(opts.cooldown, '--cooldown'),
      },
      ...(opts.agentContainerizer ? { agentContainerizer: opts.agentContainerizer } : {}),
      ...(opts.agentResources ? { agentResources: opts.agentResources } : {}),
      ...(opts.dockerImage ? { dockerImage: opts.dockerImage, dockerImageRunsRegatta: true } : {}),
      ...(opts.id ? { id: opts.id } : {}),
    }
    if (config.intervalMs < 10) throw new RegattaError('INVALID_CONFIG', `--interval: "${opts.interval}" is too short (at least 10ms)`)
    await serveUntilSignal(() => runScaler(config))
  })

program.command('ci')
  .description('run the CI service: GitHub webhooks, pipelines, the runs API and web UI (env: REGATTA_WEBHOOK_SECRET, REGATTA_GITHUB_TOKEN, REGATTA_GITHUB_API_URL, REGATTA_PUBLIC_URL, REGATTA_SECRETS_KEY, REGATTA_CANCEL_SUPERSEDED)')
  .addOption(natsOption())
  .option('--http <host:port>', 'HTTP address: webhooks, runs API and UI', '0.0.0.0:8080')
  .option('--public-url <url>', 'base URL of the runs UI, for links in commit statuses (env REGATTA_PUBLIC_URL)')
  .option('--replicas <n>', 'JetStream KV replicas (3 on a 3- or 5-node NATS cluster)', '1')
  .option('--no-cancel-superseded', 'keep older runs of a branch or pull request running when a newer push arrives (env REGATTA_CANCEL_SUPERSEDED=false)')
  .option('--github-poll-interval <duration>', 'how often GitHub is asked for branch heads and pull requests that no webhook announced; 0 or off: never (env REGATTA_GITHUB_POLL_INTERVAL, default 60s)')
  .option('--lease-ttl <duration>', 'CI lease TTL: one replica runs the framework; another takes over about this long after it dies (10s or more on a NATS cluster)', '5s')
  .option('--reconcile-interval <duration>', 'how often jobs launched but not started are asked about, and after how long (env REGATTA_RECONCILE_INTERVAL, default 60s)')
  .option('--cache-volume-ttl <duration>', 'destroy cache volumes unused for this long; 0 or off: never (env REGATTA_CACHE_VOLUME_TTL, default 7d)')
  .option('--repo-weights <list>', 'weights of the fair share between repositories, owner/repo=2,... (env REGATTA_REPO_WEIGHTS, default 1 each)')
  .addOption(httpCertOption())
  .addOption(httpKeyOption())
  .action(async (opts: { nats?: string; http: string; publicUrl?: string; replicas: string; cancelSuperseded: boolean; githubPollInterval?: string; leaseTtl: string; reconcileInterval?: string; cacheVolumeTtl?: string; repoWeights?: string; httpCert?: string; httpKey?: string }) => {
    const { runCi, ciEnv, pollInterval, reconcileInterval, cacheVolumeTtl } = await import('../../ci/src/main.js')
    const { parseRepoWeights } = await import('../../ci/src/placement.js')
    const env = ciEnv()
    const tls = httpTlsFrom({ certFile: opts.httpCert, keyFile: opts.httpKey })
    if (opts.githubPollInterval !== undefined) env.githubPollIntervalMs = pollInterval(opts.githubPollInterval, '--github-poll-interval')
    if (opts.reconcileInterval !== undefined) env.reconcileIntervalMs = reconcileInterval(opts.reconcileInterval, '--reconcile-interval')
    if (opts.cacheVolumeTtl !== undefined) env.cacheVolumeTtlMs = cacheVolumeTtl(opts.cacheVolumeTtl, '--cache-volume-ttl')
    if (opts.repoWeights !== undefined) env.repoWeights = parseRepoWeights(opts.repoWeights, '--repo-weights')
    const leaseTtlMs = parseDuration(opts.leaseTtl, '--lease-ttl')
    if (leaseTtlMs < 500) throw new RegattaError('INVALID_CONFIG', `--lease-ttl: "${opts.leaseTtl}" is too short (at least 500ms)`)
    // the flag, when given, wins over the environment
    if (!opts.cancelSuperseded) env.cancelSuperseded = false
    const publicUrl = opts.publicUrl ?? env.publicUrl
    if (publicUrl !== undefined && !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(publicUrl)) {
      throw new RegattaError('INVALID_CONFIG', `--public-url: "${publicUrl}" is not an http(s) URL`)
    }
    const nats = natsUrl(opts.nats)
    const http = parseHostPort(opts.http, '--http')
    const replicas = parseIntArg(opts.replicas, '--replicas', 1, 5)
    const { assertListenable } = await import('./ports.js')
    await assertListenable(http, '--http')
    await serveUntilSignal(() => runCi({ natsUrl: nats, http, replicas, leaseTtlMs, ...env, ...(publicUrl ? { publicUrl } : {}), ...(tls ? { tls } : {}) }))
  })

const secrets = program.command('secrets').description('repository secrets, sealed by the CI service (values from stdin, never shown)')
secrets.command('set')
  .description('store a secret: its value is read from stdin, e.g. printf %s "$TOKEN" | regatta secrets set acme/web NPM_TOKEN')
  .argument('<repo>', 'the repository, owner/name')
  .argument('<name>', 'the secret\'s name, as jobs read it (an env var name)')
  .addOption(natsOption())
  .action(async (repo: string, name: string, opts: { nats?: string }) => {
    const { checkSecretArgs, readSecretValue, setSecret } = await import('./secrets.js')
    checkSecretArgs(repo, name)
    const value = await readSecretValue(process.stdin)
    await withNats(opts.nats, (nc) => setSecret(nc, repo, name, value))
    process.stdout.write(`secret ${name} set for ${repo}\n`)
  })
secrets.command('ls')
  .description('list a repository\'s secrets: names and when each was set (never values)')
  .argument('<repo>', 'the repository, owner/name')
  .addOption(natsOption())
  .addOption(jsonOption())
  .action(async (repo: string, opts: { nats?: string; json?: boolean }) => {
    const { checkSecretArgs, formatSecrets, listSecrets } = await import('./secrets.js')
    checkSecretArgs(repo)
    const list = await withNats(opts.nats, (nc) => listSecrets(nc, repo))
    process.stdout.write(opts.json ? `${JSON.stringify(list)}\n` : `${formatSecrets(list)}\n`)
  })
secrets.command('rm')
  .description('delete a secret')
  .argument('<repo>', 'the repository, owner/name')
  .argument('<name>', 'the secret\'s name')
  .addOption(natsOption())
  .action(async (repo: string, name: string, opts: { nats?: string }) => {
    const { checkSecretArgs, deleteSecret } = await import('./secrets.js')
    checkSecretArgs(repo, name)
    await withNats(opts.nats, (nc) => deleteSecret(nc, repo, name))
    process.stdout.write(`secret ${name} deleted from ${repo}\n`)
  })

// The run commands talk to the CI service's HTTP API (--ci), not to NATS.
const ciOption = (): Option => new Option('--ci <url>', 'the CI service\'s URL (env REGATTA_CI_URL, default http://127.0.0.1:8080)')
const tokenOption = (): Option => new Option('--token <token>', 'bearer token for the CI service (env REGATTA_TOKEN, else REGATTA_OPERATOR_TOKEN, else .regatta/token from `regatta dev`)')
const caOption = (): Option => new Option('--ca <file>', 'PEM of the CA that signed an https --ci\'s certificate, trusted beside the system\'s (env REGATTA_HTTP_CA)')
async function ciClient(flag: string | undefined, token?: string, caFile?: string): Promise<CiClient> {
  const { CiClient, ciUrl, ciToken } = await import('./ci-client.js')
  const { httpCaFrom } = await import('../../../shared/http/index.js')
  return new CiClient(ciUrl(flag), ciToken(token), httpCaFrom(caFile))
}
const stdout = (text: string): void => { process.stdout.write(text) }

const runs = program.command('runs').description('pipeline runs (from the CI service)')
runs.command('ls')
  .description('list runs, newest first: repository, ref, commit, state, jobs succeeded/total, age, duration; --stuck: what is past its bound')
  .addOption(ciOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .addOption(jsonOption())
  .option('--limit <n>', 'at most this many runs', '20')
  .option('--stuck', 'list jobs and runs past their bound (waiting for resources, task not started, running past the job timeout, no progress), naming the bound')
  .option('--max-waiting <duration>', 'with --stuck: bound of a job waiting for resources (default 10m)')
  .option('--max-starting <duration>', 'with --stuck: bound of a job whose task is STAGING/STARTING (default 11m: the master\'s --task-start-timeout and a minute)')
  .option('--max-idle <duration>', 'with --stuck: bound of a run with no job waiting, starting or running (default 5m)')
  .action(async (opts: { ci?: string; token?: string; ca?: string; json?: boolean; limit: string; stuck?: boolean; maxWaiting?: string; maxStarting?: string; maxIdle?: string }) => {
    const limit = parseIntArg(opts.limit, '--limit', 1, 1000)
    const bound = (text: string | undefined, flag: string): number | undefined => {
      if (text === undefined) return undefined
      if (!opts.stuck) throw new RegattaError('INVALID_CONFIG', `${flag}: only with --stuck`)
      const ms = parseDuration(text, flag)
      if (ms < 1 || ms > 30 * 86_400_000) throw new RegattaError('INVALID_CONFIG', `${flag}: "${text}" must be from 1ms to 30d`)
      return ms
    }
    const maxWaitingMs = bound(opts.maxWaiting, '--max-waiting')
    const maxStartingMs = bound(opts.maxStarting, '--max-starting')
    const maxIdleMs = bound(opts.maxIdle, '--max-idle')
    const { runsLs, runsStuck } = await import('./runs.js')
    if (opts.stuck) {
      await runsStuck(await ciClient(opts.ci, opts.token, opts.ca), {
        ...(maxWaitingMs !== undefined ? { maxWaitingMs } : {}), ...(maxStartingMs !== undefined ? { maxStartingMs } : {}),
        ...(maxIdleMs !== undefined ? { maxIdleMs } : {}), ...(opts.json ? { json: true } : {}),
      }, stdout)
      return
    }
    await runsLs(await ciClient(opts.ci, opts.token, opts.ca), { limit, ...(opts.json ? { json: true } : {}) }, stdout)
  })
runs.command('show')
  .description('one run: its trigger and state, and each job with its state, attempt, exit code and duration')
  .argument('<id>', 'run id')
  .addOption(ciOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .addOption(jsonOption())
  .action(async (id: string, opts: { ci?: string; token?: string; ca?: string; json?: boolean }) => {
    const { runsShow } = await import('./runs.js')
    await runsShow(await ciClient(opts.ci, opts.token, opts.ca), id, opts, stdout)
  })
runs.command('cancel')
  .description('cancel a run: its running jobs are killed, the others will not start')
  .argument('<id>', 'run id')
  .addOption(ciOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .addOption(jsonOption())
  .action(async (id: string, opts: { ci?: string; token?: string; ca?: string; json?: boolean }) => {
    const { runsCancel } = await import('./runs.js')
    await runsCancel(await ciClient(opts.ci, opts.token, opts.ca), id, opts, stdout)
  })
runs.command('rerun')
  .description('start a new run of the same commit and trigger; prints its id')
  .argument('<id>', 'run id')
  .addOption(ciOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .addOption(jsonOption())
  .action(async (id: string, opts: { ci?: string; token?: string; ca?: string; json?: boolean }) => {
    const { runsRerun } = await import('./runs.js')
    await runsRerun(await ciClient(opts.ci, opts.token, opts.ca), id, opts, stdout)
  })

program.command('logs')
  .description('a job\'s log (RUN/JOB), or every job\'s log of a run (RUN); -f follows it live until the job ends')
  .argument('<run[/job]>', 'run id, or run id / job id (e.g. "r1a2b3c/ci/test (shard=1)")')
  .option('-f, --follow', 'follow the log live until the job ends')
  .addOption(ciOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .addOption(jsonOption())
  .action(async (arg: string, opts: { ci?: string; token?: string; ca?: string; json?: boolean; follow?: boolean }) => {
    const { logs } = await import('./runs.js')
    await logs(await ciClient(opts.ci, opts.token, opts.ca), arg, opts, stdout)
  })

program.command('trigger')
  .description('start a run without a webhook (the commit\'s pipelines that run on `manual`); prints its id')
  .requiredOption('--repo <clone-url>', 'clone URL of the repository (any URL git accepts, e.g. file:///srv/git/app)')
  .requiredOption('--ref <ref>', 'branch, tag or full ref (refs/heads/main)')
  .option('--sha <sha>', 'the commit (default: what --ref points at now)')
  .addOption(ciOption())
  .addOption(tokenOption())
  .addOption(caOption())
  .addOption(jsonOption())
  .action(async (opts: { ci?: string; token?: string; ca?: string; json?: boolean; repo: string; ref: string; sha?: string }) => {
    const { trigger } = await import('./runs.js')
    await trigger(await ciClient(opts.ci, opts.token, opts.ca), opts, stdout)
  })

const pipeline = program.command('pipeline').description('pipeline files (.regatta/*.yml)')
pipeline.command('validate')
  .description('check pipeline files; each error is printed as file:line:column: message; exit 1 when any')
  .argument('[paths...]', 'files, or directories (their .regatta/*.yml)', ['.'])
  .action(async (paths: string[]) => {
    const { validatePipelines } = await import('./pipeline-validate.js')
    const result = await validatePipelines(paths)
    process.stdout.write(`${result.output}\n`)
    if (!result.ok) process.exitCode = 1
  })

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end this way too, with exit code 0
    if (err.exitCode !== 0) process.stderr.write(`regatta: ${err.message.replace(/^error: /, '')} (see regatta --help)\n`)
    process.exitCode = err.exitCode === 0 ? 0 : 2
  } else {
    const e = RegattaError.from(err)
    process.stderr.write(`regatta: ${e.message}\n`)
    process.exitCode = e.code === 'INVALID_CONFIG' ? 2 : 1
  }
}
