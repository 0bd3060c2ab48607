// The job graph of a run: whether it is well formed, and what a job's needs came to.

/** The longest timeout a timer can hold: Node's setTimeout fires at once for anything larger. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1

export interface JobNode {
  id: string
  needs: string[]
  retries: number
  timeoutMs: number
  maxRequeues?: number
}

/**
 * What is wrong with a run's jobs, in one message naming the job, or null when nothing is:
 * duplicate or empty ids, unknown or repeated needs, cycles, and retries/timeouts out of range.
 * The planner checks pipelines with file:line:col first; this is the machine's own guard.
 */
export function checkJobGraph(jobs: readonly JobNode[]): string | null {
  const ids = new Set<string>()
  for (const job of jobs) {
    if (typeof job.id !== 'string' || job.id === '') return 'a job has an empty id'
    if (ids.has(job.id)) return `job "${job.id}" is declared twice`
    ids.add(job.id)
  }
  for (const job of jobs) {
    const seen = new Set<string>()
    for (const need of job.needs) {
      if (need === job.id) return `job "${job.id}" needs itself`
      if (!ids.has(need)) return `job "${job.id}" needs unknown job "${need}"`
      if (seen.has(need)) return `job "${job.id}" lists need "${need}" twice`
      seen.add(need)
    }
    if (!Number.isInteger(job.retries) || job.retries < 0) {
      return `job "${job.id}": retries must be a whole number >= 0, got ${job.retries}`
    }
    if (!Number.isInteger(job.timeoutMs) || job.timeoutMs <= 0 || job.timeoutMs > MAX_TIMEOUT_MS) {
      return `job "${job.id}": timeout must be between 1 ms and ${MAX_TIMEOUT_MS} ms, got ${job.timeoutMs}`
    }
    if (job.maxRequeues !== undefined && (!Number.isInteger(job.maxRequeues) || job.maxRequeues < 0)) {
      return `job "${job.id}": maxRequeues must be a whole number >= 0, got ${job.maxRequeues}`
    }
  }
  const cycle = findCycle(jobs)
  return cycle ? `jobs form a cycle through needs: ${cycle.join(' -> ')}` : null
}

function findCycle(jobs: readonly JobNode[]): string[] | null {
  const needs = new Map(jobs.map((j) => [j.id, j.needs]))
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const visit = (id: string): string[] | null => {
    const s = state.get(id)
    if (s === 'done') return null
    if (s === 'open') return [...path.slice(path.indexOf(id)), id]
    state.set(id, 'open')
    path.push(id)
    for (const need of needs.get(id) ?? []) {
      const found = visit(need)
      if (found) return found
    }
    path.pop()
    state.set(id, 'done')
    return null
  }
  for (const job of jobs) {
    const found = visit(job.id)
    if (found) return found
  }
  return null
}

/** Every job `id` depends on, directly or through other jobs (the graph must be acyclic). */
export function ancestorsOf(id: string, needsOf: (id: string) => readonly string[]): Set<string> {
  const out = new Set<string>()
  const stack = [...needsOf(id)]
  while (stack.length > 0) {
    const next = stack.pop()!
    if (out.has(next)) continue
    out.add(next)
    stack.push(...needsOf(next))
  }
  return out
}
