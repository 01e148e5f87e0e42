import type { Duplex } from 'node:stream'
import { KeywayError } from '../errors.js'

/** A reply line from a server during the login is short; a longer one is a broken or hostile server. */
export const MAX_REPLY_LINE = 64 * 1024

/** Encodes a command as a RESP array of bulk strings: binary-safe, so a password may hold spaces or newlines. */
export function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`, 'latin1')]
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg, 'utf8') : arg
    parts.push(Buffer.from(`$${bytes.length}\r\n`, 'latin1'), bytes, Buffer.from('\r\n', 'latin1'))
  }
  return Buffer.concat(parts)
}

/**
 * The error reply that tells a Redis client why Keyway refused or ended its
 * connection: `-ERR keyway CODE: message`. Line breaks in the message would
 * end the reply early: they become spaces.
 */
export function keywayErrorReply(code: string, message: string): Buffer {
  return Buffer.from(`-ERR keyway ${code}: ${message.replace(/[\r\n]+/g, ' ')}\r\n`, 'utf8')
}

/**
 * Reads simple reply lines (`+OK`, `-WRONGPASS ...`) from a stream, for the
 * few replies of a login; {@link detach} then hands back what was read past
 * them, leaving the stream paused with none of this reader's listeners.
 */
export class ReplyReader {
  readonly #stream: Duplex
  #buf: Buffer = Buffer.alloc(0)
  #waiter: { resolve: (line: string) => void; reject: (err: Error) => void } | undefined
  #ended: Error | undefined
  #detached = false

  constructor(stream: Duplex) {
    this.#stream = stream
    stream.on('data', this.#onData)
    stream.on('end', this.#onEnd)
    stream.on('close', this.#onEnd)
    stream.on('error', this.#onError)
    stream.resume()
  }

  /** The next reply line, without its CRLF. */
  line(): Promise<string> {
    const line = this.#take()
    if (line !== undefined) return Promise.resolve(line)
    if (this.#ended) return Promise.reject(this.#ended)
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject }
    })
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

  #take(): string | undefined {
    const at = this.#buf.indexOf('\r\n')
    if (at < 0) {
      if (this.#buf.length > MAX_REPLY_LINE) this.#fail(new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream sent a reply line longer than ${MAX_REPLY_LINE} bytes during the login: not Redis`))
      return undefined
    }
    const line = this.#buf.toString('utf8', 0, at)
    this.#buf = this.#buf.subarray(at + 2)
    return line
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#buf = this.#buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#buf, chunk])
    const w = this.#waiter
    if (w === undefined) return
    const line = this.#take()
    if (line === undefined) return
    this.#waiter = undefined
    w.resolve(line)
  }

  readonly #onEnd = (): void => this.#fail(new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', 'the upstream closed the connection during the login'))

  readonly #onError = (err: Error): void =>
    this.#fail(new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream connection failed during the login: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err }))

  #fail(err: Error): void {
    if (this.#ended) return
    this.#ended = err
    const w = this.#waiter
    this.#waiter = undefined
    w?.reject(err)
  }
}
