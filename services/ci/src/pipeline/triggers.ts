// Whether a pipeline's `on` matches what happened (a Trigger), and the `github` context that
// expressions read from it.
import type { Trigger } from '../trigger.js'
import { normalizeCron } from './cron.js'
import { selectedBy } from './glob.js'
import type { Triggers } from './model.js'

export function matchesTrigger(on: Triggers, t: Trigger): boolean {
  switch (t.kind) {
    case 'push': {
      const p = on.push
      if (!p) return false
      // a filter on tags only means: tags only
      if ((p.tags || p.tagsIgnore) && !p.branches && !p.branchesIgnore) return false
      const branch = t.branch ?? t.ref.replace(/^refs\/heads\//, '')
      return nameFilter(p.branches, p.branchesIgnore, branch) && pathFilter(p.paths, p.pathsIgnore, t.changedFiles)
    }
    case 'tag': {
      const p = on.push
      if (!p) return false
      if ((p.branches || p.branchesIgnore) && !p.tags && !p.tagsIgnore) return false
      const tag = t.tag ?? t.ref.replace(/^refs\/tags\//, '')
      // as on GitHub, path filters do not apply to tags
      return nameFilter(p.tags, p.tagsIgnore, tag)
    }
    case 'pull_request': {
      const p = on.pullRequest
      if (!p) return false
      const action = t.pullRequest?.action
      if (action !== undefined && !(p.types as string[]).includes(action)) return false
      // branch filters of pull requests are about where the change goes: the base branch
      const base = (t.pullRequest?.baseRef ?? '').replace(/^refs\/heads\//, '')
      return nameFilter(p.branches, p.branchesIgnore, base) && pathFilter(p.paths, p.pathsIgnore, t.changedFiles)
    }
    case 'schedule':
      return t.schedule !== undefined && on.schedule.includes(normalizeCron(t.schedule))
    case 'manual':
      return on.manual
    default:
      return false
  }
}

function nameFilter(include: string[] | undefined, ignore: string[] | undefined, name: string): boolean {
  if (include && !selectedBy(include, name)) return false
  if (ignore && selectedBy(ignore, name)) return false
  return true
}

/** Some changed file is selected by `paths` and not by `paths-ignore`; unknown changes run. */
function pathFilter(paths: string[] | undefined, ignore: string[] | undefined, changed: string[] | undefined): boolean {
  if ((!paths && !ignore) || changed === undefined) return true
  return changed.some((f) => (!paths || selectedBy(paths, f)) && (!ignore || !selectedBy(ignore, f)))
}

/** `${{ github.* }}`. */
export function githubContext(t: Trigger, runId = ''): Record<string, string> {
  const refName = t.kind === 'pull_request'
    ? t.ref.replace(/^refs\/pull\//, '')
    : t.branch ?? t.tag ?? t.ref.replace(/^refs\/(heads|tags)\//, '')
  return {
    sha: t.sha,
    ref: t.ref,
    ref_name: refName,
    ref_type: t.kind === 'tag' || t.ref.startsWith('refs/tags/') ? 'tag' : 'branch',
    event_name: t.kind === 'tag' ? 'push' : t.kind,
    repository: t.repo.fullName,
    repository_owner: t.repo.fullName.split('/')[0],
    actor: t.actor,
    base_ref: t.pullRequest?.baseRef ?? '',
    head_ref: t.pullRequest?.headRef ?? '',
    run_id: runId,
  }
}
