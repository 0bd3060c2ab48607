// Matrix expansion, as on GitHub: the product of the lists in declaration order, minus the
// `exclude` rows, then each `include` row added to every combination it does not contradict
// (or, if it fits none, added as a combination of its own).
import { LIMITS } from './limits.js'
import type { MatrixCombination, MatrixValue } from './model.js'

export interface MatrixSpec {
  axes: Array<[string, MatrixValue[]]>
  include: MatrixCombination[]
  exclude: MatrixCombination[]
}

export type MatrixResult =
  | { ok: true; combinations: MatrixCombination[]; keys: string[] }
  /** `where`: 'include' or 'exclude' with the row index, or undefined for the whole matrix. */
  | { ok: false; problem: string; where?: { list: 'include' | 'exclude'; row: number; key?: string } }

const same = (a: MatrixValue | undefined, b: MatrixValue): boolean => a !== undefined && String(a) === String(b)

export function expandMatrix(spec: MatrixSpec): MatrixResult {
  const axisKeys = spec.axes.map(([k]) => k)
  if (axisKeys.length > LIMITS.matrixKeys) {
    return { ok: false, problem: `has ${axisKeys.length} keys; at most ${LIMITS.matrixKeys}` }
  }
  const product = spec.axes.reduce((n, [, values]) => n * values.length, 1)
  if (product > LIMITS.matrixCombinations * 16) {
    return { ok: false, problem: `has ${product} combinations before exclude; at most ${LIMITS.matrixCombinations} jobs can run from one matrix` }
  }
  let combos: MatrixCombination[] = spec.axes.length === 0 ? [] : [{}]
  for (const [key, values] of spec.axes) {
    combos = combos.flatMap((c) => values.map((v) => ({ ...c, [key]: v })))
  }
  for (const [row, ex] of spec.exclude.entries()) {
    const unknown = Object.keys(ex).find((k) => !axisKeys.includes(k))
    if (unknown !== undefined) {
      return { ok: false, problem: `"${unknown}" is not a key of the matrix (${axisKeys.join(', ') || 'it has none'})`, where: { list: 'exclude', row, key: unknown } }
    }
    combos = combos.filter((c) => !Object.entries(ex).every(([k, v]) => same(c[k], v)))
  }
  // include only adds keys to combinations or adds combinations: too many now is too many
  // after, and refusing here spares include rows x combinations of work
  combos = distinct(combos)
  if (combos.length > LIMITS.matrixCombinations) {
    const when = spec.include.length > 0 ? ' before include' : ''
    return { ok: false, problem: `has ${combos.length} combinations${when}; at most ${LIMITS.matrixCombinations} jobs can run from one matrix` }
  }
  const added: string[] = []
  const base = combos.map((c) => ({ ...c }))
  for (const [row, inc] of spec.include.entries()) {
    const entries = Object.entries(inc)
    const fresh = entries.map(([k]) => k).filter((k) => !axisKeys.includes(k) && !added.includes(k))
    const room = LIMITS.matrixKeys - axisKeys.length - added.length
    if (fresh.length > room) {
      return { ok: false, problem: `"${fresh[room]}" would be a key beyond the ${LIMITS.matrixKeys} a matrix may have`, where: { list: 'include', row, key: fresh[room] } }
    }
    const original = entries.filter(([k]) => axisKeys.includes(k))
    let fitted = false
    for (let i = 0; i < base.length; i++) {
      if (original.every(([k, v]) => same(base[i][k], v))) {
        fitted = true
        for (const [k, v] of entries) if (!axisKeys.includes(k)) combos[i][k] = v
      }
    }
    if (!fitted) combos.push({ ...inc })
    for (const [k] of entries) if (!axisKeys.includes(k) && !added.includes(k)) added.push(k)
  }
  combos = distinct(combos)
  if (combos.length === 0) return { ok: false, problem: 'has no combinations left (everything is excluded)' }
  if (combos.length > LIMITS.matrixCombinations) {
    return { ok: false, problem: `has ${combos.length} combinations; at most ${LIMITS.matrixCombinations} jobs can run from one matrix` }
  }
  return { ok: true, combinations: combos, keys: [...axisKeys, ...added] }
}

/** The combinations without repeats (values compared as text), in order. */
function distinct(combos: MatrixCombination[]): MatrixCombination[] {
  const seen = new Set<string>()
  return combos.filter((c) => {
    const id = JSON.stringify(Object.entries(c).map(([k, v]) => [k, String(v)]))
    if (seen.has(id)) return false
    seen.add(id)
    return true
  })
}

/** `shard=1, node=20`: a combination as it appears in job ids and status contexts. */
export function describeCombination(c: MatrixCombination): string {
  return Object.entries(c).map(([k, v]) => `${k}=${String(v)}`).join(', ')
}
