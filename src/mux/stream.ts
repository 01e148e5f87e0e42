import { Duplex } from 'node:stream'
import { MAX_READ_BUFFER, type LendingSource, type ReadSink } from '../read-buffer/index.js'
import { INITIAL_WINDOW, MAX_DATA_PAYLOAD } from './frame.js'

/** What a stream needs from its connection (implemented by MuxConnection). */
export interface StreamOwner {
  sendData(stream: number, chunk: Buffer): void
  sendFin(stream: number): void
  sendReset(stream: number, code: string, message: string): void
  sendWindow(stream: number, increment: number): void
  /** The stream is gone: drop it from the table. */
  forget(stream: MuxStream): void
  /** True while the connection's own write buffer is over its limit. */
  readonly congested: boolean
  /** Connection gone: writes fail. */
  readonly closed: boolean
  /**
   * A payload `stream` was lent from the connection's read buffer is still
   * referenced (by the stream or its reader's writer); without `keep`, by a
   * holder that will not say when it is done.
   */
  releaseReadBuffer(stream: MuxStream, keep: boolean): void
  /** Nothing `stream` was lent is referenced any more. */
  reclaimReadBuffers(stream: MuxStream): void
}

/** Error a stream is destroyed with when the peer resets it or the connection ends. */
export interface StreamResetError extends Error {
  /** `ECONNRESET`, so the forwarding core counts it as an ordinary reset. */
  readonly code: 'ECONNRESET'
  /** The Keyway code the peer gave (`ERR_GRANT_DENIED`, …) or `ERR_INTERNAL`. */
  readonly reason: string
}

function resetError(reason: string, message: string): StreamResetError {
  return Object.assign(new Error(message), { code: 'ECONNRESET' as const, reason })
}

// Credit goes back in batches, a WINDOW frame per half window consumed: each
// one wakes the sender, and smaller batches measurably cost bulk throughput.
const GRANT_BATCH = INITIAL_WINDOW / 2
const EMPTY = Buffer.alloc(0)
/**
 * A lent payload that must wait in the stream is copied when smaller than
 * this, half the connection's 16 KiB read buffer, which a view would keep
 * alive whole; a larger one keeps the buffer.
 */
const COPY_BELOW = 8 * 1024

function onIdle(this: MuxStream): void {
  this.emit('timeout')
}

/**
 * One stream of a multiplexed connection: a Duplex with TCP-socket manners
 * (half-close, `setTimeout`/'timeout', `setNoDelay`, `resetAndDestroy`), so
 * the forwarding core treats it like a socket.
 *
 * Flow control is per stream and per direction: a sender holds its write
 * callback once its credit is spent (the Writable buffers, `write()` returns
 * false, the forwarding core pauses its reader), and the receiver returns
 * credit as the stream's reader consumes bytes, so a slow consumer holds back
 * its own stream only, never the connection.
 */
export class MuxStream extends Duplex implements LendingSource {
  /** Stream id on its connection. */
  readonly id: number
  /** Idle limit in ms set by {@link MuxStream.setTimeout}; 0 when off. */
  timeout = 0
  readonly #owner: StreamOwner
  #credit = INITIAL_WINDOW
  #heldWrite: ((err?: Error | null) => void) | undefined
  /** What is left to send of the write in progress (it waits for credit). */
  #pending: Buffer | undefined
  #received = 0
  #granted = 0
  #idle: NodeJS.Timeout | undefined
  /** FIN sent (our write side ended on the wire). */
  #finSent = false
  /** FIN received. */
  #finReceived = false
  /** RESET sent or received, or the connection ended: no more frames for this stream. */
  #gone = false
  #onAccept: ((err: Error | null, body?: Buffer) => void) | undefined
  #resetCode = 'ERR_INTERNAL'
  #resetMessage: string | undefined
  #sink: ReadSink | undefined

  /** @internal Created by MuxConnection. */
  constructor(owner: StreamOwner, id: number) {
    // Writable asks for a pause when a write takes what it buffers to the
    // high-water mark, even a write that completes at once: one byte above a
    // socket read (64 KiB), so a write that completes never pauses the writer
    // and a second one held for credit does. Each read taken while a write
    // waits needs another read buffer; more than one is waste (bench/README.md).
    super({ allowHalfOpen: true, decodeStrings: true, emitClose: true, autoDestroy: true, writableHighWaterMark: MAX_READ_BUFFER + 1 })
    this.#owner = owner
    this.id = id
  }

  /** A written chunk is copied into its frame, or kept (with the write held) only until credit comes. */
  readonly releasesWrittenChunks = true

  /**
   * forward() takes the stream's payloads from here on as lent views of the
   * connection's read buffer, while the stream is flowing and holds nothing
   * buffered; otherwise they are pushed as usual.
   */
  setReadSink(sink: ReadSink): void {
    this.#sink = sink
  }

  /** The payload just lent to the sink is kept: the connection's read buffer must not be reused (until a reclaim, with `keep`). */
  releaseReadBuffer(keep = true): void {
    this.#owner.releaseReadBuffer(this, keep)
  }

  /**
   * The sink refers to none of the payloads it was lent, and the stream holds
   * none buffered either (called within a lent read, or once the stream's
   * buffered payloads were all written).
   */
  reclaimReadBuffers(): void {
    this.#owner.reclaimReadBuffers(this)
  }

  /** Never delays: frames go out at the end of the current event-loop turn. Present for socket compatibility. */
  setNoDelay(_noDelay?: boolean): this {
    return this
  }

  /** Like `net.Socket#setTimeout`: emits 'timeout' after `ms` without a byte either way; 0 turns it off. */
  setTimeout(ms: number, callback?: () => void): this {
    if (this.#idle !== undefined) {
      clearTimeout(this.#idle)
      this.#idle = undefined
    }
    this.timeout = ms
    if (callback !== undefined) {
      if (ms === 0) this.removeListener('timeout', callback)
      else this.once('timeout', callback)
    }
    if (ms > 0 && !this.destroyed) {
      this.#idle = setTimeout(onIdle.bind(this), ms)
      this.#idle.unref()
    }
    return this
  }

  /** Destroys the stream and tells the peer it was reset (RESET frame). */
  resetAndDestroy(): this {
    this.#reset(this.#resetCode, this.#resetMessage ?? 'stream reset')
    return this.destroy()
  }

  /**
   * Ends the stream at once in both directions, telling the peer `code` (for
   * a refusal or a revocation), then destroys it.
   */
  refuse(code: string, message: string): void {
    this.#reset(code, message)
    this.destroy()
  }

  /** The code (and message) the peer gets in the RESET if the stream is destroyed before it finished; the first one set wins. */
  setResetReason(code: string, message: string): void {
    if (this.#resetMessage !== undefined) return
    this.#resetCode = code
    this.#resetMessage = message
  }

  /** @internal Client side: called once with the gateway's ACCEPT payload or the RESET that refused the stream. */
  whenAccepted(callback: (err: Error | null, body?: Buffer) => void): void {
    this.#onAccept = callback
  }

  /** @internal */
  peerAccepted(body: Buffer): void {
    const cb = this.#onAccept
    this.#onAccept = undefined
    cb?.(null, body)
  }

  /**
   * @internal `lent`: `chunk` is a view of the connection's read buffer,
   * valid only during the call. Returns false when the peer overran its credit.
   */
  peerData(chunk: Buffer, lent = false): boolean {
    this.#received += chunk.length
    if (this.#received - this.#granted > INITIAL_WINDOW) return false
    if (this.#finReceived || this.#gone) return true
    this.#idle?.refresh()
    if (lent) {
      const sink = this.#sink
      if (sink !== undefined && this.readableFlowing === true && this.readableLength === 0) {
        sink.read(this, chunk)
        this.#grant()
        return true
      }
      // It waits in the stream: keep a copy of a small one, or the buffer behind a large one.
      if (chunk.length < COPY_BELOW) chunk = Buffer.from(chunk)
      else this.#owner.releaseReadBuffer(this, true)
    }
    this.push(chunk)
    this.#grant()
    return true
  }

  /** @internal */
  peerFin(): void {
    if (this.#finReceived || this.#gone) return
    this.#finReceived = true
    this.push(null)
  }

  /** @internal */
  peerReset(code: string, message: string): void {
    if (this.#gone) return
    this.#gone = true
    const cb = this.#onAccept
    this.#onAccept = undefined
    const err = resetError(code, message)
    if (cb !== undefined) cb(err)
    this.destroy(err)
  }

  /** @internal The connection ended under the stream. */
  connectionLost(message: string): void {
    this.peerReset('ERR_GATEWAY_UNAVAILABLE', message)
  }

  /** @internal */
  peerWindow(increment: number): void {
    this.#credit += increment
    this.release()
  }

  /** @internal Credit arrived or the connection drained: send what waits. */
  release(): void {
    if (!this.#gone) this.#flush()
  }

  override _read(): void {
    this.#grant()
  }

  // Every consumption is a chance to return credit: _read alone is not called
  // again until the next push, and the peer may be waiting for credit to push.
  override read(size?: number): any {
    const chunk: unknown = super.read(size)
    this.#grant()
    return chunk
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.#gone || this.#owner.closed) {
      callback(resetError('ERR_GATEWAY_UNAVAILABLE', 'the tunnel connection is closed'))
      return
    }
    this.#idle?.refresh()
    this.#pending = chunk
    this.#heldWrite = callback
    this.#flush()
  }

  /**
   * Sends as much of the pending chunk as the credit allows (never more: the
   * peer treats an overrun as a protocol violation), and completes the write
   * once all of it is sent and the connection is not congested.
   */
  #flush(): void {
    let chunk = this.#pending
    if (chunk !== undefined) {
      while (chunk.length > 0 && this.#credit > 0) {
        const n = Math.min(chunk.length, this.#credit, MAX_DATA_PAYLOAD)
        this.#owner.sendData(this.id, n === chunk.length ? chunk : chunk.subarray(0, n))
        this.#credit -= n
        chunk = n === chunk.length ? EMPTY : chunk.subarray(n)
      }
      if (chunk.length > 0) {
        this.#pending = chunk
        return
      }
      this.#pending = undefined
    }
    const cb = this.#heldWrite
    if (cb === undefined || this.#owner.congested) return
    this.#heldWrite = undefined
    cb()
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (!this.#gone && !this.#owner.closed) {
      this.#finSent = true
      this.#owner.sendFin(this.id)
    }
    callback()
  }

  override _destroy(err: Error | null, callback: (err: Error | null) => void): void {
    if (this.#idle !== undefined) {
      clearTimeout(this.#idle)
      this.#idle = undefined
    }
    // Destroyed before both directions finished on the wire: the peer must learn it.
    if (!(this.#finSent && this.#finReceived)) this.#reset(this.#resetCode, this.#resetMessage ?? err?.message ?? 'stream closed')
    this.#gone = true
    // A held write callback is dropped with the stream: Writable fails what is still buffered.
    this.#heldWrite = undefined
    this.#pending = undefined
    const cb = this.#onAccept
    this.#onAccept = undefined
    cb?.(err ?? resetError('ERR_INTERNAL', 'stream closed before it was accepted'))
    this.#owner.forget(this)
    callback(err)
  }

  #reset(code: string, message: string): void {
    if (this.#gone) return
    this.#gone = true
    if (!this.#owner.closed) this.#owner.sendReset(this.id, code, message)
  }

  #grant(): void {
    if (this.#gone || this.#finReceived) return
    const consumed = this.#received - this.readableLength
    const owed = consumed - this.#granted
    if (owed >= GRANT_BATCH) {
      this.#granted = consumed
      this.#owner.sendWindow(this.id, owed)
    }
  }
}
