// NATS users and their subject permissions (least privilege per kind of component), and the
// nats-server `authorization` block that declares them. Pure: no I/O, no clock (passwords come
// from the caller or from randomPassword()).
//
// Every user gets its own reply inbox prefix, `_INBOX.<user token>`, and may subscribe only
// there, so no component can read another's replies. connectNats() sets the prefix from the
// user (inboxPrefixFor) and the Requester honours it.
import { randomBytes } from 'node:crypto'
import { Buckets, Consumers, Streams, Subjects, idToken } from '../protocol/subjects.js'

export type NatsRole = 'master' | 'agent' | 'framework' | 'ci' | 'scaler' | 'operator'

export const NATS_ROLES: readonly NatsRole[] = ['master', 'agent', 'framework', 'ci', 'scaler', 'operator']

export interface NatsUser {
  user: string
  password: string
  role: NatsRole
  /** The agent id (role agent) or framework id (roles framework and ci) the user may act as. */
  id?: string
}

export interface SubjectPermissions {
  publish: { allow: string[]; deny?: string[] }
  subscribe: { allow: string[]; deny?: string[] }
  /** May answer the requests it receives (publish once to their reply subject). */
  allowResponses: boolean
}

/** The reply inbox prefix of a user: `_INBOX.<idToken(user)>`. */
export function inboxPrefixFor(user: string): string {
  return `_INBOX.${idToken(user)}`
}

/** A random password (hex, 32 characters). */
export function randomPassword(): string {
  return randomBytes(16).toString('hex')
}

/** JetStream API subjects to create and read one stream of a bucket, and to consume from it. */
function bucketStreamSubjects(stream: string): string[] {
  return [
    // the client looks the bucket's stream up by name
    '$JS.API.STREAM.NAMES',
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.CREATE.${stream}`,
    `$JS.API.STREAM.PURGE.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ]
}

/** JetStream API subjects to use one object store (create it, put, get, list, delete). */
function objectStoreSubjects(bucket: string): string[] {
  return [`$O.${bucket}.>`, ...bucketStreamSubjects(`OBJ_${bucket}`)]
}

/** JetStream API subjects to use one KV bucket (create it, get, put, watch). */
function kvSubjects(bucket: string): string[] {
  const stream = `KV_${bucket}`
  return [`$KV.${bucket}.>`, `$JS.API.STREAM.MSG.DELETE.${stream}`, ...bucketStreamSubjects(stream)]
}

/** What a framework needs to use its own durable consumer of status updates. */
function frameworkUpdateSubjects(frameworkId: string): string[] {
  const durable = Consumers.frameworkUpdates(frameworkId)
  return [
    `$JS.API.STREAM.INFO.${Streams.updates}`,
    `$JS.API.CONSUMER.INFO.${Streams.updates}.${durable}`,
    `$JS.API.CONSUMER.MSG.NEXT.${Streams.updates}.${durable}`,
    `$JS.ACK.${Streams.updates}.${durable}.>`,
  ]
}

/**
 * The permissions of one user. An agent: register, heartbeat and unregister with the master,
 * publish status updates and output (JetStream) on its own subjects only
 * (`regatta.update.*.<agent>`, `regatta.output.*.<agent>.>`), use the cache and artifact object stores, and
 * receive only its own commands. A framework: scheduler calls, its own events, its own update
 * consumer and its own tasks' output. `ci` is a framework that also keeps its KV buckets and
 * object stores, serves `regatta.ci.secrets` and reads the cluster state and task output.
 * The scaler: operator calls (drain), the state, the pool policies and its lease. The master
 * and the operator (CLI) may use every subject.
 */
export function permissionsFor(u: Pick<NatsUser, 'user' | 'role' | 'id'>): SubjectPermissions {
  const inbox = `${inboxPrefixFor(u.user)}.>`
  const needId = (): string => {
    if (!u.id) throw new Error(`NATS user ${u.user} (role ${u.role}) needs an id`)
    return u.id
  }
  switch (u.role) {
    case 'master':
    case 'operator':
      return { publish: { allow: ['>'] }, subscribe: { allow: ['>'] }, allowResponses: true }
    case 'agent': {
      const id = needId()
      return {
        publish: {
          allow: [
            Subjects.agentRegister, Subjects.agentHeartbeat, Subjects.agentUnregister,
            // status updates and output on its own subjects only (they name the agent)
            `regatta.update.*.${idToken(id)}`, `regatta.output.*.${idToken(id)}.>`, '$JS.API.INFO',
            ...objectStoreSubjects(Buckets.cache), ...objectStoreSubjects(Buckets.artifacts),
          ],
        },
        subscribe: { allow: [Subjects.agentCommand(id), Subjects.leaderElected, inbox] },
        allowResponses: true,
      }
    }
    case 'framework':
    case 'ci': {
      const id = needId()
      const publish = [Subjects.schedulerCall, '$JS.API.INFO', ...frameworkUpdateSubjects(id)]
      const subscribe = [Subjects.frameworkEvents(id), Subjects.leaderElected, `regatta.output.${idToken(id)}.>`, inbox]
      if (u.role === 'framework') return { publish: { allow: publish }, subscribe: { allow: subscribe }, allowResponses: false }
      const buckets = [Buckets.secrets, Buckets.ciLeader, 'regatta-runs', 'regatta-deliveries', 'regatta-schedules', 'regatta-schedule-ticks', 'regatta-github-heads', 'regatta-github-claims', 'regatta-cache-volumes']
      return {
        publish: {
          allow: [
            // a standby replica hands its writes to the one holding the CI lease
            ...publish, Subjects.masterState, Subjects.ciLeader,
            ...buckets.flatMap(kvSubjects),
            ...objectStoreSubjects(Buckets.logs), ...objectStoreSubjects(Buckets.artifacts), ...objectStoreSubjects(Buckets.cache),
            // its jobs' logs from the output stream
            `$JS.API.STREAM.INFO.${Streams.output}`, `$JS.API.STREAM.MSG.GET.${Streams.output}`,
            `$JS.API.DIRECT.GET.${Streams.output}`, `$JS.API.DIRECT.GET.${Streams.output}.>`,
            `$JS.API.CONSUMER.CREATE.${Streams.output}`, `$JS.API.CONSUMER.CREATE.${Streams.output}.>`,
            `$JS.API.CONSUMER.DELETE.${Streams.output}.>`, `$JS.API.CONSUMER.INFO.${Streams.output}.>`,
            `$JS.API.CONSUMER.MSG.NEXT.${Streams.output}.>`, `$JS.ACK.${Streams.output}.>`, `$JS.FC.${Streams.output}.>`,
          ],
        },
        subscribe: { allow: [...subscribe, Subjects.ciSecrets, Subjects.ciLeader] },
        allowResponses: true,
      }
    }
    case 'scaler':
      return {
        publish: {
          allow: [
            Subjects.masterOperator, Subjects.masterState, '$JS.API.INFO',
            ...kvSubjects(Buckets.pools), ...kvSubjects(Buckets.scalerLeader),
          ],
        },
        subscribe: { allow: [Subjects.leaderElected, inbox] },
        allowResponses: false,
      }
  }
}

const q = (s: string): string => JSON.stringify(s)
const list = (xs: string[]): string => `[${[...new Set(xs)].map(q).join(', ')}]`

/** One user's entry of the nats-server `authorization { users = [...] }` list. */
export function userConfig(u: NatsUser): string {
  const p = permissionsFor(u)
  const side = (s: { allow: string[]; deny?: string[] }): string =>
    `{ allow: ${list(s.allow)}${s.deny?.length ? `, deny: ${list(s.deny)}` : ''} }`
  return [
    `    # ${u.role}${u.id ? ` ${u.id}` : ''}`,
    `    { user: ${q(u.user)}, password: ${q(u.password)}, permissions: {`,
    `        publish: ${side(p.publish)}`,
    `        subscribe: ${side(p.subscribe)}`,
    ...(p.allowResponses ? ['        allow_responses: true'] : []),
    '    } }',
  ].join('\n')
}

/** The nats-server `authorization` block for these users. */
export function authorizationConfig(users: NatsUser[]): string {
  const names = new Set<string>()
  for (const u of users) {
    if (!/^[A-Za-z0-9._-]+$/.test(u.user)) throw new Error(`NATS user name ${JSON.stringify(u.user)}: use letters, digits, '.', '_' and '-' only`)
    if (names.has(u.user)) throw new Error(`NATS user ${u.user} is declared twice`)
    names.add(u.user)
    if (u.password.length < 8 || /["\\\n]/.test(u.password)) throw new Error(`NATS user ${u.user}: the password needs 8 characters or more, without quotes, backslashes or newlines`)
  }
  return ['authorization {', '  users = [', ...users.map(userConfig), '  ]', '}', ''].join('\n')
}

export interface NatsTlsFiles {
  certFile: string
  keyFile: string
  /** Client certificates signed by this CA are required when `verify` is set. */
  caFile?: string
  verify?: boolean
}

/** The nats-server `tls` block. */
export function tlsConfig(t: NatsTlsFiles): string {
  return [
    'tls {',
    `  cert_file: ${q(t.certFile)}`,
    `  key_file: ${q(t.keyFile)}`,
    ...(t.caFile ? [`  ca_file: ${q(t.caFile)}`] : []),
    ...(t.verify ? ['  verify: true'] : []),
    '  timeout: 2',
    '}',
    '',
  ].join('\n')
}

/** The NATS user of one agent: `agent-<idToken(id)>`, allowed to act only as that agent. */
export function agentUser(id: string, password = randomPassword()): NatsUser {
  return { user: `agent-${idToken(id)}`, password, role: 'agent', id }
}

/** Users for a `regatta dev`-like set-up: one per component, each with a random password. */
export function devUsers(o: { agentIds: string[]; frameworkIds?: string[]; ciFrameworkId?: string; password?: () => string }): NatsUser[] {
  const pw = o.password ?? randomPassword
  return [
    { user: 'master', password: pw(), role: 'master' },
    ...o.agentIds.map((id) => agentUser(id, pw())),
    ...(o.frameworkIds ?? []).map((id) => ({ user: `framework-${idToken(id)}`, password: pw(), role: 'framework' as const, id })),
    ...(o.ciFrameworkId ? [{ user: 'ci', password: pw(), role: 'ci' as const, id: o.ciFrameworkId }] : []),
    { user: 'scaler', password: pw(), role: 'scaler' },
    { user: 'operator', password: pw(), role: 'operator' },
  ]
}
