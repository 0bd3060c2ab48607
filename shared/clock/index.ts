// Time, injected: timeouts, leases, filters and schedules are tested without sleeping.

export interface Clock {
  now(): number
  setTimeout(fn: () => void, ms: number): Timer
  setInterval(fn: () => void, ms: number): Timer
}

export interface Timer {
  cancel(): void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return { cancel: () => clearTimeout(t) }
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms)
    t.unref?.()
    return { cancel: () => clearInterval(t) }
  },
}

/** A clock that moves only when told to: `advance(ms)` runs what falls due, in order. */
export class ManualClock implements Clock {
  private time: number
  private seq = 0
  private readonly timers = new Map<number, { at: number; fn: () => void; every?: number }>()

  constructor(start = 1_000_000) {
    this.time = start
  }

  now(): number {
    return this.time
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const id = ++this.seq
    this.timers.set(id, { at: this.time + Math.max(0, ms), fn })
    return { cancel: () => this.timers.delete(id) }
  }

  setInterval(fn: () => void, ms: number): Timer {
    const id = ++this.seq
    this.timers.set(id, { at: this.time + Math.max(1, ms), fn, every: Math.max(1, ms) })
    return { cancel: () => this.timers.delete(id) }
  }

  advance(ms: number): void {
    const until = this.time + ms
    for (;;) {
      let nextId = -1
      let next: { at: number; fn: () => void; every?: number } | undefined
      for (const [id, t] of this.timers) if (t.at <= until && (!next || t.at < next.at)) { next = t; nextId = id }
      if (!next) break
      this.time = next.at
      if (next.every) next.at += next.every
      else this.timers.delete(nextId)
      next.fn()
    }
    this.time = until
  }
}
