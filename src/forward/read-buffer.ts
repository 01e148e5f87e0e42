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

/** Receives the reads of a socket made by {@link readingSocket}, {@link adoptAccepted} or {@link useReadBuffer}; forward()'s session, or a multiplexed connection. */
export interface ReadSink {
  /**
   * `chunk` is a view of the source's read buffer, valid only during the
   * call. Call {@link releaseReadBuffer} on `from` if anything still refers
   * to it on return.
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
  /** The chunk just lent is still referenced: the buffer behind it must not be reused. */
  releaseReadBuffer(): void
  /** The sink refers to no chunk it was lent any more. */
  reclaimReadBuffers(): void
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

/** Buffers a socket keeps for reuse: lent ones awaiting {@link reclaimReadBuffers}, and spare ones. */
const MAX_KEPT = 4

interface ReadState {
  buffer: Buffer | undefined
  size: number
  /** Smallest buffer for this socket; 0: the size is fixed. */
  min: number
  sink: ReadSink | undefined
  /** Buffers released while still referenced by the sink's writer, in the order lent. */
  lent: Buffer[]
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
  sink.read(this, chunk)
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
function newState(fixedSize?: number): { state: ReadState; onread: net.OnReadOpts } {
  const state: ReadState = {
    buffer: undefined,
    size: fixedSize ?? MIN_READ_BUFFER,
    min: fixedSize === undefined ? MIN_READ_BUFFER : 0,
    sink: undefined,
    lent: [],
    spare: [],
  }
  const onread = {
    buffer: (): Buffer => nextBuffer(state),
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
 * The chunk just handed to the sink is still referenced: the next read gets
 * another buffer. The source keeps the released one (a few at most) until
 * {@link reclaimReadBuffers}.
 */
export function releaseReadBuffer(source: object): void {
  const state = (source as ReadingSocket)[kRead]
  if (state !== undefined) {
    const buffer = state.buffer
    if (buffer === undefined) return
    if (state.lent.length < MAX_KEPT) state.lent.push(buffer)
    state.buffer = undefined
  } else if (isLending(source)) source.releaseReadBuffer()
}

/**
 * The sink refers to no chunk it was handed any more (its writer holds
 * nothing): the buffers released since the last call are free for the next
 * reads. Cheap when nothing was released.
 */
export function reclaimReadBuffers(source: object): void {
  const state = (source as ReadingSocket)[kRead]
  if (state === undefined) {
    if (isLending(source)) source.reclaimReadBuffers()
    return
  }
  if (state.lent.length === 0) return
  for (const buffer of state.lent) if (state.spare.length < MAX_KEPT) state.spare.push(buffer)
  state.lent.length = 0
}

/**
 * Some holder of the buffers released so far will not say when it is done
 * with them (a multiplexed stream closed while its writer still held a
 * chunk): they are left to the garbage collector, never reused.
 */
export function forgetReadBuffers(source: object): void {
  const state = (source as ReadingSocket)[kRead]
  if (state !== undefined) state.lent.length = 0
}

/** Node's private keys of the `onread` option on a socket (net.js `kBuffer`, `kBufferGen`, `kBufferCb`). */
interface OnreadKeys {
  buffer: symbol
  generator: symbol
  callback: symbol
}

let onreadKeys: OnreadKeys | null | undefined

// Found once on a probe socket made with `onread`, by their descriptions and
// values; null when this Node keeps them differently.
function findOnreadKeys(): OnreadKeys | null {
  if (onreadKeys !== undefined) return onreadKeys
  onreadKeys = null
  try {
    const generator = (): Buffer => Buffer.alloc(1)
    const callback = (): boolean => true
    const probe = new net.Socket({ onread: { buffer: generator, callback } } as net.SocketConstructorOpts) as net.Socket & Record<symbol, unknown>
    const own = Object.getOwnPropertySymbols(probe)
    const by = (description: string, value: unknown): symbol | undefined => own.find((k) => k.description === description && probe[k] === value)
    const keys = { buffer: by('kBuffer', true), generator: by('kBufferGen', generator), callback: by('kBufferCb', callback) }
    probe.destroy()
    if (keys.buffer !== undefined && keys.generator !== undefined && keys.callback !== undefined) onreadKeys = keys as OnreadKeys
  } catch {
    // A Node whose sockets take no onread: no reused buffers for TLS.
  }
  return onreadKeys
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
  const s = socket as ReadingSocket & Record<symbol, unknown> & { _handle?: { useUserBuffer?: unknown } | null }
  const keys = findOnreadKeys()
  const handle = s._handle
  if (keys === null || s[kRead] !== undefined || s[keys.buffer] || socket.destroyed || handle == null || typeof handle.useUserBuffer !== 'function') return false
  const { state, onread } = newState(size)
  const generate = onread.buffer as () => Buffer
  const first = generate()
  try {
    ;(handle.useUserBuffer as (buffer: Uint8Array) => void).call(handle, first)
  } catch {
    return false
  }
  s[keys.generator] = generate
  s[keys.callback] = onread.callback
  s[keys.buffer] = first
  s[kRead] = state
  return true
}

