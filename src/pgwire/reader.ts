import type { Duplex } from 'node:stream'
import { KeywayError, type ErrorCode } from '../errors.js'

/**
 * Reads a stream into one buffer on demand, for the few messages of a login;
 * once the login is done {@link detach} hands back what was read past it, and
 * the stream is left paused with none of this reader's listeners.
 */
export class StreamReader {
  readonly #stream: Duplex
  readonly #eofCode: ErrorCode
  readonly #what: string
  #buf: Buffer = Buffer.alloc(0)
  #waiter: { n: number; resolve: () => void; reject: (err: Error) => void } | undefined
  #ended: Error | undefined
  #detached = false

  /** `eofCode` and `what` name the failure when the stream ends before a message is complete. */
  constructor(stream: Duplex, initial: Buffer | undefined, eofCode: ErrorCode, what: string) {
    this.#stream = stream
    this.#eofCode = eofCode
    this.#what = what
    if (initial !== undefined && initial.length > 0) this.#buf = initial
    stream.on('data', this.#onData)
    stream.on('end', this.#onEnd)
    stream.on('close', this.#onEnd)
    stream.on('error', this.#onError)
    stream.resume()
  }

  /** Bytes read and not yet taken. */
  get buffered(): number {
    return this.#buf.length
  }

  /** Resolves once at least `n` bytes are buffered; rejects if the stream ends first. */
  need(n: number): Promise<void> {
    if (this.#buf.length >= n) return Promise.resolve()
    if (this.#ended) return Promise.reject(this.#ended)
    return new Promise((resolve, reject) => {
      this.#waiter = { n, resolve, reject }
    })
  }

  /** The next `n` bytes (call {@link need} first). */
  take(n: number): Buffer {
    const out = this.#buf.subarray(0, n)
    this.#buf = this.#buf.subarray(n)
    return out
  }

  /** Stops reading; returns the bytes read and not taken. Idempotent. */
  detach(): Buffer {
    if (!this.#detached) {
      this.#detached = true
      this.#stream.pause()
      this.#stream.removeListener('data', this.#onData)
      this.#stream.removeListener('end', this.#onEnd)
      this.#stream.removeListener('close', this.#onEnd)
      this.#stream.removeListener('error', this.#onError)
    }
    const rest = this.#buf
    this.#buf = Buffer.alloc(0)
    return rest
  }

  readonly #onData = (chunk: Buffer): void => {
    // Copied: a multiplexed stream may hand out a view of a read buffer that is reused later.
    this.#buf = this.#buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#buf, chunk])
    const w = this.#waiter
    if (w !== undefined && this.#buf.length >= w.n) {
      this.#waiter = undefined
      w.resolve()
    }
  }

  readonly #onEnd = (): void => this.#fail(new KeywayError(this.#eofCode, `${this.#what} closed the connection during the login`))

  readonly #onError = (err: Error): void =>
    this.#fail(new KeywayError(this.#eofCode, `${this.#what} connection failed during the login: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err }))

  #fail(err: Error): void {
    if (this.#ended) return
    this.#ended = err
    const w = this.#waiter
    this.#waiter = undefined
    w?.reject(err)
  }
}
