// Refuse filters (from DECLINE), indexed by agent so the common case, no filter on this agent,
// costs one array read. Mesos semantics: while a filter is active, an offer of the filtered
// resources (or less) to that framework on that agent is not made.
import type { Resource } from '../../../../shared/protocol/index.js'
import { contains } from '../../../../shared/resources/index.js'
import type { AllocatorAgent, RefuseFilter } from './types.js'

interface ActiveFilter {
  readonly framework: number
  readonly resources: readonly Resource[]
}

export class FilterIndex {
  private readonly byAgent: Array<ActiveFilter[] | undefined>

  constructor(
    filters: readonly RefuseFilter[],
    now: number,
    agents: readonly AllocatorAgent[],
    frameworkIndex: ReadonlyMap<string, number>,
  ) {
    this.byAgent = new Array<ActiveFilter[] | undefined>(agents.length).fill(undefined)
    // Active filters by agent id first: there are far fewer filters than agents.
    const byId = new Map<string, ActiveFilter[]>()
    for (const f of filters) {
      if (!(f.until > now)) continue
      const fw = frameworkIndex.get(f.frameworkId)
      if (fw === undefined) continue
      const list = byId.get(f.agentId)
      const entry = { framework: fw, resources: f.resources }
      if (list) list.push(entry)
      else byId.set(f.agentId, [entry])
    }
    if (byId.size === 0) return
    for (let a = 0; a < agents.length; a++) {
      const list = byId.get(agents[a].id)
      if (list) this.byAgent[a] = list
    }
  }

  /** Whether some filter of this framework exists on this agent (cheap; check before building an offer). */
  has(agent: number, framework: number): boolean {
    const list = this.byAgent[agent]
    if (!list) return false
    for (const f of list) if (f.framework === framework) return true
    return false
  }

  /** Whether an active filter refuses this offer: the offer is contained in what was refused. */
  refuses(agent: number, framework: number, offer: readonly Resource[]): boolean {
    const list = this.byAgent[agent]
    if (!list) return false
    for (const f of list) if (f.framework === framework && contains(f.resources, offer)) return true
    return false
  }
}
