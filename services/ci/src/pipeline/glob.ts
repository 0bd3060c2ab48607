// Globs of branch, tag and path filters: `*` (anything but /), `**` (anything), `**/` (any
// number of directories), `?`, `[a-z]`/`[!a-z]`, `\` escapes. Matched by a small automaton in
// linear time, so no pattern can make matching slow (no regular expressions built from input).

type Token =
  | { kind: 'char'; c: string }
  | { kind: 'any1' }
  | { kind: 'star' }
  | { kind: 'globstar' }
  | { kind: 'dirs' }
  | { kind: 'class'; negated: boolean; ranges: Array<[string, string]> }

const compiled = new Map<string, Token[]>()

function compile(pattern: string): Token[] {
  const hit = compiled.get(pattern)
  if (hit) return hit
  const tokens: Token[] = []
  let i = 0
  while (i < pattern.length) {
    const c = pattern[i]
    if (c === '\\' && i + 1 < pattern.length) {
      tokens.push({ kind: 'char', c: pattern[i + 1] })
      i += 2
    } else if (c === '*' && pattern[i + 1] === '*') {
      const atSegmentStart = i === 0 || pattern[i - 1] === '/'
      if (atSegmentStart && pattern[i + 2] === '/') {
        tokens.push({ kind: 'dirs' })
        i += 3
      } else {
        tokens.push({ kind: 'globstar' })
        i += 2
        while (pattern[i] === '*') i++
      }
    } else if (c === '*') {
      tokens.push({ kind: 'star' })
      i++
    } else if (c === '?') {
      tokens.push({ kind: 'any1' })
      i++
    } else if (c === '[') {
      const end = pattern.indexOf(']', i + 2)
      if (end < 0) {
        tokens.push({ kind: 'char', c })
        i++
        continue
      }
      let body = pattern.slice(i + 1, end)
      const negated = body[0] === '!' || body[0] === '^'
      if (negated) body = body.slice(1)
      const ranges: Array<[string, string]> = []
      for (let j = 0; j < body.length; j++) {
        if (body[j + 1] === '-' && j + 2 < body.length) {
          ranges.push([body[j], body[j + 2]])
          j += 2
        } else ranges.push([body[j], body[j]])
      }
      tokens.push({ kind: 'class', negated, ranges })
      i = end + 1
    } else {
      tokens.push({ kind: 'char', c })
      i++
    }
  }
  if (compiled.size > 1000) compiled.clear()
  compiled.set(pattern, tokens)
  return tokens
}

/** Whether `text` matches the glob `pattern` (whole string). */
export function globMatch(pattern: string, text: string): boolean {
  const tokens = compile(pattern)
  const n = tokens.length
  // states 0..n: tokens before the index matched; n + 1 + i: inside the `**/` token i
  let cur = new Uint8Array(2 * n + 1)
  const close = (set: Uint8Array): void => {
    for (let i = 0; i < n; i++) {
      const k = tokens[i].kind
      if (set[i] && (k === 'star' || k === 'globstar' || k === 'dirs')) set[i + 1] = 1
    }
  }
  cur[0] = 1
  close(cur)
  for (const ch of text) {
    const next = new Uint8Array(2 * n + 1)
    let alive = false
    for (let i = 0; i < n; i++) {
      const t = tokens[i]
      if (cur[i]) {
        switch (t.kind) {
          case 'char': if (ch === t.c) next[i + 1] = 1; break
          case 'any1': if (ch !== '/') next[i + 1] = 1; break
          case 'class': if (inClass(t, ch)) next[i + 1] = 1; break
          case 'star': if (ch !== '/') next[i] = 1; break
          case 'globstar': next[i] = 1; break
          case 'dirs':
            if (ch === '/') next[i + 1] = 1
            next[n + 1 + i] = 1
            break
        }
      }
      if (t.kind === 'dirs' && cur[n + 1 + i]) {
        if (ch === '/') next[i + 1] = 1
        next[n + 1 + i] = 1
      }
    }
    close(next)
    for (const v of next) if (v) { alive = true; break }
    if (!alive) return false
    cur = next
  }
  return cur[n] === 1
}

function inClass(t: Extract<Token, { kind: 'class' }>, ch: string): boolean {
  if (ch === '/') return false
  const hit = t.ranges.some(([a, b]) => ch >= a && ch <= b)
  return t.negated ? !hit : hit
}

/**
 * Whether a name is selected by an ordered pattern list: the last pattern that matches
 * decides, a pattern starting with `!` deselecting. No match: not selected.
 */
export function selectedBy(patterns: readonly string[], name: string): boolean {
  let selected = false
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (selected && globMatch(p.slice(1), name)) selected = false
    } else if (!selected && globMatch(p, name)) selected = true
  }
  return selected
}
