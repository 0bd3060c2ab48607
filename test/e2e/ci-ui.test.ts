// End to end: the CI service's runs web UI in headless Chromium (Debian's chromium driven by
// playwright-core) against a real cluster (process containerizer) and a local git repository:
// the runs list, a run's job graph with states and artifacts, and a job's log growing live while it runs.
import t from 'tap'
import { existsSync } from 'node:fs'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { RunView } from '../../services/ci/src/views.js'
import { FINAL_RUN_STATES as FINAL, startCiFixture, type CiFixture } from '../helpers/ci.js'
import type { TapTest } from '../helpers/tap-types.js'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = '/tmp/regatta-ci-ui.png'

if (!existsSync(CHROMIUM)) {
  t.fail(`no ${CHROMIUM}: \`npm test\` installs Debian's chromium (deploy/dev/setup.sh)`)
  process.exit(1)
}

const PIPELINE = `
name: ci
on: { manual: {} }
jobs:
  build:
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    artifacts: [out/]
    steps:
      - name: compile
        run: mkdir -p out && echo built > out/app.txt && echo compiled
  stream:
    needs: [build]
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - name: prepare
        run: echo '<b>not bold</b>'
      - name: count slowly
        run: for i in 1 2 3 4 5 6 7 8 9 10; do echo "tick $i"; sleep 0.3; done; echo "last tick"
  report:
    needs: [stream]
    image: regatta/busybox:latest
    resources: { cpus: 0.5, mem: 128 }
    steps:
      - run: echo report
`

let f: CiFixture
let ci: CiFixture['ci']
let sha: string
let browser: Browser

t.before(async () => {
  f = await startCiFixture({ containerizer: 'process' })
  ci = f.ci
  sha = await f.repo.commit({ '.regatta/ci.yml': PIPELINE })
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
})
t.teardown(async () => {
  await browser?.close()
  await f?.stop()
})

async function trigger(): Promise<string> {
  const res = await fetch(`${ci.url}/api/v1/runs`, { method: 'POST', headers: { 'content-type': 'application/json', ...f.authHeaders }, body: JSON.stringify({ repo: f.repo.url, ref: 'main', sha }) })
  if (res.status !== 201) throw new Error(`trigger: ${res.status} ${await res.text()}`)
  return ((await res.json()) as RunView).runId
}

const getRun = (runId: string): Promise<RunView> => f.getRun(runId)
const waitForRun = (runId: string, done: (r: RunView) => boolean, timeoutMs = 60_000): Promise<RunView> => f.waitForRun({ runId }, done, timeoutMs)

/** A page, and the script and console errors it reports (a CSP refusal shows there). */
async function openPage(t: TapTest, path: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const problems: string[] = []
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`) })
  t.teardown(() => page.close())
  await page.goto(`${ci.url}${path}`)
  return { page, problems }
}

let doneRun = ''

t.test('Checks that the runs list shows a run: repository, ref, short sha, state, and links to it', async (t) => {
  doneRun = await trigger()
  await waitForRun(doneRun, (r) => FINAL.includes(r.state))
  const { page, problems } = await openPage(t, '/')
  const link = page.locator(`a[href="/runs/${doneRun}"]`)
  await link.waitFor({ timeout: 10_000 })
  const row = page.locator('tr', { has: link })
  const text = await row.innerText()
  t.match(text, f.repo.dir.split('/').pop()!, 'the repository')
  t.match(text, /\bmain\b/, 'the branch')
  t.match(text, sha.slice(0, 7), 'the short sha')
  t.notMatch(text, sha.slice(0, 8))
  t.match(text, /succeeded/)
  t.match(text, /3\/3/, 'jobs ok/total')
  t.equal(await page.locator('thead th').allInnerTexts().then((h) => h.map((x) => x.toLowerCase())).then((h) => ['repository', 'ref', 'commit', 'state', 'duration', 'started'].every((c) => h.includes(c))), true, 'the columns')

  // the router: the link opens the run page without a reload
  await link.click()
  await page.waitForURL(`**/runs/${doneRun}*`)
  await page.locator('.job[data-job="ci/build"]').waitFor()
  t.pass('the run page opened from the list')
  t.same(problems, [], 'no script or console errors')
})

t.test('Checks that the run page shows its jobs in DAG columns with their states and needs', async (t) => {
  const { page, problems } = await openPage(t, `/runs/${doneRun}`)
  await page.locator('.job[data-job="ci/report"]').waitFor({ timeout: 10_000 })
  const columns = await page.locator('.graph .column').evaluateAll((cols) => cols.map((c) => [...c.querySelectorAll('.job')].map((j) => j.getAttribute('data-job'))))
  t.same(columns, [['ci/build'], ['ci/stream'], ['ci/report']], 'one column per depth of needs')
  for (const id of ['ci/build', 'ci/stream', 'ci/report']) {
    const box = page.locator(`.job[data-job="${id}"]`)
    t.match(await box.getAttribute('class'), /state-succeeded/, `${id} succeeded`)
    t.match(await box.innerText(), /succeeded/)
  }
  t.match(await page.locator('.job[data-job="ci/report"]').innerText(), /needs ci\/stream/)
  t.equal(await page.locator('#edges path').count(), 2, 'a line per need')
  t.match(await page.locator('.summary').innerText(), /succeeded/)
  t.match(await page.locator('.summary').innerText(), sha, 'the commit')

  // the build job's artifacts: listed with their size, and the link downloads the tar.gz
  const link = page.locator('.artifacts a', { hasText: 'ci/build.tar.gz' })
  await link.waitFor({ timeout: 10_000 })
  t.equal(await page.locator('.artifacts a').count(), 1, 'only the job that saved artifacts is listed')
  const download = await fetch(`${ci.url}${await link.getAttribute('href')}`)
  t.equal(download.status, 200, 'the link downloads')
  t.equal(download.headers.get('content-type'), 'application/gzip')
  const size = Number(/(\d+) B/.exec(await page.locator('.artifacts li').innerText())?.[1])
  t.equal((await download.arrayBuffer()).byteLength, size, 'of the size shown')
  t.same(problems, [], 'no script or console errors')
})

t.test('Checks that a job\'s log grows live while the job runs, with steps as headings, until it ends', async (t) => {
  const runId = await trigger()
  const { page, problems } = await openPage(t, `/runs/${runId}`)
  await waitForRun(runId, (r) => r.jobs.find((j) => j.id === 'ci/stream')?.state === 'running', 30_000)
  const box = page.locator('.job[data-job="ci/stream"]')
  await box.waitFor()
  await box.click()
  const log = page.locator('#log-body')
  await page.waitForFunction(() => /tick 1\n/.test(document.getElementById('log-body')?.innerText ?? ''), null, { timeout: 10_000 })
  const first = await log.innerText()
  t.notMatch(first, /last tick/, 'read while the job still runs')
  t.equal((await getRun(runId)).jobs.find((j) => j.id === 'ci/stream')?.state, 'running', 'the job was running at the first read')
  await page.waitForTimeout(1_000)
  const second = await log.innerText()
  t.ok(second.length > first.length, `the log grew (${first.length} -> ${second.length} characters)`)

  await page.locator('#log.ended').waitFor({ timeout: 20_000 })
  const full = await log.innerText()
  t.match(full, /tick 10\nlast tick/, 'the last line after the job ended')
  t.same(await page.locator('#log-body h3.step').allInnerTexts(), ['Step 1: prepare', 'Step 2: count slowly'], 'step markers are headings')
  t.match(full, /<b>not bold<\/b>/, 'log text is shown as text')
  t.equal(await page.locator('#log-body b').count(), 0, 'never as markup')
  t.match(page.url(), /\?job=ci%2Fstream$/, 'the selected job is in the URL')

  await waitForRun(runId, (r) => FINAL.includes(r.state))
  await page.locator('.job[data-job="ci/report"].state-succeeded').waitFor({ timeout: 10_000 }).catch(async (err: Error) => {
    t.fail(`${err.message}; the page says: ${await page.locator('#note').innerText()}`)
  })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  t.pass(`screenshot at ${SCREENSHOT}`)
  t.same(problems, [], 'no script or console errors')
})
