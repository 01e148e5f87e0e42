import type * as tls from 'node:tls'
import { canSetTlsSession, setTlsSession } from '../read-buffer/index.js'

/** `tls.connect` options plus `allowHalfOpen`, which tls.connect honours but its types omit. */
export type TlsDialOptions = tls.ConnectionOptions & { allowHalfOpen?: boolean }

/**
 * Opens a TLS connection; `tls.connect` unless a test or another transport
 * stands in (the DialFunc pattern). Must return a socket that emits
 * `secureConnect` or `error`.
 */
export type ConnectTls = (options: TlsDialOptions) => tls.TLSSocket

/**
 * The TLS session ticket cache of tunnels: the last ticket each gateway
 * (`host:port`) issued is offered on the next tunnel to it, which skips the
 * certificate chain check and the gateway's signature (an abbreviated
 * handshake; a ticket the gateway no longer accepts falls back to a full one).
 * A gateway whose handshake failed is never offered its ticket again.
 */
export class TlsSessionCache {
  readonly #tickets = new Map<string, Buffer>()
  /** Offer tickets through TLSSocket#setSession (read-buffer/node-internals.ts) rather than tls.connect's option. */
  readonly #setSession: boolean

  /** `nodeInternals` false: tickets go through tls.connect's public `session` option only. */
  constructor(nodeInternals = true) {
    this.#setSession = nodeInternals && canSetTlsSession()
  }

  /** The last ticket of `gateway`, if any. */
  ticket(gateway: string): Buffer | undefined {
    return this.#tickets.get(gateway)
  }

  /**
   * Dials with `connectTls`, offering `ticket` in the ClientHello, and keeps
   * every ticket the connection receives as the gateway's newest (TLS 1.3
   * tickets arrive after the handshake).
   */
  connect(connectTls: ConnectTls, options: TlsDialOptions, gateway: string): tls.TLSSocket {
    const ticket = this.#tickets.get(gateway)
    // Not through options.session where possible: tls.connect() would then
    // parse the ticket twice (TLSSocket's constructor and connect() both
    // call setSession), and each parse decodes the gateway's certificate,
    // ~400 µs of CPU with OpenSSL 3. Set once before 'connect', so the
    // ClientHello offers it (what connect() itself does).
    const dial = ticket !== undefined && !this.#setSession ? { ...options, session: ticket } : options
    const socket = connectTls(dial)
    if (ticket !== undefined && this.#setSession) setTlsSession(socket, ticket)
    socket.once('session', (next: Buffer) => this.#tickets.set(gateway, next))
    return socket
  }

  /** Drops the ticket of `gateway` (its handshake failed). */
  forget(gateway: string): void {
    this.#tickets.delete(gateway)
  }

  /** Gateways with a ticket. */
  get size(): number {
    return this.#tickets.size
  }
}
