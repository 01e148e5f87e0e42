import type * as net from 'node:net'
import { KeywayError } from '../errors.js'
import { readingSocket } from '../read-buffer/index.js'

/**
 * Opens a connection to an upstream; injected wherever something dials so
 * that tests and other transports can stand in. Resolves with a connected
 * socket that allows half-open connections, or rejects with a KeywayError
 * (`ERR_UPSTREAM_TIMEOUT`, `ERR_UPSTREAM_UNREACHABLE`).
 */
export type DialFunc = (host: string, port: number, opts: { timeoutMs: number }) => Promise<net.Socket>

/** Options of {@link dialTcp}. */
export interface DialOptions {
  /** Give up with `ERR_UPSTREAM_TIMEOUT` if the connection is not established within this long; 0 waits for the kernel. */
  timeoutMs: number
  /** Aborting destroys the half-open attempt and rejects with `signal.reason`. */
  signal?: AbortSignal
}

// Kept on a dialled socket until the caller attaches its own listener (see dialTcp).
function ignoreError(): void {}

/**
 * Connects to `host:port` over TCP with `allowHalfOpen: true` and Nagle off,
 * ready for {@link forward}: the socket reads into reused buffers
 * (read-buffer/read-buffer.ts), which forward() uses and every other reader never sees.
 *
 * - Not connected within `timeoutMs` (SYN unanswered, accept queue full), or
 *   the kernel's own ETIMEDOUT: `KeywayError('ERR_UPSTREAM_TIMEOUT')`.
 * - Refused, reset, unreachable, name not resolved:
 *   `KeywayError('ERR_UPSTREAM_UNREACHABLE')` with the system error as `cause`
 *   and `detail: { host, port, code }`.
 *
 * On failure the socket is destroyed and every listener this call added is
 * removed. On success the socket carries exactly one listener: a no-op
 * 'error' listener, because the caller only sees the socket a turn later and
 * an RST in between must not crash the process. Such an error leaves the
 * socket destroyed with the error in `socket.errored`, which forward()
 * reports as a reset.
 */
export function dialTcp(host: string, port: number, options: DialOptions): Promise<net.Socket> {
  const { timeoutMs, signal } = options
  if (signal?.aborted) return Promise.reject(signal.reason)
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = readingSocket({ allowHalfOpen: true })

    const cleanup = (): void => {
      socket.removeListener('connect', onConnect)
      socket.removeListener('error', onFail)
      socket.removeListener('timeout', onTimeout)
      signal?.removeEventListener('abort', onAbort)
      socket.setTimeout(0)
    }
    const fail = (err: unknown): void => {
      cleanup()
      // Swallow anything the dying handle still emits.
      socket.on('error', ignoreError)
      socket.destroy()
      reject(err)
    }
    function onConnect(): void {
      cleanup()
      socket.on('error', ignoreError)
      resolve(socket)
    }
    function onFail(err: NodeJS.ErrnoException): void {
      fail(toDialError(host, port, timeoutMs, err))
    }
    function onTimeout(): void {
      fail(
        new KeywayError('ERR_UPSTREAM_TIMEOUT', `upstream ${host}:${port} did not accept the connection within ${timeoutMs} ms`, {
          detail: { host, port, timeoutMs },
        }),
      )
    }
    function onAbort(): void {
      fail(signal!.reason)
    }

    socket.once('connect', onConnect)
    socket.once('error', onFail)
    // The socket's own inactivity timer: nothing refreshes it while connecting,
    // and it costs no extra timer object.
    socket.setTimeout(timeoutMs)
    socket.once('timeout', onTimeout)
    signal?.addEventListener('abort', onAbort, { once: true })
    // A connect() option noDelay is ignored on an existing socket; this is not.
    socket.setNoDelay(true)
    socket.connect({ host, port })
  })
}

function toDialError(host: string, port: number, timeoutMs: number, err: NodeJS.ErrnoException): KeywayError {
  const code = typeof err.code === 'string' ? err.code : 'ERR_UNKNOWN'
  const detail = { host, port, code }
  if (code === 'ETIMEDOUT' || code === 'ERR_SOCKET_CONNECTION_TIMEOUT') {
    return new KeywayError('ERR_UPSTREAM_TIMEOUT', `upstream ${host}:${port} did not accept the connection within ${timeoutMs} ms (${code})`, {
      cause: err,
      detail,
    })
  }
  return new KeywayError('ERR_UPSTREAM_UNREACHABLE', `upstream ${host}:${port} is unreachable (${code})`, { cause: err, detail })
}
