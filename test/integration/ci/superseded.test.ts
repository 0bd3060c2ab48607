// With cancelSuperseded off (REGATTA_CANCEL_SUPERSEDED=false, `regatta ci --no-cancel-superseded`),
// a newer push to a branch leaves the older run to finish. (On, the default, is tested in e2e/ci-push.)
import t from 'tap'
import { ciEnv } from '../../../services/ci/src/main.js'
import { startCiFixture, type CiFixture } from '../../helpers/ci.js'

const PIPELINE = `
name: slow
on: { push: { branches: [main] } }
jobs:
  work:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: sleep 2; echo done with $(cat n.txt)
`

let f: CiFixture
t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', ci: { cancelSuperseded: false } })
})
t.teardown(() => f?.stop())

t.test('Checks that REGATTA_CANCEL_SUPERSEDED is read as a boolean and refused otherwise', async (t) => {
  t.equal(ciEnv({ REGATTA_CANCEL_SUPERSEDED: 'false' }).cancelSuperseded, false)
  t.equal(ciEnv({ REGATTA_CANCEL_SUPERSEDED: '1' }).cancelSuperseded, true)
  t.equal(ciEnv({}).cancelSuperseded, undefined, 'unset: the service default (cancel)')
  t.throws(() => ciEnv({ REGATTA_CANCEL_SUPERSEDED: 'maybe' }), /REGATTA_CANCEL_SUPERSEDED: "maybe" is not true or false/)
})

t.test('Checks that with cancelSuperseded off, both runs of two quick pushes to one branch succeed', async (t) => {
  const first = await f.repo.commit({ '.regatta/slow.yml': PIPELINE, 'n.txt': 'one' })
  t.equal((await f.push(first)).status, 202)
  await f.waitForRun({ sha: first }, (r) => r.jobs.some((j) => j.state === 'running'))
  const second = await f.repo.commit({ 'n.txt': 'two' })
  t.equal((await f.push(second)).status, 202)
  const [a, b] = await Promise.all([f.waitForRun({ sha: first }), f.waitForRun({ sha: second })])
  t.equal(a.state, 'succeeded', 'the older run finished')
  t.equal(a.supersededBy, null, 'and was not marked superseded')
  t.equal(b.state, 'succeeded', 'the newer run finished')
  t.match(await f.jobLog(a.runId, 'slow/work'), /done with one/)
})
