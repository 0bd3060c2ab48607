// Human output of the `regatta` CLI from a ClusterState (`regatta status`, `regatta agents ls`)
// and from the CI service's runs (`regatta runs ls|show`).
// Pure: data in, text out; `--json` output does not come through here.
import { TASK_STATES, type Amounts, type ClusterState } from '../../../shared/protocol/index.js'
import type { JobView, RunView } from '../../ci/src/views.js'

const MIB_PER_GIB = 1024
const MIB_PER_TIB = 1024 * 1024

/**
 * Columns padded to the widest cell, two spaces apart, no trailing spaces. A row shorter
 * than the headers leaves its last cells empty.
 */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const cells = [headers.map(String), ...rows.map((r) => headers.map((_, i) => (r[i] === undefined ? '' : String(r[i]))))]
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)))
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd())
    .join('\n')
}

/** A duration in the style of kubectl ages: `0s`, `45s`, `3m12s`, `2h5m`, `3d4h`. Negative counts as 0. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return s % 60 ? `${m}m${s % 60}s` : `${m}m`
  const h = Math.floor(m / 60)
  if (h < 24) return m % 60 ? `${h}h${m % 60}m` : `${h}h`
  const d = Math.floor(h / 24)
  return h % 24 ? `${d}d${h % 24}h` : `${d}d`
}

/** Memory or disk given in MiB: `512 MiB`, `1.5 GiB`, `16 GiB`, `1.2 TiB` (one decimal at most). */
export function humanMem(mib: number): string {
  if (mib >= MIB_PER_TIB) return `${decimals(mib / MIB_PER_TIB, 1)} TiB`
  if (mib >= MIB_PER_GIB) return `${decimals(mib / MIB_PER_GIB, 1)} GiB`
  return `${decimals(mib, 1)} MiB`
}

/** `regatta status`: who leads, what is used, the agents, frameworks and tasks in brief. */
export function formatStatus(state: ClusterState): string {
  const lines: string[] = []
  const field = (name: string, value: string) => lines.push(`${`${name}:`.padEnd(12)}${value}`)

  if (state.leader) {
    const self = state.leader.id === state.masterId ? ', this master' : ''
    field('Leader', `${state.leader.id} (epoch ${state.leader.epoch}${self})`)
  } else {
    field('Leader', 'none (no leading master is known)')
  }
  // the answer came from a standby: say so, its view may lag the leader's
  if (state.leader?.id !== state.masterId) field('Master', `${state.masterId} (standby)`)
  field('Agents', countsLine(state.agents.length, countBy(state.agents.map((a) => a.state), ['active', 'draining', 'recovering', 'unreachable'])))
  field('Offers', `${state.offers.length} outstanding`)
  field('Tasks', countsLine(state.tasks.length, countBy(state.tasks.map((t) => t.state), TASK_STATES)))
  const orphans = orphansLine(state)
  if (orphans) field('Orphans', orphans)
  const sandboxes = sandboxesLine(state)
  if (sandboxes) field('Sandboxes', sandboxes)

  lines.push('', table(['RESOURCE', 'USED', 'TOTAL', 'USE%'], ['cpus', 'mem', 'disk'].map((r) => {
    const used = state.used[r] ?? 0
    const total = state.total[r] ?? 0
    return [r, amount(r, used), amount(r, total), total > 0 ? `${Math.round((used / total) * 100)}%` : '-']
  })))

  lines.push('')
  if (state.frameworks.length === 0) {
    lines.push('No frameworks subscribed.')
  } else {
    lines.push(table(['FRAMEWORK', 'ID', 'ACTIVE', 'TASKS'], state.frameworks.map((f) => [f.name, f.id, f.active ? 'yes' : 'no', f.tasks])))
  }
  lines.push('', formatDemand(state.demand ?? []))
  return lines.join('\n')
}

/**
 * What the agents' reapers found and removed (containers, processes, sandboxes no task owned):
 * `3 found, 2 reaped (containers 1/1, sandboxes 2/1 found/reaped)`; undefined from a master
 * that does not report it.
 */
export function orphansLine(state: ClusterState): string | undefined {
  if (!state.orphans) return undefined
  const { found, reaped } = state.orphans
  const kinds = (['containers', 'processes', 'sandboxes'] as const).map((kind) => {
    let f = 0
    let r = 0
    for (const a of state.agents) {
      f += a.orphans?.[kind].found ?? 0
      r += a.orphans?.[kind].reaped ?? 0
    }
    return [kind, f, r] as const
  }).filter(([, f, r]) => f > 0 || r > 0)
  const detail = kinds.length > 0 ? ` (${kinds.map(([k, f, r]) => `${k} ${f}/${r}`).join(', ')} found/reaped)` : ''
  return `${found} found, ${reaped} reaped${detail}`
}

/** The agents' task sandboxes on disk: used against their budgets, kept after their task, evicted. */
export function sandboxesLine(state: ClusterState): string | undefined {
  const disks = state.agents.flatMap((a) => (a.disk ? [a.disk] : []))
  if (disks.length === 0) return undefined
  let used = 0
  let budget = 0
  let kept = 0
  let evicted = 0
  for (const d of disks) {
    used += d.usedMb
    budget += d.budgetMb ?? 0
    kept += d.retained
    evicted += d.evicted
  }
  const bounded = disks.every((d) => d.budgetMb !== undefined)
  return `${humanMem(used)} used${bounded ? ` of ${humanMem(budget)} budget` : ''}, ${kept} kept after their task, ${evicted} evicted`
}

/** Pending demand per pool (frameworks' REQUESTs): tasks asked for, how many fit nowhere, and what those need. */
export function formatDemand(demand: ClusterState['demand']): string {
  if (demand.length === 0) return 'No pending demand.'
  return table(['POOL', 'PENDING', 'UNMET', 'REQUESTED', 'UNMET RESOURCES'], demand.map((d) => [
    d.pool, d.jobs, d.unmetJobs, amountsLine(d.requested), d.unmetJobs > 0 ? amountsLine(d.unmet) : '-',
  ]))
}

/** `cpus 2, mem 4 GiB`: the scalars by name, zeros left out. */
function amountsLine(a: Amounts): string {
  return Object.keys(a).sort().filter((k) => a[k]).map((k) => `${k} ${amount(k, a[k]!)}`).join(', ') || '-'
}

/** `regatta agents ls`: one row per agent. */
export function formatAgents(state: ClusterState): string {
  if (state.agents.length === 0) return 'No agents registered.'
  return table(
    ['ID', 'HOSTNAME', 'POOL', 'STATE', 'CPUS', 'MEM', 'TASKS', 'IDLE', 'LAST SEEN'],
    state.agents.map((a) => [
      a.id,
      a.hostname,
      a.pool,
      a.state,
      usedOfTotal('cpus', a.used, a.total),
      usedOfTotal('mem', a.used, a.total),
      a.tasks,
      a.tasks > 0 || a.idleSince === undefined ? '-' : humanDuration(state.now - a.idleSince),
      `${humanDuration(state.now - a.lastHeartbeatAt)} ago`,
    ]),
  )
}

function decimals(n: number, digits: number): string {
  const f = 10 ** digits
  return String(Math.round(n * f) / f)
}

/** cpus (and other plain scalars) with two decimals at most; mem and disk in MiB/GiB/TiB. */
function amount(resource: string, value: number): string {
  return resource === 'mem' || resource === 'disk' ? humanMem(value) : decimals(value, 2)
}

function usedOfTotal(resource: string, used: Amounts, total: Amounts): string {
  return `${amount(resource, used[resource] ?? 0)}/${amount(resource, total[resource] ?? 0)}`
}

/** Counts in the order of `order` (the lifecycle), skipping zeros; unknown values last. */
function countBy(values: readonly string[], order: readonly string[]): Array<[string, number]> {
  const counts = new Map<string, number>()
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
  const known = order.filter((k) => counts.has(k))
  const unknown = [...counts.keys()].filter((k) => !order.includes(k)).sort()
  return [...known, ...unknown].map((k) => [k, counts.get(k)!])
}

function countsLine(total: number, counts: Array<[string, number]>): string {
  return counts.length === 0 ? String(total) : `${total} (${counts.map(([k, n]) => `${n} ${k}`).join(', ')})`
}

// ---- runs (`regatta runs ls`, `regatta runs show`), from the CI service's RunView JSON ----------

/** A ref as people say it: `main` for refs/heads/main, `v1.2` for refs/tags/v1.2, `pr #7` for refs/pull/7/... */
export function shortRef(ref: string): string {
  const pull = /^refs\/pull\/(\d+)\//.exec(ref)
  if (pull) return `pr #${pull[1]}`
  return ref.replace(/^refs\/(heads|tags)\//, '')
}

/** How long a run or job took: from its start to its end (or to `now` while it runs); `-` before it starts. */
function took(startedAt: number | null, finishedAt: number | null, now: number): string {
  if (startedAt === null) return '-'
  return humanDuration((finishedAt ?? now) - startedAt)
}

/** `regatta runs ls`: one row per run, newest first as the service lists them. */
export function formatRuns(runs: readonly RunView[], now: number = Date.now()): string {
  if (runs.length === 0) return 'No runs yet.'
  return table(
    ['RUN', 'REPO', 'REF', 'SHA', 'STATE', 'JOBS', 'AGE', 'DURATION'],
    runs.map((r) => [
      r.runId,
      r.repo,
      shortRef(r.ref),
      r.sha.slice(0, 7),
      r.state,
      `${r.jobs.filter((j) => j.state === 'succeeded').length}/${r.jobs.length}`,
      humanDuration(now - r.createdAt),
      took(r.startedAt, r.finishedAt, now),
    ]),
  )
}

/** `regatta runs show ID`: the run's fields, then one row per job in the run's order. */
export function formatRun(run: RunView, now: number = Date.now()): string {
  const lines: string[] = []
  // multi-line values (a pipeline error lists one file:line:col a line) stay under their field
  const field = (name: string, value: string) => lines.push(`${`${name}:`.padEnd(12)}${value.split('\n').join(`\n${' '.repeat(12)}`)}`)
  field('Run', run.runId)
  field('Repo', run.repo)
  field('Ref', run.ref === shortRef(run.ref) ? run.ref : `${shortRef(run.ref)} (${run.ref})`)
  field('Commit', run.sha)
  field('Trigger', `${run.kind}${run.actor && run.actor !== run.kind ? ` by ${run.actor}` : ''}`)
  field('State', run.state)
  field('Created', `${humanDuration(now - run.createdAt)} ago`)
  field('Duration', took(run.startedAt, run.finishedAt, now))
  if (run.error) field('Error', run.error)
  if (run.supersededBy) field('Superseded', `by run ${run.supersededBy}`)
  lines.push('')
  if (run.jobs.length === 0) {
    lines.push('No jobs.')
  } else {
    lines.push(table(
      ['JOB', 'STATE', 'ATTEMPT', 'EXIT', 'DURATION', 'STATUS'],
      run.jobs.map((j: JobView) => [
        j.id,
        j.state,
        j.attempt,
        j.exitCode === null ? '-' : j.exitCode,
        took(j.startedAt, j.finishedAt, now),
        `${j.status}: ${j.description}`,
      ]),
    ))
  }
  return lines.join('\n')
}
