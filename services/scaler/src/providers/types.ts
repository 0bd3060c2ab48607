// The provider interface: how the scaler starts and stops agents. `process` (local child
// processes) and `docker` (containers on a Docker engine) ship here; a cloud provider (a VM
// group, a Kubernetes deployment) implements the same four calls (deploy/README.md).
import type { Amounts } from '../../../../shared/protocol/index.js'

/**
 * `running`: the provider has it up (its agent may not have registered yet); `stopping`: asked
 * to stop, not gone yet; `exited`: it ended by itself (crashed, killed) and awaits `stop()` to be
 * cleaned up.
 */
export type InstanceState = 'running' | 'stopping' | 'exited'

/** One agent the provider started. Its agent carries the attribute `instance:<id>`. */
export interface Instance {
  id: string
  pool: string
  /** ms since the epoch. */
  startedAt: number
  state: InstanceState
}

export interface Provider {
  /** The name pool policies use (`provider: "process"`). */
  readonly name: string
  /**
   * The scalars one started agent offers (its `--resources`), when the provider fixes them; the
   * scaler then knows how many agents a demand needs. Unset: learned from the pool's agents.
   */
  readonly instanceResources?: Amounts
  /**
   * Starts `count` agents of `pool`, each with `--pool pool --attributes instance:<id>`;
   * resolves once they are launched (not registered).
   */
  start(pool: string, count: number): Promise<Instance[]>
  /** Stops one instance and frees what it held; resolves once it is gone. Unknown ids are a no-op. */
  stop(instanceId: string): Promise<void>
  /** Every instance this provider started and has not stopped, whichever pool. */
  list(): Promise<Instance[]>
  /** Lets go of the provider's own resources (not its instances). */
  close?(): Promise<void>
}

/** The attribute that ties an agent to the provider instance it runs in. */
export const INSTANCE_ATTRIBUTE = 'instance'
