import type * as tls from 'node:tls'
import type { Logger } from 'pino'
import type { Clock } from '../clock.js'
import { isErrorCode, KeywayError } from '../errors.js'
import { ALPN_MUX, MuxConnection, type MuxStream } from '../mux/index.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { ALPN_TUNNEL } from '../protocol/index.js'
import { Unreachable } from './failover.js'
import { ignoreError, type GatewayDialer } from './gateway-dial.js'
import { handshakeV1, type Tunnel, type V1OnlyGateways } from './tunnel-v1.js'

/** Options of {@link MuxPool}. */
export interface MuxPoolOptions {
  dialer: GatewayDialer
  /** Where a gateway that answers keyway/1 only is remembered. */
  v1Only: V1OnlyGateways
  clock: Clock
  logger?: Logger | undefined
  /** Multiplexed connections read into reused buffers (Node's internals); default true. */
  reuseReadBuffers?: boolean
}

const EMPTY = Buffer.alloc(0)
/** TCP keepalive on multiplexed connections, so a vanished gateway fails its streams. */
const MUX_KEEPALIVE_MS = 30_000

/**
 * The pool of multiplexed connections (ALPN `keyway/2`): at most one per
 * gateway taking new streams, shared by concurrent callers; a tunnel is a
 * stream of it, one frame round trip instead of a TLS handshake. A connection
 * that closes or drains (GOAWAY) leaves the pool; draining ones stay open for
 * their live streams until {@link MuxPool.close}. A gateway that answers
 * `keyway/1` to the offer is remembered in {@link V1OnlyGateways} and the
 * caller gets a keyway/1 tunnel on that connection.
 */
export class MuxPool {
  readonly #dialer: GatewayDialer
  readonly #v1Only: V1OnlyGateways
  readonly #clock: Clock
  readonly #logger: Logger | undefined
  readonly #reuseReadBuffers: boolean
  /** The multiplexed connection to each gateway (`host:port`), while it takes new streams. */
  readonly #muxes = new Map<string, MuxConnection>()
  /** Every multiplexed connection still open, draining ones (after GOAWAY) included: close() ends them all. */
  readonly #openMuxes = new Set<MuxConnection>()
  readonly #pending = new Map<string, Promise<MuxConnection | tls.TLSSocket>>()
  /** Bumped by close(): a multiplexed connection that completes afterwards is not kept. */
  #generation = 0

  constructor(options: MuxPoolOptions) {
    this.#dialer = options.dialer
    this.#v1Only = options.v1Only
    this.#clock = options.clock
    this.#logger = options.logger
    this.#reuseReadBuffers = options.reuseReadBuffers ?? true
  }

  /** Connections taking new streams (0 or 1 per gateway). */
  get size(): number {
    return this.#muxes.size
  }

  /**
   * Opens a tunnel to `resource` on `gw`'s multiplexed connection (dialled
   * when there is none). Rejects like {@link GatewayClient.openTunnel}, with
   * {@link Unreachable} when the gateway cannot serve.
   */
  async open(gw: HostPort, resource: string, hello: Buffer, timeoutMs: number): Promise<Tunnel> {
    const key = formatHostPort(gw)
    for (let attempt = 0; ; attempt++) {
      const existing = this.#muxes.get(key)
      let conn: MuxConnection
      let fresh = false
      if (existing?.usable) conn = existing
      else {
        const got = await this.#connect(gw, key, timeoutMs)
        if (!(got instanceof MuxConnection)) return handshakeV1(got, key, resource, hello, timeoutMs, this.#clock)
        conn = got
        fresh = true
      }
      try {
        return await this.#openStream(conn, key, resource, hello, timeoutMs)
      } catch (err) {
        // A connection that closed or drained under us says nothing about the gateway: once more on a new one.
        if (err instanceof Unreachable && !fresh && attempt === 0) continue
        throw err
      }
    }
  }

  /** Ends every multiplexed connection, those still connecting and draining included (ending their streams). The pool stays usable. */
  close(): void {
    this.#generation += 1
    for (const conn of this.#openMuxes) conn.destroy()
    this.#openMuxes.clear()
    this.#muxes.clear()
  }

  /** One multiplexed connection per gateway, shared by concurrent callers; a keyway/1-only gateway gives each caller a plain tunnel socket. */
  async #connect(gw: HostPort, key: string, timeoutMs: number): Promise<MuxConnection | tls.TLSSocket> {
    const pending = this.#pending.get(key)
    if (pending !== undefined) {
      const got = await pending
      if (got instanceof MuxConnection) return got
      // That socket went to the caller that dialled it.
      return this.#dialer.connect(gw, [ALPN_TUNNEL], timeoutMs)
    }
    const generation = this.#generation
    const connecting = this.#dialer.connect(gw, [ALPN_MUX, ALPN_TUNNEL], timeoutMs).then((socket): MuxConnection | tls.TLSSocket => {
      if (generation !== this.#generation) {
        socket.destroy()
        throw new Unreachable('the client was closed while connecting')
      }
      if (socket.alpnProtocol !== ALPN_MUX) {
        this.#v1Only.remember(key)
        this.#logger?.info({ event: 'gateway_no_multiplex', gateway: key }, 'gateway speaks keyway/1 only: one TLS connection per tunnel (asked again in a minute)')
        return socket
      }
      socket.setKeepAlive(true, MUX_KEEPALIVE_MS)
      // Frames are batched per event-loop turn already; Nagle would hold the next batch until an ACK.
      socket.setNoDelay(true)
      const drop = (): void => {
        if (this.#muxes.get(key) === conn) this.#muxes.delete(key)
      }
      const conn: MuxConnection = new MuxConnection(socket, {
        role: 'client',
        reuseReadBuffers: this.#reuseReadBuffers,
        onGoaway: (code, message) => {
          drop()
          this.#logger?.debug({ event: 'gateway_goaway', gateway: key, code }, message)
        },
        onClose: () => {
          drop()
          this.#openMuxes.delete(conn)
        },
      })
      this.#muxes.set(key, conn)
      this.#openMuxes.add(conn)
      return conn
    })
    this.#pending.set(key, connecting)
    try {
      return await connecting
    } finally {
      this.#pending.delete(key)
    }
  }

  #openStream(conn: MuxConnection, gateway: string, resource: string, hello: Buffer, timeoutMs: number): Promise<Tunnel> {
    return new Promise((resolve, reject) => {
      let stream: MuxStream
      try {
        stream = conn.open(hello)
      } catch (err) {
        reject(new Unreachable((err as Error).message))
        return
      }
      stream.on('error', ignoreError)
      let settled = false
      const timer =
        timeoutMs > 0
          ? this.#clock.setTimeout(() => {
              settled = true
              reject(
                new KeywayError('ERR_HANDSHAKE_TIMEOUT', `gateway ${gateway} did not answer the tunnel request for "${resource}" within ${timeoutMs} ms`, {
                  detail: { gateway, resource },
                }),
              )
              stream.destroy()
            }, timeoutMs)
          : undefined
      stream.whenAccepted((err, body) => {
        if (settled) return
        settled = true
        if (timer !== undefined) this.#clock.clearTimeout(timer)
        if (err !== null) {
          const reason = (err as { reason?: unknown }).reason
          const code = isErrorCode(reason) ? reason : undefined
          // Lost connection or a draining gateway: another connection or gateway may serve us.
          if (code === undefined || code === 'ERR_GATEWAY_UNAVAILABLE' || code === 'ERR_SHUTTING_DOWN') reject(new Unreachable(err.message))
          else reject(new KeywayError(code, err.message, { detail: { gateway, resource, refused: true } }))
          return
        }
        let session = ''
        try {
          session = String((JSON.parse(body!.toString('utf8')) as { session?: unknown }).session ?? '')
        } catch {
          // The session id only correlates logs.
        }
        stream.pause()
        resolve({ socket: stream, rest: EMPTY, session, gateway })
      })
    })
  }
}
