// The web pages with reads closed (a read token configured, as outside `regatta dev`), in
// headless Chromium (Debian's chromium driven by playwright-core): the master's cluster page and
// the CI runs UI load as empty shells, ask for the token, then show the data fetched with it;
// an artifact downloads through the signed link the UI asks for, and no token goes into a URL.
import t from 'tap'
import { existsSync } from 'node:fs'
import { chromium, type Browser, type Page, type Request } from 'playwright-core'
import { httpAuthFrom } from '../../../shared/http/index.js'
import { FINAL_RUN_STATES, FIXTURE_OPERATOR_TOKEN, startCiFixture, type CiFixture } from '../../helpers/ci.js'
import { httpMasters, startCluster, type TestCluster } from '../../helpers/cluster.js'
import { waitUntil } from '../../helpers/wait.js'
import type { TapTest } from '../../helpers/tap-types.js'

const CHROMIUM = '/usr/bin/chromium'
if (!existsSync(CHROMIUM)) {
  t.fail(`no ${CHROMIUM}: \`npm test\` installs Debian's chromium (deploy/dev/setup.sh)`)
  process.exit(1)
}

const READ = 'browser-read-only-token'
const PIPELINE = `
name: ci
on: { manual: {} }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 64 }
    artifacts: [out/]
    steps:
      - run: mkdir -p out && echo built > out/app.txt
`

let f: CiFixture
let cluster: TestCluster
const masters = httpMasters(() => cluster)
let masterUrl = ''
let browser: Browser
let runId = ''

t.before(async () => {
  f = await startCiFixture({ containerizer: 'process', ci: { auth: httpAuthFrom({ operatorToken: FIXTURE_OPERATOR_TOKEN, readToken: READ }, {}) } })
  const sha = await f.repo.commit({ '.regatta/ci.yml': PIPELINE })
  const res = await fetch(`${f.ci.url}/api/v1/runs`, { method: 'POST', headers: { 'content-type': 'application/json', ...f.authHeaders }, body: JSON.stringify({ repo: f.repo.url, ref: 'main', sha }) })
  runId = (await res.json() as { runId: string }).runId
  cluster = await startCluster()
  const m = await masters.start('m-page', 'browser-operator-token', { auth: httpAuthFrom({ operatorToken: 'browser-operator-token', readToken: READ }, {}) })
  masterUrl = m.httpUrl
  await waitUntil('the master to lead', () => m.master.isLeader, 10_000)
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const run = await f.waitForRun({ runId }, (r) => FINAL_RUN_STATES.includes(r.state))
  if (run.state !== 'succeeded') throw new Error(`the run ${run.state}: ${JSON.stringify(run)}`)
})
t.teardown(async () => {
  await browser?.close()
  await masters.stopAll()
  await cluster?.stop()
  await f?.stop()
})

/** A fresh tab (its own sessionStorage) that records every URL it asks for and every script error. */
async function openPage(t: TapTest, url: string): Promise<{ page: Page; urls: string[]; problems: string[] }> {
  const context = await browser.newContext({ acceptDownloads: true })
  t.teardown(() => context.close())
  const page = await context.newPage()
  const urls: string[] = []
  const problems: string[] = []
  page.on('request', (r: Request) => { urls.push(r.url()) })
  page.on('pageerror', (e) => { problems.push(e.message) })
  // failed loads are checked by URL below (the 401s before the token are expected, and a browser asks for /favicon.ico)
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(m.text()) })
  page.on('response', (r) => { if (r.status() >= 400 && r.status() !== 401 && !r.url().endsWith('/favicon.ico')) problems.push(`${r.status()} ${r.url()}`) })
  await page.goto(url)
  return { page, urls, problems }
}

async function giveToken(page: Page, token: string): Promise<void> {
  await page.locator('#auth').waitFor({ state: 'visible', timeout: 10_000 })
  await page.fill('#token', token)
  await page.click('#auth button')
}

t.test('Checks that the master page asks for the token, then shows the cluster it fetched with it', async (t) => {
  const { page, urls, problems } = await openPage(t, `${masterUrl}/`)
  await page.locator('#auth').waitFor({ state: 'visible', timeout: 10_000 })
  t.match(await page.locator('#note').innerText(), /cannot refresh: .*Authorization: Bearer/, 'without a token it says why')
  t.equal(await page.locator('#cluster').innerText(), '', 'and shows no data')
  await giveToken(page, READ)
  await page.locator('#cluster h2', { hasText: 'Agents' }).waitFor({ timeout: 10_000 })
  t.match(await page.locator('#cluster').innerText(), /m-page/, 'the state, with this master\'s id')
  t.ok(await page.locator('#auth').isHidden(), 'the form is gone')
  t.match(await page.locator('#note').innerText(), /^updated /)
  t.notOk(urls.some((u) => u.includes(READ)), 'no URL carries the token')
  t.same(problems, [], 'no script errors')
})

t.test('Checks that the runs UI asks for the token, shows the run, and downloads its artifacts by a signed link', async (t) => {
  const { page, urls, problems } = await openPage(t, `${f.ci.url}/runs/${runId}`)
  await giveToken(page, READ)
  await page.locator('.job[data-job="ci/build"]').waitFor({ timeout: 10_000 })
  const link = page.locator('.artifacts a', { hasText: 'ci/build.tar.gz' })
  await link.waitFor({ timeout: 10_000 })
  const direct = await fetch(`${f.ci.url}${await link.getAttribute('href')}`)
  t.equal(direct.status, 401, 'the plain link without a header is refused')
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), link.click()])
  t.match(download.url(), /\/artifacts\?exp=\d+&sig=[\w-]{43}$/, 'the browser followed a signed link')
  t.equal(await download.failure(), null, 'the download completed')
  const size = Number(/(\d+) B/.exec(await page.locator('.artifacts li').innerText())?.[1])
  const path = await download.path()
  const { statSync } = await import('node:fs')
  t.equal(statSync(path).size, size, 'of the size shown')
  t.notOk(urls.some((u) => u.includes(READ)), 'no URL carries the token')
  t.same(problems, [], 'no script errors')
})
