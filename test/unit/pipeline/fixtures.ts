// Shared by the pipeline tests: triggers, and where a piece of text is in a file (so that
// expected positions are computed from the text itself, not copied from the output).
import type { Trigger } from '../../../services/ci/src/trigger.js'
import { formatPipelineError, parsePipeline } from '../../../services/ci/src/pipeline/index.js'

export const FILE = '.regatta/ci.yml'

export function trigger(over: Partial<Trigger> = {}): Trigger {
  return {
    kind: 'push',
    repo: { fullName: 'acme/app', cloneUrl: 'https://github.com/acme/app.git', defaultBranch: 'main', private: false },
    ref: 'refs/heads/main',
    sha: '0123456789abcdef0123456789abcdef01234567',
    branch: 'main',
    actor: 'octocat',
    ...over,
  }
}

export function pushTo(branch: string, changedFiles?: string[]): Trigger {
  return trigger({ kind: 'push', ref: `refs/heads/${branch}`, branch, ...(changedFiles ? { changedFiles } : {}) })
}

export function tagged(tag: string): Trigger {
  const t = trigger({ kind: 'tag', ref: `refs/tags/${tag}`, tag })
  delete t.branch
  return t
}

export function pullRequest(baseRef: string, over: Partial<NonNullable<Trigger['pullRequest']>> = {}, changedFiles?: string[]): Trigger {
  return trigger({
    kind: 'pull_request',
    ref: 'refs/pull/7/head',
    branch: 'feature/x',
    pullRequest: { number: 7, action: 'opened', headRef: 'feature/x', headSha: 'f'.repeat(40), baseRef, fromFork: false, ...over },
    ...(changedFiles ? { changedFiles } : {}),
  })
}

/** `line:column` (1-based) of the nth occurrence of `needle` in `text`, plus `shift` characters. */
export function posOf(text: string, needle: string, nth = 0, shift = 0): string {
  let i = -1
  for (let k = 0; k <= nth; k++) {
    i = text.indexOf(needle, i + 1)
    if (i < 0) throw new Error(`"${needle}" (#${nth}) is not in the text`)
  }
  i += shift
  const before = text.slice(0, i)
  const line = before.split('\n').length
  const column = i - before.lastIndexOf('\n')
  return `${line}:${column}`
}

/** The errors of parsePipeline as `file:line:col: message` lines ([] when valid). */
export function errorsOf(text: string, file = FILE): string[] {
  const r = parsePipeline(file, text)
  return r.ok ? [] : r.errors.map(formatPipelineError)
}

/** A valid pipeline around some jobs' YAML (indented by 2 under `jobs:`). */
export function withJobs(jobs: string, head = 'on: push\n'): string {
  return `${head}jobs:\n${jobs}`
}
