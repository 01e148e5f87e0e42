import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { tokenFingerprint, type TokenVerifier, type VerifiedToken } from '../auth/index.js'
import type { Clock } from '../clock.js'
import { toKeywayError, type ErrorCode } from '../errors.js'
import { forward, type DialFunc, type ForwardEndpoint } from '../forward/index.js'
import type { Logger, RefusalAudit } from '../observe/index.js'
import { PgWireTracker, type SaltedPasswordCache } from '../pgwire/index.js'
import type { SecretResolver } from '../secrets/index.js'
import type { CompiledPolicy } from '../policy/index.js'
import { encodeReply, HelloParser, type Hello } from '../protocol/index.js'
import type { GatewayMetrics } from './metrics.js'
import { SessionRegistry, type LiveSession } from './sessions.js'
import { loginUpstream, refuseClient } from './upstream-login.js'

/** Limits and timeouts of tunnels (from the `gateway` configuration). */
export interface TunnelSettings {
  readonly handshakeTimeout: number
  readonly handshakeMaxBytes: number
  readonly connectTimeout: number
  readonly idleTimeout: number
  readonly maxLifetime: number
  readonly halfCloseTimeout: number
  readonly maxConnections: number
  readonly maxConnectionsPerAccount: number
}

/** What a tunnel needs from the gateway around it. */
export interface TunnelContext {
  readonly settings: TunnelSettings
  readonly verifier: TokenVerifier
  readonly policy: () => CompiledPolicy
  readonly sessions: SessionRegistry
  readonly metrics: GatewayMetrics
  readonly logger: Logger
  /** Where refusals are written, rate-limited. */
  readonly audit: RefusalAudit
  /** The real client's `host:port` of a socket (the PROXY header's when a load balancer sent one). */
  readonly clientOf: (socket: Socket) => string
  readonly clock: Clock
  readonly dial: DialFunc
  /** Multiplexed connections read into reused buffers through Node's internals (read-buffer/node-internals.ts). */
  readonly nodeInternals: boolean
  /** True once the gateway stops accepting. */
  readonly closing: () => boolean
  /** Sockets of the tunnels accepted and not yet closed (handshaking, dialing or forwarding), and of multiplexed connections: the connection limit counts them, shutdown closes what the drain left. */
  readonly sockets: Set<TLSSocket>
  /** Streams open on multiplexed connections (each a tunnel): the connection limit counts them too. */
  readonly streams: { count: number }
  /** Admitted tunnels still dialling, by account: they hold a slot of the per-account limit. */
  readonly dialing: Map<string, number>
  /** Upstream secrets of resources with credentials. */
  readonly credentials: SecretResolver
  /** SCRAM salted passwords, so a new connection costs no PBKDF2. */
  readonly saltedPasswords: SaltedPasswordCache
  /** Starts every session id: the gateway's instance id and a dot, so that ids are unambiguous across gateways. */
  readonly sessionIdPrefix: string
}

type Result = 'ok' | 'denied' | 'handshake_error' | 'upstream_error' | 'limited' | 'shutting_down' | 'error'

const RESULT_OF: Partial<Record<ErrorCode, Result>> = {
  ERR_HANDSHAKE_MALFORMED: 'handshake_error',
  ERR_HANDSHAKE_VERSION: 'handshake_error',
  ERR_HANDSHAKE_TOO_LARGE: 'handshake_error',
  ERR_HANDSHAKE_TIMEOUT: 'handshake_error',
  ERR_UPSTREAM_UNREACHABLE: 'upstream_error',
  ERR_UPSTREAM_TIMEOUT: 'upstream_error',
  ERR_CONN_LIMIT: 'limited',
  ERR_ACCOUNT_CONN_LIMIT: 'limited',
  ERR_SHUTTING_DOWN: 'shutting_down',
  ERR_INTERNAL: 'error',
}

/** The `host:port` a socket comes from, as the kernel sees it. */
export function socketClient(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
}

/** A tunnel being opened, whatever carries it: a version-1 TLS socket or a multiplexed stream. */
export interface Opening {
  readonly client: string
  /** process.hrtime.bigint() when the request arrived, for the handshake histogram. */
  readonly startedAt: bigint
  /** True once the peer left or was answered: nothing to dial for. */
  settled(): boolean
  /**
   * Answers `code`: counts and audits it (`logMessage` may say more, for
   * operators only; `account` when a refused token named one) and tells the
   * peer {@link answeredCode}. No-op once settled.
   */
  refuse(code: ErrorCode, message: string, hello?: Hello, token?: VerifiedToken, logMessage?: string, account?: string): void
  /** Answers OK with the session id; returns the endpoint to forward. */
  accept(session: string): ForwardEndpoint
  /** Bytes that came with the request, delivered to the upstream first. */
  readonly initial: Buffer | undefined
}

/**
 * The code a token holder is told for a refusal: `ERR_RESOURCE_UNKNOWN` is
 * answered as `ERR_GRANT_DENIED`, so that a token cannot tell which resource
 * names exist. The gateway's own log keeps the real code.
 */
export function answeredCode(code: ErrorCode): ErrorCode {
  return code === 'ERR_RESOURCE_UNKNOWN' ? 'ERR_GRANT_DENIED' : code
}

/** Counts and audits a refused tunnel (rate-limited: {@link RefusalAudit}). */
export function reportRefusal(
  ctx: TunnelContext,
  opening: Pick<Opening, 'client' | 'startedAt'>,
  code: ErrorCode,
  message: string,
  hello?: Hello,
  token?: VerifiedToken,
  accountOfRefusal?: string,
): void {
  const result = RESULT_OF[code] ?? 'denied'
  ctx.metrics.sessionsTotal.inc({ result })
  if (result === 'denied') ctx.metrics.authFailures.inc({ code })
  ctx.metrics.handshakeSeconds.observe(Number(process.hrtime.bigint() - opening.startedAt) / 1e9)
  ctx.audit.refused(
    {
      event: 'tunnel_denied',
      code,
      client: opening.client,
      account: token?.accountId ?? accountOfRefusal,
      tokenFp: hello ? tokenFingerprint(hello.token) : undefined,
      extra: { resource: hello?.resource },
    },
    message,
  )
}

/**
 * Verifies the token, decides the grant, dials the upstream, answers and
 * starts the session: the part of a tunnel that does not depend on its
 * transport. A refused tunnel never dials.
 */
export async function admit(ctx: TunnelContext, hello: Hello, opening: Opening): Promise<void> {
  const refuse = opening.refuse
  if (ctx.closing()) return refuse('ERR_SHUTTING_DOWN', 'the gateway is shutting down', hello)
  const down = ctx.sessions.refusal()
  if (down) return refuse(down, `access to "${hello.resource}" refused: ${down}`, hello)
  let token: VerifiedToken
  try {
    token = await ctx.verifier.verify(hello.token)
  } catch (err) {
    const e = toKeywayError(err)
    const named = e.detail?.accountId
    return refuse(e.code, e.message, hello, undefined, e.message, typeof named === 'string' ? named : undefined)
  }
  const decision = ctx.policy().decide(token.accountId, hello.resource, ctx.clock.now())
  if (!decision.allow) {
    return refuse(decision.code, `access to "${hello.resource}" denied: ${answeredCode(decision.code)}`, hello, token, `access to "${hello.resource}" denied: ${decision.code}`)
  }
  // Sessions being dialled count too: a burst of concurrent tunnels must not all pass the check.
  const account = token.accountId
  if (ctx.sessions.countFor(account) + (ctx.dialing.get(account) ?? 0) >= ctx.settings.maxConnectionsPerAccount) {
    return refuse('ERR_ACCOUNT_CONN_LIMIT', `account is at its limit of ${ctx.settings.maxConnectionsPerAccount} sessions`, hello, token)
  }
  const resource = ctx.policy().resources.get(hello.resource)!
  // The peer may have left while the token was checked: no dial for nobody.
  if (opening.settled()) return
  let upstream: Socket
  ctx.dialing.set(account, (ctx.dialing.get(account) ?? 0) + 1)
  const dialStart = process.hrtime.bigint()
  try {
    upstream = await ctx.dial(resource.host, resource.port, { timeoutMs: ctx.settings.connectTimeout })
    ctx.metrics.upstreamConnectSeconds.observe({ resource: hello.resource }, Number(process.hrtime.bigint() - dialStart) / 1e9)
  } catch (err) {
    const e = toKeywayError(err, 'ERR_UPSTREAM_UNREACHABLE')
    ctx.metrics.upstreamConnectErrors.inc({ resource: hello.resource, code: e.code })
    // The peer learns that the resource is unreachable, never where it is: the address stays in the log.
    const said = e.code === 'ERR_UPSTREAM_TIMEOUT' ? 'did not accept the connection in time' : 'is unreachable'
    return refuse(e.code, `resource "${hello.resource}" ${said}`, hello, token, `resource "${hello.resource}": ${e.message}`)
  } finally {
    // From here to sessions.add() nothing awaits: the slot passes straight to the session.
    const n = (ctx.dialing.get(account) ?? 1) - 1
    if (n > 0) ctx.dialing.set(account, n)
    else ctx.dialing.delete(account)
  }
  if (opening.settled()) {
    upstream.destroy()
    return
  }
  if (ctx.closing()) {
    upstream.destroy()
    return refuse('ERR_SHUTTING_DOWN', 'the gateway is shutting down', hello, token)
  }
  // The policy may have changed while we dialed: decide again on the current one.
  const session: LiveSession = {
    id: ctx.sessionIdPrefix + randomBytes(9).toString('base64url'),
    token,
    resource: hello.resource,
    startedAt: ctx.clock.now(),
    forward: undefined as never,
  }
  const late = ctx.sessions.refusal() ?? SessionRegistry.revocationOf(session, ctx.policy(), ctx.clock.now(), ctx.sessions.expiryGraceMs)
  if (late) {
    upstream.destroy()
    return refuse(late, `access to "${hello.resource}" ended: ${answeredCode(late)}`, hello, token, `access to "${hello.resource}" ended: ${late}`)
  }
  const peer = opening.accept(session.id)
  ctx.metrics.handshakeSeconds.observe(Number(process.hrtime.bigint() - opening.startedAt) / 1e9)
  // A PostgreSQL client told why its session ended does not take it for a
  // database crash; after a login made for it, the server's messages start at
  // a boundary.
  const wire = resource.type === 'postgres' ? new PgWireTracker(resource.credential === undefined ? 'startup' : 'messages') : undefined
  let initialAToB = opening.initial
  let upstreamUser: string | undefined
  if (resource.credential !== undefined) {
    const login = await loginUpstream(ctx, hello, token, peer, upstream, { ...resource, credential: resource.credential }, initialAToB)
    if (login === undefined) return
    // The policy may have changed during the login too.
    const revoked = ctx.sessions.refusal() ?? SessionRegistry.revocationOf(session, ctx.policy(), ctx.clock.now(), ctx.sessions.expiryGraceMs)
    if (revoked || ctx.closing()) {
      login.upstream.destroy()
      const code = revoked ?? 'ERR_SHUTTING_DOWN'
      reportRefusal(ctx, opening, code, `access to "${hello.resource}" ended during the upstream login: ${code}`, hello, token)
      refuseClient(ctx.clock, peer, login.protocol, login.protocol.refusal(answeredCode(code), `access to "${hello.resource}" ended during the login`))
      return
    }
    if (login.toClient.length > 0) peer.write(login.toClient)
    wire?.bToA(login.toClient)
    upstream = login.upstream
    initialAToB = login.toUpstream
    upstreamUser = login.username
  }
  const fwd = forward(peer, upstream, {
    ...(wire === undefined ? {} : { tap: wire }),
    idleTimeoutMs: ctx.settings.idleTimeout,
    maxLifetimeMs: ctx.settings.maxLifetime,
    halfCloseTimeoutMs: ctx.settings.halfCloseTimeout,
    initialAToB,
    // The gateway's clock decides the lifetime and half-close limits too (tests inject one).
    clock: ctx.clock,
  })
  ;(session as { forward: typeof fwd }).forward = fwd
  if (wire !== undefined) (session as { farewell?: PgWireTracker }).farewell = wire
  ctx.sessions.add(session)
  ctx.metrics.sessionsTotal.inc({ result: 'ok' })
  ctx.metrics.sessionsActive.inc()
  const sessionStart = ctx.clock.now()
  const client = opening.client
  ctx.logger.info(
    { event: 'session_start', session: session.id, account: token.accountId, account_name: token.account.name, resource: hello.resource, client, token_fp: token.fingerprint, ...(upstreamUser !== undefined ? { upstream_user: upstreamUser } : {}) },
    'session started',
  )
  void fwd.done
    .then((r) => {
      ctx.sessions.delete(session)
      ctx.metrics.sessionsActive.dec()
      ctx.metrics.sessionsClosed.inc({ reason: r.reason.startsWith('revoked:') ? 'revoked' : r.reason })
      ctx.metrics.bytes.inc({ direction: 'client_to_upstream', resource: hello.resource }, r.aToB)
      ctx.metrics.bytes.inc({ direction: 'upstream_to_client', resource: hello.resource }, r.bToA)
      ctx.metrics.sessionSeconds.observe({ resource: hello.resource }, r.durationMs / 1000)
      ctx.logger.info(
        {
          event: 'session_end',
          session: session.id,
          account: token.accountId,
          account_name: token.account.name,
          resource: hello.resource,
          client,
          bytes_in: r.aToB,
          bytes_out: r.bToA,
          duration_ms: ctx.clock.now() - sessionStart,
          reason: r.reason,
          error: r.error?.code,
        },
        'session ended',
      )
    })
    .catch((err: unknown) => ctx.logger.error({ event: 'session_error', session: session.id, err }, 'session bookkeeping failed'))
}

/**
 * Serves one tunnel on an established TLS socket (ALPN keyway/1): reads the
 * hello within its size and time bounds, then {@link admit}s it. Nothing a
 * peer sends can throw out of here.
 */
export function handleTunnel(socket: TLSSocket, ctx: TunnelContext): void {
  const startedAt = process.hrtime.bigint()
  const client = ctx.clientOf(socket)
  const parser = new HelloParser(ctx.settings.handshakeMaxBytes)
  let answered = false
  // The hello is complete: an EOF from now on is a half-close carried into the tunnel.
  let helloDone = false
  let rest: Buffer | undefined
  ctx.sockets.add(socket)

  const refuse = (code: ErrorCode, message: string, hello?: Hello, token?: VerifiedToken, logMessage = message, account?: string): void => {
    if (answered) return
    answered = true
    ctx.clock.clearTimeout(timer)
    socket.removeListener('data', onData)
    reportRefusal(ctx, opening, code, logMessage, hello, token, account)
    if (socket.destroyed) return
    // Stop reading: a refused peer may keep sending, and nothing it sends matters now.
    socket.pause()
    socket.end(encodeReply({ ok: false, code: answeredCode(code), message }), () => socket.destroy())
    socket.setTimeout(1_000, () => socket.destroy())
  }

  const opening: Opening = {
    client,
    startedAt,
    settled: () => answered || socket.destroyed,
    refuse,
    accept: (session) => {
      answered = true
      socket.write(encodeReply({ ok: true, session }))
      return socket
    },
    get initial() {
      return rest !== undefined && rest.length > 0 ? rest : undefined
    },
  }

  const onData = (chunk: Buffer): void => {
    const parsed = parser.push(chunk)
    if (parsed.state === 'need') return
    if (parsed.state === 'error') return refuse(parsed.error.code, parsed.error.message)
    helloDone = true
    socket.removeListener('data', onData)
    socket.pause()
    ctx.clock.clearTimeout(timer)
    rest = parsed.rest
    admit(ctx, parsed.value, opening).catch((err: unknown) => {
      const e = toKeywayError(err)
      refuse(e.code, 'internal error', parsed.value, undefined, e.message)
    })
  }

  const timer = ctx.clock.setTimeout(
    () => refuse('ERR_HANDSHAKE_TIMEOUT', `handshake not completed within ${ctx.settings.handshakeTimeout} ms`),
    ctx.settings.handshakeTimeout,
  )
  socket.on('error', (err: NodeJS.ErrnoException) => {
    ctx.logger.debug({ event: 'tunnel_socket_error', client, code: err.code }, err.message)
  })
  socket.once('close', () => {
    ctx.sockets.delete(socket)
    if (!answered) {
      answered = true
      ctx.clock.clearTimeout(timer)
      ctx.metrics.sessionsTotal.inc({ result: 'handshake_error' })
      ctx.logger.debug({ event: 'tunnel_abandoned', client, buffered: parser.buffered }, 'peer closed before the handshake completed')
    }
  })
  socket.on('end', () => {
    // A peer that ends its side before the hello is complete will never finish it.
    if (!answered && !helloDone) refuse('ERR_HANDSHAKE_MALFORMED', 'peer ended the stream before the handshake completed')
  })
  if (ctx.closing()) return refuse('ERR_SHUTTING_DOWN', 'the gateway is shutting down')
  if (ctx.sockets.size + ctx.streams.count > ctx.settings.maxConnections) return refuse('ERR_CONN_LIMIT', `the gateway is at its limit of ${ctx.settings.maxConnections} connections`)
  socket.on('data', onData)
}
