import type { Clock, TimerHandle } from '../clock.js'

/** Options of {@link SlabPool}. */
export interface SlabPoolOptions {
  /** Bytes of each slab. */
  slabSize: number
  /** Free slabs kept at most. */
  maxFree: number
  /** Every this many milliseconds the free slabs are cut to the number taken since the last check. */
  idleMs: number
  /** Timers of the idle trimming. */
  clock: Clock
  /** Whether a completed slab is kept for reuse now (a connection without streams keeps none: its last frames complete after their streams closed). */
  keeping: () => boolean
}

/**
 * Reused frame buffers of one connection's bulk DATA frames. A slab is taken
 * for a frame, written, and comes back when the socket completes that write
 * ({@link SlabPool.written}'s callback; a socket completes writes in order).
 * Free slabs are trimmed to what the last idle period used, so a burst's
 * buffers go once the traffic is lighter. A new 64 KiB buffer per frame is
 * external memory that makes V8 run a full mark-compact every ~100 ms of a
 * bulk transfer (bench/README.md).
 */
export class SlabPool {
  readonly #options: SlabPoolOptions
  /** Frame buffers free for the next frame. */
  readonly #free: Buffer[] = []
  /** Frame buffers written and not yet completed, in write order. */
  readonly #inFlight: Buffer[] = []
  /** False once a write failed: completions may then come out of step with the slabs. */
  #recycling = true
  #taken = 0
  #timer: TimerHandle | undefined
  readonly #check = (): void => {
    this.#timer = undefined
    if (this.#free.length > this.#taken) this.#free.length = this.#taken
    if (this.#free.length > 0) this.#arm()
    this.#taken = 0
  }

  /** Pass to the socket write of the slab last {@link take}n: returns it to the pool when written. */
  readonly written = (err?: Error | null): void => {
    const slab = this.#inFlight.shift()
    if (err != null) {
      // The socket failed: later completions may not match the slabs in order. Reuse none.
      this.#recycling = false
      this.#inFlight.length = 0
      this.#free.length = 0
      return
    }
    if (slab !== undefined && this.#recycling && this.#free.length < this.#options.maxFree && this.#options.keeping()) {
      this.#free.push(slab)
      if (this.#timer === undefined) this.#arm()
    }
  }

  constructor(options: SlabPoolOptions) {
    this.#options = options
  }

  /** False once a write failed (or after {@link close}): frames then get buffers of their own. */
  get reusing(): boolean {
    return this.#recycling
  }

  /** A slab for the next frame, counted as in flight until {@link written} is called for it. */
  take(): Buffer {
    const slab = this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#options.slabSize)
    this.#taken++
    this.#inFlight.push(slab)
    return slab
  }

  /** Free slabs now (for tests and metrics). */
  get free(): number {
    return this.#free.length
  }

  /** Drops the free slabs (the owner has nothing left to send for now). */
  dropFree(): void {
    this.#free.length = 0
  }

  /** Drops every free slab and stops the idle timer. Idempotent. */
  close(): void {
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#free.length = 0
    this.#recycling = false
  }

  #arm(): void {
    this.#timer = this.#options.clock.setTimeout(this.#check, this.#options.idleMs)
  }
}
