// Makes every secret a Regatta deployment needs, once, into a directory only its owner can read:
//
//   npx tsx deploy/make-secrets.ts                         # agents host1 and host2, into deploy/secrets/
//   npx tsx deploy/make-secrets.ts --agents build-a,build-b --out /root/regatta-secrets
//
// Writes (directory 0700, files 0600; refuses to run when any of them exists, so it never replaces a
// secret in use):
//   regatta-auth.conf   the nats-server `authorization` block (shared/nats/auth.ts authorizationConfig):
//                       one user per component, random passwords; install it beside n1..n3.conf
//   master.env          REGATTA_NATS_USER=master, its password, REGATTA_OPERATOR_TOKEN, REGATTA_READ_TOKEN
//   ci.env              REGATTA_NATS_USER=ci, its password, the same two tokens, REGATTA_WEBHOOK_SECRET,
//                       REGATTA_SECRETS_KEY
//   agent-<id>.env      REGATTA_NATS_USER=agent-<id>, its password, REGATTA_AGENT_ID=<id>
//   agents/<id>         that agent's password alone (the Kubernetes Secret regatta-agents, one key per node)
//   scaler.env          REGATTA_NATS_USER=scaler and its password
//   operator.env        REGATTA_NATS_USER=operator, its password, REGATTA_TOKEN (the operator token, for the CLI)
//
// `--placeholders` writes regatta-auth.conf alone with CHANGE-ME-<user> passwords instead: that is
// how deploy/nats/regatta-auth.conf (the committed, non-secret version) is made.
// Passwords and tokens are 32 random bytes in hex (`openssl rand -hex 32` makes the same kind);
// the secrets key is 32 random bytes in base64 (`openssl rand -base64 32`).
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { authorizationConfig, type NatsUser } from '../shared/nats/auth.js'
import { idToken } from '../shared/protocol/subjects.js'
import { newSecretsKey } from '../shared/secrets/index.js'

/** The CI service's framework id (services/ci/src/service.ts CI_FRAMEWORK_ID). */
const CI_FRAMEWORK_ID = 'regatta-ci'
/** An agent id as `regatta agent --id` / REGATTA_AGENT_ID takes it (services/cli/src/main.ts agentIdArg). */
const ID_RE = /^[A-Za-z0-9._-]{1,64}$/

const secret = (): string => randomBytes(32).toString('hex')

/** The NATS user of an agent id (as `regatta dev` names it): `agent-<idToken(id)>`. */
export function agentUser(id: string): string {
  return `agent-${idToken(id)}`
}

/** The deployment's NATS users: the masters, one per agent id, the CI service, the scaler, the operator. */
export function deployUsers(agentIds: string[], password: (user: string) => string): NatsUser[] {
  return [
    { user: 'master', password: password('master'), role: 'master' },
    ...agentIds.map((id) => ({ user: agentUser(id), password: password(agentUser(id)), role: 'agent' as const, id })),
    { user: 'ci', password: password('ci'), role: 'ci', id: CI_FRAMEWORK_ID },
    { user: 'scaler', password: password('scaler'), role: 'scaler' },
    { user: 'operator', password: password('operator'), role: 'operator' },
  ]
}

/** deploy/nats/regatta-auth.conf: a header, then the authorization block, then a blank line. */
export function authFile(users: NatsUser[], placeholders: boolean): string {
  return [
    '# Regatta\'s NATS users, one per component, with least-privilege subject permissions.',
    '# Made by deploy/make-secrets.ts (shared/nats/auth.ts authorizationConfig); n1..n3.conf include it:',
    '#   include ./regatta-auth.conf',
    ...(placeholders
      ? [
          '# THIS COPY HOLDS PLACEHOLDER PASSWORDS (CHANGE-ME-<user>), so that the configs can be checked',
          '# (nats-server -t). Never run a cluster with it: `npx tsx deploy/make-secrets.ts` writes one with',
          '# random passwords (and the matching env files) into deploy/secrets/; install that one instead.',
        ]
      : ['# SECRET: it holds every component\'s NATS password. Mode 0640, owner root, group nats.']),
    '# One agent user per agent id: it receives only regatta.agent.<id>.cmd and publishes status updates',
    '# and output only on regatta.update.*.<id> and regatta.output.*.<id>.> (see deploy/README.md).',
    '# Components connect with REGATTA_NATS_USER and REGATTA_NATS_PASSWORD (and REGATTA_NATS_CA with TLS).',
    authorizationConfig(users),
    '',
  ].join('\n')
}

function envFile(title: string, vars: [string, string][]): string {
  return [`# ${title}`, '# SECRET: mode 0600. Made by deploy/make-secrets.ts.', ...vars.map(([k, v]) => `${k}=${v}`), ''].join('\n')
}

async function writeSecret(file: string, text: string, wrote: string[]): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  await writeFile(file, text, { mode: 0o600, flag: 'wx' })
  await chmod(file, 0o600)
  wrote.push(file)
}

function usage(message: string): never {
  process.stderr.write(`make-secrets: ${message}\nusage: npx tsx deploy/make-secrets.ts [--agents id,id,...] [--out DIR] [--placeholders]\n`)
  process.exit(2)
}

async function main(argv: string[]): Promise<void> {
  let agents = ['host1', 'host2']
  let out = join(dirname(fileURLToPath(import.meta.url)), 'secrets')
  let placeholders = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined || v.startsWith('--')) usage(`${a} needs a value`)
      return v
    }
    if (a === '--agents') agents = value().split(',').map((s) => s.trim()).filter(Boolean)
    else if (a === '--out') out = resolve(value())
    else if (a === '--placeholders') placeholders = true
    else usage(`unknown argument ${a}`)
  }
  for (const id of agents) if (!ID_RE.test(id)) usage(`--agents: "${id}" is not an agent id (letters, digits, '.', '_', '-'; at most 64)`)
  if (new Set(agents).size !== agents.length) usage('--agents: an id is named twice')

  const wrote: string[] = []
  await mkdir(out, { recursive: true, mode: 0o700 })
  if (placeholders) {
    await writeFile(join(out, 'regatta-auth.conf'), authFile(deployUsers(agents, (u) => `CHANGE-ME-${u}`), true))
    process.stdout.write(`wrote ${join(out, 'regatta-auth.conf')} (placeholder passwords)\n`)
    return
  }
  const targets = ['regatta-auth.conf', 'master.env', 'ci.env', 'scaler.env', 'operator.env', ...agents.flatMap((id) => [`agent-${id}.env`, join('agents', id)])]
  const present = targets.filter((f) => existsSync(join(out, f)))
  if (present.length > 0) {
    process.stderr.write(`make-secrets: ${out} already holds ${present.join(', ')}; secrets in use are never replaced (move them away, or choose another --out)\n`)
    process.exit(1)
  }
  await chmod(out, 0o700)
  const passwords = new Map<string, string>()
  const users = deployUsers(agents, (u) => {
    const p = secret()
    passwords.set(u, p)
    return p
  })
  const operatorToken = secret()
  const readToken = secret()
  await writeSecret(join(out, 'regatta-auth.conf'), authFile(users, false), wrote)
  await writeSecret(join(out, 'master.env'), envFile('Regatta masters: NATS user master, the HTTP API tokens', [
    ['REGATTA_NATS_USER', 'master'], ['REGATTA_NATS_PASSWORD', passwords.get('master')!],
    ['REGATTA_OPERATOR_TOKEN', operatorToken], ['REGATTA_READ_TOKEN', readToken],
  ]), wrote)
  await writeSecret(join(out, 'ci.env'), envFile('Regatta CI service: NATS user ci, the HTTP API tokens, the webhook secret, the secrets key', [
    ['REGATTA_NATS_USER', 'ci'], ['REGATTA_NATS_PASSWORD', passwords.get('ci')!],
    ['REGATTA_OPERATOR_TOKEN', operatorToken], ['REGATTA_READ_TOKEN', readToken],
    // give GitHub the same secret when adding the webhook
    ['REGATTA_WEBHOOK_SECRET', secret()],
    // seals repository secrets in KV: losing it loses them; every CI replica needs the same one
    ['REGATTA_SECRETS_KEY', newSecretsKey()],
  ]) + '# REGATTA_GITHUB_TOKEN=<a token that may set commit statuses>\n', wrote)
  for (const id of agents) {
    const user = agentUser(id)
    await writeSecret(join(out, `agent-${id}.env`), envFile(`Regatta agent ${id}: its own NATS user`, [
      ['REGATTA_NATS_USER', user], ['REGATTA_NATS_PASSWORD', passwords.get(user)!], ['REGATTA_AGENT_ID', id],
    ]), wrote)
    await writeSecret(join(out, 'agents', id), passwords.get(user)!, wrote)
  }
  await writeSecret(join(out, 'scaler.env'), envFile('Regatta scaler: NATS user scaler', [
    ['REGATTA_NATS_USER', 'scaler'], ['REGATTA_NATS_PASSWORD', passwords.get('scaler')!],
  ]), wrote)
  await writeSecret(join(out, 'operator.env'), envFile('The regatta CLI of an operator: NATS user operator, the operator token for HTTP', [
    ['REGATTA_NATS_USER', 'operator'], ['REGATTA_NATS_PASSWORD', passwords.get('operator')!], ['REGATTA_TOKEN', operatorToken],
  ]), wrote)
  for (const f of wrote) process.stdout.write(`wrote ${f}\n`)
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`make-secrets: ${err.message}\n`)
    process.exit(1)
  })
}
