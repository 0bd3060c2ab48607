// Repository secrets end to end: stored with `regatta secrets set` (value on stdin) through a
// CI service over NATS, sealed at rest in KV, given only to the jobs that name them, and masked
// in their logs however they are printed (whole, split across writes, base64, line by line).
import t from 'tap'
import { Buckets } from '../../../shared/protocol/index.js'
import { newSecretsKey, parseSecretsKey } from '../../../shared/secrets/index.js'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { regatta } from '../../helpers/cli.js'

const NPM_TOKEN = 'npm_s3cr3t_t0ken_42'
const DEPLOY_KEY = 'line-one-of-key\nline-two-of-key'

const PIPELINE = `
name: sec
on: { push: { branches: [main] } }
env:
  DEPLOY_KEY: \${{ secrets.DEPLOY_KEY }}
jobs:
  use:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    secrets: [NPM_TOKEN, NOT_SET_ANYWHERE]
    steps:
      - name: check
        run: test "$NPM_TOKEN" = "${NPM_TOKEN}" && test "$DEPLOY_KEY" = "$(printf 'line-one-of-key\\nline-two-of-key')" && echo the values arrived
      - name: leak
        run: |
          echo "plain: $NPM_TOKEN"
          printf 'split: %s' "$(printf %s "$NPM_TOKEN" | cut -c1-7)"; sleep 0.5; printf '%s\\n' "$(printf %s "$NPM_TOKEN" | cut -c8-)"
          printf %s "$NPM_TOKEN" | base64
          printf 'user:%s' "$NPM_TOKEN" | base64
          echo "key: $DEPLOY_KEY"
          echo "one line: line-two-of-key"
          echo "not set: \${NOT_SET_ANYWHERE:-absent}"
  other:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo "npm=\${NPM_TOKEN:-none}"
`

let f: CiFixture
t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', ci: { secretsKey: parseSecretsKey(newSecretsKey()) } })
  // the first run bundles the CLI (esbuild)
  await regatta(['--help'], { timeoutMs: 60_000 })
})
t.teardown(() => f?.stop())

t.test('Checks that regatta secrets set/ls/rm store, list and delete a secret without ever showing its value', async (t) => {
  const nats = f.cluster.nats.url
  const set = await regatta(['secrets', 'set', 'octo/app', 'NPM_TOKEN', '--nats', nats], { stdin: `${NPM_TOKEN}\n` })
  t.equal(set.code, 0, `set exits 0 (${set.stderr.trim()})`)
  const key = await regatta(['secrets', 'set', 'octo/app', 'DEPLOY_KEY', '--nats', nats], { stdin: DEPLOY_KEY })
  t.equal(key.code, 0, 'a multi-line value is stored too')
  const ls = await regatta(['secrets', 'ls', 'octo/app', '--nats', nats, '--json'])
  t.same((JSON.parse(ls.stdout) as { secrets: Array<{ name: string }> }).secrets.map((s) => s.name), ['DEPLOY_KEY', 'NPM_TOKEN'])
  t.notMatch(ls.stdout, /s3cr3t/, 'ls shows names, not values')

  // at rest: sealed, the value nowhere in the bucket
  const nc = await f.cluster.connect('secrets-test')
  const kv = await nc.jetstream().views.kv(Buckets.secrets)
  const keys: string[] = []
  for await (const k of await kv.keys()) keys.push(k)
  for (const k of keys) {
    const e = await kv.get(k)
    t.notMatch(e?.string() ?? '', /s3cr3t|line-one/, `stored ${k} is sealed`)
  }

  const tmp = await regatta(['secrets', 'set', 'octo/app', 'TEMP', '--nats', nats], { stdin: 'temporary-value' })
  t.equal(tmp.code, 0)
  t.equal((await regatta(['secrets', 'rm', 'octo/app', 'TEMP', '--nats', nats])).code, 0, 'rm exits 0')
  const again = await regatta(['secrets', 'rm', 'octo/app', 'TEMP', '--nats', nats])
  t.not(again.code, 0, 'removing it twice fails')
  t.match(again.stderr, /octo\/app has no secret TEMP/)
})

t.test('Checks that bad secret arguments get one line and a non-zero exit, before anything is sent', async (t) => {
  const nats = f.cluster.nats.url
  const cases: Array<[string[], string, RegExp]> = [
    [['secrets', 'set', 'not-a-repo', 'X', '--nats', nats], 'x', /REPO: "not-a-repo" is not owner\/name/],
    [['secrets', 'set', 'octo/app', '1BAD', '--nats', nats], 'x', /NAME: "1BAD" is not an environment variable name/],
    [['secrets', 'set', 'octo/app', 'EMPTY', '--nats', nats], '', /no value on stdin/],
  ]
  for (const [args, stdin, message] of cases) {
    const r = await regatta(args, { stdin })
    t.not(r.code, 0, `${args.slice(1, 4).join(' ')}: non-zero`)
    t.match(r.stderr, message)
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  }
})

t.test('Checks that a job gets the secrets it names, and its log never shows them', async (t) => {
  const sha = await f.repo.commit({ '.regatta/sec.yml': PIPELINE })
  t.equal((await f.push(sha)).status, 202)
  const run = await f.waitForRun({ sha })
  t.equal(run.state, 'succeeded', `the run succeeded: ${JSON.stringify(run.jobs.map((j) => [j.id, j.state, j.message]))}`)

  const log = await f.jobLog(run.runId, 'sec/use')
  t.match(log, /the values arrived/, 'the job read the values it named')
  for (const leak of [NPM_TOKEN, 'line-one-of-key', 'line-two-of-key', Buffer.from(NPM_TOKEN).toString('base64').slice(0, 16)]) {
    t.notOk(log.includes(leak), `the log does not contain ${leak.slice(0, 8)}...`)
  }
  t.match(log, /plain: \*\*\*/, 'a printed value is masked')
  // stderr lines (the warning) may land between the two pieces on stdout
  t.match(log.replace(/::regatta warning[^\n]*\n/g, ''), /split: \*\*\*/, 'a value written in two pieces is masked')
  t.match(log, /one line: \*\*\*/, 'a line of a multi-line value is masked')
  t.match(log, /not set: absent/, 'a secret that does not exist is not set')
  t.match(log, /::regatta warning secret NOT_SET_ANYWHERE not set for octo\/app/, 'and the log says so')

  const other = await f.jobLog(run.runId, 'sec/other')
  t.match(other, /npm=none/, 'a job that names no secret gets none')
})
