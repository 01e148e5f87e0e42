import type * as tls from 'node:tls'
import type { Clock } from '../clock.js'
import { isErrorCode, KeywayError } from '../errors.js'
import type { ForwardEndpoint } from '../forward/index.js'
import { ReplyParser } from '../protocol/index.js'
import { Unreachable } from './failover.js'

/** An open tunnel, from {@link GatewayClient.openTunnel}. */
export interface Tunnel {
  /** Paused TLS socket (allowHalfOpen) or multiplexed stream, ready for forward(); a no-op 'error' listener stays attached. */
  readonly socket: ForwardEndpoint
  /** Bytes the gateway sent after its reply: deliver them to the client first. */
  readonly rest: Buffer
  /** Session id from the gateway's reply (for log correlation). */
  readonly session: string
  /** The gateway that answered, `host:port`. */
  readonly gateway: string
}

/** A gateway that answered keyway/1 is offered keyway/2 again after this long (it may have been upgraded). */
export const V1_RECHECK_MS = 60_000

/**
 * Gateways that answered ALPN `keyway/1` to an offer of `keyway/2`: they get
 * a TLS connection per tunnel until {@link V1_RECHECK_MS} has passed, then
 * are offered `keyway/2` again (a rolling upgrade).
 */
export class V1OnlyGateways {
  readonly #until = new Map<string, number>()
  readonly #clock: Clock

  constructor(clock: Clock) {
    this.#clock = clock
  }

  /** Remembers that `gateway` (`host:port`) answered keyway/1 only. */
  remember(gateway: string): void {
    this.#until.set(gateway, this.#clock.now() + V1_RECHECK_MS)
  }

  /** True while `gateway` is known to answer keyway/1 only. */
  has(gateway: string): boolean {
    const until = this.#until.get(gateway)
    if (until === undefined) return false
    if (this.#clock.now() < until) return true
    this.#until.delete(gateway)
    return false
  }
}

/**
 * The keyway/1 tunnel handshake on a connected TLS socket: sends the hello,
 * reads the reply. Resolves with the paused socket and any bytes after the
 * reply; rejects with the gateway's code when it refuses (`detail.refused`),
 * `ERR_HANDSHAKE_TIMEOUT` after `timeoutMs` (0: no limit), and
 * {@link Unreachable} when the gateway hangs up without a reply.
 */
export function handshakeV1(socket: tls.TLSSocket, gateway: string, resource: string, hello: Buffer, timeoutMs: number, clock: Clock): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const parser = new ReplyParser()
    let settled = false
    const timer =
      timeoutMs > 0
        ? clock.setTimeout(
            () =>
              fail(
                new KeywayError('ERR_HANDSHAKE_TIMEOUT', `gateway ${gateway} did not answer the tunnel request for "${resource}" within ${timeoutMs} ms`, {
                  detail: { gateway, resource },
                }),
              ),
            timeoutMs,
          )
        : undefined
    const cleanup = (): void => {
      settled = true
      if (timer !== undefined) clock.clearTimeout(timer)
      socket.removeListener('data', onData)
      socket.removeListener('end', onClosed)
      socket.removeListener('close', onClosed)
      socket.removeListener('error', onError)
    }
    const fail = (err: Error): void => {
      if (settled) return
      cleanup()
      socket.destroy()
      reject(err)
    }
    const onData = (chunk: Buffer): void => {
      const r = parser.push(chunk)
      if (r.state === 'need') return
      if (r.state === 'error') {
        fail(new KeywayError(r.error.code, `gateway ${gateway} sent a malformed reply: ${r.error.message}`, { detail: { gateway, resource } }))
        return
      }
      const reply = r.value
      if (!reply.ok) {
        const code = isErrorCode(reply.code) ? reply.code : undefined
        const message = code ? reply.message : `${String(reply.code)}: ${reply.message}`
        fail(new KeywayError(code ?? 'ERR_INTERNAL', message, { detail: { gateway, resource, refused: true } }))
        return
      }
      cleanup()
      // Paused so that nothing after the reply is lost before forward() attaches.
      socket.pause()
      resolve({ socket, rest: Buffer.from(r.rest), session: reply.session, gateway })
    }
    // A gateway that hangs up without a reply could not serve us: try the next.
    const onClosed = (): void => fail(new Unreachable('the gateway closed the tunnel before replying'))
    const onError = (err: NodeJS.ErrnoException): void => fail(new Unreachable(`${err.code ?? 'error'}: ${err.message}`))
    socket.on('data', onData)
    socket.once('end', onClosed)
    socket.once('close', onClosed)
    socket.on('error', onError)
    socket.write(hello)
  })
}
