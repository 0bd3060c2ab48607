// The production deployment shapes in deploy/ are real configs: every YAML file parses; the
// compose file, the Kubernetes manifests and the systemd units run `regatta` with flags the CLI
// has (its own --help is the reference); the NATS node configs pass `nats-server -t`, and,
// moved onto loopback ports and temp stores, form a real 3-node JetStream cluster whose R3 KV
// bucket keeps answering after its stream leader is killed. Security: every component connects
// to NATS as its own user of regatta-auth.conf (made, with the env files, by deploy/make-secrets.ts),
// its secrets come from env files and Kubernetes Secrets (nothing but placeholders committed), each
// agent runs with an id (--id or REGATTA_AGENT_ID) that `regatta agent` accepts and its NATS user
// (agent-<idToken(id)>) is for, the CI replicas and masters with a lease TTL of at least 10 s, and
// the cluster still forms with the users' block included, the nodes refusing anonymous clients.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { connect, type NatsConnection } from 'nats'
import { natsUrl, parseDuration } from '../../../shared/config/index.js'
import { freePort } from '../../helpers/nats-server.js'
import { idToken } from '../../../shared/protocol/subjects.js'
import { CI_FRAMEWORK_ID } from '../../../services/ci/src/service.js'

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0]

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const DEPLOY = join(ROOT, 'deploy')
const CLI = join(ROOT, 'services/cli/bin/regatta.mjs')
const NODES = ['n1', 'n2', 'n3'] as const
const NATS_URLS = 'nats://n1:4222,nats://n2:4222,nats://n3:4222'
/** Variables whose values are secrets: they may come only from env files and Secrets. */
const SECRET_VARS = ['REGATTA_NATS_PASSWORD', 'REGATTA_OPERATOR_TOKEN', 'REGATTA_READ_TOKEN', 'REGATTA_WEBHOOK_SECRET', 'REGATTA_SECRETS_KEY', 'REGATTA_GITHUB_TOKEN', 'REGATTA_TOKEN']

/** What deploy/make-secrets.ts writes into a temp dir (once per test file), file name -> text. */
let secretsDir: string | undefined
async function madeSecrets(): Promise<string> {
  if (!secretsDir) {
    const dir = await mkdtemp(join(tmpdir(), 'regatta-deploy-secrets-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(DEPLOY, 'make-secrets.ts'), '--out', join(dir, 's')], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
    if (r.status !== 0) throw new Error(`make-secrets.ts exited ${r.status}: ${r.stderr}`)
    secretsDir = join(dir, 's')
  }
  return secretsDir
}

/** KEY=value lines of an env file (comments and blank lines skipped). */
function parseEnv(text: string): Map<string, string> {
  const m = new Map<string, string>()
  for (const line of text.split('\n')) {
    const x = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim())
    if (x) m.set(x[1]!, x[2]!)
  }
  return m
}

/** The users of an authorization block: user name -> password. */
function authUsers(text: string): Map<string, string> {
  return new Map([...text.matchAll(/\{ user: "([^"]+)", password: "([^"]+)"/g)].map((m) => [m[1]!, m[2]!]))
}

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const obj = (v: unknown, what: string): Obj => {
  if (!isObj(v)) throw new Error(`${what} is not a mapping`)
  return v
}
const arr = (v: unknown, what: string): unknown[] => {
  if (!Array.isArray(v)) throw new Error(`${what} is not a list`)
  return v
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    // what make-secrets.ts writes (gitignored) is no file of the shapes
    if (e.isDirectory() && p === join(DEPLOY, 'secrets')) continue
    if (e.isDirectory()) out.push(...await walk(p))
    else out.push(p)
  }
  return out.sort()
}

/** Every document of a YAML file, as plain data; throws on any parse error or warning. */
async function loadYaml(file: string): Promise<unknown[]> {
  const docs = parseAllDocuments(await readFile(file, 'utf8'), { prettyErrors: true, uniqueKeys: true })
  if (!Array.isArray(docs)) return [] // an empty stream
  const problems = docs.flatMap((d) => [...d.errors, ...d.warnings].map((e) => e.message))
  if (problems.length > 0) throw new Error(`${relative(ROOT, file)}: ${problems.join('; ')}`)
  return docs.map((d) => d.toJS()).filter((d) => d !== null && d !== undefined)
}

// ---- the CLI's own flags, from `regatta <cmd> --help` -------------------------------------

interface HelpFlags { flags: Map<string, boolean /* takes a value */> }
const helpCache = new Map<string, HelpFlags>()

function cliHelp(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`regatta ${args.join(' ')} --help exited ${r.status}: ${r.stderr}`)
  return r.stdout
}

function commandFlags(command: string): HelpFlags {
  let h = helpCache.get(command)
  if (!h) {
    const text = cliHelp([command])
    const flags = new Map<string, boolean>()
    for (const line of text.split('\n')) {
      const m = /^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)(\s+<[^>]+>)?/.exec(line)
      if (m) flags.set(m[1]!, Boolean(m[2]))
    }
    if (!flags.has('--help')) throw new Error(`cannot read the options of regatta ${command} from its --help`)
    h = { flags }
    helpCache.set(command, h)
  }
  return h
}

let commandsCache: Set<string> | undefined
function cliCommands(): Set<string> {
  if (!commandsCache) {
    const text = cliHelp([])
    const section = text.split(/^Commands:$/m)[1] ?? ''
    commandsCache = new Set([...section.matchAll(/^\s{2}([a-z][a-z-]*)/gm)].map((m) => m[1]!))
  }
  return commandsCache
}

/**
 * Checks a `regatta` invocation (`[command, ...args]`): the command exists, every `--flag` is
 * one of its options, and a flag that takes a value has one. Returns the flags with values.
 */
function checkRegattaArgs(t: TapTest, where: string, argv: string[]): Map<string, string | true> {
  const [command, ...rest] = argv
  const seen = new Map<string, string | true>()
  if (!command || !cliCommands().has(command)) {
    t.fail(`${where}: "${command}" is not a regatta command (have: ${[...cliCommands()].join(', ')})`)
    return seen
  }
  const { flags } = commandFlags(command)
  for (let i = 0; i < rest.length; i++) {
    const tok = rest[i]!
    if (tok === '--') break
    if (!tok.startsWith('-')) continue
    const [flag, inline] = tok.split(/=(.*)/s, 2) as [string, string | undefined]
    if (!flags.has(flag)) {
      t.fail(`${where}: regatta ${command} has no option ${flag} (it has ${[...flags.keys()].join(' ')})`)
      continue
    }
    if (flags.get(flag)) {
      const value = inline ?? rest[i + 1]
      if (value === undefined || (inline === undefined && value.startsWith('--'))) t.fail(`${where}: ${flag} needs a value`)
      else seen.set(flag, value)
      if (inline === undefined) i++
    } else {
      seen.set(flag, true)
    }
  }
  t.pass(`${where}: regatta ${command} ${[...seen.keys()].join(' ')} are all options of \`regatta ${command}\``)
  return seen
}

/** A lease on a replicated bucket must outlast the ~5 s a stream stalls when its NATS leader dies. */
function checkLeaseTtl(t: TapTest, where: string, flags: Map<string, string | true>): void {
  const ttl = flags.get('--lease-ttl')
  t.ok(typeof ttl === 'string' && parseDuration(ttl, '--lease-ttl') >= 10_000, `${where}: --lease-ttl (${String(ttl)}) is at least 10s on a replicated bucket`)
}

/** The master flags every production shape must use on a 3-node NATS cluster. */
function checkMasterHa(t: TapTest, where: string, flags: Map<string, string | true>): void {
  t.equal(flags.get('--replicas'), '3', `${where}: masters use --replicas 3`)
  checkLeaseTtl(t, where, flags)
  t.ok(flags.has('--id'), `${where}: masters have an explicit --id`)
}

/** The CI flags every production shape must use on a 3-node NATS cluster. */
function checkCiHa(t: TapTest, where: string, flags: Map<string, string | true>): void {
  t.equal(flags.get('--replicas'), '3', `${where}: CI uses --replicas 3`)
  checkLeaseTtl(t, where, flags)
}

/** The id `regatta agent` runs as: --id, else REGATTA_AGENT_ID of its environment (services/cli/src/main.ts). */
function agentIdOf(flags: Map<string, string | true>, env: Map<string, string>): string | undefined {
  const flag = flags.get('--id')
  return typeof flag === 'string' ? flag : env.get('REGATTA_AGENT_ID')
}

/**
 * What `regatta agent` itself makes of an id: it runs with `--containerizer process` against a
 * closed loopback port, so an id it accepts gets as far as connecting to NATS (exit 1), and one
 * it refuses stops at the argument check (exit 2).
 */
const cliIdVerdicts = new Map<string, { status: number | null; stderr: string }>()
async function cliAgentIdVerdict(id: string): Promise<{ status: number | null; stderr: string }> {
  let v = cliIdVerdicts.get(id)
  if (!v) {
    const work = await mkdtemp(join(tmpdir(), 'regatta-agent-id-'))
    try {
      const port = await freePort()
      const r = spawnSync(process.execPath, [CLI, 'agent', '--containerizer', 'process', '--work-dir', join(work, 'w'), '--nats', `nats://127.0.0.1:${port}`], {
        cwd: ROOT, encoding: 'utf8', timeout: 30_000, env: { ...process.env, REGATTA_AGENT_ID: id, REGATTA_NATS_URL: '', REGATTA_NATS_USER: '', REGATTA_NATS_PASSWORD: '' },
      })
      v = { status: r.status, stderr: r.stderr.trim() }
    } finally {
      await rm(work, { recursive: true, force: true })
    }
    cliIdVerdicts.set(id, v)
  }
  return v
}

/**
 * Checks the identity an agent runs with: it has an id (no wrapper writes one into the work dir
 * any more; without one the agent would make up an id its NATS user may not act as), the id is
 * one `regatta agent` accepts, and its NATS user is agent-<idToken(id)> (what make-secrets.ts
 * and shared/nats/auth.ts name it), present in the users block `auth` with `password`.
 */
async function checkAgentIdentity(t: TapTest, where: string, id: string | undefined, user: string | undefined, password: string | undefined, auth: Map<string, string>): Promise<void> {
  t.ok(id, `${where}: the agent's id is set (--id or REGATTA_AGENT_ID): ${String(id)}`)
  if (!id) return
  const verdict = await cliAgentIdVerdict(id)
  t.ok(verdict.status === 1 && /cannot connect to NATS/.test(verdict.stderr), `${where}: regatta agent accepts id ${id} (it goes on to connect to NATS: ${verdict.stderr})`)
  t.equal(user, `agent-${idToken(id)}`, `${where}: its NATS user is agent-<idToken(${id})>`)
  t.ok(user !== undefined && auth.has(user) && auth.get(user) === password, `${where}: user ${String(user)} is in regatta-auth.conf with the password the agent gets`)
}

// ---- every YAML file ---------------------------------------------------------------------

const allFiles = await walk(DEPLOY)
const yamlFiles = allFiles.filter((f) => /\.ya?ml$/.test(f))

t.test('Checks that every YAML file in deploy/ parses without errors or warnings', async (t) => {
  t.ok(yamlFiles.length >= 5, `found ${yamlFiles.length} YAML files`)
  for (const f of yamlFiles) {
    const docs = await loadYaml(f)
    t.ok(docs.length > 0, `${relative(ROOT, f)} parses (${docs.length} documents)`)
  }
})

t.test('Checks that deploy/README.md names every file of the production shapes', async (t) => {
  const readme = await readFile(join(DEPLOY, 'README.md'), 'utf8')
  for (const f of allFiles) {
    const rel = relative(DEPLOY, f)
    if (rel === 'README.md') continue
    t.ok(readme.includes(rel), `deploy/README.md mentions ${rel}`)
  }
})

// ---- Docker Compose ------------------------------------------------------------------------

t.test('Checks the compose file: 3 NATS nodes with the users block, 3 masters, agents with the Docker socket and their own NATS users, 2 CI replicas, secrets from env files, regatta flags that exist', async (t) => {
  const [compose] = await loadYaml(join(DEPLOY, 'compose.yaml'))
  const services = obj(obj(compose, 'compose.yaml').services, 'services')
  const entries = Object.entries(services).map(([name, s]) => [name, obj(s, `service ${name}`)] as const)

  const nats = entries.filter(([, s]) => typeof s.image === 'string' && s.image.startsWith('nats:'))
  t.same(nats.map(([n]) => n).sort(), [...NODES], 'three NATS services, named n1..n3 (the host names the configs route to)')
  for (const [name, s] of nats) {
    const command = arr(s.command, `${name}.command`).map(String)
    t.same(command, ['-c', `/etc/nats/${name}.conf`], `${name} runs nats-server with its own config`)
    const volumes = arr(s.volumes, `${name}.volumes`).map(String)
    t.ok(volumes.includes(`./nats/${name}.conf:/etc/nats/${name}.conf:ro`), `${name} mounts deploy/nats/${name}.conf`)
    t.ok(existsSync(join(DEPLOY, 'nats', `${name}.conf`)), `deploy/nats/${name}.conf exists`)
    t.ok(volumes.some((v) => v.endsWith(`:/var/lib/nats/${name}`)), `${name} keeps its JetStream store (/var/lib/nats/${name}) on a volume`)
    t.ok(volumes.includes('./secrets/regatta-auth.conf:/etc/nats/regatta-auth.conf:ro'), `${name} mounts the users block make-secrets.ts writes where its config includes it`)
    t.equal(s.stop_signal, 'SIGUSR2', `${name} stops in lame duck mode`)
    t.ok(parseDuration(String(s.stop_grace_period), 'stop_grace_period') > 30_000, `${name}: stop_grace_period outlasts lame_duck_duration (30s)`)
  }

  const regatta = entries.filter(([, s]) => typeof s.image === 'string' && s.image.startsWith('regatta:'))
  const byCommand = (c: string): (readonly [string, Obj])[] => regatta.filter(([, s]) => Array.isArray(s.command) && s.command[0] === c)
  t.equal(byCommand('master').length, 3, 'three masters')
  t.ok(byCommand('agent').length >= 2, 'at least two agents')
  t.equal(regatta.length, entries.length - nats.length, 'every other service runs the Regatta image')
  t.equal(byCommand('ci').length, 2, 'two CI replicas')
  const secrets = await madeSecrets()
  const auth = authUsers(await readFile(join(secrets, 'regatta-auth.conf'), 'utf8'))
  const agentIds = new Set<string>()

  const masterIds = new Set<string>()
  for (const [name, s] of regatta) {
    const argv = arr(s.command, `${name}.command`).map(String)
    const flags = checkRegattaArgs(t, `compose ${name}`, argv)
    const build = obj(s.build, `${name}.build`)
    t.ok(existsSync(join(DEPLOY, String(build.context), String(build.dockerfile))), `${name} builds from an existing Dockerfile (context ${String(build.context)})`)
    const env = obj(s.environment, `${name}.environment`)
    t.equal(env.REGATTA_NATS_URL, NATS_URLS, `${name} reaches all three NATS nodes`)
    t.doesNotThrow(() => natsUrl(String(env.REGATTA_NATS_URL)), `${name}: REGATTA_NATS_URL is a valid --nats value`)
    t.same(Object.keys(obj(s.depends_on, `${name}.depends_on`)).sort(), [...NODES], `${name} waits for the NATS nodes`)
    for (const v of SECRET_VARS) t.notOk(v in env, `${name}: no ${v} written into the compose file`)
    // its secrets: an env file that make-secrets.ts writes, with a NATS user of the auth block
    const envFiles = arr(s.env_file, `${name}.env_file`).map(String)
    t.equal(envFiles.length, 1, `${name} reads one env file`)
    const envFile = envFiles[0]!
    t.match(envFile, /^\.\/secrets\/[a-z0-9-]+\.env$/, `${name}: its env file ${envFile} is in deploy/secrets/`)
    const vars = parseEnv(await readFile(join(secrets, envFile.slice('./secrets/'.length)), 'utf8'))
    const user = vars.get('REGATTA_NATS_USER')
    t.ok(user && auth.get(user) === vars.get('REGATTA_NATS_PASSWORD'), `${name}: NATS user ${user} of ${envFile} is in regatta-auth.conf with the same password`)
    if (argv[0] === 'master' || argv[0] === 'ci') {
      t.equal(user, argv[0], `${name} connects as NATS user ${argv[0]}`)
      for (const v of ['REGATTA_OPERATOR_TOKEN', 'REGATTA_READ_TOKEN']) t.ok((vars.get(v) ?? '').length >= 32, `${name}: ${v} comes from ${envFile}`)
      const health = arr(obj(s.healthcheck, `${name}.healthcheck`).test, 'healthcheck.test').map(String).join(' ')
      t.match(health, /http:\/\/127\.0\.0\.1:\d+\/health'/, `${name}: the healthcheck asks /health (public: no token)`)
    }
    if (argv[0] === 'ci') {
      checkCiHa(t, `compose ${name}`, flags)
      t.ok((vars.get('REGATTA_WEBHOOK_SECRET') ?? '').length >= 32, `${name}: REGATTA_WEBHOOK_SECRET comes from ${envFile}`)
      t.match(vars.get('REGATTA_SECRETS_KEY') ?? '', /^[A-Za-z0-9+/]{43}=$/, `${name}: REGATTA_SECRETS_KEY (32 bytes, base64) comes from ${envFile}`)
      t.ok(arr(s.ports, `${name}.ports`).map(String).some((p) => p.endsWith(':8080')), `${name} publishes its HTTP port`)
    }
    if (argv[0] === 'master') {
      checkMasterHa(t, `compose ${name}`, flags)
      masterIds.add(String(flags.get('--id')))
    }
    if (argv[0] === 'agent') {
      const volumes = arr(s.volumes, `${name}.volumes`).map(String)
      t.ok(volumes.includes('/var/run/docker.sock:/var/run/docker.sock'), `${name} mounts the host's Docker socket`)
      t.equal(flags.get('--containerizer'), 'docker', `${name} uses the Docker containerizer`)
      t.equal(s.user, 'root', `${name} runs as root (the socket is root:docker)`)
      // the engine resolves bind-mount sources on the host: the work dir and TMPDIR must be at
      // the same path inside and outside the container
      const workDir = String(flags.get('--work-dir'))
      const tmp = String(env.TMPDIR)
      for (const p of [workDir, tmp]) {
        t.ok(volumes.includes(`${p}:${p}`), `${name} bind-mounts ${p} at the same path on the host`)
      }
      // no wrapper: the image's entrypoint (regatta) runs the command
      t.notOk('entrypoint' in s, `${name}: no entrypoint of its own (the image's, regatta, runs the agent)`)
      // its own NATS user: agent-<id> for the id it runs as (environment over env_file, as compose does)
      const effective = new Map([...vars, ...Object.entries(env).map(([k, v]) => [k, String(v)] as const)])
      const id = agentIdOf(flags, effective)
      await checkAgentIdentity(t, `compose ${name}`, id, effective.get('REGATTA_NATS_USER'), effective.get('REGATTA_NATS_PASSWORD'), auth)
      t.notOk(agentIds.has(String(id)), `${name}: agent id ${id} is its own`)
      agentIds.add(String(id))
    }
  }
  t.equal(masterIds.size, 3, 'the masters have distinct ids')
  t.equal(agentIds.size, byCommand('agent').length, 'every agent has an id of its own')
  // control: the id check above tells accepted ids from refused ones
  const refused = await cliAgentIdVerdict('host 1/x')
  t.ok(refused.status === 2 && /REGATTA_AGENT_ID: .* is not an agent id/.test(refused.stderr), `control: regatta agent refuses an id it cannot use before connecting (${refused.stderr})`)
})

// ---- Dockerfile --------------------------------------------------------------------------

t.test('Checks the Dockerfile: node:20-bookworm-slim, npm ci --omit=dev, busybox-static, the CLI bundle built in, sources that exist', async (t) => {
  const text = await readFile(join(DEPLOY, 'Dockerfile'), 'utf8')
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  t.ok(lines.includes('ARG NODE_IMAGE=node:20-bookworm-slim') && lines.includes('FROM ${NODE_IMAGE}'), 'based on node:20-bookworm-slim')
  t.ok(lines.some((l) => l.startsWith('RUN') && l.includes('npm ci --omit=dev')), 'installs production dependencies with npm ci --omit=dev')
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  t.ok(pkg.dependencies.esbuild && pkg.dependencies.tsx, 'esbuild and tsx are regular dependencies (kept by --omit=dev)')
  t.ok(lines.some((l) => l.startsWith('RUN') && /apt-get install .*busybox-static/.test(l)), 'installs busybox-static')
  t.ok(lines.some((l) => l.startsWith('RUN') && l.includes('node services/cli/bin/regatta.mjs --help')), 'builds the CLI bundle at image build time')
  t.ok(lines.includes('ENTRYPOINT ["node", "services/cli/bin/regatta.mjs"]'), 'entrypoint is the regatta CLI')
  t.notOk(lines.some((l) => /^(ADD|RUN\s.*\b(curl|wget)\b)/.test(l)), 'fetches nothing but the base image, Debian packages and npm packages')
  for (const l of lines.filter((x) => x.startsWith('COPY '))) {
    const parts = l.split(/\s+/).slice(1).filter((p) => !p.startsWith('--'))
    for (const src of parts.slice(0, -1)) t.ok(existsSync(join(ROOT, src)), `COPY source ${src} exists in the repository`)
  }
})

// ---- systemd -----------------------------------------------------------------------------

type Unit = Map<string, Map<string, string[]>>
function parseUnit(text: string): Unit {
  const unit: Unit = new Map()
  let section: Map<string, string[]> | undefined
  for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#') || line.startsWith(';')) continue
    const s = /^\[(.+)\]$/.exec(line)
    if (s) {
      section = new Map()
      unit.set(s[1]!, section)
      continue
    }
    const i = line.indexOf('=')
    if (!section || i < 0) throw new Error(`not a unit file line: ${line}`)
    const key = line.slice(0, i).trim()
    section.set(key, [...(section.get(key) ?? []), line.slice(i + 1).trim()])
  }
  return unit
}
const one = (u: Unit, section: string, key: string): string | undefined => u.get(section)?.get(key)?.at(-1)

t.test('Checks the systemd units: regatta flags that exist, Restart=always, the environment files (secrets in their own), users, the CI replicas, the NATS node configs', async (t) => {
  const dir = join(DEPLOY, 'systemd')
  const units = new Map<string, Unit>()
  for (const f of (await readdir(dir)).filter((f) => f.endsWith('.service'))) units.set(f, parseUnit(await readFile(join(dir, f), 'utf8')))
  t.same([...units.keys()].sort(), ['nats-server@.service', 'regatta-agent.service', 'regatta-ci@.service', 'regatta-master@.service'], 'the four units')

  for (const [name, u] of units) {
    t.equal(one(u, 'Service', 'Restart'), 'always', `${name}: Restart=always`)
    t.ok(one(u, 'Service', 'User'), `${name}: runs as a dedicated user (${one(u, 'Service', 'User')})`)
    t.equal(one(u, 'Unit', 'StartLimitIntervalSec'), '0', `${name}: never gives up restarting`)
    t.equal(one(u, 'Install', 'WantedBy'), 'multi-user.target', `${name}: enabled into multi-user.target`)
    t.equal(u.get('Service')?.get('ExecStart')?.length, 1, `${name}: one ExecStart`)
  }

  const regattaExec = (name: string): string[] => {
    const argv = one(units.get(name)!, 'Service', 'ExecStart')!.split(/\s+/)
    t.equal(argv[0], '/usr/bin/node', `${name}: runs node`)
    t.equal(argv[1], '/opt/regatta/services/cli/bin/regatta.mjs', `${name}: runs the regatta CLI from /opt/regatta`)
    return argv.slice(2)
  }
  const secrets = await madeSecrets()
  const auth = authUsers(await readFile(join(secrets, 'regatta-auth.conf'), 'utf8'))
  for (const [name, file, made] of [['regatta-master@.service', 'master.env', 'master.env'], ['regatta-ci@.service', 'ci.env', 'ci.env'], ['regatta-agent.service', 'agent.env', 'agent-host1.env']] as const) {
    const u = units.get(name)!
    t.same(u.get('Service')?.get('EnvironmentFile'), ['/etc/regatta/regatta.env', `/etc/regatta/${file}`], `${name}: EnvironmentFile=/etc/regatta/regatta.env, then its secrets in /etc/regatta/${file}`)
    t.equal(one(u, 'Service', 'User'), 'regatta', `${name}: runs as user regatta`)
    for (const e of u.get('Service')?.get('Environment') ?? []) {
      for (const v of SECRET_VARS) t.notOk(e.startsWith(`${v}=`), `${name}: no ${v} in the unit`)
    }
    const vars = parseEnv(await readFile(join(secrets, made), 'utf8'))
    const user = vars.get('REGATTA_NATS_USER')
    t.ok(user && auth.get(user) === vars.get('REGATTA_NATS_PASSWORD'), `${name}: ${made} (installed as /etc/regatta/${file}) names NATS user ${user} of regatta-auth.conf`)
  }
  const ci = units.get('regatta-ci@.service')!
  const cflags = checkRegattaArgs(t, 'regatta-ci@.service', regattaExec('regatta-ci@.service'))
  checkCiHa(t, 'regatta-ci@.service', cflags)
  t.equal(cflags.get('--http'), '0.0.0.0:8080', 'regatta-ci@.service: HTTP on 8080')
  for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['PrivateTmp', 'yes'], ['CapabilityBoundingSet', '']] as const) {
    t.equal(one(ci, 'Service', k), v, `ci hardening: ${k}=${v}`)
  }
  const master = units.get('regatta-master@.service')!
  const mflags = checkRegattaArgs(t, 'regatta-master@.service', regattaExec('regatta-master@.service'))
  checkMasterHa(t, 'regatta-master@.service', mflags)
  t.equal(mflags.get('--id'), '%i', 'the instance name is the master id')
  for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'], ['CapabilityBoundingSet', '']] as const) {
    t.equal(one(master, 'Service', k), v, `master hardening: ${k}=${v}`)
  }
  t.not(one(master, 'Service', 'MemoryDenyWriteExecute'), 'yes', 'MemoryDenyWriteExecute stays off (V8 JIT)')

  const agent = units.get('regatta-agent.service')!
  const aflags = checkRegattaArgs(t, 'regatta-agent.service', regattaExec('regatta-agent.service'))
  t.equal(one(agent, 'Service', 'SupplementaryGroups'), 'docker', 'the agent is in group docker')
  t.equal(aflags.get('--containerizer'), 'docker', 'the agent uses the Docker containerizer')
  const states = (one(agent, 'Service', 'StateDirectory') ?? '').split(/\s+/).map((d) => `/var/lib/${d}`)
  t.ok(states.includes(String(aflags.get('--work-dir'))), `the agent's --work-dir is a StateDirectory (${states.join(' ')})`)
  const tmp = agent.get('Service')?.get('Environment')?.find((e) => e.startsWith('TMPDIR='))?.slice('TMPDIR='.length)
  t.ok(tmp && states.includes(tmp), `the agent's TMPDIR (${tmp}) is a real directory the engine sees, not PrivateTmp`)
  // the id: REGATTA_AGENT_ID of its environment files (the later file wins, as in systemd), as
  // make-secrets.ts writes agent-host1.env, installed as /etc/regatta/agent.env; no wrapper
  t.notOk(agent.get('Service')?.has('ExecStartPre'), 'the agent unit runs no ExecStartPre (no id file to write: the agent reads REGATTA_AGENT_ID)')
  const agentEnv = new Map<string, string>()
  for (const f of agent.get('Service')?.get('EnvironmentFile') ?? []) {
    const text = f === '/etc/regatta/agent.env' ? await readFile(join(secrets, 'agent-host1.env'), 'utf8') : await readFile(join(dir, f.replace('/etc/regatta/', '')), 'utf8')
    for (const [k, v] of parseEnv(text)) agentEnv.set(k, v)
  }
  for (const e of agent.get('Service')?.get('Environment') ?? []) {
    const [k, v] = e.split(/=(.*)/s, 2) as [string, string | undefined]
    if (v !== undefined) agentEnv.set(k, v)
  }
  await checkAgentIdentity(t, 'regatta-agent.service with agent-host1.env', agentIdOf(aflags, agentEnv), agentEnv.get('REGATTA_NATS_USER'), agentEnv.get('REGATTA_NATS_PASSWORD'), auth)

  const env = await readFile(join(dir, 'regatta.env'), 'utf8')
  t.match(env, new RegExp(`^REGATTA_NATS_URL=${NATS_URLS}$`, 'm'), 'regatta.env names the three NATS nodes')

  const nats = units.get('nats-server@.service')!
  const exec = one(nats, 'Service', 'ExecStart')!.split(/\s+/)
  t.same(exec, ['/usr/sbin/nats-server', '-c', '/etc/nats/%i.conf'], 'nats-server@<node> runs /etc/nats/<node>.conf')
  t.equal(one(nats, 'Service', 'User'), 'nats', "Debian's nats user")
  const natsHelp = spawnSync('nats-server', ['--help'], { encoding: 'utf8' })
  const natsText = `${natsHelp.stdout}${natsHelp.stderr}`
  for (const line of nats.get('Service')!.get('ExecStartPre') ?? []) {
    for (const flag of line.split(/\s+/).filter((x) => x.startsWith('-'))) {
      t.match(natsText, new RegExp(`(^|[\\s,])${flag.replace(/-/g, '\\-')}[\\s,]`, 'm'), `nats-server has option ${flag}`)
    }
  }
  t.match(natsText, /^\s+-c, --config/m, 'nats-server has option -c')
  t.equal(one(nats, 'Service', 'StateDirectory'), 'nats/%i', 'the store lives in /var/lib/nats/<node>')
  for (const n of NODES) {
    const conf = await readFile(join(DEPLOY, 'nats', `${n}.conf`), 'utf8')
    t.match(conf, new RegExp(`store_dir: "/var/lib/nats/${n}"`), `deploy/nats/${n}.conf stores JetStream in the unit's StateDirectory`)
  }
  const ldm = Number(/lame_duck_duration: (\d+)s/.exec(await readFile(join(DEPLOY, 'nats', 'n1.conf'), 'utf8'))?.[1])
  t.equal(one(nats, 'Service', 'KillSignal'), 'SIGUSR2', 'stops in lame duck mode')
  t.ok(Number(one(nats, 'Service', 'TimeoutStopSec')) > ldm, `TimeoutStopSec outlasts lame_duck_duration (${ldm}s)`)

  // systemd's own parser, where it is installed: unknown keys or bad values are reported
  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
  if (analyze.status === 0) {
    const tmpUnits = await mkdtemp(join(tmpdir(), 'regatta-units-'))
    t.teardown(() => rm(tmpUnits, { recursive: true, force: true }))
    const instances = { 'regatta-master@.service': 'regatta-master@m1.service', 'regatta-ci@.service': 'regatta-ci@1.service', 'nats-server@.service': 'nats-server@n1.service', 'regatta-agent.service': 'regatta-agent.service' }
    for (const [src, dst] of Object.entries(instances)) await writeFile(join(tmpUnits, dst), await readFile(join(dir, src)))
    const r = spawnSync('systemd-analyze', ['verify', ...Object.values(instances).map((u) => join(tmpUnits, u))], { encoding: 'utf8' })
    const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /unknown|invalid|failed|bad|ignoring/i.test(l))
    t.same(complaints, [], 'systemd-analyze verify finds nothing to complain about')
  }
})

// ---- Kubernetes --------------------------------------------------------------------------

t.test('Checks the Kubernetes manifests: NATS StatefulSet of 3 with JetStream and the users block, 3 masters with a Service on 5050, agents DaemonSet with the Docker socket and per-node NATS users, CI Deployment of 2 with a Service on 8080, secrets from Secrets', async (t) => {
  const dir = join(DEPLOY, 'kubernetes')
  const docs: Obj[] = []
  for (const f of (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    for (const d of await loadYaml(join(dir, f))) docs.push(obj(d, f))
  }
  for (const d of docs) {
    const md = obj(d.metadata, 'metadata')
    t.ok(typeof d.apiVersion === 'string' && typeof d.kind === 'string' && typeof md.name === 'string', `${String(d.kind)}/${String(md.name)} has apiVersion, kind, name`)
    if (d.kind !== 'Namespace') t.equal(md.namespace, 'regatta', `${String(d.kind)}/${String(md.name)} is in namespace regatta`)
  }
  const find = (kind: string, name: string): Obj => {
    const d = docs.find((x) => x.kind === kind && obj(x.metadata, 'metadata').name === name)
    if (!d) throw new Error(`no ${kind}/${name}`)
    return d
  }
  const workloads = docs.filter((d) => ['StatefulSet', 'Deployment', 'DaemonSet'].includes(String(d.kind)))
  const services = docs.filter((d) => d.kind === 'Service')
  const configMaps = docs.filter((d) => d.kind === 'ConfigMap')

  for (const w of workloads) {
    const name = `${String(w.kind)}/${String(obj(w.metadata, 'metadata').name)}`
    const spec = obj(w.spec, `${name}.spec`)
    const tpl = obj(spec.template, `${name}.template`)
    const labels = obj(obj(tpl.metadata, 'template.metadata').labels, 'template labels')
    const match = obj(obj(spec.selector, 'selector').matchLabels, 'matchLabels')
    t.ok(Object.entries(match).every(([k, v]) => labels[k] === v), `${name}: the selector matches the pod labels`)
    const pod = obj(tpl.spec, `${name}.pod`)
    const volumes = new Set([
      ...(pod.volumes ? arr(pod.volumes, 'volumes').map((v) => String(obj(v, 'volume').name)) : []),
      ...(spec.volumeClaimTemplates ? arr(spec.volumeClaimTemplates, 'vct').map((v) => String(obj(obj(v, 'vct').metadata, 'vct.metadata').name)) : []),
    ])
    for (const v of pod.volumes ? arr(pod.volumes, 'volumes') : []) {
      const cm = obj(v, 'volume').configMap
      if (cm) t.ok(configMaps.some((c) => obj(c.metadata, 'metadata').name === obj(cm, 'configMap').name), `${name}: ConfigMap ${String(obj(cm, 'cm').name)} exists`)
    }
    if (spec.serviceName) {
      const svc = services.find((s) => obj(s.metadata, 'metadata').name === spec.serviceName)
      t.ok(svc && obj(svc.spec, 'svc.spec').clusterIP === 'None', `${name}: its serviceName ${String(spec.serviceName)} is a headless Service`)
    }
    for (const c of arr(pod.containers, 'containers').map((c) => obj(c, 'container'))) {
      for (const m of c.volumeMounts ? arr(c.volumeMounts, 'mounts') : []) {
        t.ok(volumes.has(String(obj(m, 'mount').name)), `${name}: volume ${String(obj(m, 'mount').name)} is defined`)
      }
      const envNames = new Set((c.env ? arr(c.env, 'env') : []).map((e) => String(obj(e, 'env').name)))
      for (const arg of (c.args ? arr(c.args, 'args') : []).map(String)) {
        for (const ref of arg.matchAll(/\$\(([A-Z_]+)\)/g)) t.ok(envNames.has(ref[1]!), `${name}: $(${ref[1]}) is defined in env`)
      }
      if (String(c.image).startsWith('regatta:')) {
        const envMap = new Map((c.env ? arr(c.env, 'env') : []).map((e) => [String(obj(e, 'env').name), obj(e, 'env').value]))
        t.equal(envMap.get('REGATTA_NATS_URL'), 'nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222', `${name}: reaches the three NATS pods`)
        for (const e of (c.env ? arr(c.env, 'env') : []).map((e) => obj(e, 'env'))) {
          if (!SECRET_VARS.includes(String(e.name))) continue
          t.notOk('value' in e, `${name}: ${String(e.name)} is no literal value`)
          t.ok(isObj(e.valueFrom) && isObj(e.valueFrom.secretKeyRef), `${name}: ${String(e.name)} comes from a Secret (secretKeyRef)`)
        }
      }
    }
  }
  for (const s of services) {
    const name = `Service/${String(obj(s.metadata, 'metadata').name)}`
    const sel = obj(obj(s.spec, 'spec').selector, `${name}.selector`)
    const target = workloads.find((w) => {
      const l = obj(obj(obj(obj(w.spec, 'spec').template, 'tpl').metadata, 'md').labels, 'labels')
      return Object.entries(sel).every(([k, v]) => l[k] === v)
    })
    t.ok(target, `${name} selects a workload`)
    if (!target) continue
    const containerPorts = arr(obj(obj(obj(target.spec, 'spec').template, 'tpl').spec, 'pod').containers, 'containers')
      .flatMap((c) => arr(obj(c, 'c').ports ?? [], 'ports').map((p) => String(obj(p, 'port').name)))
    for (const p of arr(obj(s.spec, 'spec').ports, 'ports').map((p) => obj(p, 'port'))) {
      t.ok(typeof p.targetPort !== 'string' || containerPorts.includes(p.targetPort), `${name}: targetPort ${String(p.targetPort)} is a container port`)
    }
  }

  // NATS: 3 pods, JetStream, routes to each pod, a config nats-server 2.9 accepts
  const nats = find('StatefulSet', 'nats')
  t.equal(obj(nats.spec, 'spec').replicas, 3, 'NATS StatefulSet of 3')
  const conf = String(obj(find('ConfigMap', 'nats-config').data, 'data')['nats.conf'])
  t.match(conf, /jetstream \{[^}]*store_dir: "\/data"[^}]*max_file_store:/s, 'JetStream with a file store on the volume, and limits')
  for (let i = 0; i < 3; i++) t.match(conf, `nats://nats-${i}.nats:6222`, `routes to nats-${i}`)
  const confDir = await mkdtemp(join(tmpdir(), 'regatta-k8s-nats-'))
  t.teardown(() => rm(confDir, { recursive: true, force: true }))
  await writeFile(join(confDir, 'nats.conf'), conf)
  t.match(conf, /^\s*include \.\/regatta-auth\.conf$/m, 'the NATS config includes the users block')
  const natsPod = obj(obj(obj(nats.spec, 'spec').template, 'tpl').spec, 'pod')
  const projected = arr(obj(obj(arr(natsPod.volumes, 'volumes').map((v) => obj(v, 'v')).find((v) => v.name === 'config'), 'config volume').projected, 'projected').sources, 'sources').map((x) => obj(x, 'source'))
  t.ok(projected.some((x) => isObj(x.secret) && x.secret.name === 'regatta-nats-auth' && JSON.stringify(x.secret.items).includes('"path":"regatta-auth.conf"')), 'Secret regatta-nats-auth is projected as regatta-auth.conf beside nats.conf')
  // checked with the placeholder users block, as the Secret would hold it
  await writeFile(join(confDir, 'regatta-auth.conf'), await readFile(join(DEPLOY, 'nats', 'regatta-auth.conf')))
  const check = spawnSync('nats-server', ['-t', '-c', join(confDir, 'nats.conf')], { encoding: 'utf8', env: { ...process.env, POD_NAME: 'nats-0' } })
  t.equal(check.status, 0, `nats-server -t accepts the ConfigMap's nats.conf: ${check.stdout}${check.stderr}`.trim())

  // masters: 3, flags that exist, a Service on 5050
  const masters = find('StatefulSet', 'regatta-master')
  t.equal(obj(masters.spec, 'spec').replicas, 3, 'three masters')
  const mc = obj(arr(obj(obj(obj(masters.spec, 'spec').template, 'tpl').spec, 'pod').containers, 'containers')[0], 'master container')
  const mflags = checkRegattaArgs(t, 'StatefulSet/regatta-master', arr(mc.args, 'args').map(String))
  checkMasterHa(t, 'StatefulSet/regatta-master', mflags)
  const api = find('Service', 'regatta-master')
  t.ok(arr(obj(api.spec, 'spec').ports, 'ports').some((p) => obj(p, 'port').port === 5050), 'Service regatta-master serves the HTTP API on 5050')

  // agents: a DaemonSet with the host's Docker socket, flags that exist
  const agents = find('DaemonSet', 'regatta-agent')
  const pod = obj(obj(obj(agents.spec, 'spec').template, 'tpl').spec, 'pod')
  const ac = obj(arr(pod.containers, 'containers')[0], 'agent container')
  const aflags = checkRegattaArgs(t, 'DaemonSet/regatta-agent', arr(ac.args, 'args').map(String))
  t.equal(aflags.get('--containerizer'), 'docker', 'agents use the Docker containerizer')
  const hostPaths = new Map(arr(pod.volumes, 'volumes').map((v) => obj(v, 'v')).filter((v) => v.hostPath).map((v) => [String(v.name), String(obj(v.hostPath, 'hp').path)]))
  // the agent's id: the node's name, by the downward API
  const agentEnvRefs = new Map(arr(ac.env, 'env').map((e) => obj(e, 'env')).map((e) => [String(e.name), e]))
  const idRef = agentEnvRefs.get('REGATTA_AGENT_ID')?.valueFrom
  t.ok(isObj(idRef) && isObj(idRef.fieldRef) && idRef.fieldRef.fieldPath === 'spec.nodeName', 'REGATTA_AGENT_ID is the node name (fieldRef spec.nodeName)')
  // the agent's shell line (still needed for the NATS user and the password file named after the
  // node), run for real on a node named ip-10-0-0-7.example with the Secret make-secrets.ts makes
  // for it (Kubernetes' $$ is a $)
  const cmd = arr(ac.command, 'agent command').map(String)
  t.same([cmd[0], cmd[1], cmd[3]], ['/bin/sh', '-c', 'regatta'], 'the agent container runs a shell line, then regatta with its args')
  t.notMatch(cmd[2]!, /agent-id/, 'the shell line writes no agent-id file (the agent reads REGATTA_AGENT_ID)')
  const passwords = arr(pod.volumes, 'volumes').map((v) => obj(v, 'v')).find((v) => isObj(v.secret) && v.secret.secretName === 'regatta-agents')
  t.ok(passwords, 'Secret regatta-agents is a volume of the agent pod')
  const passwordsAt = String(obj(arr(ac.volumeMounts, 'mounts').map((m) => obj(m, 'm')).find((m) => m.name === passwords?.name), 'mount').mountPath)
  const node = 'ip-10-0-0-7.example'
  const fake = await mkdtemp(join(tmpdir(), 'regatta-k8s-agent-'))
  t.teardown(() => rm(fake, { recursive: true, force: true }))
  const made = spawnSync(process.execPath, ['--import', 'tsx', join(DEPLOY, 'make-secrets.ts'), '--agents', `${node},build-2`, '--out', join(fake, 's')], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  t.equal(made.status, 0, `make-secrets.ts --agents ${node},build-2 runs: ${made.stderr}`)
  const nodeAuth = authUsers(await readFile(join(fake, 's', 'regatta-auth.conf'), 'utf8'))
  const workDir = String(aflags.get('--work-dir'))
  // regatta is replaced by a line that shows what it would run with
  const execLine = 'exec node services/cli/bin/regatta.mjs "$@"'
  t.ok(cmd[2]!.includes(execLine), 'the shell line ends by exec-ing regatta with the container\'s args')
  const line = cmd[2]!.replace(/\$\$/g, '$').replaceAll(passwordsAt, join(fake, 's', 'agents')).replaceAll(workDir, fake)
    .replace(execLine, 'printf \'%s\\n\' "$REGATTA_NATS_USER" "$REGATTA_NATS_PASSWORD" "$REGATTA_AGENT_ID" "$*"')
  const podEnv = (nodeName: string): NodeJS.ProcessEnv => ({ ...process.env, NODE_NAME: nodeName, REGATTA_AGENT_ID: nodeName })
  const ran = spawnSync('/bin/sh', ['-c', line, 'regatta', 'agent', '--pool', 'default'], { encoding: 'utf8', env: podEnv(node) })
  t.equal(ran.status, 0, `the agent's shell line runs: ${ran.stderr}`)
  const [user, password, idEnv, args] = ran.stdout.split('\n')
  t.equal(args, 'agent --pool default', 'regatta gets the container\'s args')
  await checkAgentIdentity(t, `DaemonSet/regatta-agent on node ${node}`, agentIdOf(aflags, new Map(idEnv ? [['REGATTA_AGENT_ID', idEnv]] : [])), user, password, nodeAuth)
  t.equal(idEnv, node, 'and the agent id it runs with is the node name')
  const missing = spawnSync('/bin/sh', ['-c', line, 'regatta', 'agent'], { encoding: 'utf8', env: podEnv('other-node') })
  t.not(missing.status, 0, 'a node without a password in the Secret does not start')
  t.match(missing.stderr, /no NATS password for agent other-node: .*user agent-other-node/, 'and says why in one line')
  t.equal(hostPaths.get('docker-sock'), '/var/run/docker.sock', 'the host Docker socket is mounted')
  for (const m of arr(ac.volumeMounts, 'mounts').map((m) => obj(m, 'm'))) {
    const host = hostPaths.get(String(m.name))
    if (host) t.equal(m.mountPath, host, `hostPath ${host} is mounted at the same path (the engine resolves paths on the host)`)
  }

  // CI: a Deployment of 2, flags that exist, a Service on 8080, probes on /health (public)
  const ci = find('Deployment', 'regatta-ci')
  t.equal(obj(ci.spec, 'spec').replicas, 2, 'CI Deployment of 2 replicas')
  const cc = obj(arr(obj(obj(obj(ci.spec, 'spec').template, 'tpl').spec, 'pod').containers, 'containers')[0], 'ci container')
  const cflags = checkRegattaArgs(t, 'Deployment/regatta-ci', arr(cc.args, 'args').map(String))
  checkCiHa(t, 'Deployment/regatta-ci', cflags)
  t.equal(cflags.get('--http'), '0.0.0.0:8080', 'CI: HTTP on 8080')
  for (const probe of ['readinessProbe', 'livenessProbe']) {
    const g = obj(obj(cc[probe], probe).httpGet, `${probe}.httpGet`)
    t.equal(g.path, '/health', `CI ${probe} asks /health (no token needed)`)
  }
  const ciSvc = find('Service', 'regatta-ci')
  t.ok(arr(obj(ciSvc.spec, 'spec').ports, 'ports').some((p) => obj(p, 'port').port === 8080), 'Service regatta-ci serves webhooks and the runs UI on 8080')
  const ciEnv = new Map(arr(cc.env, 'env').map((e) => obj(e, 'env')).map((e) => [String(e.name), e]))
  for (const v of ['REGATTA_NATS_USER', 'REGATTA_NATS_PASSWORD', 'REGATTA_OPERATOR_TOKEN', 'REGATTA_READ_TOKEN', 'REGATTA_WEBHOOK_SECRET', 'REGATTA_SECRETS_KEY']) {
    const ref = ciEnv.get(v)?.valueFrom
    t.ok(isObj(ref) && isObj(ref.secretKeyRef) && ref.secretKeyRef.name === 'regatta-ci' && ref.secretKeyRef.key === v, `CI: ${v} from Secret regatta-ci, key ${v} (as make-secrets.ts's ci.env names it)`)
  }
  const mEnv = new Map(arr(mc.env, 'env').map((e) => obj(e, 'env')).map((e) => [String(e.name), e]))
  for (const v of ['REGATTA_NATS_USER', 'REGATTA_NATS_PASSWORD', 'REGATTA_OPERATOR_TOKEN', 'REGATTA_READ_TOKEN']) {
    const ref = mEnv.get(v)?.valueFrom
    t.ok(isObj(ref) && isObj(ref.secretKeyRef) && ref.secretKeyRef.name === 'regatta-master' && ref.secretKeyRef.key === v, `masters: ${v} from Secret regatta-master, key ${v}`)
  }
  // the Secrets are made from make-secrets.ts's env files (kubectl create secret --from-env-file): the keys exist there
  const secrets = await madeSecrets()
  for (const [file, env] of [['ci.env', ciEnv], ['master.env', mEnv]] as const) {
    const vars = parseEnv(await readFile(join(secrets, file), 'utf8'))
    for (const [name, e] of env) {
      const ref = isObj(e.valueFrom) && isObj(e.valueFrom.secretKeyRef) ? e.valueFrom.secretKeyRef : undefined
      if (ref && ref.optional !== true) t.ok(vars.has(String(ref.key)), `${file} has ${String(ref.key)}, which a secretKeyRef names`)
    }
  }
})

// ---- NATS users and secrets ----------------------------------------------------------------

t.test('Checks that regatta-auth.conf has a NATS user for every component (placeholder passwords only), and that nothing in deploy/ holds a literal secret', async (t) => {
  const committed = await readFile(join(DEPLOY, 'nats', 'regatta-auth.conf'), 'utf8')
  const users = authUsers(committed)
  for (const u of ['master', 'ci', 'agent-host1', 'agent-host2', 'scaler', 'operator']) t.ok(users.has(u), `regatta-auth.conf declares user ${u}`)
  t.match(committed, new RegExp(`# ci ${CI_FRAMEWORK_ID}\\n {4}\\{ user: "ci"`), `user ci acts as framework ${CI_FRAMEWORK_ID}, the CI service's id`)
  for (const [u, pw] of users) t.equal(pw, `CHANGE-ME-${u}`, `${u}: the committed password is the placeholder CHANGE-ME-${u}`)
  // it is what make-secrets.ts --placeholders writes (so it carries today's permissions)
  const dir = await mkdtemp(join(tmpdir(), 'regatta-deploy-ph-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(DEPLOY, 'make-secrets.ts'), '--placeholders', '--out', dir], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  t.equal(r.status, 0, `make-secrets.ts --placeholders runs: ${r.stderr}`)
  t.equal(committed, await readFile(join(dir, 'regatta-auth.conf'), 'utf8'), 'deploy/nats/regatta-auth.conf is what make-secrets.ts --placeholders writes')

  // what make-secrets.ts writes: private files, every env file's user in its block
  const secrets = await madeSecrets()
  const made = authUsers(await readFile(join(secrets, 'regatta-auth.conf'), 'utf8'))
  t.same([...made.keys()].sort(), [...users.keys()].sort(), 'make-secrets.ts makes the same users')
  t.ok([...made.values()].every((p) => /^[0-9a-f]{64}$/.test(p)) && new Set(made.values()).size === made.size, 'each with its own random password')
  const { stat } = await import('node:fs/promises')
  t.equal((await stat(secrets)).mode & 0o777, 0o700, 'the secrets directory is 0700')
  for (const f of (await readdir(secrets)).filter((f) => f.endsWith('.env') || f.endsWith('.conf'))) {
    t.equal((await stat(join(secrets, f))).mode & 0o777, 0o600, `${f} is 0600`)
  }
  const again = spawnSync(process.execPath, ['--import', 'tsx', join(DEPLOY, 'make-secrets.ts'), '--out', secrets], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  t.equal(again.status, 1, 'a second run into the same directory refuses to replace secrets in use')
  t.match(again.stderr, /already holds .*never replaced/, 'and says so')

  // no file of the shapes assigns a secret variable anything but a placeholder
  for (const f of allFiles) {
    const rel = relative(DEPLOY, f)
    if (rel === 'make-secrets.ts' || rel === 'README.md') continue
    const text = await readFile(f, 'utf8')
    for (const v of SECRET_VARS) {
      for (const m of text.matchAll(new RegExp(`^[^#\\n]*\\b${v}\\s*[=:]\\s*["']?([^"'\\s,}$<][^"'\\s,}]*)`, 'gm'))) {
        t.fail(`${rel}: ${v} is given a literal value (${m[1]!.slice(0, 4)}...): take it from an env file or a Secret`)
      }
    }
    for (const m of text.matchAll(/password: "([^"]*)"/g)) t.match(m[1]!, /^CHANGE-ME-/, `${rel}: NATS password ${m[1]} is a placeholder`)
  }
  t.pass('no literal secret value in deploy/ (values are env file or Secret references, or shell variables)')
})

// ---- a real NATS cluster from deploy/nats/*.conf -------------------------------------------

interface RunningNode { name: string; client: number; route: number; monitor: number; store: string; child?: ChildProcess; log: string }

/** Replaces `from` (a string or regexp) exactly `count` times, or throws. */
function replaceExactly(text: string, from: string | RegExp, to: string, count: number, what: string): string {
  const re = typeof from === 'string' ? new RegExp(from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g') : new RegExp(from.source, 'g')
  const found = text.match(re)?.length ?? 0
  if (found !== count) throw new Error(`${what}: expected ${count} × ${String(from)}, found ${found}`)
  return text.replace(re, to)
}

async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

t.test('Checks that deploy/nats/n1..n3.conf form a real 3-node JetStream cluster whose R3 KV bucket survives losing its leader', async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'regatta-deploy-nats-'))
  const nodes: RunningNode[] = []
  let nc: NatsConnection | undefined
  t.teardown(async () => {
    await nc?.close().catch(() => undefined)
    await Promise.all(nodes.map(async (n) => {
      const c = n.child
      if (!c || c.exitCode !== null || c.signalCode !== null) return
      const exited = new Promise((r) => c.once('exit', r))
      c.kill('SIGKILL')
      await exited
    }))
    await rm(base, { recursive: true, force: true })
  })

  for (const name of NODES) {
    nodes.push({ name, client: await freePort(), route: await freePort(), monitor: await freePort(), store: join(base, name), log: '' })
  }
  const byName = new Map(nodes.map((n) => [n.name, n]))

  // the users block with real passwords, as make-secrets.ts writes it, beside the configs (they include it)
  const secrets = await madeSecrets()
  const authText = await readFile(join(secrets, 'regatta-auth.conf'), 'utf8')
  await writeFile(join(base, 'regatta-auth.conf'), authText)
  const users = authUsers(authText)
  for (const n of nodes) {
    const file = join(DEPLOY, 'nats', `${n.name}.conf`)
    const original = await readFile(file, 'utf8')
    // the file as shipped: nats-server 2.9 accepts every option in it
    const check = spawnSync('nats-server', ['-t', '-c', file], { encoding: 'utf8' })
    t.equal(check.status, 0, `nats-server -t accepts deploy/nats/${n.name}.conf: ${check.stdout}${check.stderr}`.trim())
    t.match(original, new RegExp(`^server_name: ${n.name}$`, 'm'), `${n.name}.conf: server_name ${n.name}`)
    t.match(original, /^include \.\/regatta-auth\.conf$/m, `${n.name}.conf: includes the users block`)
    t.match(original, /^\s+max_file_store: \S+$/m, `${n.name}.conf: a JetStream file store limit`)
    t.match(original, /^\s+max_memory_store: \S+$/m, `${n.name}.conf: a JetStream memory store limit`)

    // the same file on loopback: client, cluster and monitoring ports, routes and the store
    let conf = original
    conf = replaceExactly(conf, 'listen: 0.0.0.0:4222', `listen: 127.0.0.1:${n.client}`, 1, n.name)
    conf = replaceExactly(conf, 'http: 0.0.0.0:8222', `http: 127.0.0.1:${n.monitor}`, 1, n.name)
    conf = replaceExactly(conf, 'listen: 0.0.0.0:6222', `listen: 127.0.0.1:${n.route}`, 1, n.name)
    conf = replaceExactly(conf, `store_dir: "/var/lib/nats/${n.name}"`, `store_dir: "${n.store}"`, 1, n.name)
    for (const peer of nodes) conf = replaceExactly(conf, `nats://${peer.name}:6222`, `nats://127.0.0.1:${peer.route}`, 1, `${n.name} route to ${peer.name}`)
    t.notMatch(conf.replace(/#.*$/gm, ''), /0\.0\.0\.0|nats:\/\/n\d|\/var\/lib\//, `${n.name}: the test config stays on 127.0.0.1 and in the temp dir`)
    await writeFile(join(base, `${n.name}.conf`), conf)
  }

  // start all three at once, as after a power cut
  for (const n of nodes) {
    const child = spawn('nats-server', ['-c', join(base, `${n.name}.conf`)], { stdio: ['ignore', 'pipe', 'pipe'] })
    n.child = child
    const collect = (d: Buffer): void => { if (n.log.length < 200_000) n.log += d.toString() }
    child.stdout!.on('data', collect)
    child.stderr!.on('data', collect)
  }
  const logs = (): string => nodes.map((n) => `--- ${n.name}\n${n.log.split('\n').slice(-15).join('\n')}`).join('\n')
  t.teardown(() => {
    if (!t.passing()) t.comment(logs())
  })

  const monitor = async (n: RunningNode, path: string): Promise<Response> => fetch(`http://127.0.0.1:${n.monitor}${path}`, { signal: AbortSignal.timeout(2_000) })
  for (const n of nodes) {
    await waitFor(`${n.name} ready`, 15_000, async () => {
      if (n.child!.exitCode !== null) throw new Error(`${n.name} exited ${n.child!.exitCode}`)
      return n.log.includes('Server is ready') ? true : undefined
    })
  }
  for (const n of nodes) {
    const routes = await waitFor(`${n.name} routed to both peers`, 20_000, async () => {
      const z = await (await monitor(n, '/routez')).json() as { num_routes: number }
      return z.num_routes === 2 ? z.num_routes : undefined
    })
    t.equal(routes, 2, `${n.name} has routes to both peers`)
    const varz = await (await monitor(n, '/varz')).json() as { server_name: string; cluster?: { name?: string }; jetstream?: { config?: { max_storage?: number } } }
    t.equal(varz.server_name, n.name, `${n.name}: server_name`)
    t.equal(varz.cluster?.name, 'regatta', `${n.name}: cluster regatta`)
    t.ok((varz.jetstream?.config?.max_storage ?? 0) > 0, `${n.name}: JetStream on with a storage limit`)
    // what compose and Kubernetes probe
    const healthy = await waitFor(`${n.name} /healthz 200`, 30_000, async () => ((await monitor(n, '/healthz')).status === 200 ? true : undefined))
    t.ok(healthy, `${n.name}: /healthz answers 200 (the compose healthcheck and the Kubernetes probes)`)
    t.equal((await monitor(n, '/healthz?js-enabled-only=true')).status, 200, `${n.name}: /healthz?js-enabled-only=true answers 200`)
  }

  const servers = nodes.map((n) => `nats://127.0.0.1:${n.client}`)
  // the nodes take only the users of the block: no anonymous client, no wrong password
  const anonymous = await connect({ servers, name: 'deploy-test-anonymous', maxReconnectAttempts: 0 }).then((c) => c.close().then(() => 'connected'), (err: Error) => err.message)
  t.match(anonymous, /Authorization Violation/i, `an anonymous client is refused (${anonymous})`)
  const wrong = await connect({ servers, user: 'master', pass: 'CHANGE-ME-master', maxReconnectAttempts: 0 }).then((c) => c.close().then(() => 'connected'), (err: Error) => err.message)
  t.match(wrong, /Authorization Violation/i, 'the placeholder password is refused by a cluster running the made block')
  // an agent user connects (and may publish its own status updates)
  const agentNc = await connect({ servers, user: 'agent-host1', pass: users.get('agent-host1')!, inboxPrefix: '_INBOX.agent-host1', maxReconnectAttempts: 0 })
  await agentNc.flush()
  t.pass('agent-host1 connects with the password make-secrets.ts gave it')
  await agentNc.close()
  // the master user (all subjects) runs the JetStream part below
  nc = await connect({ servers, user: 'master', pass: users.get('master')!, name: 'deploy-test', maxReconnectAttempts: -1, reconnectTimeWait: 100 })
  const jsm = await nc.jetstreamManager()
  const bucket = 'deploy-test'
  const kv = await waitFor('an R3 KV bucket', 20_000, async () => nc!.jetstream().views.kv(bucket, { replicas: 3, history: 1 }))
  const info = await jsm.streams.info(`KV_${bucket}`)
  t.equal(info.config.num_replicas, 3, 'the bucket has 3 replicas')
  t.equal(info.cluster?.replicas?.length, 2, 'a leader and two followers')
  await kv.put('leader', 'epoch-1')
  // a read right after a write may come from a replica that lags a moment (STACK-NOTES)
  const first = await waitFor('the value written to be read back', 5_000, async () => ((await kv.get('leader'))?.string() === 'epoch-1' ? 'epoch-1' : undefined))
  t.equal(first, 'epoch-1', 'put and get')

  // the worst single loss: the node that leads the bucket's stream
  const leaderName = String(info.cluster?.leader)
  const victim = byName.get(leaderName)
  if (!victim) throw new Error(`unknown stream leader ${leaderName}`)
  const exited = new Promise((r) => victim.child!.once('exit', r))
  victim.child!.kill('SIGKILL')
  await exited
  const killedAt = Date.now()
  // nats-server's raft elects after a random 4-9 s without the leader's heartbeat; on a loaded
  // 2-core machine that took up to 19 s once, so the outage is measured and bounded by 30 s
  const answered = await waitFor('the bucket answering again after its leader was killed', 30_000, async () => {
    const got = (await kv.get('leader'))?.string()
    await kv.put('leader', 'epoch-2')
    return got
  })
  const outageMs = Date.now() - killedAt
  t.equal(answered, 'epoch-1', 'the value written before the loss is still there')
  t.comment(`the bucket answered reads and writes again ${outageMs} ms after its stream leader ${leaderName} was killed`)
  // a read right after a write may come from a replica that lags a moment (STACK-NOTES)
  const written = await waitFor('the write to be visible', 5_000, async () => {
    const v = (await kv.get('leader'))?.string()
    if (v !== 'epoch-2') throw new Error(`still ${v}`)
    return v
  }).catch(() => undefined)
  t.equal(written, 'epoch-2', 'and takes writes again')
  const after = await jsm.streams.info(`KV_${bucket}`)
  t.not(after.cluster?.leader, leaderName, `a new stream leader (${String(after.cluster?.leader)})`)
})
