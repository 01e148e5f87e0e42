import * as net from 'node:net'
import { moveAcceptedHandle, setOnread, type Onread } from './node-internals.js'

/**
 * Reused read buffers (Node's `onread` option) for TCP and TLS sockets.
 *
 * By default Node allocates a fresh 64 KiB buffer for every read of a TCP
 * socket, and a fresh buffer for every decrypted TLS record. On a bulk
 * transfer that is tens of thousands of allocations a second, and the
 * external memory they add makes V8 collect (scavenges, and full
 * mark-compacts every ~100 ms) at a cost that grows with the heap
 * (bench/README.md, "Where bulk goes"). A socket made here reads into a
 * buffer it owns and hands each read to its sink (forward()'s session, or a
 * multiplexed connection, which lends the DATA payloads on to its streams'
 * sessions). A sink writes the chunk on at once: when the write completes
 * synchronously (the common case on a socket whose peer keeps up), the same
 * memory takes the next read. When anything still refers to the chunk on
 * return (a pending write, a stream buffering it), the sink releases the
 * buffer: the next read goes to another one, and the released one is reused
 * only once the holder says it refers to nothing (reclaimReadBuffers), or
 * never. Small reads a holder would keep are copied by the sink instead.
 *
 * Until a sink attaches (and whenever the socket's own stream buffer still
 * holds bytes), reads are copied and pushed into the socket's Readable as
 * usual, so such a socket behaves like any other for 'data' listeners, for
 * bytes that arrive before the session starts and for EOF.
 */

/** Receives the reads of a socket made by {@link readingSocket}, {@link adoptAccepted} or {@link useReadBuffer}; forward()'s session, or a multiplexed connection. */
export interface ReadSink {
  /**
   * `chunk` is a view of the source's read buffer, valid only during the
   * call. Call {@link releaseReadBuffer} on `from` if anything still refers
   * to it on return, and {@link reclaimReadBuffers} when nothing refers to
   * any chunk handed before (released buffers are reused only then).
   */
  read(from: object, chunk: Buffer): void
}

/**
 * A source that lends its reads to a {@link ReadSink} without being a socket
 * with reused buffers itself: a multiplexed stream passes on views of its
 * connection's read buffer.
 */
export interface LendingSource {
  /** Sends the source's reads to `sink` from now on. */
  setReadSink(sink: ReadSink): void
  /** The chunk just lent is still referenced: the buffer behind it must not be reused (before a reclaim, with `keep`; never, without). */
  releaseReadBuffer(keep: boolean): void
  /** The sink refers to no chunk it was lent any more. */
  reclaimReadBuffers(): void
}

/**
 * Smallest and largest read buffer. A socket holds its current buffer at all
 * times (Node keeps the next one before the read): the smallest while its
 * reads are small; after bulk data it keeps the size it grew to until a read
 * smaller than a sixteenth of it, so a socket that goes idle right after a
 * bulk transfer may hold up to the largest, and up to two reclaimed ones and
 * four released ones of that size until forward()'s idle check finds it
 * quiet ({@link trimReadBuffers}).
 */
export const MIN_READ_BUFFER = 1024
export const MAX_READ_BUFFER = 64 * 1024

/** Released buffers a socket tracks until {@link reclaimReadBuffers}; more are left to the garbage collector. */
const MAX_LENT = 4
/** Reclaimed buffers a socket keeps for its next reads. */
const MAX_SPARE = 2

/** A released buffer and the number of the read it held. */
interface Lent {
  buffer: Buffer
  read: number
}

interface ReadState {
  buffer: Buffer | undefined
  size: number
  /** Smallest buffer for this socket; 0: the size is fixed. */
  min: number
  sink: ReadSink | undefined
  /** Reads delivered so far: the number of the read being delivered. */
  reads: number
  /** The buffer of the read being delivered to the sink; undefined between reads. */
  reading: Buffer | undefined
  /** Buffers released while still referenced, oldest first. */
  lent: Lent[]
  /** Buffers free again (reclaimed), of the current size. */
  spare: Buffer[]
}

const kRead = Symbol('keyway.forward.readBuffer')

type ReadingSocket = net.Socket & { [kRead]?: ReadState }

// One function for every socket: Node calls it with `this` set to the socket.
function onRead(this: ReadingSocket, nread: number, buffer: Buffer): boolean {
  const state = this[kRead]!
  // A full read asks for a bigger buffer next time; a small one for the smallest.
  if (nread === buffer.length) {
    if (state.min !== 0 && state.size < MAX_READ_BUFFER) resize(state, Math.min(MAX_READ_BUFFER, state.size * 4))
  } else if (state.min !== 0 && state.size > state.min && nread < state.size >>> 4) {
    resize(state, state.min)
  }
  const chunk = nread === buffer.length ? buffer : buffer.subarray(0, nread)
  const sink = state.sink
  if (sink === undefined || this.readableLength > 0) {
    // No session yet, or bytes buffered before it started still to be
    // delivered first: behave like an ordinary socket.
    return this.push(Buffer.from(chunk))
  }
  state.reads++
  state.reading = buffer
  sink.read(this, chunk)
  state.reading = undefined
  return true
}

// The buffer in use (being read into now) is dropped, not reused: the
// current chunk is a view of it. Kept buffers of the old size go too.
function resize(state: ReadState, size: number): void {
  state.size = size
  state.buffer = undefined
  state.lent.length = 0
  state.spare.length = 0
}

function nextBuffer(state: ReadState): Buffer {
  return (state.buffer ??= state.spare.pop() ?? Buffer.allocUnsafeSlow(state.size))
}

/** `fixedSize`: every buffer has this size; otherwise they grow and shrink with the reads. */
function newState(fixedSize?: number): { state: ReadState; onread: Onread } {
  const state: ReadState = {
    buffer: undefined,
    size: fixedSize ?? MIN_READ_BUFFER,
    min: fixedSize === undefined ? MIN_READ_BUFFER : 0,
    sink: undefined,
    reads: 0,
    reading: undefined,
    lent: [],
    spare: [],
  }
  const onread: Onread = {
    buffer: (): Buffer => nextBuffer(state),
    callback: onRead,
  }
  return { state, onread }
}

/**
 * A new, unconnected `net.Socket` (e.g. for `connect()`) that reads into
 * reused buffers.
 */
export function readingSocket(options: Omit<net.SocketConstructorOpts, 'onread'> = {}): net.Socket {
  const { state, onread } = newState()
  const socket = new net.Socket({ ...options, onread } as net.SocketConstructorOpts) as ReadingSocket
  socket[kRead] = state
  return socket
}

/**
 * Gives an accepted plain TCP socket reused read buffers: Node offers
 * `onread` only to sockets it creates, so the accepted connection's handle
 * moves to a new `net.Socket` made with it (node-internals.ts,
 * `moveAcceptedHandle`). Only a socket a `net.Server` accepted with
 * `pauseOnConnect: true`, that has read nothing and is not reading,
 * qualifies; anything else (a TLS socket, a socket already reading, a Node
 * without the internals this relies on) is returned unchanged, so the caller
 * always gets a usable socket. The listener's connection count, and its
 * `noDelay` and `keepAlive` settings (already applied to the handle), move to
 * the new socket, so `server.close()` still waits for it.
 */
export function adoptAccepted(socket: net.Socket): net.Socket {
  if ((socket as ReadingSocket)[kRead] !== undefined) return socket
  const { state, onread } = newState()
  const adopted = moveAcceptedHandle(socket, onread) as ReadingSocket | undefined
  if (adopted === undefined) return socket
  adopted[kRead] = state
  return adopted
}

/** True when `socket` reads into reused buffers. */
export function hasReadBuffer(socket: unknown): socket is net.Socket {
  return (socket as ReadingSocket | null)?.[kRead] !== undefined
}

function isLending(source: object): source is LendingSource {
  const s = source as Partial<LendingSource>
  return typeof s.setReadSink === 'function' && typeof s.releaseReadBuffer === 'function' && typeof s.reclaimReadBuffers === 'function'
}

/** Sends the source's reads to `sink`; does nothing to a source that neither reads into reused buffers nor lends. */
export function setReadSink(source: object, sink: ReadSink): void {
  const state = (source as ReadingSocket)[kRead]
  if (state !== undefined) state.sink = sink
  else if (isLending(source)) source.setReadSink(sink)
}

/**
 * Called by a sink during a read: the chunk it was handed is still
 * referenced, so its buffer must not take the next read. With `keep` (the
 * default) the source tracks the buffer until {@link reclaimReadBuffers}
 * says the holder is done with it; a sink that will never say so (its
 * writer keeps chunks for an unknown time) passes false and the buffer is
 * left to the garbage collector.
 */
export function releaseReadBuffer(source: object, keep = true): void {
  const state = (source as ReadingSocket)[kRead]
  if (state === undefined) {
    if (isLending(source)) source.releaseReadBuffer(keep)
    return
  }
  const buffer = state.reading
  if (buffer === undefined) return
  if (state.buffer === buffer) state.buffer = undefined
  // The buffer being read is the newest lent one if it was lent already.
  const lentAlready = state.lent.at(-1)?.buffer === buffer
  if (!keep) {
    // A holder that will not tell when it is done: never reuse this buffer.
    if (lentAlready) state.lent.pop()
    return
  }
  if (lentAlready || state.lent.length >= MAX_LENT) return
  state.lent.push({ buffer, read: state.reads })
}

/**
 * Called by a sink when it refers to no chunk it was handed any more (its
 * writer holds nothing): during a read of a socket, or at any time for a
 * lending source whose own buffer is empty. The buffers released before are
 * free for the next reads. With `before`, only those released by reads numbered
 * below it ({@link readNumber}): a source shared by several holders frees
 * what the oldest remaining holder cannot refer to. The buffer of the read
 * in progress stays lent: the caller may still pass on views of it. Cheap
 * when nothing was released.
 */
export function reclaimReadBuffers(source: object, before = Infinity): void {
  const state = (source as ReadingSocket)[kRead]
  if (state === undefined) {
    if (isLending(source)) source.reclaimReadBuffers()
    return
  }
  const lent = state.lent
  if (lent.length === 0) return
  let kept = 0
  for (const entry of lent) {
    if (entry.read < before && entry.buffer !== state.reading) {
      if (state.spare.length < MAX_SPARE) state.spare.push(entry.buffer)
    } else {
      lent[kept++] = entry
    }
  }
  lent.length = kept
}

/**
 * Some holder of the buffers released from read number `from` on will not
 * say when it is done with them (a multiplexed stream closed while its
 * reader's writer still held a chunk): they are left to the garbage
 * collector, never reused.
 */
export function forgetReadBuffers(source: object, from = 0): void {
  const state = (source as ReadingSocket)[kRead]
  if (state === undefined) return
  let kept = 0
  for (const entry of state.lent) if (entry.read < from) state.lent[kept++] = entry
  state.lent.length = kept
}

/**
 * The socket has been quiet: the released and spare buffers it keeps for its
 * next bulk reads go (the one Node holds for the next read stays). Safe at
 * any time: a dropped buffer is only never reused.
 */
export function trimReadBuffers(source: object): void {
  const state = (source as ReadingSocket)[kRead]
  if (state === undefined) return
  state.lent.length = 0
  state.spare.length = 0
}

/** The number of the read being delivered (reads count from 1); 0 for a socket without reused buffers. */
export function readNumber(source: object): number {
  return (source as ReadingSocket)[kRead]?.reads ?? 0
}

/**
 * Gives an existing socket, typically a TLS socket, reused read buffers:
 * Node offers `onread` to a TLS socket only when `tls.connect` creates it,
 * never to one a `tls.Server` wraps, and TLSWrap otherwise hands over every
 * decrypted record (up to 16 KiB) in a new buffer. This sets on the socket
 * what the `onread` option would have, through Node's own keys for it,
 * and points its handle at the first buffer; from the next read on, reads
 * go as with {@link readingSocket}; with `size`, into buffers of that fixed
 * size (16 KiB suits TLS: TLSWrap reads record by record, each at most that,
 * and a short record must not shrink the buffer for the full ones that follow).
 * Returns false, and changes nothing, for
 * a socket that already reads into given buffers, a destroyed one, or a
 * Node without these internals.
 */
export function useReadBuffer(socket: net.Socket, size?: number): boolean {
  const s = socket as ReadingSocket
  if (s[kRead] !== undefined) return false
  const { state, onread } = newState(size)
  if (!setOnread(socket, onread)) return false
  s[kRead] = state
  return true
}
