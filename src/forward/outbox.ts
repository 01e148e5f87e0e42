/**
 * Write combining for one direction of a session.
 *
 * A multiplexed stream hands its payloads over TLS record by record (up to
 * 16 KiB each), and a TCP write per record wakes the reader on the other
 * end per record: on a bulk transfer that is tens of thousands of writes
 * and wake-ups a second (bench/README.md, "Where bulk goes"). The first
 * such chunk of an event-loop turn is written as it comes (a single
 * response is not delayed); the rest of the turn's are copied into a 64 KiB
 * buffer, written when it is full and at the end of the turn
 * (`setImmediate`), so a turn's records leave in as few writes as its bytes
 * need. After a turn that carried bulk, the next one is combined from its
 * first chunk. Chunks outside [{@link COALESCE_MIN}, {@link COALESCE_MAX})
 * are written as they come (a request of a few bytes is not delayed; a full
 * socket read gains nothing), but never ahead of bytes still in the outbox.
 */

/** Smallest chunk worth combining: below it, latency matters more than system calls. */
export const COALESCE_MIN = 4 * 1024
/** Largest chunk combined: a full socket read is written as it is. */
export const COALESCE_MAX = 32 * 1024
const BOX = 64 * 1024

/**
 * Writes `bytes` on; returns true when the writer still refers to them
 * after the call (the write is pending), so the buffer must not be reused.
 */
export type OutboxWrite = (bytes: Buffer) => boolean

/** One direction's write-combining buffer; see the module comment. */
export class Outbox {
  readonly #write: OutboxWrite
  #box: Buffer | undefined
  /** A buffer whose write has completed, kept for the next fill. */
  #spare: Buffer | undefined
  /** A buffer the writer may still refer to: free once a later write completes at once (writes complete in order). */
  #held: Buffer | undefined
  #length = 0
  /** Bytes added since the last end of turn. */
  #turnBytes = 0
  #armed = false
  #discarded = false
  readonly #endTurn = (): void => {
    this.#armed = false
    const carried = this.#turnBytes
    this.#turnBytes = 0
    this.flush()
    if (this.#discarded) return
    if (carried < BOX / 2) {
      // The tail of a transfer, or a turn without bulk: let the buffers go
      // rather than keep them on a session that may now sit idle.
      this.#box = undefined
      this.#spare = undefined
      this.#held = undefined
    } else {
      // Bulk: the next turn is combined from its first chunk, and a turn
      // that brings nothing lets the buffers go.
      this.#arm()
    }
  }

  constructor(write: OutboxWrite) {
    this.#write = write
  }

  /** Bytes copied in and not yet written. */
  get pending(): number {
    return this.#length
  }

  /** True from the first chunk of a turn (added, or written directly and {@link markTurn}ed) to the end of that turn. */
  get inTurn(): boolean {
    return this.#armed
  }

  /** A chunk of this turn went out directly: combine the rest of the turn. */
  markTurn(): void {
    if (!this.#armed && !this.#discarded) this.#arm()
  }

  /** Copies `chunk` in (it is free on return), writing each time the buffer fills; the rest is written at the end of the turn. */
  add(chunk: Buffer): void {
    this.#turnBytes += chunk.length
    let offset = 0
    while (offset < chunk.length && !this.#discarded) {
      let box = this.#box
      if (box === undefined) {
        box = this.#box = this.#spare ?? Buffer.allocUnsafeSlow(BOX)
        this.#spare = undefined
      }
      const n = Math.min(chunk.length - offset, BOX - this.#length)
      chunk.copy(box, this.#length, offset, offset + n)
      this.#length += n
      offset += n
      if (this.#length === BOX) this.flush()
    }
    // Armed even when every byte went out in full buffers: the end of the turn decides what to keep.
    if (!this.#armed && !this.#discarded) this.#arm()
  }

  /** Writes what is pending now (before a chunk that must follow it, or the end of the stream). */
  flush(): void {
    const box = this.#box
    if (box === undefined || this.#length === 0 || this.#discarded) return
    const bytes = this.#length === BOX ? box : box.subarray(0, this.#length)
    this.#length = 0
    if (this.#write(bytes)) {
      this.#box = undefined
      this.#held = box
    } else if (this.#held !== undefined) {
      this.#spare = this.#held
      this.#held = undefined
    }
  }

  /** Drops what is pending: the session is over. */
  discard(): void {
    this.#discarded = true
    this.#length = 0
    this.#box = undefined
    this.#spare = undefined
    this.#held = undefined
  }

  #arm(): void {
    this.#armed = true
    setImmediate(this.#endTurn)
  }
}
