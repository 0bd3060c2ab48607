// `regatta dev`: everything on one machine: a local nats-server, a master, an agent (Docker
// when an engine answers, else the process containerizer), the CI service and the scaler (its
// `process` provider starts more agents as local processes for pools given a policy).
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { connect } from 'nats'
import { spawnNatsServer, type LocalNatsServer } from '../../../shared/nats/server.js'
import { agentUser, authorizationConfig, devUsers, type NatsUser } from '../../../shared/nats/auth.js'
import { httpAuthFrom, type HttpTls } from '../../../shared/http/index.js'
import { CI_FRAMEWORK_ID } from '../../ci/src/service.js'
import { RegattaError } from '../../../shared/errors/index.js'
import { createLogger } from '../../../shared/log/index.js'
import { runMaster } from '../../master/src/main.js'
import { runAgent } from '../../agent/src/main.js'
import { ciEnv, runCi } from '../../ci/src/main.js'
import { runScaler } from '../../scaler/src/main.js'
import type { AgentNats } from '../../scaler/src/providers/process.js'
import { assertListenable } from './ports.js'
import { newSecretsKey, parseSecretsKey } from '../../../shared/secrets/index.js'
import { checkTokenText } from '../../../shared/http/index.js'

/** The key sealing this machine's secrets: made once, kept (mode 0600) beside the rest of the data. */
async function devSecretsKey(path: string): Promise<Buffer> {
  const text = await readFile(path, 'utf8').catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
    const made = newSecretsKey()
    await writeFile(path, `${made}\n`, { mode: 0o600, flag: 'wx' })
    return made
  })
  return parseSecretsKey(text, path)
}

/**
 * The operator token of this machine's HTTP APIs: REGATTA_OPERATOR_TOKEN, else made once and kept
 * (mode 0600) in DATA/token, where the CLI run from the same directory finds it (.regatta/token).
 */
async function devOperatorToken(path: string): Promise<{ token: string; generated: boolean }> {
  if (process.env.REGATTA_OPERATOR_TOKEN) return { token: process.env.REGATTA_OPERATOR_TOKEN, generated: false }
  const text = await readFile(path, 'utf8').catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
    const made = randomBytes(24).toString('base64url')
    await writeFile(path, `${made}\n`, { mode: 0o600, flag: 'wx' })
    return made
  })
  return { token: checkTokenText(text.trim(), path), generated: true }
}

/** The agent id `regatta dev --nats-auth` gives its agent (its NATS user may act only as it). */
export const DEV_AGENT_ID = 'dev-agent'

/**
 * `--nats-auth`: one NATS user per component with least-privilege permissions
 * (shared/nats/auth.ts), made once and kept (mode 0600) in DATA/nats-auth.json, and the
 * nats-server config declaring them in DATA/nats.conf.
 */
export async function devNatsAuth(dataDir: string): Promise<{ users: NatsUser[]; configFile: string; usersFile: string }> {
  const usersFile = join(dataDir, 'nats-auth.json')
  const text = await readFile(usersFile, 'utf8').catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
    const made = JSON.stringify({ users: devUsers({ agentIds: [DEV_AGENT_ID], ciFrameworkId: CI_FRAMEWORK_ID }) }, null, 2)
    await writeFile(usersFile, `${made}\n`, { mode: 0o600, flag: 'wx' })
    return made
  })
  let users: NatsUser[]
  try {
    users = (JSON.parse(text) as { users: NatsUser[] }).users
    if (!Array.isArray(users)) throw new Error('no users list')
  } catch (err) {
    throw new RegattaError('INVALID_CONFIG', `${usersFile}: not a NATS users file (${(err as Error).message}); remove it to make a new one`)
  }
  const configFile = join(dataDir, 'nats.conf')
  await writeFile(configFile, authorizationConfig(users), { mode: 0o600 })
  return { users, configFile, usersFile }
}

/**
 * Users for the agents the scaler starts under `--nats-auth`: a new agent id gets a user of its
 * own, written to the users file and the config, which nats-server then reloads (SIGHUP); the
 * credentials are handed out once the user can connect. One at a time.
 */
function scaledAgentUsers(auth: { users: NatsUser[]; configFile: string; usersFile: string }, nats: LocalNatsServer): AgentNats {
  let queue: Promise<unknown> = Promise.resolve()
  const make = async (agentId: string): Promise<{ user: string; password: string }> => {
    let u = auth.users.find((x) => x.role === 'agent' && x.id === agentId)
    if (!u) {
      u = agentUser(agentId)
      auth.users.push(u)
      await writeFile(auth.usersFile, `${JSON.stringify({ users: auth.users }, null, 2)}\n`, { mode: 0o600 })
      await writeFile(auth.configFile, authorizationConfig(auth.users), { mode: 0o600 })
      nats.process.kill('SIGHUP')
      const deadline = Date.now() + 10_000
      for (;;) {
        try {
          await (await connect({ servers: nats.url, user: u.user, pass: u.password, reconnect: false })).close()
          break
        } catch (err) {
          if (Date.now() > deadline) throw new RegattaError('PROVIDER_FAILED', `nats-server did not take the new user ${u.user}: ${(err as Error).message}`)
          await new Promise((r) => setTimeout(r, 100))
        }
      }
    }
    return { user: u.user, password: u.password }
  }
  return {
    url: nats.url,
    credentials: (agentId) => {
      const next = queue.then(() => make(agentId))
      queue = next.catch(() => undefined)
      return next
    },
  }
}

/** The URL with one user's credentials in it (connectNats takes them out). */
function urlAs(url: string, users: NatsUser[] | undefined, role: NatsUser['role']): string {
  const u = users?.find((x) => x.role === role)
  return u ? url.replace('nats://', `nats://${encodeURIComponent(u.user)}:${encodeURIComponent(u.password)}@`) : url
}

export interface DevOptions {
  /** One NATS user per component with least-privilege permissions (DATA/nats-auth.json). */
  natsAuth?: boolean
  natsPort: number
  masterPort: number
  ciPort: number
  dataDir: string
  containerizer?: 'docker' | 'process'
  /** HTTPS for the master's and the CI service's HTTP APIs (--http-cert/--http-key, REGATTA_HTTP_CERT/KEY). */
  tls?: HttpTls
}

export async function runDev(o: DevOptions): Promise<{ stop(): Promise<void> }> {
  const logger = createLogger('dev')
  const dataDir = resolve(o.dataDir)
  const ciAt = { host: '127.0.0.1', port: o.ciPort }
  await assertListenable(ciAt, '--ci-port')
  await mkdir(join(dataDir, 'nats'), { recursive: true })
  // what is started so far, stopped newest first on shutdown, or when a later part fails to start
  // (a nats-server left behind would keep the command from exiting)
  const started: Array<() => Promise<void>> = []
  const stopAll = async (): Promise<void> => {
    for (const stop of started.splice(0).reverse()) await stop().catch((err: unknown) => logger.warn({ err }, 'stopping a part failed'))
  }
  try {
    // writes over HTTP need this operator token; reads are open on this one machine (only here:
    // everywhere else they need a read or operator token)
    const operator = await devOperatorToken(join(dataDir, 'token'))
    const httpAuth = httpAuthFrom({ operatorToken: operator.token, openReads: true }, process.env)
    const scheme = o.tls ? 'https' : 'http'
    const auth = o.natsAuth ? await devNatsAuth(dataDir) : undefined
    const users = auth?.users
    const nats = await spawnNatsServer({ port: o.natsPort, storeDir: join(dataDir, 'nats'), ...(auth ? { configFile: auth.configFile } : {}) })
    started.push(() => nats.stop())
    const master = await runMaster({ natsUrl: urlAs(nats.url, users, 'master'), id: 'dev-master', http: { host: '127.0.0.1', port: o.masterPort }, logger: createLogger('master'), operatorToken: operator.token, auth: httpAuth, ...(o.tls ? { tls: o.tls } : {}) })
    started.push(() => master.stop())
    const agent = await runAgent({
      natsUrl: urlAs(nats.url, users, 'agent'), workDir: join(dataDir, 'agent'), logger: createLogger('agent'), ...(users ? { id: DEV_AGENT_ID } : {}),
      ...(o.containerizer ? { containerizer: o.containerizer } : {}),
      // what its jobs leave unused is offered as revocable (jobs with `revocable: true`)
      oversubscription: {},
    })
    started.push(() => agent.stop())
    // webhooks need a secret: without one set, make one up and show it, so that a GitHub
    // webhook can be pointed at this machine right away
    const env = ciEnv()
    const secretGenerated = env.webhookSecret === undefined
    const webhookSecret = env.webhookSecret ?? randomBytes(16).toString('hex')
    const ci = await runCi({
      ...env, natsUrl: urlAs(nats.url, users, 'ci'), http: ciAt, webhookSecret, logger: createLogger('ci'),
      // writes need the operator token; reads are open on this one machine
      auth: httpAuth, ...(o.tls ? { tls: o.tls } : {}),
      // secrets need a key: without REGATTA_SECRETS_KEY, one kept in the data directory
      secretsKey: env.secretsKey ?? await devSecretsKey(join(dataDir, 'secrets.key')),
      // status links point at this machine's runs UI (port 0 is known only once listening)
      ...(env.publicUrl || o.ciPort === 0 ? {} : { publicUrl: `${scheme}://127.0.0.1:${o.ciPort}` }),
    })
    started.push(() => ci.stop())
    // agents it starts use the same containerizer as the agent above, and end with `regatta dev`
    const scaler = await runScaler({
      natsUrl: urlAs(nats.url, users, 'scaler'), dataDir: join(dataDir, 'scaler'), providers: ['process'], logger: createLogger('scaler'), stopInstancesOnExit: true,
      // with --nats-auth, each agent it starts has a NATS user of its own
      ...(auth ? { agentNats: scaledAgentUsers(auth, nats) } : {}),
      ...(o.containerizer ? { agentContainerizer: o.containerizer } : {}),
    })
    started.push(() => scaler.stop())
    const lines = [
      'Regatta is running on this machine:',
      `  NATS        ${nats.url}${auth ? ` (users and passwords in ${auth.usersFile}; the CLI: REGATTA_NATS_USER=operator REGATTA_NATS_PASSWORD=...)` : ''}`,
      `  master UI   ${master.httpUrl ?? '-'}/`,
      `  agent       ${agent.agent.id} (${agent.agent.info.containerizer} containerizer)`,
      `  runs UI     ${ci.url}/`,
      `  webhook     ${ci.url}/webhooks/github`,
      '  scaler      process provider (no pool policy yet: regatta pool set)',
      secretGenerated
        ? `  secret      ${webhookSecret} (generated; set REGATTA_WEBHOOK_SECRET to choose one)`
        : '  secret      from REGATTA_WEBHOOK_SECRET',
      operator.generated
        ? `  token       ${operator.token} (operator, for writes; kept in ${join(dataDir, 'token')}: the CLI reads .regatta/token, or REGATTA_TOKEN)`
        : '  token       from REGATTA_OPERATOR_TOKEN',
      ...(o.tls ? ['  https       both HTTP APIs serve TLS with the given certificate; the CLI trusts its CA with --ca or REGATTA_HTTP_CA'] : []),
      '',
      'Try:  npx regatta status',
      "      npx regatta exec -- sh -c 'echo hello from a container'",
      '      npx regatta pipeline validate',
      '      npx regatta trigger --repo file://$PWD --ref main && npx regatta runs ls',
      '      npx regatta pool set default --max 4 --idle 1m   # up to 3 more agents when jobs wait',
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
  } catch (err) {
    await stopAll()
    throw err
  }
  return { stop: stopAll }
}
