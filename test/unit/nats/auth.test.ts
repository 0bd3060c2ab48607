import t from 'tap'
import {
  authorizationConfig, devUsers, inboxPrefixFor, natsSecurityFromEnv, natsSecurityOptions, permissionsFor, splitNatsUrl, tlsConfig,
} from '../../../shared/nats/index.js'
import { Subjects } from '../../../shared/protocol/index.js'

t.test('Checks that an agent may receive only its own commands and publish no operator, framework or command subject', async (t) => {
  const p = permissionsFor({ user: 'agent-a1', role: 'agent', id: 'a.1' })
  t.ok(p.subscribe.allow.includes(Subjects.agentCommand('a.1')))
  t.notOk(p.subscribe.allow.some((s) => s.startsWith('regatta.agent.') && s !== Subjects.agentCommand('a.1')))
  t.ok(p.subscribe.allow.includes('_INBOX.agent-a1.>'), 'its own inboxes only')
  for (const s of [Subjects.masterOperator, Subjects.schedulerCall, '>', 'regatta.>', '$JS.API.>']) t.notOk(p.publish.allow.includes(s), `not ${s}`)
  t.ok(p.allowResponses, 'it answers the master\'s commands')
  t.throws(() => permissionsFor({ user: 'x', role: 'agent' }), /needs an id/)
})

t.test('Checks that a framework gets its own events, update consumer and output, and not the operator subject', async (t) => {
  const p = permissionsFor({ user: 'framework-fw', role: 'framework', id: 'fw' })
  t.same(p.subscribe.allow.filter((s) => s.startsWith('regatta.framework.')), [Subjects.frameworkEvents('fw')])
  t.ok(p.publish.allow.includes('$JS.API.CONSUMER.MSG.NEXT.REGATTA_UPDATES.fw-fw'))
  t.notOk(p.publish.allow.includes(Subjects.masterOperator))
  t.notOk(p.allowResponses)
})

t.test('Checks that the config names each user once, quotes passwords and refuses bad names or passwords', async (t) => {
  const users = devUsers({ agentIds: ['a1'], frameworkIds: ['f'], ciFrameworkId: 'ci', password: () => 'p4ssw0rd-x' })
  t.same(users.map((u) => u.user), ['master', 'agent-a1', 'framework-f', 'ci', 'scaler', 'operator'])
  const conf = authorizationConfig(users)
  t.match(conf, /user: "agent-a1", password: "p4ssw0rd-x"/)
  t.match(conf, /allow_responses: true/)
  t.throws(() => authorizationConfig([users[0]!, users[0]!]), /declared twice/)
  t.throws(() => authorizationConfig([{ ...users[0]!, user: 'a b' }]), /user name/)
  t.throws(() => authorizationConfig([{ ...users[0]!, password: 'short' }]), /8 characters/)
  t.match(tlsConfig({ certFile: '/c.pem', keyFile: '/k.pem', caFile: '/ca.pem', verify: true }), /verify: true/)
})

t.test('Checks that credentials come from the URL and the environment, and bad combinations are refused in one line', async (t) => {
  t.same(splitNatsUrl('nats://u%40x:p%3Aw@h1:4222,nats://h2:4222'), { servers: ['nats://h1:4222', 'nats://h2:4222'], user: 'u@x', password: 'p:w' })
  t.same(splitNatsUrl('nats://h:1'), { servers: ['nats://h:1'] })
  t.same(natsSecurityFromEnv({ REGATTA_NATS_USER: 'u', REGATTA_NATS_PASSWORD: 'p', REGATTA_NATS_CA: '/ca' }), { user: 'u', password: 'p', caFile: '/ca' })
  t.match(natsSecurityOptions({ user: 'u', password: 'p' }), { user: 'u', pass: 'p', inboxPrefix: inboxPrefixFor('u') })
  t.throws(() => natsSecurityOptions({ certFile: '/c' }), { code: 'INVALID_CONFIG' })
  t.throws(() => natsSecurityOptions({ password: 'p' }), { code: 'INVALID_CONFIG' })
  t.same(natsSecurityOptions({}), {}, 'nothing configured: an open connection as before')
})
