import type { Socket } from 'node:net'
import type { Clock } from '../clock.js'
import { formatHostPort, ProxyHeaderParser, type AddressList } from '../net/index.js'
import type { Logger, RefusalAudit } from '../observe/index.js'
import type { Peer } from './api-guard.js'
import type { GatewayMetrics } from './metrics.js'
import { socketClient } from './tunnel.js'

/** What a {@link ProxyAcceptor} needs. */
export interface ProxyAcceptorOptions {
  /** Load balancers that must send the header; nobody else may. */
  readonly from: AddressList
  /** The header must be complete within this (the gateway's `handshakeTimeout`). */
  readonly timeoutMs: number
  readonly clock: Clock
  readonly metrics: GatewayMetrics
  readonly audit: RefusalAudit
  readonly logger: Logger
  /** Takes a connection on to TLS, with any bytes after the header unshifted onto it. */
  readonly handOff: (raw: Socket) => void
  /** True once the gateway stops accepting. */
  readonly closing: () => boolean
}

/**
 * The gateway listener's first step: connections from configured load
 * balancers must start with a PROXY protocol v2 header (strict, bounded in
 * size and time), which names the real client; every other connection goes
 * straight to TLS, where a PROXY header fails the handshake.
 */
export class ProxyAcceptor {
  readonly #o: ProxyAcceptorOptions
  /** Real clients of connections that came through a balancer, by the balancer side's `host:port`. */
  readonly #proxied = new Map<string, Peer>()

  constructor(options: ProxyAcceptorOptions) {
    this.#o = options
  }

  /** The real client of a socket: the PROXY header's source when a balancer sent one, else the socket's peer. */
  peerOf(socket: Socket): Peer {
    const seen = socketClient(socket)
    return this.#proxied.get(seen) ?? { host: socket.remoteAddress ?? '?', text: seen }
  }

  /** A new TCP connection from the listener. */
  accept(raw: Socket): void {
    const { from, clock, timeoutMs, metrics, audit, logger, handOff } = this.#o
    if (!from.has(raw.remoteAddress ?? '')) return handOff(raw)
    const balancer = socketClient(raw)
    const parser = new ProxyHeaderParser()
    let done = false
    const finish = (): void => {
      done = true
      clock.clearTimeout(timer)
      raw.off('data', onData)
    }
    const fail = (message: string): void => {
      if (done) return
      finish()
      metrics.proxyHeaderErrors.inc()
      metrics.sessionsTotal.inc({ result: 'handshake_error' })
      audit.refused({ event: 'proxy_header_refused', code: 'ERR_PROXY_HEADER', client: balancer }, message)
      raw.destroy()
    }
    const onData = (chunk: Buffer): void => {
      const r = parser.push(chunk)
      if (r.state === 'need') return
      if (r.state === 'error') return fail(r.message)
      finish()
      raw.pause()
      if (r.rest.length > 0) raw.unshift(r.rest)
      if (r.source !== undefined) {
        this.#proxied.set(balancer, { host: r.source.host, text: formatHostPort(r.source) })
        raw.once('close', () => this.#proxied.delete(balancer))
      }
      // tls.Server feeds what the socket already buffered (the unshifted rest) to the handshake.
      handOff(raw)
    }
    const timer = clock.setTimeout(() => fail(`no complete PROXY header within ${timeoutMs} ms`), timeoutMs)
    raw.on('data', onData)
    raw.on('error', (err: NodeJS.ErrnoException) => logger.debug({ event: 'tunnel_socket_error', client: balancer, code: err.code }, err.message))
    raw.once('close', () => {
      if (done) return
      finish()
      metrics.sessionsTotal.inc({ result: 'handshake_error' })
    })
    if (this.#o.closing()) fail('the gateway is shutting down')
  }
}
