import * as net from 'node:net'
import * as tls from 'node:tls'

const tlsSocketPrototype = tls.TLSSocket.prototype

/**
 * The one place Keyway touches Node's private APIs. Everything here is a
 * speed-up with a public fallback; nothing else in `src/` reads an
 * underscore property or a private symbol of a Node object.
 *
 * | function | private API | fallback (and what the switch `forward.nodeInternals: off` gives) |
 * |---|---|---|
 * | {@link moveAcceptedHandle} | `socket._handle`, `_server`, `server`, `handle.readStart`, `handle.reading`, `new net.Socket({ handle })` | the accepted socket as Node made it: a new 64 KiB buffer per read |
 * | {@link setOnread} | net.js symbols `kBuffer`, `kBufferGen`, `kBufferCb` (found by description and value), `handle.useUserBuffer` | a new buffer per read (per decrypted TLS record) |
 * | {@link setTlsSession} | `TLSSocket#setSession` (undocumented; tls.connect() uses it) | the public `session` option of tls.connect (parses the ticket twice, ~400 µs more CPU per resumed connection) |
 * | {@link noDelayFlag} | net.js symbol `kSetNoDelay` | undefined (tests only) |
 *
 * Verified on Node 20.20.2, 24.22.3 and 26.12.1 by the canaries in
 * test/read-buffer/ (byte-for-byte transfers with held-back readers,
 * half-close answers, listener close and connection counts after adoption)
 * and at every start by {@link checkFastPath} (self-test.ts). A Node that
 * renames one of these makes the function return its "not done" value, and
 * the caller takes the public path; a Node that keeps the names and changes
 * the behaviour is what the canaries and the start-up self-test are for.
 */

/** What Node's `onread` option holds: the next buffer, and the callback for each read into it. */
export interface Onread {
  buffer: () => Buffer
  callback: (this: net.Socket, nread: number, buffer: Buffer) => boolean
}

type AcceptedSocket = net.Socket & {
  _handle?: { readStart?: unknown; reading?: boolean } | null
  _server?: { noDelay?: boolean; keepAlive?: boolean; keepAliveInitialDelay?: number } | null
  server?: unknown
}

/**
 * Moves the handle of a socket a `net.Server` accepted with `pauseOnConnect`
 * (not reading, nothing read) to a new `net.Socket` made with `onread`, and
 * destroys the old object without closing the handle. The listener's
 * connection count and its `noDelay`/`keepAlive` settings move with it, so
 * `server.close()` still waits for the new socket. Returns undefined, with
 * nothing changed, when the socket does not qualify or this Node keeps its
 * sockets differently.
 */
export function moveAcceptedHandle(socket: net.Socket, onread: Onread): net.Socket | undefined {
  const s = socket as AcceptedSocket
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
    socket.destroyed
  ) {
    return undefined
  }
  let adopted: AcceptedSocket
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
    } as unknown as net.SocketConstructorOpts) as AcceptedSocket
  } catch {
    // A Node whose Socket no longer takes a handle this way: keep the socket Node made.
    return undefined
  }
  adopted._server = server
  adopted.server = s.server
  s._server = null
  s.server = null
  s._handle = null
  socket.destroy()
  return adopted
}

/** Node's private keys of the `onread` option on a socket (net.js `kBuffer`, `kBufferGen`, `kBufferCb`). */
interface OnreadKeys {
  buffer: symbol
  generator: symbol
  callback: symbol
}

// Found on a probe socket made with `onread`, by their descriptions and
// values; null when this Node keeps them differently. Looked up per call:
// it costs a socket object, and is called once per long-lived connection.
function findOnreadKeys(): OnreadKeys | null {
  try {
    const generator = (): Buffer => Buffer.alloc(1)
    const callback = (): boolean => true
    const probe = new net.Socket({ onread: { buffer: generator, callback } } as net.SocketConstructorOpts) as net.Socket & Record<symbol, unknown>
    const own = Object.getOwnPropertySymbols(probe)
    const by = (description: string, value: unknown): symbol | undefined => own.find((k) => k.description === description && probe[k] === value)
    const keys = { buffer: by('kBuffer', true), generator: by('kBufferGen', generator), callback: by('kBufferCb', callback) }
    probe.destroy()
    if (keys.buffer !== undefined && keys.generator !== undefined && keys.callback !== undefined) return keys as OnreadKeys
  } catch {
    // A Node whose sockets take no onread.
  }
  return null
}

/**
 * Sets on an existing socket (typically a TLS socket a `tls.Server` wrapped,
 * to which Node offers no `onread`) what the `onread` option would have, and
 * points its handle at `onread.buffer()`'s first buffer; reads from the next
 * one on go to `onread.callback`. Returns false, with nothing changed, for a
 * socket that already reads into given buffers, a destroyed one, or a Node
 * without these internals.
 */
export function setOnread(socket: net.Socket, onread: Onread): boolean {
  const s = socket as net.Socket & Record<symbol, unknown> & { _handle?: { useUserBuffer?: unknown } | null }
  const handle = s._handle
  if (socket.destroyed || handle == null || typeof handle.useUserBuffer !== 'function') return false
  const keys = findOnreadKeys()
  if (keys === null || s[keys.buffer]) return false
  const first = onread.buffer()
  // Throws only on a handle that is no stream (then nothing was changed).
  try {
    ;(handle.useUserBuffer as (buffer: Uint8Array) => void).call(handle, first)
  } catch {
    return false
  }
  s[keys.generator] = onread.buffer
  s[keys.callback] = onread.callback
  s[keys.buffer] = first
  return true
}

type SessionSettable = tls.TLSSocket & { setSession?: (session: Buffer) => void }

/**
 * Offers `session` (a TLS ticket) on a client socket before its handshake
 * starts, as tls.connect() does with its `session` option but parsing the
 * ticket once. False when this Node has no `TLSSocket#setSession`: pass the
 * `session` option to tls.connect() instead.
 */
export function setTlsSession(socket: tls.TLSSocket, session: Buffer): boolean {
  const s = socket as SessionSettable
  if (typeof s.setSession !== 'function') return false
  s.setSession(session)
  return true
}

/** True when {@link setTlsSession} works on this Node (decide before tls.connect(), whether to pass its `session` option instead). */
export function canSetTlsSession(): boolean {
  return typeof (tlsSocketPrototype as SessionSettable).setSession === 'function'
}

/** Node's own record of `setNoDelay(true)` on a socket (net.js `kSetNoDelay`); undefined where this Node keeps none. For tests. */
export function noDelayFlag(socket: net.Socket): boolean | undefined {
  const key = Object.getOwnPropertySymbols(socket).find((k) => k.description === 'kSetNoDelay')
  return key === undefined ? undefined : (socket as unknown as Record<symbol, unknown>)[key] === true
}
