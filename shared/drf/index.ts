// Dominant Resource Fairness, the generic part: dominant shares of numeric vectors and lists kept
// sorted by share as shares grow. The master's allocator sorts roles and frameworks with it; the
// CI service sorts repositories with it (whose jobs go first on the CI framework's offers).

/** Something ordered by its (weighted) dominant share: a role, a framework, a repository. */
export interface Sorted {
  share: number
  /** Its index in the list it is sorted in. */
  pos: number
  readonly name: string
}

/** Whether `a` goes before `b`. */
export type Before<T> = (a: T, b: T) => boolean

/** Max over dimensions of allocation / total (`inverse` is 1 / total, 0 where the total is 0). */
export function dominantShare(v: Float64Array, inverse: Float64Array): number {
  let m = 0
  for (let k = 0; k < v.length; k++) {
    const s = v[k] * inverse[k]
    if (s > m) m = s
  }
  return m
}

/** Lower share first; ties go to the smaller name, so an order is deterministic. */
export function byShare(a: Sorted, b: Sorted): boolean {
  return a.share < b.share || (a.share === b.share && a.name < b.name)
}

/**
 * Moves `e`, which just moved later in the order (its share grew), right to its sorted place:
 * one step of insertion sort instead of a sort from scratch.
 */
export function sink<T extends Sorted>(list: T[], e: T, before: Before<T> = byShare): void {
  let i = e.pos
  while (i + 1 < list.length && before(list[i + 1], e)) {
    const next = list[i + 1]
    list[i] = next
    next.pos = i
    i++
  }
  list[i] = e
  e.pos = i
}

/** Sorts the whole list and records every entry's place. */
export function sortAll<T extends Sorted>(list: T[], before: Before<T> = byShare): void {
  list.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0))
  for (let i = 0; i < list.length; i++) list[i].pos = i
}
