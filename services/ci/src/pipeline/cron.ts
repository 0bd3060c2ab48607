// Cron expressions of `on.schedule`: checked here so that a typo is a pipeline error with a
// position, not a schedule that silently never fires. Five fields (minute hour day-of-month
// month day-of-week), each `*`, `N`, `A-B`, with `/STEP` and `,` lists; names for months and
// days; or one of the @ shorthands.

interface Field {
  name: string
  min: number
  max: number
  names?: readonly string[]
}

const FIELDS: readonly Field[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'] },
  // 0 and 7 are both Sunday
  { name: 'day of week', min: 0, max: 7, names: ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'] },
]

export const CRON_SHORTHANDS = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'] as const

/** The expression with single spaces, the form schedule triggers are compared in. */
export function normalizeCron(expr: string): string {
  return expr.trim().split(/\s+/).join(' ')
}

/** What is wrong with a cron expression, or undefined when it is valid. */
export function cronProblem(expr: string): string | undefined {
  const norm = normalizeCron(expr)
  if (norm.startsWith('@')) {
    return (CRON_SHORTHANDS as readonly string[]).includes(norm.toLowerCase())
      ? undefined
      : `unknown shorthand "${norm}" (use one of ${CRON_SHORTHANDS.join(', ')})`
  }
  const parts = norm === '' ? [] : norm.split(' ')
  if (parts.length !== 5) {
    return `has ${parts.length} field${parts.length === 1 ? '' : 's'}; a cron expression has 5: minute hour day-of-month month day-of-week (e.g. "0 3 * * *")`
  }
  for (let i = 0; i < 5; i++) {
    const problem = fieldProblem(parts[i], FIELDS[i])
    if (problem) return problem
  }
  return undefined
}

function fieldProblem(text: string, f: Field): string | undefined {
  for (const item of text.split(',')) {
    if (item === '') return `${f.name} "${text}" has an empty list item`
    const [range, step, extra] = item.split('/')
    if (extra !== undefined) return `${f.name} "${item}" has two steps`
    if (step !== undefined && !/^[0-9]+$/.test(step)) return `${f.name} step "${step}" is not a number`
    if (step !== undefined && (Number(step) < 1 || Number(step) > f.max)) return `${f.name} step ${step} is out of range 1-${f.max}`
    if (range === '*') continue
    const [a, b, more] = range.split('-')
    if (more !== undefined) return `${f.name} "${range}" is not a value or a range`
    const lo = value(a, f)
    if (typeof lo === 'string') return lo
    if (b !== undefined) {
      const hi = value(b, f)
      if (typeof hi === 'string') return hi
      if (hi < lo) return `${f.name} range ${range} goes backwards`
    }
  }
  return undefined
}

function value(text: string, f: Field): number | string {
  const named = f.names?.indexOf(text.toUpperCase()) ?? -1
  if (named >= 0) return f.name === 'month' ? named + 1 : named
  if (!/^[0-9]+$/.test(text)) return `${f.name} "${text}" is not a number${f.names ? ` or a name (${f.names.join(', ')})` : ''}`
  const n = Number(text)
  if (n < f.min || n > f.max) return `${f.name} ${text} is out of range ${f.min}-${f.max}`
  return n
}
