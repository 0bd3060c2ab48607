// "Did you mean ...?" for unknown keys, job names and expression names: the closest known
// name by edit distance, when it is close enough to be a likely typo.

/** Edit distance counting a swap of neighbours as one edit (optimal string alignment). */
export function editDistance(a: string, b: string, max = 3): number {
  if (Math.abs(a.length - b.length) > max) return max + 1
  let prev2: number[] = []
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    let best = i
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cur[j] = Math.min(cur[j], prev2[j - 2] + 1)
      best = Math.min(best, cur[j])
    }
    if (best > max) return max + 1
    prev2 = prev
    prev = cur
  }
  return prev[b.length]
}

/** The known name closest to `name`, if a typo away (case differences count as close). */
export function closest(name: string, known: Iterable<string>): string | undefined {
  const lower = name.toLowerCase()
  const max = Math.min(3, Math.max(1, Math.floor(name.length / 3)))
  let best: string | undefined
  let bestDistance = max + 1
  for (const k of known) {
    if (k === name) continue
    const d = k.toLowerCase() === lower ? 0 : editDistance(lower, k.toLowerCase(), max)
    if (d < bestDistance) {
      best = k
      bestDistance = d
    }
  }
  return best
}

/** `; did you mean "x"?` or nothing. */
export function didYouMean(name: string, known: Iterable<string>): string {
  const c = closest(name, known)
  return c === undefined ? '' : `; did you mean "${c}"?`
}
