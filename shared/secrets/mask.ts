// Masks secret values in a stream of output before anyone stores or shows it: the value
// itself, each line of a multi-line value, and its base64 forms (standard and URL-safe, at any
// byte alignment inside a longer base64 text), even when the output splits a value across
// chunks or writes.

/** Shown instead of a secret. */
export const MASK = '***'
/** Shorter values are not masked (masking "1" or "yes" would garble every log and hide nothing). */
export const MIN_MASKED_LENGTH = 4

/**
 * The texts to hide for these secret values: each value, each line of a multi-line value, and
 * the base64 characters that depend only on the value's bytes, in the three alignments a value
 * can take inside longer base64 text (standard and URL-safe alphabets).
 */
export function maskPatterns(values: Iterable<string>): string[] {
  const out = new Set<string>()
  const add = (s: string): void => {
    if (s.length >= MIN_MASKED_LENGTH) out.add(s)
  }
  for (const value of values) {
    if (value.length < MIN_MASKED_LENGTH) continue
    add(value)
    const lines = value.split(/\r?\n/).map((l) => l.trim())
    if (lines.length > 1) for (const l of lines) add(l)
    const bytes = Buffer.from(value, 'utf8')
    for (let k = 0; k < 3; k++) {
      const b64 = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64')
      // char j covers bits 6j..6j+5 of the padded input: keep those made of the value's bits only
      const first = Math.ceil((8 * k) / 6)
      const last = Math.floor((8 * (k + bytes.length) - 6) / 6)
      const core = b64.slice(first, last + 1)
      // a short core says little about the value and would hide ordinary words
      if (core.length < Math.max(8, MIN_MASKED_LENGTH)) continue
      add(core)
      add(core.replace(/\+/g, '-').replace(/\//g, '_'))
    }
  }
  // longest first: where two patterns start at one place, the longer hides more
  return [...out].sort((a, b) => b.length - a.length)
}

/**
 * A stream masker: push() text as it comes, get back what is safe to pass on; a tail that
 * could be the start of a secret is held until the next push (or flush()), so a value split
 * across chunks is still masked.
 */
export class SecretMasker {
  private readonly byFirst = new Map<string, string[]>()
  private held = ''

  constructor(values: Iterable<string>) {
    for (const p of maskPatterns(values)) {
      const list = this.byFirst.get(p[0]!) ?? []
      list.push(p)
      this.byFirst.set(p[0]!, list)
    }
  }

  /** True when there is nothing to mask (then push() returns its input unchanged). */
  get empty(): boolean {
    return this.byFirst.size === 0
  }

  push(text: string): string {
    if (this.empty) return text
    const buf = this.held + text
    this.held = ''
    let out = ''
    let from = 0
    let i = 0
    while (i < buf.length) {
      const candidates = this.byFirst.get(buf[i]!)
      if (!candidates) {
        i++
        continue
      }
      let matched: string | undefined
      let partial = false
      for (const p of candidates) {
        if (buf.startsWith(p, i)) {
          matched ??= p
        } else if (buf.length - i < p.length && p.startsWith(buf.slice(i))) {
          partial = true
        }
      }
      if (partial) {
        // a longer secret may be completed by the next chunk: hold from here
        this.held = buf.slice(i)
        return out + buf.slice(from, i)
      }
      if (matched !== undefined) {
        out += buf.slice(from, i) + MASK
        i += matched.length
        from = i
      } else {
        i++
      }
    }
    return out + buf.slice(from)
  }

  /** What is held back, masked as far as it goes: call when the stream ends. */
  flush(): string {
    const rest = this.held
    this.held = ''
    if (!rest) return ''
    // nothing more will come: a held tail that is only the start of a secret is shown as is,
    // except where a whole (shorter) secret sits in it
    let out = ''
    let i = 0
    while (i < rest.length) {
      const p = this.byFirst.get(rest[i]!)?.find((c) => rest.startsWith(c, i))
      if (p) {
        out += MASK
        i += p.length
      } else {
        out += rest[i]
        i++
      }
    }
    return out
  }
}
