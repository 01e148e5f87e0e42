import * as tls from 'node:tls'
import type { Logger } from 'pino'
import { systemClock, type Clock } from '../clock.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { ALPN_TUNNEL, encodeHello } from '../protocol/index.js'
import { ApiClient, type ApiCallOptions, type ApiResult } from './api-client.js'
import { Failover, type GatewayState } from './failover.js'
import { GatewayDialer } from './gateway-dial.js'
import { MuxPool } from './mux-pool.js'
import { TlsSessionCache, type ConnectTls } from './session-cache.js'
import { handshakeV1, V1OnlyGateways, type Tunnel } from './tunnel-v1.js'

export type { ApiCallOptions, ApiResult } from './api-client.js'
export type { GatewayState } from './failover.js'
export type { ConnectTls, TlsDialOptions } from './session-cache.js'
export type { Tunnel } from './tunnel-v1.js'

/** Options of {@link GatewayClient}. */
export interface GatewayClientOptions {
  /** Gateways to try in order; the last one that answered is tried first. */
  gateways: readonly HostPort[]
  /** PEM text of the CA that signs the gateways' certificates. */
  ca: string | Buffer
  /** Name to verify on the gateway certificate; empty or undefined: the gateway host. */
  servername?: string
  /** Default limit for a TLS connection, and again for the tunnel reply or an API answer. Default 5000. */
  connectTimeoutMs?: number
  /** Default `tls.connect`. */
  connectTls?: ConnectTls
  /** Timers for timeouts and backoff. Default {@link systemClock}. */
  clock?: Clock
  logger?: Logger
  /** Jitter source in [0, 1). Default Math.random. */
  random?: () => number
  /** First backoff after a failed round. Default 250. */
  backoffBaseMs?: number
  /**
   * Backoff cap. Default 1500: after any outage, new connections work again
   * within about 1.5 s of the gateway's return (one TLS attempt per 1.5 s
   * per sidecar meanwhile is cheap).
   */
  backoffMaxMs?: number
  /**
   * Resume TLS sessions for tunnels: the last session ticket each gateway
   * issued is offered on the next tunnel to it, which skips the certificate
   * chain check and the gateway's signature (an abbreviated handshake; a
   * ticket the gateway no longer accepts falls back to a full one). Default true.
   */
  tlsSessionResumption?: boolean
  /**
   * Carry tunnels as streams of one TLS connection per gateway (ALPN
   * `keyway/2`): a new tunnel costs one frame round trip instead of a TLS
   * handshake. A gateway that only speaks `keyway/1` gets a TLS connection
   * per tunnel, as with false. Default true.
   */
  multiplex?: boolean
  /** Use Node's internals (read-buffer/node-internals.ts) for the fast path; false: public APIs only. Default true. */
  nodeInternals?: boolean
}

/**
 * The sidecar's way to its gateways, over TLS verified against the
 * configured CA: tunnels, as streams of one multiplexed connection per
 * gateway (ALPN `keyway/2`, {@link MuxPool}) or, with a gateway that speaks
 * only `keyway/1` or with `multiplex: false`, one TLS connection each
 * ({@link handshakeV1}); and the JSON API (ALPN `http/1.1`, {@link ApiClient}).
 * Both run under {@link Failover}: gateways in order from the last one that
 * answered, then backoff during which every call fails fast with
 * `ERR_GATEWAY_UNAVAILABLE`.
 */
export class GatewayClient {
  readonly #timeoutMs: number
  readonly #clock: Clock
  readonly #failover: Failover
  readonly #dialer: GatewayDialer
  readonly #v1Only: V1OnlyGateways
  readonly #pool: MuxPool | undefined
  readonly #api: ApiClient

  constructor(options: GatewayClientOptions) {
    this.#timeoutMs = options.connectTimeoutMs ?? 5_000
    this.#clock = options.clock ?? systemClock
    this.#failover = new Failover({
      gateways: options.gateways,
      clock: this.#clock,
      logger: options.logger,
      random: options.random ?? Math.random,
      backoffBaseMs: options.backoffBaseMs ?? 250,
      backoffMaxMs: options.backoffMaxMs ?? 1_500,
    })
    const connectTls = options.connectTls ?? tls.connect
    this.#dialer = new GatewayDialer({
      ca: options.ca,
      servername: options.servername ? options.servername : undefined,
      connectTls,
      clock: this.#clock,
      sessions: (options.tlsSessionResumption ?? true) ? new TlsSessionCache(options.nodeInternals ?? true) : undefined,
    })
    this.#v1Only = new V1OnlyGateways(this.#clock)
    this.#pool = (options.multiplex ?? true) ? new MuxPool({ dialer: this.#dialer, v1Only: this.#v1Only, clock: this.#clock, logger: options.logger, reuseReadBuffers: options.nodeInternals ?? true }) : undefined
    this.#api = new ApiClient({ ca: options.ca, dialer: this.#dialer, connectTls, clock: this.#clock, timeoutMs: this.#timeoutMs })
  }

  /** Current reachability, for status, readiness and the `gateway_up` gauge. */
  state(): GatewayState {
    return this.#failover.state()
  }

  /** Milliseconds until the backoff ends (0 when calls may dial now). */
  retryInMs(): number {
    return this.#failover.retryInMs()
  }

  /**
   * Opens a tunnel to `resource`: a stream of the gateway's multiplexed
   * connection, or TLS with ALPN `keyway/1`, the hello, the reply. Rejects
   * with the gateway's code when it refuses (`detail.refused` is true then),
   * `ERR_HANDSHAKE_TIMEOUT` when it does not answer in time,
   * `ERR_GATEWAY_UNAVAILABLE` when no gateway can be reached.
   */
  async openTunnel(resource: string, token: string, options: { timeoutMs?: number } = {}): Promise<Tunnel> {
    const hello = encodeHello({ resource, token })
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs
    return this.#failover.run(async (gw) => {
      const key = formatHostPort(gw)
      if (this.#pool && !this.#v1Only.has(key)) return this.#pool.open(gw, resource, hello, timeoutMs)
      const socket = await this.#dialer.connect(gw, [ALPN_TUNNEL], timeoutMs)
      return handshakeV1(socket, key, resource, hello, timeoutMs, this.#clock)
    })
  }

  /** Multiplexed connections open now (0 or 1 per gateway). */
  get multiplexedConnections(): number {
    return this.#pool?.size ?? 0
  }

  /**
   * Calls the gateway API over HTTPS (keep-alive, ALPN `http/1.1`) with the
   * bearer token. 2xx: `{ status, body, etag }`; 304: `{ status: 304 }`; an
   * error answer rejects with its `{code, message}` as a KeywayError.
   */
  async api<T>(method: string, path: string, options: ApiCallOptions): Promise<ApiResult<T>> {
    return this.#failover.run((gw) => this.#api.request<T>(gw, method, path, options))
  }

  /** Closes idle keep-alive connections and the multiplexed connections, those still connecting included (ending their streams). The client stays usable. */
  close(): void {
    this.#api.close()
    this.#pool?.close()
  }
}
