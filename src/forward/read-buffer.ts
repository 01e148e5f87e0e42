import * as net from 'node:net'

/**
 * Reused read buffers for plain TCP sockets (Node's `onread` option).
 *
 * By default Node allocates a fresh 64 KiB buffer for every read of every
 * socket. On a bulk transfer that is ~20,000 allocations a second per
 * direction, and the external memory they add makes V8 scavenge every few
 * tens of milliseconds, the costlier the bigger the heap (bench/README.md,
 * "Where bulk goes"). A socket made here reads into a buffer it owns and
 * hands each read to forward(), which writes it on at once: when the write
 * completes synchronously (the common case on a socket whose peer keeps up),
 * the same memory takes the next read. When the write is left pending, or
 * the destination may keep a reference (a multiplexed stream), the sink
 * releases the buffer and the next read gets a new one: never a copy, never
 * an overwrite of bytes still queued.
 *
 * Until forward() attaches (and whenever the socket's own stream buffer still
 * holds bytes), reads are copied and pushed into the socket's Readable as
 * usual, so such a socket behaves like any other for 'data' listeners, for
 * bytes that arrive before the session starts and for EOF.
 */

/** Receives the reads of a socket made by {@link readingSocket} or {@link adoptAccepted}; forward()'s session. */
export interface ReadSink {
  /**
   * `chunk` is a view of the socket's read buffer, valid only during the
   * call. Call {@link releaseReadBuffer} if anything still refers to it on
   * return.
   */
  read(from: net.Socket, chunk: Buffer): void
}

/**
 * Smallest and largest read buffer. A socket holds one buffer at all times
 * (Node keeps the next one before the read): the smallest while its reads are
 * small; after bulk data it keeps the size it grew to until a read smaller
 * than a sixteenth of it, so a socket that goes idle right after a bulk
 * transfer may hold up to the largest.
 */
export const MIN_READ_BUFFER = 1024
export const MAX_READ_BUFFER = 64 * 1024

interface ReadState {
  buffer: Buffer | undefined
  size: number
  sink: ReadSink | undefined
}

const kRead = Symbol('keyway.forward.readBuffer')

type ReadingSocket = net.Socket & { [kRead]?: ReadState }

// One function for every socket: Node calls it with `this` set to the socket.
function onRead(this: ReadingSocket, nread: number, buffer: Buffer): boolean {
  const state = this[kRead]!
  // A full read asks for a bigger buffer next time; a small one for the smallest.
  if (nread === buffer.length) {
    if (state.size < MAX_READ_BUFFER) {
      state.size = Math.min(MAX_READ_BUFFER, state.size * 4)
      state.buffer = undefined
    }
  } else if (state.size > MIN_READ_BUFFER && nread < state.size >>> 4) {
    state.size = MIN_READ_BUFFER
    state.buffer = undefined
  }
  const chunk = nread === buffer.length ? buffer : buffer.subarray(0, nread)
  const sink = state.sink
  if (sink === undefined || this.readableLength > 0) {
    // No session yet, or bytes buffered before it started still to be
    // delivered first: behave like an ordinary socket.
    return this.push(Buffer.from(chunk))
  }
  sink.read(this, chunk)
  return true
}

function newState(): { state: ReadState; onread: net.OnReadOpts } {
  const state: ReadState = { buffer: undefined, size: MIN_READ_BUFFER, sink: undefined }
  const onread = {
    buffer: (): Buffer => (state.buffer ??= Buffer.allocUnsafeSlow(state.size)),
    callback: onRead as (this: unknown, bytesWritten: number, buf: Uint8Array) => boolean,
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

type ServerSocket = net.Socket & {
  _handle?: { readStart?: unknown; reading?: boolean } | null
  _server?: { noDelay?: boolean; keepAlive?: boolean; keepAliveInitialDelay?: number } | null
  server?: unknown
}

/**
 * Gives an accepted plain TCP socket reused read buffers: Node offers
 * `onread` only to sockets it creates, so the accepted connection's handle
 * moves to a new `net.Socket` made with it. Only a socket a `net.Server`
 * accepted with `pauseOnConnect: true`, that has read nothing and is not
 * reading, qualifies; anything else (a TLS socket, a socket already reading,
 * a Node without the internals this relies on) is returned unchanged, so the
 * caller always gets a usable socket. The listener's connection count, and
 * its `noDelay` and `keepAlive` settings (already applied to the handle),
 * move to the new socket, so `server.close()` still waits for it.
 */
export function adoptAccepted(socket: net.Socket): net.Socket {
  const s = socket as ServerSocket
  const handle = s._handle
  const server = s._server
  if (
    socket.constructor !== net.Socket ||
    handle == null ||
    server == null ||
    typeof handle.readStart !== 'function' ||
    handle.reading === true ||
    socket.connecting ||
    !socket.isPaused() ||
    socket.bytesRead > 0 ||
    socket.readableLength > 0 ||
    socket.destroyed ||
    (socket as ReadingSocket)[kRead] !== undefined
  ) {
    return socket
  }
  const { state, onread } = newState()
  let adopted: ServerSocket & ReadingSocket
  try {
    adopted = new net.Socket({
      handle,
      allowHalfOpen: socket.allowHalfOpen,
      readable: true,
      writable: true,
      pauseOnCreate: true,
      readableHighWaterMark: socket.readableHighWaterMark,
      writableHighWaterMark: socket.writableHighWaterMark,
      noDelay: server.noDelay === true,
      keepAlive: server.keepAlive === true,
      keepAliveInitialDelay: server.keepAliveInitialDelay,
      onread,
    } as net.SocketConstructorOpts) as ServerSocket & ReadingSocket
  } catch {
    // A Node whose Socket no longer takes a handle this way: keep the socket Node made.
    return socket
  }
  adopted[kRead] = state
  adopted._server = server
  adopted.server = s.server
  s._server = null
  s.server = null
  s._handle = null
  socket.destroy()
  return adopted
}

/** True when `socket` reads into reused buffers. */
export function hasReadBuffer(socket: unknown): socket is net.Socket {
  return (socket as ReadingSocket | null)?.[kRead] !== undefined
}

/** Sends the socket's reads to `sink`; does nothing to a socket without reused buffers. */
export function setReadSink(socket: object, sink: ReadSink): void {
  const state = (socket as ReadingSocket)[kRead]
  if (state !== undefined) state.sink = sink
}

/** The chunk just handed to the sink is still referenced: the next read gets a new buffer. */
export function releaseReadBuffer(socket: net.Socket): void {
  ;(socket as ReadingSocket)[kRead]!.buffer = undefined
}
