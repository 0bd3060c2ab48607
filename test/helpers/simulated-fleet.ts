// A simulated agent fleet for benchmarks: real Agent code over real NATS, with a containerizer
// that "runs" every task at once (exit 0) instead of starting a container. Named as such in
// every figure it produces.
import type { Containerizer, RunningContainer } from '../../services/agent/src/containerizer/types.js'

export class InstantContainerizer implements Containerizer {
  readonly kind = 'process' as const
  launched = 0

  async launch(): Promise<RunningContainer> {
    this.launched++
    return {
      id: `sim:${this.launched}`,
      exited: Promise.resolve({ exitCode: 0, killed: false }),
      kill: async () => undefined,
    }
  }

  async recover(): Promise<[]> {
    return []
  }

  async remove(): Promise<void> {}
}
