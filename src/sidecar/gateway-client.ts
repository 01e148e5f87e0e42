import * as https from 'node:https'
import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'
import * as tls from 'node:tls'
import type { Logger } from 'pino'
import { systemClock, type Clock } from '../clock.js'
import { ERROR_CODES, KeywayError, type ErrorCode } from '../errors.js'
import type { ForwardEndpoint } from '../forward/index.js'
import { ALPN_MUX, MuxConnection, type MuxStream } from '../mux/index.js'
import { canSetTlsSession, setTlsSession } from '../read-buffer/index.js'
import { formatHostPort, type HostPort } from '../net/index.js'
import { ALPN_HTTP, ALPN_TUNNEL, ReplyParser, encodeHello } from '../protocol/index.js'

/**
 * Opens a TLS connection; `tls.connect` unless a test or another transport
 * stands in (the DialFunc pattern). Must return a socket that emits
 * `secureConnect` or `error`.
 */
export type ConnectTls = (options: TlsDialOptions) => tls.TLSSocket

/** `tls.connect` options plus `allowHalfOpen`, which tls.connect honours but its types omit. */
export type TlsDialOptions = tls.ConnectionOptions & { allowHalfOpen?: boolean }

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

/** What the client knows about its gateways, for status and readiness. */
export interface GatewayState {
  /** The last attempt reached a gateway. False until the first attempt succeeds. */
  readonly up: boolean
  /** The gateway tried first next time (the last one that answered), `host:port`. */
  readonly gateway: string
  /** Consecutive rounds in which no gateway could be reached. */
  readonly failures: number
  /** Why the last round failed, while {@link GatewayState.up} is false. */
  readonly lastError?: string
  /** Epoch ms until which attempts fail fast without dialling (backoff). */
  readonly retryAt?: number
}

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

/** Answer of {@link GatewayClient.api}. */
export type ApiResult<T> = { readonly status: number; readonly body: T; readonly etag?: string } | { readonly status: 304; readonly etag?: string }

/** Options of one {@link GatewayClient.api} call. */
export interface ApiCallOptions {
  token: string
  /** JSON request body. */
  body?: unknown
  /** Sent as `If-None-Match`; an unchanged view answers `{ status: 304 }`. */
  etag?: string
  timeoutMs?: number
}

/** A failure to reach one gateway: the next one is tried. Never leaves this module. */
class Unreachable extends Error {
  override readonly name = 'Unreachable'
}

const MAX_API_BODY = 4 * 1024 * 1024
const EMPTY = Buffer.alloc(0)
/** TCP keepalive on multiplexed connections, so a vanished gateway fails its streams. */
const MUX_KEEPALIVE_MS = 30_000
/** A gateway that answered keyway/1 is offered keyway/2 again after this long (it may have been upgraded). */
const V1_RECHECK_MS = 60_000

function ignoreError(): void {}

function toErrorCode(code: unknown): ErrorCode | undefined {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code) ? (code as ErrorCode) : undefined
}

/** An https.Agent that dials through the injected {@link ConnectTls}. */
class DialAgent extends https.Agent {
  readonly #connectTls: ConnectTls

  constructor(options: https.AgentOptions, connectTls: ConnectTls) {
    super(options)
    this.#connectTls = connectTls
  }

  override createConnection(options: TlsDialOptions): tls.TLSSocket {
    return this.#connectTls(options)
  }
}

/**
 * The sidecar's way to its gateways: tunnels (ALPN `keyway/1`) and the JSON
 * API (ALPN `http/1.1`), both over TLS verified against the configured CA.
 *
 * Failover: gateways are tried in order, starting with the last one that
 * answered; a connection or TLS failure moves on to the next. When a whole
 * round fails the client backs off (exponential with jitter, capped) and
 * until then every call fails fast with `ERR_GATEWAY_UNAVAILABLE`, so a local
 * client is told at once instead of hanging while the gateway is down.
 */
export class GatewayClient {
  readonly #gateways: readonly HostPort[]
  readonly #ca: string | Buffer
  readonly #servername: string | undefined
  readonly #timeoutMs: number
  readonly #connectTls: ConnectTls
  readonly #clock: Clock
  readonly #logger: Logger | undefined
  readonly #random: () => number
  readonly #backoffBase: number
  readonly #backoffMax: number
  readonly #agent: DialAgent
  readonly #resume: boolean
  /** One TLS context for every tunnel: tls.connect would otherwise build one (parsing the CA) per connection. */
  readonly #tunnelContext: tls.SecureContext
  /** Last TLS session ticket per gateway (`host:port`), for tunnels only. */
  readonly #tlsSessions = new Map<string, Buffer>()
  readonly #multiplex: boolean
  /** The multiplexed connection to each gateway (`host:port`), while it takes new streams. */
  readonly #muxes = new Map<string, MuxConnection>()
  /** Every multiplexed connection still open, draining ones (after GOAWAY) included: close() ends them all. */
  readonly #openMuxes = new Set<MuxConnection>()
  readonly #muxPending = new Map<string, Promise<MuxConnection | tls.TLSSocket>>()
  /** Gateways that answered ALPN keyway/1 to an offer of keyway/2, and until when keyway/2 is not offered again. */
  readonly #v1Only = new Map<string, number>()
  /** Bumped by close(): a multiplexed connection that completes afterwards is not kept. */
  #generation = 0
  #good = 0
  #up = false
  #failures = 0
  #lastError: string | undefined
  #retryAt: number | undefined
  readonly #nodeInternals: boolean
  /** Offer resumed sessions through TLSSocket#setSession (node-internals.ts) rather than tls.connect's option. */
  readonly #setSession: boolean

  constructor(options: GatewayClientOptions) {
    if (options.gateways.length === 0) throw new KeywayError('ERR_CONFIG_INVALID', 'sidecar.gateways must name at least one gateway')
    this.#gateways = [...options.gateways]
    this.#ca = options.ca
    this.#servername = options.servername ? options.servername : undefined
    this.#timeoutMs = options.connectTimeoutMs ?? 5_000
    this.#connectTls = options.connectTls ?? tls.connect
    this.#clock = options.clock ?? systemClock
    this.#logger = options.logger
    this.#random = options.random ?? Math.random
    this.#backoffBase = options.backoffBaseMs ?? 250
    this.#backoffMax = options.backoffMaxMs ?? 1_500
    this.#resume = options.tlsSessionResumption ?? true
    this.#multiplex = options.multiplex ?? true
    this.#nodeInternals = options.nodeInternals ?? true
    this.#setSession = this.#nodeInternals && canSetTlsSession()
    this.#tunnelContext = tls.createSecureContext({ ca: this.#ca, minVersion: 'TLSv1.2' })
    this.#agent = new DialAgent({ keepAlive: true, maxSockets: 4, ca: this.#ca, ALPNProtocols: [ALPN_HTTP] }, this.#connectTls)
  }

  /** Current reachability, for status, readiness and the `gateway_up` gauge. */
  state(): GatewayState {
    const state: { -readonly [K in keyof GatewayState]: GatewayState[K] } = {
      up: this.#up,
      gateway: formatHostPort(this.#gateways[this.#good]!),
      failures: this.#failures,
    }
    if (!this.#up && this.#lastError !== undefined) state.lastError = this.#lastError
    if (this.#retryAt !== undefined && this.#retryAt > this.#clock.now()) state.retryAt = this.#retryAt
    return state
  }

  /** Milliseconds until the backoff ends (0 when calls may dial now). */
  retryInMs(): number {
    return this.#retryAt === undefined ? 0 : Math.max(0, this.#retryAt - this.#clock.now())
  }

  /**
   * Opens a tunnel to `resource`: TLS with ALPN `keyway/1`, the hello, the
   * reply. Rejects with the gateway's code when it refuses (`detail.refused`
   * is true then), `ERR_HANDSHAKE_TIMEOUT` when it does not answer in time,
   * `ERR_GATEWAY_UNAVAILABLE` when no gateway can be reached.
   */
  async openTunnel(resource: string, token: string, options: { timeoutMs?: number } = {}): Promise<Tunnel> {
    const hello = encodeHello({ resource, token })
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs
    return this.#withFailover(async (gw) => {
      if (this.#multiplex && !this.#speaksV1Only(formatHostPort(gw))) return this.#openMuxed(gw, resource, hello, timeoutMs)
      const socket = await this.#connect(gw, [ALPN_TUNNEL], timeoutMs)
      return this.#handshake(socket, gw, resource, hello, timeoutMs)
    })
  }

  /** Multiplexed connections open now (0 or 1 per gateway). */
  get multiplexedConnections(): number {
    return this.#muxes.size
  }

  /**
   * Calls the gateway API over HTTPS (keep-alive, ALPN `http/1.1`) with the
   * bearer token. 2xx: `{ status, body, etag }`; 304: `{ status: 304 }`; an
   * error answer rejects with its `{code, message}` as a KeywayError.
   */
  async api<T>(method: string, path: string, options: ApiCallOptions): Promise<ApiResult<T>> {
    return this.#withFailover((gw) => this.#request<T>(gw, method, path, options))
  }

  /** Closes idle keep-alive connections and the multiplexed connections, those still connecting included (ending their streams). The client stays usable. */
  close(): void {
    this.#generation += 1
    this.#agent.destroy()
    for (const conn of this.#openMuxes) conn.destroy()
    this.#openMuxes.clear()
    this.#muxes.clear()
  }

  async #openMuxed(gw: HostPort, resource: string, hello: Buffer, timeoutMs: number): Promise<Tunnel> {
    const key = formatHostPort(gw)
    for (let attempt = 0; ; attempt++) {
      const existing = this.#muxes.get(key)
      let conn: MuxConnection
      let fresh = false
      if (existing?.usable) conn = existing
      else {
        const got = await this.#muxConnect(gw, key, timeoutMs)
        if (!(got instanceof MuxConnection)) return this.#handshake(got, gw, resource, hello, timeoutMs)
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

  /** True while `key` is known to answer keyway/1 only; rechecked after {@link V1_RECHECK_MS} (a rolling upgrade). */
  #speaksV1Only(key: string): boolean {
    const until = this.#v1Only.get(key)
    if (until === undefined) return false
    if (this.#clock.now() < until) return true
    this.#v1Only.delete(key)
    return false
  }

  /** One multiplexed connection per gateway, shared by concurrent callers; a keyway/1-only gateway gives each caller a plain tunnel socket. */
  async #muxConnect(gw: HostPort, key: string, timeoutMs: number): Promise<MuxConnection | tls.TLSSocket> {
    const pending = this.#muxPending.get(key)
    if (pending !== undefined) {
      const got = await pending
      if (got instanceof MuxConnection) return got
      // That socket went to the caller that dialled it.
      return this.#connect(gw, [ALPN_TUNNEL], timeoutMs)
    }
    const generation = this.#generation
    const connecting = this.#connect(gw, [ALPN_MUX, ALPN_TUNNEL], timeoutMs).then((socket): MuxConnection | tls.TLSSocket => {
      if (generation !== this.#generation) {
        socket.destroy()
        throw new Unreachable('the client was closed while connecting')
      }
      if (socket.alpnProtocol !== ALPN_MUX) {
        this.#v1Only.set(key, this.#clock.now() + V1_RECHECK_MS)
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
        reuseReadBuffers: this.#nodeInternals,
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
    this.#muxPending.set(key, connecting)
    try {
      return await connecting
    } finally {
      this.#muxPending.delete(key)
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
          const code = toErrorCode((err as { reason?: unknown }).reason)
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

  async #withFailover<T>(attempt: (gw: HostPort) => Promise<T>): Promise<T> {
    const wait = this.retryInMs()
    if (wait > 0) {
      throw new KeywayError('ERR_GATEWAY_UNAVAILABLE', `no gateway reachable (next try in ${wait} ms): ${this.#lastError ?? 'unknown error'}`, {
        detail: { retryInMs: wait },
      })
    }
    const count = this.#gateways.length
    const start = this.#good
    const failures: string[] = []
    // A gateway refusing the token itself may hold an older key set or policy than the others: ask them too.
    let tokenRefusal: { index: number; err: KeywayError } | undefined
    for (let i = 0; i < count; i++) {
      const index = (start + i) % count
      const gw = this.#gateways[index]!
      try {
        const result = await attempt(gw)
        this.#markUp(index)
        return result
      } catch (err) {
        if (err instanceof KeywayError && (err.code.startsWith('ERR_TOKEN_') || err.code === 'ERR_ACCOUNT_UNKNOWN')) {
          tokenRefusal ??= { index, err }
          continue
        }
        if (!(err instanceof Unreachable)) {
          // The gateway answered (even if to refuse): it is up.
          this.#markUp(index)
          throw err
        }
        failures.push(`${formatHostPort(gw)}: ${err.message}`)
        this.#logger?.debug({ event: 'gateway_attempt_failed', gateway: formatHostPort(gw), reason: err.message }, 'gateway attempt failed')
      }
    }
    if (tokenRefusal) {
      this.#markUp(tokenRefusal.index)
      throw tokenRefusal.err
    }
    const message = failures.join('; ')
    this.#markDown(message)
    throw new KeywayError('ERR_GATEWAY_UNAVAILABLE', `no gateway reachable: ${message}`, { detail: { failures: this.#failures } })
  }

  #markUp(index: number): void {
    if (!this.#up || this.#good !== index) {
      this.#logger?.info({ event: 'gateway_up', gateway: formatHostPort(this.#gateways[index]!) }, 'gateway reachable')
    }
    this.#good = index
    this.#up = true
    this.#failures = 0
    this.#lastError = undefined
    this.#retryAt = undefined
  }

  #markDown(message: string): void {
    const wasUp = this.#up
    this.#up = false
    this.#failures += 1
    this.#lastError = message
    // "Equal jitter": at least half the exponential delay, so retries spread
    // out without ever hammering a gateway that is coming back.
    const exp = Math.min(this.#backoffMax, this.#backoffBase * 2 ** Math.min(this.#failures - 1, 30))
    const delay = Math.round(exp / 2 + (this.#random() * exp) / 2)
    this.#retryAt = this.#clock.now() + delay
    const fields = { event: 'gateway_down', failures: this.#failures, retry_in_ms: delay, reason: message }
    if (wasUp || this.#failures === 1) this.#logger?.warn(fields, 'no gateway reachable')
    else this.#logger?.debug(fields, 'no gateway reachable')
  }

  #tlsOptions(gw: HostPort): tls.ConnectionOptions {
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

  #connect(gw: HostPort, alpns: readonly string[], timeoutMs: number): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      let socket: tls.TLSSocket
      const resume = this.#resume && !alpns.includes(ALPN_HTTP)
      const key = resume ? formatHostPort(gw) : ''
      const session = resume ? this.#tlsSessions.get(key) : undefined
      try {
        const options: TlsDialOptions = { ...this.#tlsOptions(gw), ALPNProtocols: [...alpns], allowHalfOpen: true }
        if (resume || !alpns.includes(ALPN_HTTP)) options.secureContext = this.#tunnelContext
        // Not through options.session where possible: tls.connect() would then
        // parse the ticket twice (TLSSocket's constructor and connect() both
        // call setSession), and each parse decodes the gateway's certificate,
        // ~400 µs of CPU with OpenSSL 3. Set once before 'connect', so the
        // ClientHello offers it (what connect() itself does).
        if (session !== undefined && !this.#setSession) options.session = session
        socket = this.#connectTls(options)
        if (session !== undefined && this.#setSession) setTlsSession(socket, session)
      } catch (err) {
        reject(new Unreachable((err as Error).message))
        return
      }
      // Every tunnel takes the newest ticket: TLS 1.3 tickets arrive after the handshake.
      if (resume) socket.once('session', (ticket: Buffer) => this.#tlsSessions.set(key, ticket))
      const tlsSessions = this.#tlsSessions
      const timer = timeoutMs > 0 ? this.#clock.setTimeout(() => fail(new Error(`no TLS connection within ${timeoutMs} ms`)), timeoutMs) : undefined
      const cleanup = (): void => {
        if (timer !== undefined) this.#clock.clearTimeout(timer)
        socket.removeListener('secureConnect', onSecure)
        socket.removeListener('error', fail)
        socket.removeListener('close', onClose)
      }
      function fail(err: Error): void {
        cleanup()
        // Never offer a ticket again to a gateway whose handshake just failed.
        if (resume) tlsSessions.delete(key)
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

  #handshake(socket: tls.TLSSocket, gw: HostPort, resource: string, hello: Buffer, timeoutMs: number): Promise<Tunnel> {
    const gateway = formatHostPort(gw)
    return new Promise((resolve, reject) => {
      const parser = new ReplyParser()
      let settled = false
      const timer =
        timeoutMs > 0
          ? this.#clock.setTimeout(
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
        if (timer !== undefined) this.#clock.clearTimeout(timer)
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
          const code = toErrorCode(reply.code)
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

  async #request<T>(gw: HostPort, method: string, path: string, options: ApiCallOptions, retried = false): Promise<ApiResult<T>> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body), 'utf8')
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${options.token}` }
    if (payload) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(payload.length)
    }
    if (options.etag !== undefined) headers['if-none-match'] = options.etag
    const requestOptions: https.RequestOptions = {
      ...this.#tlsOptions(gw),
      method,
      path,
      headers,
      // The agent adds ALPN http/1.1 to every connection it makes.
      agent: this.#agent,
    }
    let reused = false
    try {
      return await new Promise<ApiResult<T>>((resolve, reject) => {
        const req = https.request(requestOptions)
        const timer =
          timeoutMs > 0 ? this.#clock.setTimeout(() => req.destroy(new Unreachable(`no API answer within ${timeoutMs} ms`)), timeoutMs) : undefined
        const done = (): void => {
          if (timer !== undefined) this.#clock.clearTimeout(timer)
        }
        req.on('socket', () => {
          reused = req.reusedSocket
        })
        req.on('error', (err: NodeJS.ErrnoException) => {
          done()
          reject(err instanceof Unreachable || err instanceof KeywayError ? err : new Unreachable(err.code ? `${err.code}: ${err.message}` : err.message))
        })
        req.on('response', (res) => {
          readBody(res).then(
            (text) => {
              done()
              try {
                resolve(toApiResult<T>(res, text, `${method} ${path}`))
              } catch (err) {
                reject(err)
              }
            },
            (err: Error) => {
              done()
              reject(new Unreachable(`reading the API answer: ${err.message}`))
            },
          )
        })
        req.end(payload)
      })
    } catch (err) {
      // A kept-alive connection the gateway closed meanwhile (a restart, its
      // idle timeout) fails on first use: that says nothing about the gateway.
      if (err instanceof Unreachable && reused && !retried) return this.#request<T>(gw, method, path, options, true)
      throw err
    }
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    res.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_API_BODY) {
        res.destroy(new Error(`API answer larger than ${MAX_API_BODY} bytes`))
        return
      }
      chunks.push(chunk)
    })
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    res.on('error', reject)
    res.on('aborted', () => reject(new Error('API answer aborted')))
  })
}

function toApiResult<T>(res: IncomingMessage, text: string, what: string): ApiResult<T> {
  const status = res.statusCode ?? 0
  const etagHeader = res.headers.etag
  const etag = typeof etagHeader === 'string' ? etagHeader : undefined
  if (status === 304) return etag === undefined ? { status: 304 } : { status: 304, etag }
  let body: unknown
  try {
    body = text === '' ? undefined : JSON.parse(text)
  } catch {
    body = undefined
  }
  if (status >= 200 && status < 300) {
    if (body === undefined) throw new KeywayError('ERR_INTERNAL', `${what}: the gateway answered ${status} without a JSON body`)
    return etag === undefined ? { status, body: body as T } : { status, body: body as T, etag }
  }
  const e = (body ?? {}) as { code?: unknown; message?: unknown }
  const code = toErrorCode(e.code)
  const message = typeof e.message === 'string' ? e.message : `the gateway answered HTTP ${status}`
  throw new KeywayError(code ?? 'ERR_INTERNAL', code ? message : `${what}: ${typeof e.code === 'string' ? `${e.code}: ` : ''}${message}`, {
    detail: { status },
  })
}
