/**
 * The outside world's time, injected everywhere a decision depends on it so
 * that tests advance time instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number
  /** Schedules `fn` after `ms`; returns a handle for {@link Clock.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): TimerHandle
  clearTimeout(handle: TimerHandle): void
}

/** Opaque timer handle. */
export interface TimerHandle {
  unref?(): unknown
}

/** The real clock. Timers are unref'd: a pending expiry never keeps a process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, Math.min(Math.max(ms, 0), 2 ** 31 - 1))
    t.unref()
    return t
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

/**
 * A clock for tests: time moves only when {@link ManualClock.advance} is called,
 * which runs every timer that falls due, in order.
 */
export class ManualClock implements Clock {
  #now: number
  #timers = new Map<number, { at: number; fn: () => void }>()
  #next = 1

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start
  }

  now(): number {
    return this.#now
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++
    this.#timers.set(id, { at: this.#now + Math.max(ms, 0), fn })
    return { id } as TimerHandle
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete((handle as { id: number }).id)
  }

  /** Moves time forward by `ms`, running due timers in order of their time. */
  advance(ms: number): void {
    const target = this.#now + ms
    for (;;) {
      let dueId = -1
      let dueAt = Infinity
      for (const [id, t] of this.#timers) {
        if (t.at <= target && t.at < dueAt) {
          dueAt = t.at
          dueId = id
        }
      }
      if (dueId === -1) break
      const timer = this.#timers.get(dueId)!
      this.#timers.delete(dueId)
      this.#now = Math.max(this.#now, timer.at)
      timer.fn()
    }
    this.#now = target
  }

  /** Number of timers still pending. */
  get pending(): number {
    return this.#timers.size
  }
}

/** Parses a duration such as `500ms`, `30s`, `5m`, `2h`, `7d` into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim())
  if (!m) return undefined
  const n = Number(m[1])
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd']
  return Math.round(n * unit)
}
