// A CI service on a real cluster (master, one agent, nats-server), a local git repository and a
// local stand-in for GitHub's REST API: the setup every CI test starts from.
import { silentLogger } from '../../shared/log/index.js'
import { httpAuthFrom } from '../../shared/http/index.js'
import { DockerContainerizer, ProcessContainerizer } from '../../services/agent/src/containerizer/index.js'
import { runCi, type CiRunOptions, type RunningCi } from '../../services/ci/src/main.js'
import type { RunView } from '../../services/ci/src/views.js'
import type { OversubscriptionOptions } from '../../services/agent/src/oversubscription/index.js'
import { startCluster, type TestCluster } from './cluster.js'
import { pushPayload, startFakeGitHubApi, webhookHeaders, type FakeGitHubApi } from './github-api.js'
import { createRepo, type TestRepo } from './git-repo.js'
import { waitUntil } from './wait.js'

export const FINAL_RUN_STATES = ['succeeded', 'failed', 'cancelled', 'error']

export interface CiFixture {
  cluster: TestCluster
  ci: RunningCi
  api: FakeGitHubApi
  repo: TestRepo
  webhookSecret: string
  /** The CI service's operator token (writes: trigger, cancel, rerun). */
  operatorToken: string
  /** `{ authorization: 'Bearer <operator token>' }`, for fetches that write. */
  authHeaders: Record<string, string>
  /** A signed push webhook of `sha` to `branch` (default main) of repository `octo/app`. */
  push(sha: string, o?: { branch?: string; deliveryId?: string; repo?: string }): Promise<Response>
  getRun(runId: string): Promise<RunView>
  /** Polls until `done` holds for the run (by id, or the newest run of a sha). */
  waitForRun(which: { runId: string } | { sha: string }, done?: (r: RunView) => boolean, timeoutMs?: number): Promise<RunView>
  /** A job's whole log as text. */
  jobLog(runId: string, jobId: string): Promise<string>
  stop(): Promise<void>
}

export interface CiFixtureOptions {
  containerizer: 'docker' | 'process'
  agentResources?: string
  /** The agent offers what its tasks leave unused as revocable. */
  oversubscription?: OversubscriptionOptions
  /**
   * More options of the CI service (the fixture sets NATS, HTTP, the GitHub API and the logger).
   * Its default `auth`: the operator token, and reads open as in `regatta dev` (tests about
   * tokens give their own).
   */
  ci?: Partial<CiRunOptions>
}

/** The fixture CI service's operator token; the `regatta` processes tests start find it in REGATTA_TOKEN. */
export const FIXTURE_OPERATOR_TOKEN = 'fixture-operator-token'

export async function startCiFixture(o: CiFixtureOptions): Promise<CiFixture> {
  const webhookSecret = 'fixture-secret'
  const operatorToken = FIXTURE_OPERATOR_TOKEN
  process.env.REGATTA_TOKEN = operatorToken
  const cluster = await startCluster()
  const parts: Partial<CiFixture> = { cluster }
  const stop = async (): Promise<void> => {
    await parts.ci?.stop()
    await cluster.stop()
    await parts.api?.close()
    await parts.repo?.remove()
  }
  try {
    await cluster.startMaster()
    const containerizer = o.containerizer === 'docker'
      ? new DockerContainerizer({ logger: silentLogger() })
      : new ProcessContainerizer({ logger: silentLogger(), limits: false })
    await cluster.startAgent({ containerizer, ...(o.agentResources ? { resources: o.agentResources } : {}), ...(o.oversubscription ? { oversubscription: o.oversubscription } : {}) })
    const api = parts.api = await startFakeGitHubApi()
    const repo = parts.repo = await createRepo()
    const ci = parts.ci = await runCi({
      natsUrl: cluster.nats.url, http: { host: '127.0.0.1', port: 0 }, webhookSecret, githubApiUrl: api.url, logger: silentLogger(),
      auth: httpAuthFrom({ operatorToken, openReads: true }, {}), ...o.ci,
    })
    // a request that gets no answer fails the test with a message rather than hanging it
    // the fixture's own reads send the operator token, so that they work with reads closed too
    const authHeaders = { authorization: `Bearer ${operatorToken}` }
    const getRun = async (runId: string): Promise<RunView> => await (await fetch(`${ci.url}/api/v1/runs/${runId}`, { headers: authHeaders, signal: AbortSignal.timeout(15_000) })).json() as RunView
    const findRun = async (which: { runId: string } | { sha: string }): Promise<RunView | undefined> => {
      if ('runId' in which) return getRun(which.runId)
      const { runs } = await (await fetch(`${ci.url}/api/v1/runs`, { headers: authHeaders, signal: AbortSignal.timeout(15_000) })).json() as { runs: RunView[] }
      const run = runs.find((r) => r.sha === which.sha)
      return run ? getRun(run.runId) : undefined
    }
    return {
      cluster, ci, api, repo, webhookSecret, getRun, operatorToken, authHeaders,
      async push(sha, p = {}) {
        const body = JSON.stringify(pushPayload({ repo: p.repo ?? 'octo/app', cloneUrl: repo.url, after: sha, branch: p.branch ?? 'main' }))
        return fetch(`${ci.url}/webhooks/github`, {
          method: 'POST', body,
          headers: webhookHeaders({ event: 'push', body, secret: webhookSecret, ...(p.deliveryId ? { deliveryId: p.deliveryId } : {}) }),
        })
      },
      async waitForRun(which, done = (r) => FINAL_RUN_STATES.includes(r.state), timeoutMs = 60_000) {
        let last: RunView | undefined
        try {
          return await waitUntil(`run ${JSON.stringify(which)}`, async () => {
            last = await findRun(which)
            return last && done(last) ? last : undefined
          }, timeoutMs, 100)
        } catch (err) {
          throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}`)
        }
      },
      async jobLog(runId, jobId) {
        const res = await fetch(`${ci.url}/api/v1/runs/${runId}/jobs/${encodeURIComponent(jobId)}/log`, { headers: authHeaders })
        if (!res.ok) throw new Error(`log of ${runId}/${jobId}: HTTP ${res.status} ${await res.text()}`)
        return res.text()
      },
      stop,
    }
  } catch (err) {
    await stop().catch(() => undefined)
    throw err
  }
}
