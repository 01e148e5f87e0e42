import * as net from 'node:net'
import type { Duplex } from 'node:stream'
import { systemClock, type Clock } from '../clock.js'
import { KeywayError } from '../errors.js'
import { forgetReadBuffers, MAX_READ_BUFFER, readNumber, reclaimReadBuffers, releaseReadBuffer, setReadSink, useReadBuffer, type ReadSink } from '../read-buffer/index.js'
import { decodeProblem, encodeFrame, encodeProblem, FRAME_HEADER, FrameType, writeHeader, type FrameTypeValue } from './frame.js'
import { FrameDecoder, type FrameSink } from './frame-decoder.js'
import { SlabPool } from './slab-pool.js'
import { MuxStream, type StreamOwner } from './stream.js'

/** Options of {@link MuxConnection}. */
export interface MuxConnectionOptions {
  /** `client` opens streams (the sidecar); `server` accepts them (the gateway). */
  role: 'client' | 'server'
  /**
   * Server: the peer opened `stream`; `payload` is its OPEN payload, or
   * undefined when it was larger than `maxControlPayload` (`size` bytes,
   * discarded: refuse the stream). Accept with {@link MuxConnection.accept}
   * or `stream.refuse()`. Not called after GOAWAY: such OPENs are reset with
   * `ERR_SHUTTING_DOWN` here.
   */
  onOpen?: (stream: MuxStream, payload: Buffer | undefined, size: number) => void
  /** Client: the gateway takes no new streams on this connection (it is draining, or the connection broke a rule). */
  onGoaway?: (code: string, message: string) => void
  /** The connection is closed and every stream on it was reset. `error` when it ended for a protocol violation. */
  onClose?: (error?: KeywayError) => void
  /** Largest OPEN, ACCEPT, RESET or GOAWAY payload accepted. Default 66,000 (a hello with the longest token). */
  maxControlPayload?: number
  /** The connection counts as congested (stream writes are held) while its socket buffers more than this. Default 4 MiB. */
  maxBuffered?: number
  /** Timers of the graceful close. Default {@link systemClock}. */
  clock?: Clock
  /**
   * Read the socket (a `net.Socket` or `tls.TLSSocket`) into reused buffers
   * and lend DATA payloads to the streams' forward() sessions, instead of a
   * new buffer per read (per TLS record). On a TLS socket this goes through
   * Node's internals (read-buffer/node-internals.ts): false with the
   * `forward.nodeInternals: off` switch. Default true.
   */
  reuseReadBuffers?: boolean
}

const EMPTY = Buffer.alloc(0)
const DEFAULT_MAX_CONTROL = 66_000
/** An OPEN up to this size over `maxControlPayload` is discarded and its stream refused; beyond it the peer is not a sidecar. */
const HARD_MAX_OPEN = 1024 * 1024
/** How long a closing connection waits for the peer's side before cutting it off. */
const CLOSE_GRACE_MS = 1_000
const DEFAULT_MAX_BUFFERED = 4 * 1024 * 1024
const MAX_STREAM_ID = 0x7fffffff
/**
 * DATA frames with payloads from this size up to {@link SLAB_PAYLOAD} are
 * built in reused buffers; smaller ones get their own. A slab is 64 KiB
 * whatever its frame: at half of it at least, what the congestion limit lets
 * queue holds at most twice its bytes in slabs.
 */
const SLAB_MIN = 32 * 1024
/** Payload room of a reused frame buffer: the largest socket read (forward()'s read buffers). */
const SLAB_PAYLOAD = MAX_READ_BUFFER
/** Largest plaintext a TLS record carries: the size of a read of the socket (TLSWrap reads record by record). */
const TLS_RECORD = 16 * 1024
/**
 * Reused frame buffers kept per connection between writes: up to the
 * congestion limit's worth of 64 KiB frames in flight (4 MiB), which bulk
 * streams reach when the peer is the slower end. Every {@link SLAB_IDLE_MS}
 * the free ones are cut to the number taken since the last check; all go
 * when no stream is left.
 */
const MAX_FREE_SLABS = 64
const SLAB_IDLE_MS = 1_000

/**
 * Many streams over one ordered byte stream (a TLS socket): the framing of
 * docs/protocol.md, "Multiplexed tunnels". Frames written in one event-loop
 * turn leave in one socket write (corked until `setImmediate`), so many
 * small streams share TLS records and system calls; a bulk DATA frame
 * (32-64 KiB, built in a reused buffer) goes in a write of its own. The
 * socket is read into reused buffers and DATA payloads are lent to the
 * streams' readers without a copy (read-buffer/read-buffer.ts). The bytes
 * are cut into frames by a {@link FrameDecoder} and bulk frames are built in
 * a {@link SlabPool}'s buffers; this class keeps the protocol's state: the
 * streams, their ids, GOAWAY and the close.
 *
 * Nothing the peer sends can throw out of here: a frame that breaks a rule
 * ends the connection with GOAWAY `ERR_PROTOCOL_VIOLATION` and resets its
 * streams. Takes ownership of the socket.
 */
export class MuxConnection implements StreamOwner {
  readonly socket: Duplex
  readonly #role: 'client' | 'server'
  readonly #options: MuxConnectionOptions
  readonly #maxBuffered: number
  readonly #clock: Clock
  readonly #streams = new Map<number, MuxStream>()
  #nextId = 1
  #lastPeerId = 0
  #corked = false
  #congested = false
  #closed = false
  #goingAway = false
  #violation: KeywayError | undefined
  readonly #decoder: FrameDecoder
  #dataTarget: MuxStream | undefined
  /**
   * Streams that may still refer to payloads lent from the socket's read
   * buffers, each with the number of the first read it may refer to. A Map
   * keeps insertion order and read numbers only grow: the first is the oldest.
   */
  readonly #holders = new Map<MuxStream, number>()
  /** Reused buffers of bulk DATA frames; undefined on a Duplex that may call back while it still holds a chunk. */
  readonly #slabs: SlabPool | undefined
  readonly #frames: FrameSink = {
    dataStart: (id, _size) => {
      this.#dataTarget = this.#streams.get(id)
      if (this.#dataTarget === undefined && !this.#known(id)) return this.#fail(`DATA on stream ${id}, never opened`)
      return true
    },
    data: (piece, lent) => {
      const target = this.#dataTarget
      if (target !== undefined && !target.peerData(piece, lent)) return this.#fail(`stream ${target.id} sent more than its window`)
      return true
    },
    control: (type, id, payload, size) => {
      this.#dispatch(type, id, payload, size)
      return !this.#closed && this.#violation === undefined
    },
    violation: (message) => void this.#fail(message),
  }
  /** Takes the socket's reads as lent views of its read buffer, when it reads into reused buffers. */
  readonly #sink: ReadSink = { read: (_from, chunk) => this.#onChunk(chunk, true) }
  readonly #uncork = (): void => {
    this.#corked = false
    this.socket.uncork()
  }

  constructor(socket: Duplex, options: MuxConnectionOptions) {
    this.socket = socket
    this.#role = options.role
    this.#options = options
    this.#clock = options.clock ?? systemClock
    // Congestion clears on 'drain', which a socket emits only after its buffer passed its high-water mark.
    this.#maxBuffered = Math.max(options.maxBuffered ?? DEFAULT_MAX_BUFFERED, socket.writableHighWaterMark)
    const maxControl = options.maxControlPayload ?? DEFAULT_MAX_CONTROL
    this.#decoder = new FrameDecoder(this.#frames, {
      maxControlPayload: maxControl,
      maxSkippedOpen: this.#role === 'server' ? Math.max(HARD_MAX_OPEN, maxControl) : 0,
    })
    // Frame buffers are reused only on a socket whose write callback means
    // the bytes are written (TLSWrap has encrypted them); a Duplex may
    // call back while it still holds the chunk.
    this.#slabs =
      socket instanceof net.Socket
        ? new SlabPool({ slabSize: FRAME_HEADER + SLAB_PAYLOAD, maxFree: MAX_FREE_SLABS, idleMs: SLAB_IDLE_MS, clock: this.#clock, keeping: () => this.#streams.size > 0 })
        : undefined
    socket.on('data', (chunk: Buffer) => this.#onChunk(chunk, false))
    if (options.reuseReadBuffers !== false && socket instanceof net.Socket) {
      useReadBuffer(socket, (socket as { encrypted?: boolean }).encrypted === true ? TLS_RECORD : undefined)
      setReadSink(socket, this.#sink)
    }
    socket.on('drain', () => this.#onDrain())
    socket.on('end', () => this.#onEnd())
    socket.on('error', () => {})
    socket.once('close', () => this.#onClose())
    socket.resume()
  }

  /** Streams open now. */
  get streams(): number {
    return this.#streams.size
  }

  /** True once the connection is closed. */
  get closed(): boolean {
    return this.#closed
  }

  /** True while the socket buffers more than `maxBuffered`: stream writes wait. */
  get congested(): boolean {
    return this.#congested
  }

  /** Client: false once the peer said GOAWAY or the ids ran out; open no more streams here. */
  get usable(): boolean {
    return !this.#closed && !this.#goingAway && this.#nextId <= MAX_STREAM_ID
  }

  /** Client: opens a stream; `payload` is the OPEN payload. Wait for it with `stream.whenAccepted()`. */
  open(payload: Buffer): MuxStream {
    if (this.#role !== 'client') throw new TypeError('only a client opens streams')
    if (!this.usable) throw new KeywayError('ERR_GATEWAY_UNAVAILABLE', 'the tunnel connection takes no new streams')
    const id = this.#nextId++
    const stream = new MuxStream(this, id)
    this.#streams.set(id, stream)
    this.#send(encodeFrame(FrameType.OPEN, id, payload))
    return stream
  }

  /** Server: the stream is open; `body` (JSON) goes in the ACCEPT frame. */
  accept(stream: MuxStream, body: Buffer): void {
    if (!this.#closed && this.#streams.get(stream.id) === stream) this.#send(encodeFrame(FrameType.ACCEPT, stream.id, body))
  }

  /** Server: tells the client to open no new streams here (draining). Live streams go on. Idempotent. */
  goaway(code: string, message: string): void {
    if (this.#closed || this.#goingAway) return
    this.#goingAway = true
    this.#send(encodeFrame(FrameType.GOAWAY, 0, encodeProblem(code, message)))
  }

  /**
   * Closes the connection gracefully: GOAWAY with `code`, then the end of the
   * byte stream (streams still open are reset). A peer that does not close its
   * side within a second is cut off. Idempotent.
   */
  end(code: string, message: string): void {
    if (this.#closed) return
    this.goaway(code, message)
    const socket = this.socket
    if (this.#corked) {
      this.#corked = false
      socket.uncork()
    }
    if (!socket.writableEnded) socket.end()
    this.#clock.setTimeout(() => socket.destroy(), CLOSE_GRACE_MS)
  }

  /** Closes the connection now; every stream is reset. Idempotent. */
  destroy(): void {
    this.socket.destroy()
  }

  /** @internal */
  sendData(stream: number, chunk: Buffer): void {
    // The payload is copied behind its header: one buffer per frame, and the
    // caller's chunk is free once this returns (forward() reuses its read
    // buffer). A turn with one frame then reaches TLS as one buffer, which
    // TLSWrap would otherwise copy again to join the header and the payload.
    // Bulk frames reuse buffers once their write completed: a new 64 KiB
    // buffer per frame is external memory that makes V8 run a full
    // mark-compact every ~100 ms of a bulk transfer (bench/README.md).
    const length = chunk.length
    if (this.#closed) return
    const slabs = this.#slabs
    if (length < SLAB_MIN || length > SLAB_PAYLOAD || slabs === undefined || !slabs.reusing) {
      const frame = Buffer.allocUnsafe(FRAME_HEADER + length)
      writeHeader(frame, 0, FrameType.DATA, length, stream)
      chunk.copy(frame, FRAME_HEADER)
      this.#send(frame)
      return
    }
    const slab = slabs.take()
    writeHeader(slab, 0, FrameType.DATA, length, stream)
    chunk.copy(slab, FRAME_HEADER)
    this.#send(length === SLAB_PAYLOAD ? slab : slab.subarray(0, FRAME_HEADER + length), slabs.written)
  }

  /** @internal */
  sendFin(stream: number): void {
    this.#send(encodeFrame(FrameType.FIN, stream))
  }

  /** @internal */
  sendReset(stream: number, code: string, message: string): void {
    this.#send(encodeFrame(FrameType.RESET, stream, encodeProblem(code, message)))
  }

  /** @internal */
  sendWindow(stream: number, increment: number): void {
    const frame = Buffer.allocUnsafe(FRAME_HEADER + 4)
    writeHeader(frame, 0, FrameType.WINDOW, 4, stream)
    frame.writeUInt32BE(Math.min(increment, 0xffffffff), FRAME_HEADER)
    this.#send(frame)
  }

  /** @internal */
  releaseReadBuffer(stream: MuxStream, keep: boolean): void {
    if (keep && !this.#holders.has(stream)) this.#holders.set(stream, readNumber(this.socket))
    releaseReadBuffer(this.socket, keep)
  }

  /** @internal */
  reclaimReadBuffers(stream: MuxStream): void {
    this.#holders.delete(stream)
    // The socket's read buffers are shared by every stream: free those the oldest remaining holder cannot refer to.
    const oldest = this.#holders.values().next()
    reclaimReadBuffers(this.socket, oldest.done === true ? Infinity : oldest.value)
  }

  /** @internal */
  forget(stream: MuxStream): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id)
    if (this.#streams.size === 0) this.#slabs?.dropFree()
    // Gone while something may still hold its payloads (its reader's writer, flushing): never reuse those buffers.
    const from = this.#holders.get(stream)
    if (from !== undefined) {
      this.#holders.delete(stream)
      forgetReadBuffers(this.socket, from)
    }
  }

  #send(buf: Buffer, done?: (err?: Error | null) => void): void {
    if (this.#closed) return
    const socket = this.socket
    if (done !== undefined) {
      // A bulk frame goes alone (after the frames corked before it): batched,
      // a turn's frames would reach TLSWrap as one writev, which it copies
      // whole into one buffer, and their slabs would all wait for it.
      if (this.#corked) {
        this.#corked = false
        socket.uncork()
      }
    } else if (!this.#corked) {
      this.#corked = true
      socket.cork()
      setImmediate(this.#uncork)
    }
    socket.write(buf, done)
    if (!this.#congested && socket.writableLength > this.#maxBuffered) this.#congested = true
  }

  #onDrain(): void {
    if (!this.#congested) return
    this.#congested = false
    for (const stream of this.#streams.values()) {
      stream.release()
      if (this.#congested) return
    }
  }

  /** `lent`: the chunk is a view of the socket's read buffer, valid only during the call; DATA payloads are lent on to their streams. */
  #onChunk(chunk: Buffer, lent: boolean): void {
    if (!this.#closed) this.#decoder.push(chunk, lent)
  }

  /** A stream id that was opened once (it may be gone now: frames in flight for it are dropped). */
  #known(id: number): boolean {
    return this.#role === 'client' ? id < this.#nextId : id <= this.#lastPeerId
  }

  /** A whole control frame; `given` is undefined for an oversized OPEN of `size` bytes that was skipped. */
  #dispatch(type: number, id: number, given: Buffer | undefined, size: number): void {
    const server = this.#role === 'server'
    const payload = given ?? EMPTY
    switch (type as FrameTypeValue) {
      case FrameType.OPEN: {
        if (!server) return void this.#fail('OPEN sent to a client')
        if (id <= this.#lastPeerId || id > MAX_STREAM_ID) return void this.#fail(`OPEN with stream id ${id} not above ${this.#lastPeerId}`)
        this.#lastPeerId = id
        const stream = new MuxStream(this, id)
        this.#streams.set(id, stream)
        // Sent before our GOAWAY reached the peer: it retries on a new connection.
        if (this.#goingAway) stream.refuse('ERR_SHUTTING_DOWN', 'this connection takes no new streams')
        else if (this.#options.onOpen) this.#options.onOpen(stream, given, size)
        else stream.refuse('ERR_INTERNAL', 'this end accepts no streams')
        return
      }
      case FrameType.ACCEPT:
        if (server) return void this.#fail('ACCEPT sent to a server')
        if (!this.#known(id)) return void this.#fail(`ACCEPT for stream ${id}, never opened`)
        this.#streams.get(id)?.peerAccepted(payload)
        return
      case FrameType.FIN:
        if (!this.#known(id)) return void this.#fail(`FIN on stream ${id}, never opened`)
        this.#streams.get(id)?.peerFin()
        return
      case FrameType.RESET: {
        if (!this.#known(id)) return void this.#fail(`RESET on stream ${id}, never opened`)
        const stream = this.#streams.get(id)
        if (stream === undefined) return
        const problem = decodeProblem(payload)
        stream.peerReset(problem.code, problem.message)
        return
      }
      case FrameType.WINDOW:
        if (payload.length !== 4) return void this.#fail('WINDOW payload is not 4 bytes')
        if (!this.#known(id)) return void this.#fail(`WINDOW on stream ${id}, never opened`)
        this.#streams.get(id)?.peerWindow(payload.readUInt32BE(0))
        return
      case FrameType.GOAWAY: {
        if (server) return void this.#fail('GOAWAY sent to a server')
        this.#goingAway = true
        const problem = decodeProblem(payload)
        this.#options.onGoaway?.(problem.code, problem.message)
        return
      }
      case FrameType.DATA:
        return
    }
  }

  /** Ends the connection for a broken rule: GOAWAY with the code, then close. Returns false for the parser. */
  #fail(message: string): false {
    if (this.#violation !== undefined || this.#closed) return false
    this.#violation = new KeywayError('ERR_PROTOCOL_VIOLATION', `tunnel connection: ${message}`)
    this.#decoder.stop()
    const socket = this.socket
    socket.removeAllListeners('data')
    socket.pause()
    if (this.#corked) {
      this.#corked = false
      socket.uncork()
    }
    // GOAWAY is the gateway's word; a client just hangs up.
    if (this.#role === 'server') socket.end(encodeFrame(FrameType.GOAWAY, 0, encodeProblem('ERR_PROTOCOL_VIOLATION', message)), () => socket.destroy())
    else socket.destroy()
    // A peer that never reads must not hold the socket open.
    this.#clock.setTimeout(() => socket.destroy(), CLOSE_GRACE_MS)
    this.#resetAll(`protocol violation: ${message}`)
    return false
  }

  #onEnd(): void {
    // The peer will send nothing more: no stream can finish now.
    if (!this.#closed) this.#resetAll('the tunnel connection ended')
    if (!this.socket.writableEnded) this.socket.end()
  }

  #onClose(): void {
    if (this.#closed) return
    this.#closed = true
    this.#decoder.stop()
    this.#slabs?.close()
    this.#resetAll('the tunnel connection closed')
    this.#options.onClose?.(this.#violation)
  }

  #resetAll(message: string): void {
    for (const stream of [...this.#streams.values()]) stream.connectionLost(message)
    this.#streams.clear()
  }
}
