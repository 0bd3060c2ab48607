// Shared by the fuzz tests of test/unit/fuzz: one seed for every property (printed, and in
// fast-check's report of a failure, with the path to replay it), run counts that can be scaled
// up for a long local run, and the hang guard.
//
//   REGATTA_FUZZ_SEED=123 REGATTA_FUZZ_SCALE=20 npx tap test/unit/fuzz/   # other inputs, 20x as many
//
// The hang guard measures the CPU time of this process, not the wall clock, so that a CI
// machine busy with other test files does not fail it. It is a bound against hangs and
// blow-ups (an input costing seconds where it should cost milliseconds), not a benchmark:
// what these inputs cost here is a few to a few hundred milliseconds.
import type { Parameters as FcParameters } from 'fast-check'

/** The seed of every property of a run: fixed, so a run is reproducible; REGATTA_FUZZ_SEED picks another. */
export const SEED = process.env.REGATTA_FUZZ_SEED ? Number(process.env.REGATTA_FUZZ_SEED) : 61_2024

const SCALE = process.env.REGATTA_FUZZ_SCALE ? Number(process.env.REGATTA_FUZZ_SCALE) : 1

/** fast-check parameters: the run's seed and `numRuns` times REGATTA_FUZZ_SCALE. */
export function fuzz<T = unknown>(numRuns: number): FcParameters<T> {
  return { seed: SEED, numRuns: Math.max(1, Math.round(numRuns * SCALE)) }
}

/** CPU time one input may cost before it counts as a hang (generous: a loaded 2-core machine). */
export const HANG_GUARD_MS = 2000

/** Runs `fn` and measures the CPU time it took (user + system of this process), in ms. */
export function cpuTimed<T>(fn: () => T): { value: T; ms: number } {
  const before = process.cpuUsage()
  const value = fn()
  const used = process.cpuUsage(before)
  return { value, ms: (used.user + used.system) / 1000 }
}

/** As cpuTimed, for an async `fn` (nothing else of this process should run meanwhile). */
export async function cpuTimedAsync<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const before = process.cpuUsage()
  const value = await fn()
  const used = process.cpuUsage(before)
  return { value, ms: (used.user + used.system) / 1000 }
}

/** Throws (failing the property) when `fn` costs more than the hang guard; returns its value. */
export function withinGuard<T>(what: string, fn: () => T): T {
  const { value, ms } = cpuTimed(fn)
  if (ms > HANG_GUARD_MS) throw new Error(`${what}: ${Math.round(ms)} ms of CPU, more than the ${HANG_GUARD_MS} ms hang guard`)
  return value
}
