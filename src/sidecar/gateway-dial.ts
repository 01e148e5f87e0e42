import { isIP } from 'node:net'
import * as tls from 'node:tls'
import type { Clock } from '../clock.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { ALPN_HTTP } from '../protocol/index.js'
import { Unreachable } from './failover.js'
import type { ConnectTls, TlsDialOptions, TlsSessionCache } from './session-cache.js'

/** Options of {@link GatewayDialer}. */
export interface GatewayDialerOptions {
  /** PEM text of the CA that signs the gateways' certificates. */
  ca: string | Buffer
  /** Name to verify on the gateway certificate; undefined: the gateway host. */
  servername: string | undefined
  connectTls: ConnectTls
  clock: Clock
  /** Tickets for tunnels; undefined turns session resumption off. */
  sessions: TlsSessionCache | undefined
}

/** Keeps an ended socket's late errors from crashing the process. */
export function ignoreError(): void {}

/**
 * TLS connections to gateways, verified against the configured CA and the
 * gateway's name, with the ALPN asked for. Tunnels share one secure context
 * (tls.connect would otherwise parse the CA per connection) and resume TLS
 * sessions through the {@link TlsSessionCache}; API connections do neither.
 * Every failure is {@link Unreachable}.
 */
export class GatewayDialer {
  readonly #ca: string | Buffer
  readonly #servername: string | undefined
  readonly #connectTls: ConnectTls
  readonly #clock: Clock
  readonly #sessions: TlsSessionCache | undefined
  readonly #tunnelContext: tls.SecureContext

  constructor(options: GatewayDialerOptions) {
    this.#ca = options.ca
    this.#servername = options.servername
    this.#connectTls = options.connectTls
    this.#clock = options.clock
    this.#sessions = options.sessions
    this.#tunnelContext = tls.createSecureContext({ ca: this.#ca, minVersion: 'TLSv1.2' })
  }

  /** The TLS options that reach and verify `gw` (host, port, CA, server name). */
  tlsOptions(gw: HostPort): tls.ConnectionOptions {
    // SNI must not carry an IP address (RFC 6066); the certificate check then
    // falls back to the host, which needs an IP subjectAltName.
    const servername = this.#servername ?? (isIP(gw.host) === 0 ? gw.host : undefined)
    // Explicit, so that NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment cannot turn the checks off.
    const options: tls.ConnectionOptions = {
      host: gw.host,
      port: gw.port,
      ca: this.#ca,
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      checkServerIdentity: tls.checkServerIdentity,
    }
    if (servername !== undefined) options.servername = servername
    return options
  }

  /**
   * A verified TLS connection to `gw` that agreed to one of `alpns`, within
   * `timeoutMs` (0: no limit); rejects with {@link Unreachable}.
   */
  connect(gw: HostPort, alpns: readonly string[], timeoutMs: number): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      let socket: tls.TLSSocket
      const sessions = alpns.includes(ALPN_HTTP) ? undefined : this.#sessions
      const key = sessions ? formatHostPort(gw) : ''
      try {
        const options: TlsDialOptions = { ...this.tlsOptions(gw), ALPNProtocols: [...alpns], allowHalfOpen: true }
        if (!alpns.includes(ALPN_HTTP)) options.secureContext = this.#tunnelContext
        socket = sessions ? sessions.connect(this.#connectTls, options, key) : this.#connectTls(options)
      } catch (err) {
        reject(new Unreachable((err as Error).message))
        return
      }
      const timer = timeoutMs > 0 ? this.#clock.setTimeout(() => fail(new Error(`no TLS connection within ${timeoutMs} ms`)), timeoutMs) : undefined
      const clock = this.#clock
      const cleanup = (): void => {
        if (timer !== undefined) clock.clearTimeout(timer)
        socket.removeListener('secureConnect', onSecure)
        socket.removeListener('error', fail)
        socket.removeListener('close', onClose)
      }
      function fail(err: Error): void {
        cleanup()
        // Never offer a ticket again to a gateway whose handshake just failed.
        sessions?.forget(key)
        socket.on('error', ignoreError)
        socket.destroy()
        reject(new Unreachable((err as NodeJS.ErrnoException).code ? `${(err as NodeJS.ErrnoException).code}: ${err.message}` : err.message))
      }
      function onClose(): void {
        fail(new Error('connection closed during the TLS handshake'))
      }
      function onSecure(): void {
        if (typeof socket.alpnProtocol !== 'string' || !alpns.includes(socket.alpnProtocol)) {
          fail(new Error(`the gateway did not agree to ALPN ${alpns.join(' or ')} (got ${socket.alpnProtocol || 'none'})`))
          return
        }
        cleanup()
        socket.on('error', ignoreError)
        resolve(socket)
      }
      socket.once('secureConnect', onSecure)
      socket.once('error', fail)
      socket.once('close', onClose)
    })
  }
}
