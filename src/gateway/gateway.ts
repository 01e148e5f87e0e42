import { randomBytes } from 'node:crypto'
import type { Server as HttpServer } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls'
import type { Registry } from 'prom-client'
import { LoginLimiter, type SignInLimiter, type SigningKey, type TokenVerifier } from '../auth/index.js'
import type { Clock } from '../clock.js'
import { SecretResolver } from '../secrets/index.js'
import { ERROR_CODES, KeywayError, type ErrorCode } from '../errors.js'
import type { DialFunc } from '../forward/index.js'
import { listenOn, parseAddressList } from '../net/index.js'
import { RefusalAudit, type Logger } from '../observe/index.js'
import { SaltedPasswordCache } from '../pgwire/index.js'
import type { CompiledPolicy } from '../policy/index.js'
import { ALPN_MUX, type MuxConnection } from '../mux/index.js'
import { ALPN_HTTP, ALPN_TUNNEL } from '../protocol/index.js'
import { createApiHandler } from './api.js'
import { ApiGuard, type ApiGuardSettings } from './api-guard.js'
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js'
import { SessionRegistry, type LiveSession } from './sessions.js'
import { handleMuxConnection } from './mux-tunnel.js'
import { ProxyAcceptor } from './proxy-acceptor.js'
import { UpstreamReadiness } from './readiness.js'
import { answeredCode, handleTunnel, type TunnelContext, type TunnelSettings } from './tunnel.js'

// Not `import ... from 'node:http'`: on Node 26 the ESM namespace of node:http
// runs every lazy getter of the module (undici, http2, zlib, worker_threads:
// ~15 MB resident, issue 22); the CommonJS exports object does not.
const { createServer: createHttpServer } = process.getBuiltinModule('node:http')

/** API connections (sidecar polls, logins) held at once; more are closed at once. */
const MAX_API_SOCKETS = 4_096
/** An API connection idle this long is closed (the API guard's deadlines are shorter by default). */
const API_SOCKET_TIMEOUT_MS = 30_000
/**
 * A session ended with last words (a PostgreSQL ErrorResponse) waits this
 * long for the message in flight to end, and then for the client to close.
 */
export const FAREWELL_WAIT_MS = 2_000

/** Gateway settings beyond the tunnels' (from the `gateway` configuration). */
export interface GatewaySettings extends TunnelSettings, ApiGuardSettings {
  readonly drainGrace: number
  /** Load balancers (addresses, CIDR blocks) whose connections start with a PROXY v2 header; nobody else's may. */
  readonly proxyProtocolFrom: readonly string[]
  /** Refusal lines per second in the log; the rest are summarized. */
  readonly auditRefusalRate: number
}

/** Everything the gateway uses from the outside world, injected. */
export interface GatewayOptions {
  host: string
  port: number
  tls: { cert: string; key: string }
  settings: GatewaySettings
  /** The policy in force; read on every decision. */
  policy: () => CompiledPolicy
  verifier: TokenVerifier
  signingKey: SigningKey | undefined
  tokens: { issuer: string; audience: string; loginTtl: number }
  logger: Logger
  registry: Registry
  clock: Clock
  dial: DialFunc
  /**
   * How long a live session's token stays valid past its `exp`: the verifier's
   * clock tolerance, so admission and the revocation sweep agree. Default 0.
   */
  tokenExpiryGraceMs?: number
  /** A user's password hash (the credentials file); without it no user can log in. */
  passwordHashOf?: (accountId: string) => Promise<string | undefined>
  /** Failed logins' limiter; default a {@link LoginLimiter} on `clock`. */
  loginLimiter?: SignInLimiter
  /** Multiplexed connections may read through Node's internals (start-up self-test passed, `forward.nodeInternals` on). Default true. */
  nodeInternals?: boolean
  /** Environment where `passwordEnv` secrets are read. Default `process.env`. */
  env?: NodeJS.ProcessEnv
  /** While the policy store fails closed, the code every session is refused and ended with (`ERR_STORE_STALE`). */
  unavailable?: () => ErrorCode | undefined
  /**
   * This gateway's instance id: every session id starts with it and a dot,
   * so that an admin's request to end one reaches the gateway holding it
   * (`[A-Za-z0-9_-]+`). Default: 12 random hex digits.
   */
  instance?: string
}

/**
 * A live session as an admin sees it ({@link Gateway.listSessions}): who, to
 * what, since when, bytes so far; never the token. The one definition the
 * admin API and the store's session requests share.
 */
export interface LiveSessionInfo {
  /** `INSTANCE.RANDOM`: starts with the holding gateway's instance id. */
  readonly id: string
  readonly account: { readonly id: string; readonly name: string; readonly type: string }
  readonly resource: string
  /** Epoch ms (the gateway clock). */
  readonly startedAt: number
  /** Client → upstream so far. */
  readonly bytesIn: number
  /** Upstream → client so far. */
  readonly bytesOut: number
}

/**
 * The gateway: one TLS port serving tunnels (ALPN keyway/1) and the API
 * (ALPN http/1.1). `start()` listens; `close()` stops accepting, lets live
 * sessions drain for the grace period, then closes the rest.
 */
export class Gateway {
  readonly metrics: GatewayMetrics
  readonly sessions: SessionRegistry
  /** This gateway's instance id, the prefix of its session ids. */
  readonly instance: string
  /** The rate-limited audit trail of refusals. */
  readonly audit: RefusalAudit
  readonly #options: GatewayOptions
  readonly #listener: NetServer
  readonly #tls: TlsServer
  readonly #apiGuard: ApiGuard
  readonly #proxy: ProxyAcceptor
  readonly #http: HttpServer
  readonly #tunnels: TunnelContext
  readonly #readiness: UpstreamReadiness
  readonly #apiSockets = new Set<TLSSocket>()
  readonly #muxes = new Set<MuxConnection>()
  #closing = false
  #closed: Promise<void> | undefined

  constructor(options: GatewayOptions) {
    this.#options = options
    this.instance = options.instance ?? randomBytes(6).toString('hex')
    if (!/^[A-Za-z0-9_-]+$/.test(this.instance)) throw new KeywayError('ERR_CONFIG_INVALID', `gateway instance id "${this.instance}": letters, digits, "_" and "-" only`)
    this.metrics = createGatewayMetrics(options.registry, {
      tokenExpiryMs: () => {
        const now = options.clock.now()
        const soonest = new Map<string, number>()
        for (const s of this.sessions.values()) {
          if (s.token.expiresAt === Infinity) continue
          const name = s.token.account.name
          soonest.set(name, Math.min(soonest.get(name) ?? Infinity, s.token.expiresAt - now))
        }
        return soonest
      },
    })
    const { logger } = options
    const proxyFrom = parseAddressList(options.settings.proxyProtocolFrom)
    if (typeof proxyFrom === 'string') throw new KeywayError('ERR_CONFIG_INVALID', `gateway.proxyProtocolFrom: ${proxyFrom}`)
    this.audit = new RefusalAudit({ logger, clock: options.clock, ratePerSecond: options.settings.auditRefusalRate })
    this.sessions = new SessionRegistry({
      clock: options.clock,
      policy: options.policy,
      onRevoke: (session, code) => this.#revoke(session, code),
      onError: (err) => logger.error({ event: 'sweep_error', err }, 'revocation sweep failed'),
      expiryGraceMs: options.tokenExpiryGraceMs ?? 0,
      ...(options.unavailable ? { unavailable: options.unavailable } : {}),
    })
    this.#tunnels = {
      settings: options.settings,
      verifier: options.verifier,
      policy: options.policy,
      sessions: this.sessions,
      metrics: this.metrics,
      logger,
      audit: this.audit,
      clientOf: (socket) => this.#proxy.peerOf(socket).text,
      clock: options.clock,
      dial: options.dial,
      nodeInternals: options.nodeInternals ?? true,
      closing: () => this.#closing,
      sockets: new Set(),
      streams: { count: 0 },
      dialing: new Map(),
      credentials: new SecretResolver({ clock: options.clock, ...(options.env ? { env: options.env } : {}) }),
      saltedPasswords: new SaltedPasswordCache(),
      sessionIdPrefix: `${this.instance}.`,
    }
    this.#readiness = new UpstreamReadiness({
      clock: options.clock,
      dial: options.dial,
      logger,
      metrics: this.metrics,
      settings: options.settings,
      credentials: this.#tunnels.credentials,
      saltedPasswords: this.#tunnels.saltedPasswords,
    })
    this.#apiGuard = new ApiGuard({ settings: options.settings, clock: options.clock, audit: this.audit, metrics: this.metrics })
    const api = createApiHandler({
      verifier: options.verifier,
      policy: options.policy,
      clock: options.clock,
      logger,
      metrics: this.metrics,
      signingKey: options.signingKey,
      ...options.tokens,
      audit: this.audit,
      peerOf: (req) => this.#proxy.peerOf(req.socket),
      limiter: options.loginLimiter ?? new LoginLimiter({ clock: options.clock }),
      passwordHashOf: options.passwordHashOf ?? (async () => undefined),
      readiness: this.#readiness,
      ...(options.unavailable ? { unavailable: options.unavailable } : {}),
    })
    this.#http = createHttpServer((req, res) => {
      this.#apiGuard.request(req, res)
      api(req, res)
    })
    this.#http.on('clientError', (_err, socket) => socket.destroy())
    // An idle kept-alive connection is closed quietly (and its Keep-Alive hint tells clients so)
    // before the headers deadline would answer it 408: only a started request is cut with a code.
    this.#http.keepAliveTimeout = Math.max(1_000, Math.min(30_000, options.settings.apiHeadersTimeout - 1_000))
    // headersTimeout and requestTimeout need a listening http.Server; this one
    // only receives sockets: ApiGuard enforces the deadlines, this is a backstop.
    this.#http.timeout = API_SOCKET_TIMEOUT_MS
    this.#tls = createTlsServer({
      cert: options.tls.cert,
      key: options.tls.key,
      ALPNProtocols: [ALPN_MUX, ALPN_TUNNEL, ALPN_HTTP],
      allowHalfOpen: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: options.settings.handshakeTimeout,
      noDelay: true,
    })
    this.#tls.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === ALPN_MUX) return handleMuxConnection(socket, this.#tunnels, this.#muxes)
      if (socket.alpnProtocol === ALPN_TUNNEL) return handleTunnel(socket, this.#tunnels)
      // The API is served only to peers that asked for HTTP (docs/protocol.md), and to a bounded number of them.
      if (socket.alpnProtocol !== ALPN_HTTP || this.#closing || this.#apiSockets.size >= MAX_API_SOCKETS) return void socket.destroy()
      if (!this.#apiGuard.admit(socket, this.#proxy.peerOf(socket))) return
      // http.Server tracks connections only when it listens itself, which this one never does.
      this.#apiSockets.add(socket)
      socket.once('close', () => this.#apiSockets.delete(socket))
      this.#http.emit('connection', socket)
    })
    this.#tls.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      logger.debug({ event: 'tls_error', code: err.code, client: this.#proxy.peerOf(socket).text }, err.message)
      this.metrics.sessionsTotal.inc({ result: 'handshake_error' })
      // Node leaves the socket open after a TLS error before the handshake
      // completes (ERR_TLS_HANDSHAKE_TIMEOUT included): without this a client
      // that never sends a ClientHello holds its descriptor forever.
      socket.destroy()
    })
    this.#proxy = new ProxyAcceptor({
      from: proxyFrom,
      timeoutMs: options.settings.handshakeTimeout,
      clock: options.clock,
      metrics: this.metrics,
      audit: this.audit,
      logger,
      handOff: (raw) => void this.#tls.emit('connection', raw),
      closing: () => this.#closing,
    })
    // The listener is plain TCP: a load balancer's PROXY header comes before the TLS handshake.
    this.#listener = createNetServer({ allowHalfOpen: true, noDelay: true }, (raw) => this.#proxy.accept(raw))
    this.#listener.on('error', (err: NodeJS.ErrnoException) => {
      // Accept errors (EMFILE, ENFILE) land here; libuv retries the accept by itself.
      logger.error({ event: 'accept_error', code: err.code }, err.message)
    })
  }

  /** Listens on the configured address. */
  async start(): Promise<AddressInfo> {
    await listenOn(this.#listener, { host: this.#options.host, port: this.#options.port, backlog: 1024 }, {
      inUse: (at) => `the gateway cannot listen on ${at} (gateway.listen): the port is already in use`,
      failed: (at, err) => `the gateway cannot listen on ${at} (gateway.listen): ${err.message}`,
    })
    const address = this.address()!
    this.#options.logger.info({ event: 'gateway_listening', address: `${address.address}:${address.port}` }, 'gateway listening')
    return address
  }

  /** The bound address. */
  address(): AddressInfo | undefined {
    return (this.#listener.address() as AddressInfo | null) ?? undefined
  }

  /** Tunnels accepted and not yet closed (handshaking, dialing or forwarding): keyway/1 sockets and multiplexed streams. */
  get openTunnels(): number {
    return this.#tunnels.sockets.size - this.#muxes.size + this.#tunnels.streams.count
  }

  /** API connections open now (ALPN http/1.1). */
  get apiConnections(): number {
    return this.#apiSockets.size
  }

  /** Multiplexed connections open now (ALPN keyway/2). */
  get multiplexedConnections(): number {
    return this.#muxes.size
  }

  /** True until close() begins. */
  get accepting(): boolean {
    return !this.#closing
  }

  /** Call after the policy changed: ends sessions whose access has ended. */
  policyChanged(): number {
    // Secrets are re-read after a reload (a changed reference, or an operator who fixed the file and sent SIGHUP).
    this.#tunnels.credentials.clear()
    this.#readiness.clear()
    return this.sessions.sweep()
  }

  /** The live sessions as an admin sees them: who, to what, since when, bytes so far; never the token. */
  listSessions(): LiveSessionInfo[] {
    return [...this.sessions.values()].map(infoOf)
  }

  /** Live session `id` as an admin sees it, if it is live here. */
  sessionInfo(id: string): LiveSessionInfo | undefined {
    const session = this.sessions.get(id)
    return session === undefined ? undefined : infoOf(session)
  }

  /**
   * Ends live session `id` at an admin's request (from this gateway's admin
   * API, or from another's through the store): its client is told
   * ERR_SESSION_ENDED_BY_ADMIN, and the `session_revoked` line says so.
   * Returns the session as it was, or undefined when it is not live here.
   */
  endSession(id: string): LiveSessionInfo | undefined {
    const session = this.sessions.get(id)
    if (session === undefined) return undefined
    const info = infoOf(session)
    this.sessions.delete(session)
    const code = 'ERR_SESSION_ENDED_BY_ADMIN'
    this.#options.logger.info({ event: 'session_revoked', session: session.id, account: session.token.accountId, resource: session.resource, code }, `access ended: ${code}`)
    this.#end(session, `revoked:${code}`, code)
    return info
  }

  #revoke(session: LiveSession, code: ErrorCode): void {
    this.#options.logger.info(
      { event: 'session_revoked', session: session.id, account: session.token.accountId, resource: session.resource, code },
      `access ended: ${code}`,
    )
    // The log above keeps the real code; the client is told what any unreachable resource gets.
    this.#end(session, `revoked:${code}`, answeredCode(code))
  }

  /** Ends a session, telling its client why when its protocol allows. */
  #end(session: LiveSession, reason: string, code: ErrorCode): void {
    const message = `${ERROR_CODES[code].meaning} The Keyway gateway ended this session to "${session.resource}".`
    const words = session.farewell?.closingWords(code, message, FAREWELL_WAIT_MS)
    if (words === undefined) session.forward.close(reason, code)
    else session.forward.closeAt(reason, code, words)
  }

  /**
   * Stops accepting, lets sessions drain for `drainGrace` ms, then closes the
   * rest. Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close()
    return this.#closed
  }

  async #close(): Promise<void> {
    this.#closing = true
    const { logger, settings, clock } = this.#options
    const listening = new Promise<void>((resolve) => this.#listener.close(() => resolve()))
    // Sidecars open their next streams elsewhere; the streams already open drain like tunnels.
    for (const conn of this.#muxes) conn.goaway('ERR_SHUTTING_DOWN', 'the gateway is shutting down')
    logger.info({ event: 'gateway_draining', sessions: this.sessions.size, grace_ms: settings.drainGrace }, 'draining')
    const live = [...this.sessions.values()]
    if (live.length > 0) {
      let timer: ReturnType<Clock['setTimeout']> | undefined
      await Promise.race([
        Promise.all(live.map((session) => session.forward.done)),
        new Promise<void>((resolve) => {
          timer = clock.setTimeout(resolve, settings.drainGrace)
        }),
      ])
      if (timer) clock.clearTimeout(timer)
    }
    const forced = [...this.sessions.values()]
    for (const s of forced) this.#end(s, 'shutdown', 'ERR_SHUTTING_DOWN')
    await Promise.all(forced.map((s) => s.forward.done))
    this.sessions.close()
    // Tunnels still handshaking or dialing now would only be refused: close them with the API sockets.
    for (const socket of this.#tunnels.sockets) socket.destroy()
    for (const socket of this.#apiSockets) socket.destroy()
    await listening
    this.audit.close()
    logger.info({ event: 'gateway_closed', forced: forced.length }, 'gateway closed')
  }
}

function infoOf(s: LiveSession): LiveSessionInfo {
  return {
    id: s.id,
    account: { id: s.token.account.id, name: s.token.account.name, type: s.token.account.type },
    resource: s.resource,
    startedAt: s.startedAt,
    bytesIn: s.forward.bytesAToB,
    bytesOut: s.forward.bytesBToA,
  }
}
