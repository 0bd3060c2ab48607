// The order agents are visited in during a pass: shuffled (as Mesos does) so that no agent is
// always offered first, but from a seed, so a pass is a deterministic function of its snapshot.

/** A permutation of 0..n-1 (Fisher-Yates driven by mulberry32). */
export function visitOrder(n: number, seed: number): Int32Array {
  const order = new Int32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  let s = seed >>> 0
  for (let i = n - 1; i > 0; i--) {
    s = (s + 0x6d2b79f5) >>> 0
    let x = s
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    const r = ((x ^ (x >>> 14)) >>> 0) / 4294967296
    const j = Math.floor(r * (i + 1))
    const tmp = order[i]
    order[i] = order[j]
    order[j] = tmp
  }
  return order
}

/** A 32-bit seed from a millisecond timestamp (which does not fit in 32 bits). */
export function seedFromTime(now: number): number {
  const t = Math.floor(Math.abs(now))
  return ((t % 4294967296) ^ Math.floor(t / 4294967296)) >>> 0
}
