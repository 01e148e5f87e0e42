import * as net from 'node:net'
import { finished, type Duplex } from 'node:stream'
import { systemClock, type Clock, type TimerHandle } from '../clock.js'
import { COALESCE_MAX, COALESCE_MIN, Outbox } from './outbox.js'
import { reclaimReadBuffers, releaseReadBuffer, setReadSink, trimReadBuffers, type ReadSink } from '../read-buffer/index.js'

/** Why a forwarding session ended. */
export type ForwardReason =
  /** Both directions ended with a clean half-close (FIN, or TLS close_notify) and every byte was flushed. */
  | 'done'
  /** No byte moved in either direction for `idleTimeoutMs`. */
  | 'idle_timeout'
  /** The session reached `maxLifetimeMs`. */
  | 'lifetime'
  /** One direction ended and the session did not finish within `halfCloseTimeoutMs`. */
  | 'half_close_timeout'
  /**
   * The connection was torn down abruptly: RST, EPIPE, ECONNABORTED, ETIMEDOUT
   * (keepalive), a write to a destroyed socket, or a socket destroyed outside
   * the session.
   */
  | 'reset'
  /** A socket failed with an error that is not a reset (a TLS alert, for instance); see `error`. */
  | 'error'

/** What a finished session reports. */
export interface ForwardResult {
  /** Bytes read from `a` (including `initialAToB`) and handed to `b`. */
  aToB: number
  /** Bytes read from `b` and handed to `a`. */
  bToA: number
  durationMs: number
  /**
   * A {@link ForwardReason}, or the string given to {@link ForwardSession.close}
   * or {@link ForwardSession.end} (e.g. `revoked:ERR_GRANT_DENIED`, `shutdown`).
   * The first cause wins: a reset after `close('shutdown')` still reports `shutdown`.
   */
  reason: ForwardReason | (string & {})
  /** The first socket error seen, for debug logging (may be present whatever the reason). */
  error?: { code: string; message: string }
}

/** Options of {@link forward}. */
export interface ForwardOptions {
  /**
   * Close with `idle_timeout` once no byte has moved either way for this
   * long: between `idleTimeoutMs` and 1.25 × `idleTimeoutMs` after the last
   * one (a timer on `clock` samples the byte counts every quarter period, so
   * the copying path pays nothing per chunk; a socket timer, refreshed on
   * every read and write, cost ~15 % of bulk throughput). Fires also when a
   * peer stops reading and every buffer is full. 0 or undefined: no idle
   * timeout. Socket timeouts left on either socket are cleared.
   */
  idleTimeoutMs?: number
  /** Close with `lifetime` this long after the session starts. 0 or undefined: unlimited. */
  maxLifetimeMs?: number
  /**
   * Once either direction has ended (EOF read, or {@link ForwardSession.end}), the whole session must finish
   * within this long (the other direction ends and both write sides flush), else
   * both sockets are destroyed with `half_close_timeout`. The limit is absolute,
   * not an inactivity limit. Default 60 000; 0 disables.
   */
  halfCloseTimeoutMs?: number
  /** Disable Nagle's algorithm on both sockets. Default true. */
  noDelay?: boolean
  /**
   * Bytes already read from `a` (e.g. past the end of a handshake), written to
   * `b` before anything else and counted in `aToB`.
   */
  initialAToB?: Buffer
  /** Timers for `idleTimeoutMs`, `maxLifetimeMs` and `halfCloseTimeoutMs`, and the time source of `durationMs`. Default {@link systemClock}. */
  clock?: Clock
  /** Time source of `durationMs`; overrides `clock.now`. */
  now?: () => number
}

/** A running bidirectional copy between two sockets, from {@link forward}. */
export interface ForwardSession {
  /** Settles once both sockets are closed. Never rejects. */
  readonly done: Promise<ForwardResult>
  /** Bytes copied from `a` to `b` so far. */
  readonly bytesAToB: number
  /** Bytes copied from `b` to `a` so far. */
  readonly bytesBToA: number
  /**
   * Destroys both sockets now; `reason` is reported unless an earlier cause was
   * recorded. `code` is what a peer that can be told why (a multiplexed
   * stream's RESET) receives; default `ERR_SHUTTING_DOWN` for `shutdown`,
   * else `ERR_SESSION_CLOSED`. Idempotent.
   */
  close(reason: string, code?: string): void
  /**
   * Graceful stop, for draining: ends both write sides (FIN after pending
   * writes) and waits for the peers to close theirs; bytes still arriving are
   * read and discarded. Starts the half-close timer. If the session then
   * finishes cleanly, `reason` (default `done`) is reported. Idempotent.
   */
  end(reason?: string): void
}

const DEFAULT_HALF_CLOSE_TIMEOUT_MS = 60_000

const RESET_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_SOCKET_CLOSED',
])

/**
 * True when `err` is an ordinary abrupt end of a TCP connection (reset, broken
 * pipe, aborted, keepalive timeout, unreachable, write to a destroyed stream)
 * rather than a fault worth more than a debug line.
 */
export function isConnectionReset(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && RESET_CODES.has(code)
}

const kSession = Symbol('keyway.forward.session')
/** Reads smaller than this that a writer would keep are copied instead of taking a new read buffer. */
const COPY_BELOW = 4096

/**
 * What forward() copies between: a `net.Socket` or `tls.TLSSocket`, or any
 * Duplex with the same socket manners (a multiplexed stream).
 */
export type ForwardEndpoint = Duplex & {
  setNoDelay(noDelay?: boolean): unknown
  /** Like net.Socket: emit 'timeout' after `ms` of inactivity; 0 turns it off. */
  setTimeout(ms: number, callback?: () => void): unknown
  readonly timeout?: number | undefined
  /** Abortive close (RST for TCP); absent: destroy(). */
  resetAndDestroy?(): unknown
  /** Why the session ends, for a peer that can be told (a multiplexed stream's RESET); the first one set wins. */
  setResetReason?(code: string, message: string): void
  /**
   * True when a written chunk is referenced no more once `writableLength` is
   * back to 0, as with a socket (trusted without it): forward() then reads
   * the next chunk into the same buffer.
   */
  readonly releasesWrittenChunks?: boolean
}

/** A plain TCP socket: a `net.Socket` that is not a `tls.TLSSocket`. */
function isPlainSocket(endpoint: object): endpoint is net.Socket {
  return endpoint instanceof net.Socket && (endpoint as { encrypted?: boolean }).encrypted !== true
}

/**
 * True when `to` refers to no written chunk once its `writableLength` is back
 * to 0: a plain socket, or an endpoint that says so. A TLS socket completes
 * every write a turn later, so it counts as keeping.
 */
function trusts(to: ForwardEndpoint): boolean {
  return to instanceof net.Socket ? isPlainSocket(to) : to.releasesWrittenChunks === true
}

/** A socket owned by a session; the back-pointer lets shared listeners find it. */
type Endpoint = ForwardEndpoint & { [kSession]?: Session }

// The listeners are module-level functions shared by every session: EventEmitter
// calls them with `this` set to the socket, so a session allocates no closures.
function onData(this: Endpoint, chunk: Buffer): void {
  this[kSession]!.data(this, chunk)
}
function onDrain(this: Endpoint): void {
  this[kSession]!.drain(this)
}
function onEnd(this: Endpoint): void {
  this[kSession]!.eof(this)
}
function onError(this: Endpoint, err: Error): void {
  this[kSession]!.error(err)
}
function onClose(this: Endpoint): void {
  this[kSession]!.closed(this)
}

const FLAG_A_EOF = 1
const FLAG_B_EOF = 2
const FLAG_A_CLOSED = 4
const FLAG_B_CLOSED = 8
const FLAG_DRAINING = 16
const FLAG_FINISHED = 32

// A reset on one side is passed on as a reset (RST) where the socket is plain
// TCP, so the peer sees a truncated stream as an error rather than a clean EOF.
// TLS sockets offer no public way to reset their TCP connection: they close.
function resetOrDestroy(socket: ForwardEndpoint): void {
  if (socket.destroyed) return
  // After end() libuv has a shutdown in flight, and uv_tcp_close_reset then
  // fails (EINVAL): Node emits 'error' and never 'close', which would leave
  // the session unfinished. The FIN is already on its way: just close.
  if ((socket as { encrypted?: boolean }).encrypted === true || socket.writableEnded) {
    socket.destroy()
    return
  }
  if (socket.resetAndDestroy === undefined) {
    socket.destroy()
    return
  }
  try {
    socket.resetAndDestroy()
  } catch {
    // Not a TCP handle (a Unix socket, say): ERR_INVALID_HANDLE_TYPE.
    socket.destroy()
  }
}

class Session implements ForwardSession, ReadSink {
  readonly done: Promise<ForwardResult>
  readonly #a: Endpoint
  readonly #b: Endpoint
  #aToB = 0
  #bToA = 0
  #flags = 0
  #reason: string | undefined
  #endReason: string | undefined
  #error: { code: string; message: string } | undefined
  readonly #start: number
  readonly #now: (() => number) | undefined
  readonly #clock: Clock
  readonly #halfCloseMs: number
  #lifetimeTimer: TimerHandle | undefined
  #halfCloseTimer: TimerHandle | undefined
  #idleTimer: TimerHandle | undefined
  #idleMs = 0
  #idleBytes = 0
  #idleSince = 0
  /** Write combining per direction, made on first use (outbox.ts). */
  #outAToB: Outbox | undefined
  #outBToA: Outbox | undefined
  #resolve!: (result: ForwardResult) => void

  constructor(a: Endpoint, b: Endpoint, options: ForwardOptions) {
    this.#a = a
    this.#b = b
    this.#clock = options.clock ?? systemClock
    this.#now = options.now
    this.#start = this.#time()
    this.#halfCloseMs = options.halfCloseTimeoutMs ?? DEFAULT_HALF_CLOSE_TIMEOUT_MS
    this.done = new Promise<ForwardResult>((resolve) => {
      this.#resolve = resolve
    })
  }

  get bytesAToB(): number {
    return this.#aToB
  }

  get bytesBToA(): number {
    return this.#bToA
  }

  start(options: ForwardOptions): void {
    const a = this.#a
    const b = this.#b
    a[kSession] = this
    b[kSession] = this
    a.on('error', onError)
    b.on('error', onError)

    // Node reads allowHalfOpen when 'end' is emitted: with false it would end
    // our write side on the peer's FIN and cut the other direction short.
    a.allowHalfOpen = true
    b.allowHalfOpen = true

    if (a.destroyed || b.destroyed) {
      this.#recordError(a.errored ?? b.errored)
      this.#abort('reset')
      // 'close' may already have been emitted; finished() knows either way.
      finished(a, onClose.bind(a))
      finished(b, onClose.bind(b))
      return
    }

    a.on('close', onClose)
    b.on('close', onClose)
    a.on('end', onEnd)
    b.on('end', onEnd)
    a.on('drain', onDrain)
    b.on('drain', onDrain)

    const noDelay = options.noDelay ?? true
    a.setNoDelay(noDelay)
    b.setNoDelay(noDelay)

    if (a.timeout) a.setTimeout(0)
    if (b.timeout) b.setTimeout(0)
    const idle = options.idleTimeoutMs ?? 0
    if (idle > 0) {
      this.#idleMs = idle
      this.#idleSince = this.#clock.now()
      this.#idleTimer = this.#clock.setTimeout(this.#checkIdle, Math.max(1, Math.ceil(idle / 4)))
    }

    const lifetime = options.maxLifetimeMs ?? 0
    if (lifetime > 0) this.#lifetimeTimer = this.#clock.setTimeout(() => this.close('lifetime'), lifetime)

    let aMayRead = true
    const initial = options.initialAToB
    if (initial !== undefined && initial.length > 0) {
      this.#aToB += initial.length
      aMayRead = b.write(initial)
    }

    a.on('data', onData)
    b.on('data', onData)
    setReadSink(a, this)
    setReadSink(b, this)
    // An explicit pause() by the caller (e.g. around a handshake) survives
    // adding a 'data' listener, so resume explicitly.
    if (aMayRead) a.resume()
    else a.pause()
    b.resume()

    // EOF consumed before we were attached: carry it through now.
    if (a.readableEnded) this.eof(a)
    if (b.readableEnded) this.eof(b)
  }

  data(from: Endpoint, chunk: Buffer): void {
    let to: Endpoint
    let out: Outbox | undefined
    if (from === this.#a) {
      to = this.#b
      if (this.#flags & FLAG_DRAINING) return
      this.#aToB += chunk.length
      out = this.#outAToB
    } else {
      to = this.#a
      if (this.#flags & FLAG_DRAINING) return
      this.#bToA += chunk.length
      out = this.#outBToA
    }
    if (out !== undefined && out.pending > 0) out.flush()
    // A write that completed at once needs no pause, even past the high-water
    // mark (a 64 KiB read is past a socket's 16 KiB): 'drain' follows anyway.
    if (!to.write(chunk) && to.writableLength > 0) from.pause()
    // A lending source (a multiplexed stream) whose bytes went out of its
    // buffer to a writer that holds nothing refers to none of its lent buffers.
    else if (to.writableLength === 0 && from.readableLength === 0 && !(from instanceof net.Socket) && trusts(to)) reclaimReadBuffers(from)
  }

  read(from: object, chunk: Buffer): void {
    const to = from === this.#a ? this.#b : this.#a
    const fromA = from === this.#a
    let out = fromA ? this.#outAToB : this.#outBToA
    if (out !== undefined && out.pending > 0) {
      // Nothing overtakes what the outbox holds.
      this.#combine(fromA, from, to, out, chunk)
      return
    }
    // Record-sized chunks from a multiplexed stream (a lending source: not a
    // socket) towards a plain socket are combined after the first of the
    // turn (outbox.ts).
    if (chunk.length >= COALESCE_MIN && chunk.length < COALESCE_MAX && !(from instanceof net.Socket) && isPlainSocket(to)) {
      if (out === undefined) {
        out = this.#outbox(from as Endpoint, to)
        if (fromA) this.#outAToB = out
        else this.#outBToA = out
      }
      if (out.inTurn || to.writableLength > 0) {
        this.#combine(fromA, from, to, out, chunk)
        return
      }
      out.markTurn()
    }
    const trusted = trusts(to)
    if (chunk.length < COPY_BELOW && (!trusted || to.writableLength > 0)) {
      // It would be kept: a copy from Node's pool is cheaper than a new read buffer.
      this.data(from as Endpoint, Buffer.from(chunk))
      return
    }
    this.data(from as Endpoint, chunk)
    // A trusted writer that holds nothing has written every chunk it kept
    // from `from`; an untrusted one never says, so its buffers are not reused.
    if (!trusted) releaseReadBuffer(from, false)
    else if (to.writableLength > 0) releaseReadBuffer(from)
    else reclaimReadBuffers(from)
  }

  #combine(fromA: boolean, from: object, to: Endpoint, out: Outbox, chunk: Buffer): void {
    if (this.#flags & FLAG_DRAINING) return
    if (fromA) this.#aToB += chunk.length
    else this.#bToA += chunk.length
    out.add(chunk)
    // Copied: the chunk is free. The writer holding nothing has written every earlier one.
    if (to.writableLength === 0) reclaimReadBuffers(from)
  }

  #outbox(from: Endpoint, to: Endpoint): Outbox {
    return new Outbox((bytes) => {
      // Written even after an end or a destroy, as data() would: the stream
      // reports the misuse, and a buffer given to such a writer is not reused.
      if (!to.write(bytes) && to.writableLength > 0) from.pause()
      return to.writableLength > 0 || to.destroyed || to.writableEnded
    })
  }

  drain(writer: Endpoint): void {
    const reader = writer === this.#a ? this.#b : this.#a
    if (reader.isPaused()) reader.resume()
  }

  eof(from: Endpoint): void {
    const flag = from === this.#a ? FLAG_A_EOF : FLAG_B_EOF
    if (this.#flags & flag) return
    this.#flags |= flag
    const to = from === this.#a ? this.#b : this.#a
    ;(from === this.#a ? this.#outAToB : this.#outBToA)?.flush()
    // end() queues the FIN behind pending writes; the other direction keeps flowing.
    if (!to.writableEnded && !to.destroyed) to.end()
    this.#startHalfCloseTimer()
  }

  error(err: Error): void {
    this.#recordError(err)
    this.#abort(isConnectionReset(err) ? 'reset' : 'error')
  }

  closed(socket: Endpoint): void {
    const flag = socket === this.#a ? FLAG_A_CLOSED : FLAG_B_CLOSED
    if (this.#flags & flag) return
    this.#flags |= flag
    // A socket that closes before both its EOF and its flushed FIN is an abort
    // (RST, or destroyed by someone else): take the other one down too.
    if (!socket.readableEnded || !socket.writableFinished) this.#abort('reset')
    if ((this.#flags & (FLAG_A_CLOSED | FLAG_B_CLOSED)) === (FLAG_A_CLOSED | FLAG_B_CLOSED)) this.#finish()
  }

  close(reason: string, code?: string): void {
    this.#abort(reason, code)
  }

  end(reason?: string): void {
    if (this.#flags & (FLAG_DRAINING | FLAG_FINISHED)) return
    this.#flags |= FLAG_DRAINING
    this.#endReason = reason
    const a = this.#a
    const b = this.#b
    this.#outAToB?.flush()
    this.#outBToA?.flush()
    if (!a.writableEnded && !a.destroyed) a.end()
    if (!b.writableEnded && !b.destroyed) b.end()
    // Keep reading so the peers' FINs are seen; a paused reader would hide them.
    if (a.isPaused()) a.resume()
    if (b.isPaused()) b.resume()
    this.#startHalfCloseTimer()
  }

  readonly #checkIdle = (): void => {
    this.#idleTimer = undefined
    if (this.#flags & FLAG_FINISHED) return
    const now = this.#clock.now()
    const moved = this.#aToB + this.#bToA
    if (moved !== this.#idleBytes) {
      this.#idleBytes = moved
      this.#idleSince = now
    } else if (now - this.#idleSince >= this.#idleMs) {
      this.close('idle_timeout')
      return
    } else {
      // Quiet for a sample: the buffers kept for the next bulk reads go.
      trimReadBuffers(this.#a)
      trimReadBuffers(this.#b)
    }
    this.#idleTimer = this.#clock.setTimeout(this.#checkIdle, Math.max(1, Math.ceil(this.#idleMs / 4)))
  }

  #time(): number {
    return this.#now !== undefined ? this.#now() : this.#clock.now()
  }

  #startHalfCloseTimer(): void {
    if (this.#halfCloseTimer !== undefined || this.#halfCloseMs <= 0 || this.#flags & FLAG_FINISHED) return
    this.#halfCloseTimer = this.#clock.setTimeout(() => this.close('half_close_timeout'), this.#halfCloseMs)
  }

  #recordError(err: unknown): void {
    if (this.#error !== undefined || err == null) return
    const e = err as { code?: unknown; message?: unknown }
    this.#error = {
      code: typeof e.code === 'string' ? e.code : 'ERR_UNKNOWN',
      message: typeof e.message === 'string' ? e.message : String(err),
    }
  }

  #abort(reason: string, code?: string): void {
    if (this.#flags & FLAG_FINISHED) return
    this.#reason ??= reason
    const told = code ?? (this.#reason === 'shutdown' ? 'ERR_SHUTTING_DOWN' : 'ERR_SESSION_CLOSED')
    this.#a.setResetReason?.(told, `session closed: ${this.#reason}`)
    this.#b.setResetReason?.(told, `session closed: ${this.#reason}`)
    // What arrived before the end goes out first, as it would have uncombined.
    this.#outAToB?.flush()
    this.#outBToA?.flush()
    this.#outAToB?.discard()
    this.#outBToA?.discard()
    if (reason === 'reset') {
      resetOrDestroy(this.#a)
      resetOrDestroy(this.#b)
    } else {
      this.#a.destroy()
      this.#b.destroy()
    }
  }

  #finish(): void {
    if (this.#flags & FLAG_FINISHED) return
    this.#flags |= FLAG_FINISHED
    if (this.#lifetimeTimer !== undefined) this.#clock.clearTimeout(this.#lifetimeTimer)
    if (this.#halfCloseTimer !== undefined) this.#clock.clearTimeout(this.#halfCloseTimer)
    if (this.#idleTimer !== undefined) this.#clock.clearTimeout(this.#idleTimer)
    const result: ForwardResult = {
      aToB: this.#aToB,
      bToA: this.#bToA,
      durationMs: Math.max(0, this.#time() - this.#start),
      reason: this.#reason ?? this.#endReason ?? 'done',
    }
    if (this.#error !== undefined) result.error = this.#error
    this.#resolve(result)
  }
}

/**
 * Copies bytes both ways between two connected sockets until both are closed:
 * the one forwarding core shared by gateway and sidecar.
 *
 * - Backpressure: when a write side's buffer is full and the write is still
 *   pending, the opposite reader is paused until 'drain', so memory per
 *   session stays bounded by the sockets' high-water marks whatever the peers
 *   do.
 * - Writes: record-sized chunks (4-32 KiB) a multiplexed stream lends,
 *   bound for a plain socket, leave the first of each event-loop turn at
 *   once and the rest combined into 64 KiB writes at the end of the turn
 *   (outbox.ts); nothing overtakes them, and EOF, end() and an abort write
 *   them first.
 * - Half-close: EOF from one side becomes `end()` (FIN, or TLS close_notify)
 *   on the other after its pending writes; the other direction keeps flowing.
 *   Both sockets must therefore allow half-open connections: create them with
 *   `allowHalfOpen: true` (net.createServer / tls.createServer / net.Socket
 *   option). forward() also sets the property, which Node reads when 'end'
 *   is emitted, but an EOF that arrived earlier may already have ended the
 *   write side.
 * - Reads: a socket made by `dialTcp()`, `readingSocket()`,
 *   `adoptAccepted()` or given `useReadBuffer()`, and a multiplexed stream
 *   (which lends views of its connection's read buffer), hand each read
 *   straight to the session; the buffer is reused once the write of it has
 *   completed (read-buffer/read-buffer.ts). Any other endpoint is read through its
 *   'data' events.
 * - Resets, EPIPE and similar end the session with reason `reset`; no error
 *   is ever thrown or left unhandled (an 'error' listener is attached first).
 *   The other socket is reset too when it is plain TCP (its peer sees
 *   ECONNRESET, not a clean EOF); a TLS socket is closed. Every other end
 *   (timeouts, close()) closes both sockets with FIN.
 *
 * forward() takes ownership of both sockets: it attaches listeners, resumes
 * them (data the caller unshift()ed is forwarded first), replaces their
 * socket timeouts, and destroys both when the session ends. Callers must have
 * removed their own 'data' and 'timeout' listeners and must not read, write or
 * destroy the sockets afterwards (use {@link ForwardSession.close}; a socket
 * destroyed behind the session's back counts as a reset). Server-side TLS
 * sockets must come from a tls.Server: a bare `new TLSSocket(s, { isServer:
 * true })` never emits TLS errors, so such a fault would only end the session
 * at the idle timeout. One timer per session watches both directions through
 * the byte counts.
 *
 * @param a usually the accepted (client-side) socket; net.Socket, tls.TLSSocket or a multiplexed stream
 * @param b usually the dialled (upstream-side) socket
 */
export function forward(a: ForwardEndpoint, b: ForwardEndpoint, options: ForwardOptions = {}): ForwardSession {
  if (a === b) throw new TypeError('forward() needs two distinct sockets')
  const session = new Session(a, b, options)
  session.start(options)
  return session
}
