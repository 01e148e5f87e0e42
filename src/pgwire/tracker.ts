import { keywayErrorResponse } from './error-response.js'

/** Codes of the first message a client sends (PostgreSQL protocol, "Message Formats"). */
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
/** Longest initial message a client sends (the server's own limit is 10 000). */
const MAX_STARTUP_LENGTH = 10_000

/** What the tracker knows of a connection's bytes. */
export type WireState =
  /** Waiting for the client's first message (or its next one, after 'N' to an SSL or GSS request). */
  | 'startup'
  /** The client asked for TLS or GSS encryption; waiting for the server's one-byte answer. */
  | 'negotiating'
  /** Plaintext protocol 3: the server's messages are tracked. */
  | 'messages'
  /** Encrypted end to end, a cancel request, or not PostgreSQL as expected: nothing to track. */
  | 'off'

/**
 * Tracks the message boundaries of a PostgreSQL connection's server-to-client
 * bytes, reading only message headers (type byte and int32 length): the
 * client's first message says whether the bytes are plaintext (a
 * StartupMessage, or an SSLRequest or GSSENCRequest the server answers 'N')
 * or encrypted end to end ('S', 'G'). A forward() tap: once the bytes are
 * encrypted, or the tracker lost the thread, it asks for no more chunks.
 *
 * {@link closingWords} then says how a session the gateway ends can tell the
 * client why: a FATAL ErrorResponse at the next message boundary.
 */
export class PgWireTracker {
  #state: WireState
  /** The client's initial message: its first 8 bytes (length, code), then the rest skipped. */
  readonly #startup = Buffer.alloc(8)
  #startupHave = 0
  /** Bytes of the current server message not seen yet (after its header). */
  #remaining = 0
  /** A server message header split across chunks. */
  readonly #header = Buffer.alloc(5)
  #headerHave = 0

  /**
   * `at` is where the session starts: `startup` (the client's first message
   * is still to come) or `messages` (the startup was spoken already, as by a
   * gateway that logged in upstream for the client: server messages from a
   * boundary on).
   */
  constructor(at: 'startup' | 'messages' = 'startup') {
    this.#state = at
  }

  get state(): WireState {
    return this.#state
  }

  /** True when the server's bytes seen so far end exactly at a message boundary. */
  get atBoundary(): boolean {
    return this.#state === 'messages' && this.#remaining === 0 && this.#headerHave === 0
  }

  /** A chunk from the client. */
  aToB(chunk: Buffer): boolean {
    if (this.#state !== 'startup') return this.#state === 'negotiating'
    const take = Math.min(8 - this.#startupHave, chunk.length)
    chunk.copy(this.#startup, this.#startupHave, 0, take)
    this.#startupHave += take
    if (this.#startupHave < 8) return true
    this.#startupHave = 0
    const length = this.#startup.readInt32BE(0)
    const code = this.#startup.readInt32BE(4)
    if (length < 8 || length > MAX_STARTUP_LENGTH) this.#state = 'off'
    else if ((code === SSL_REQUEST || code === GSSENC_REQUEST) && length === 8) this.#state = 'negotiating'
    // Protocol 3.x StartupMessage: the server's messages follow. A CancelRequest (1234.5678) or anything else: off.
    else if (code >>> 16 === 3) this.#state = 'messages'
    else this.#state = 'off'
    // Nothing more is needed from the client once the server speaks messages (or never will).
    return this.#state === 'negotiating'
  }

  /** A chunk from the server. */
  bToA(chunk: Buffer): boolean {
    const state = this.#state
    if (state === 'messages') {
      this.#scan(chunk, 0)
      return this.#state === 'messages'
    }
    if (state === 'negotiating' && chunk.length > 0) {
      const answer = chunk[0]
      // 'N': no encryption, the client's next message is another initial one (it sends nothing before the answer).
      if (answer === 0x4e && chunk.length === 1) this.#state = 'startup'
      // 'E': a server too old for the request answers with an ErrorResponse.
      else if (answer === 0x45) {
        this.#state = 'messages'
        this.#scan(chunk, 0)
      } else this.#state = 'off'
      return this.#state !== 'off'
    }
    // The server spoke first, or 'S'/'G' and TLS or GSS from here on.
    this.#state = 'off'
    return false
  }

  #scan(chunk: Buffer, from: number): void {
    const n = chunk.length
    let i = from
    let remaining = this.#remaining
    if (remaining > 0) {
      if (remaining >= n - i) {
        this.#remaining = remaining - (n - i)
        return
      }
      i += remaining
      remaining = 0
    }
    if (this.#headerHave > 0) {
      const take = Math.min(5 - this.#headerHave, n - i)
      chunk.copy(this.#header, this.#headerHave, i, i + take)
      this.#headerHave += take
      i += take
      if (this.#headerHave < 5) return
      this.#headerHave = 0
      const length = this.#header.readInt32BE(1)
      if (length < 4) return void (this.#state = 'off')
      remaining = length - 4
      if (remaining >= n - i) {
        this.#remaining = remaining - (n - i)
        return
      }
      i += remaining
    }
    // The hot loop: one header read per message, bodies skipped. The length
    // is read byte by byte (readInt32BE's checks cost a third of the loop);
    // `| 0` keeps it a signed int32, so a length with the top bit set is < 4.
    const last = n - 5
    while (i <= last) {
      const length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) | 0
      if (length < 4) return void (this.#state = 'off')
      i += 1 + length
    }
    if (i > n) {
      this.#remaining = i - n
      return
    }
    this.#remaining = 0
    if (i < n) {
      chunk.copy(this.#header, 0, i, n)
      this.#headerHave = n - i
    }
  }

  /**
   * How many bytes of `chunk` (the server's next) complete the message in
   * flight, or -1 when it does not end in this chunk (the state moves on).
   * 0 at a boundary.
   */
  untilBoundary(chunk: Buffer): number {
    if (this.atBoundary) return 0
    if (this.#state !== 'messages') return -1
    const before = this.#remaining
    if (before > 0) {
      if (before <= chunk.length) {
        this.#remaining = 0
        return before
      }
      this.#remaining = before - chunk.length
      return -1
    }
    // Inside a header: complete it, then the body.
    const need = 5 - this.#headerHave
    if (chunk.length < need) {
      chunk.copy(this.#header, this.#headerHave)
      this.#headerHave += chunk.length
      return -1
    }
    chunk.copy(this.#header, this.#headerHave, 0, need)
    this.#headerHave = 0
    const length = this.#header.readInt32BE(1)
    if (length < 4) {
      this.#state = 'off'
      return -1
    }
    const end = need + length - 4
    if (end <= chunk.length) return end
    this.#remaining = end - chunk.length
    return -1
  }

  /**
   * How to end the session so that the client learns why: the FATAL
   * ErrorResponse for `code` after the message in flight (waiting for it at
   * most `waitMs`), or undefined when the server's bytes are not plaintext
   * messages (encrypted end to end, still negotiating, or not understood):
   * then the session just closes.
   */
  closingWords(code: string, message: string, waitMs: number): { until?: (chunk: Buffer) => number; last: Buffer; waitMs: number } | undefined {
    if (this.#state !== 'messages') return undefined
    const last = keywayErrorResponse(code, message)
    if (this.atBoundary) return { last, waitMs }
    return { until: (chunk) => this.untilBoundary(chunk), last, waitMs }
  }
}
