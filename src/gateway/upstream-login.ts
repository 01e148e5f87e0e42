import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { VerifiedToken } from '../auth/index.js'
import { KeywayError, toKeywayError } from '../errors.js'
import type { ForwardEndpoint } from '../forward/index.js'
import type { Hello } from '../protocol/index.js'
import type { Clock } from '../clock.js'
import type { Logger } from '../observe/index.js'
import type { SaltedPasswordCache } from '../pgwire/index.js'
import type { SecretResolver } from '../secrets/index.js'
import type { GatewayMetrics } from './metrics.js'
import { PROTOCOL_LOGINS, type CredentialedResource, type ProtocolLogin } from './protocol-logins.js'

/** A login made upstream with the resource's credential, ready to forward. */
export interface UpstreamLogin {
  readonly upstream: Socket | TLSSocket
  /** Server bytes for the client before forwarding (PostgreSQL: from AuthenticationOk on). */
  readonly toClient: Buffer
  /** Client bytes for the upstream first. */
  readonly toUpstream: Buffer | undefined
  /** The upstream user the account was logged in as (undefined: Redis's default user). */
  readonly username: string | undefined
  /** The protocol that logged in: how to tell its client that Keyway refused it. */
  readonly protocol: ProtocolLogin
}

/** What {@link loginUpstream} needs of the tunnel around it (a tunnel's context has it all). */
export interface UpstreamLoginContext {
  readonly settings: { readonly handshakeTimeout: number; readonly connectTimeout: number }
  readonly clock: Clock
  readonly logger: Logger
  readonly metrics: GatewayMetrics
  readonly credentials: SecretResolver
  readonly saltedPasswords: SaltedPasswordCache
}

/**
 * Runs the login of a resource with credentials on an accepted tunnel, with
 * the {@link ProtocolLogin} of the resource's type, within
 * `handshakeTimeout + connectTimeout`. Resolves undefined when nothing is
 * left to forward: a PostgreSQL CancelRequest passed on, or a failure, which
 * the client is told in its protocol (a PostgreSQL ErrorResponse with SQLSTATE
 * and Keyway code, a Redis `-ERR keyway CODE: ...`), the log as
 * `upstream_login_failed` and the metrics count.
 */
export async function loginUpstream(
  ctx: UpstreamLoginContext,
  hello: Hello,
  token: VerifiedToken,
  peer: ForwardEndpoint,
  upstream: Socket,
  resource: CredentialedResource,
  initial: Buffer | undefined,
): Promise<UpstreamLogin | undefined> {
  const protocol = PROTOCOL_LOGINS.get(resource.type)
  const limit = ctx.settings.handshakeTimeout + ctx.settings.connectTimeout
  let timedOut = false
  let server: Socket | TLSSocket = upstream
  const timer = ctx.clock.setTimeout(() => {
    timedOut = true
    // A login that waits on the client ends it; one that waits only on the server is told why.
    if (protocol?.readsClient !== false) peer.destroy()
    server.destroy()
  }, limit)
  try {
    if (protocol === undefined) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the gateway cannot log in to resources of type "${resource.type}"`)
    const result = await protocol.login(peer, initial, upstream, resource, ctx)
    if (result.kind === 'done') {
      ctx.logger.debug({ event: 'cancel_forwarded', resource: hello.resource, account: token.accountId }, 'CancelRequest passed to the upstream')
      peer.end()
      return undefined
    }
    server = result.upstream
    if (timedOut) throw new Error('timed out')
    return { upstream: result.upstream, toClient: result.toClient, toUpstream: result.toUpstream, username: resource.credential.username ?? protocol.defaultUser, protocol }
  } catch (err) {
    const e = !timedOut
      ? toKeywayError(err)
      : protocol?.readsClient === false
        ? new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream did not complete the login within ${limit} ms`)
        : toKeywayError(new Error(`login not completed within ${limit} ms`), 'ERR_HANDSHAKE_TIMEOUT')
    const clientSide = e.code === 'ERR_HANDSHAKE_MALFORMED' || e.code === 'ERR_HANDSHAKE_TIMEOUT'
    ctx.metrics.sessionsTotal.inc({ result: clientSide ? 'handshake_error' : 'upstream_error' })
    if (!clientSide) ctx.metrics.upstreamLoginFailures.inc({ resource: hello.resource, code: e.code })
    // The secret may be the stale part: the next login reads it again.
    if (e.code === 'ERR_UPSTREAM_LOGIN_FAILED') ctx.credentials.forget(resource.name)
    ctx.logger.warn(
      {
        event: clientSide ? 'client_login_error' : 'upstream_login_failed',
        code: e.code,
        resource: hello.resource,
        account: token.accountId,
        type: resource.type,
        upstream_user: resource.credential.username ?? protocol?.defaultUser,
        ...(e.detail?.sqlstate !== undefined ? { sqlstate: e.detail.sqlstate } : {}),
      },
      e.message,
    )
    upstream.destroy()
    server.destroy()
    if (!peer.destroyed && protocol !== undefined) {
      // The client learns which resource and why; the upstream's address and the secret's location stay in the log.
      const said = e.code === 'ERR_CREDENTIAL_UNAVAILABLE' ? `the gateway has no usable credential for resource "${hello.resource}"` : e.message
      refuseClient(ctx.clock, peer, protocol, protocol.refusal(e.code, said))
    } else if (!peer.destroyed) {
      peer.destroy()
    }
    return undefined
  } finally {
    ctx.clock.clearTimeout(timer)
  }
}

/** How long a refused client whose bytes were never read gets to close its side before it is cut. */
export const REFUSAL_GRACE_MS = 2_000

/**
 * Sends a client its protocol's refusal and closes. A login that read the
 * client (PostgreSQL) closes at once; one that did not (Redis: the client's
 * commands wait unread) first drains what the client sent and lets it close
 * its side, for up to {@link REFUSAL_GRACE_MS}: a stream closed with unread
 * bytes is reset, and a reset can overtake the refusal.
 */
export function refuseClient(clock: Clock, peer: ForwardEndpoint, protocol: ProtocolLogin, refusal: Buffer): void {
  if (protocol.readsClient) {
    peer.end(refusal, () => peer.destroy())
    return
  }
  const timer = clock.setTimeout(() => peer.destroy(), REFUSAL_GRACE_MS)
  peer.once('close', () => clock.clearTimeout(timer))
  peer.on('error', () => peer.destroy())
  peer.once('end', () => peer.destroy())
  peer.on('data', () => {})
  peer.resume()
  peer.end(refusal)
}
