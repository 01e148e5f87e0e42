import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { VerifiedToken } from '../auth/index.js'
import { toKeywayError } from '../errors.js'
import type { ForwardEndpoint } from '../forward/index.js'
import { keywayErrorResponse, injectLogin } from '../pgwire/index.js'
import type { Resource, ResourceCredential } from '../policy/index.js'
import type { Hello } from '../protocol/index.js'
import type { Clock } from '../clock.js'
import type { Logger } from '../observe/index.js'
import type { SaltedPasswordCache } from '../pgwire/index.js'
import type { SecretResolver } from '../secrets/index.js'
import type { GatewayMetrics } from './metrics.js'

/** A login made upstream with the resource's credential, ready to forward. */
export interface UpstreamLogin {
  readonly upstream: Socket | TLSSocket
  /** Server bytes from AuthenticationOk on, written to the client before forwarding. */
  readonly toClient: Buffer
  /** Client bytes past its startup, for the upstream first. */
  readonly toUpstream: Buffer | undefined
  readonly username: string
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
 * Runs the PostgreSQL login of a resource with credentials on an accepted
 * tunnel ({@link injectLogin}) within `handshakeTimeout + connectTimeout`.
 * Resolves undefined when nothing is left to forward: a CancelRequest passed
 * on, or a failure, which the client is told as an ErrorResponse (SQLSTATE and
 * Keyway code), the log as `upstream_login_failed` and the metrics count.
 */
export async function loginUpstream(
  ctx: UpstreamLoginContext,
  hello: Hello,
  token: VerifiedToken,
  peer: ForwardEndpoint,
  upstream: Socket,
  resource: Resource & { readonly credential: ResourceCredential },
  initial: Buffer | undefined,
): Promise<UpstreamLogin | undefined> {
  const limit = ctx.settings.handshakeTimeout + ctx.settings.connectTimeout
  let timedOut = false
  let server: Socket | TLSSocket = upstream
  const timer = ctx.clock.setTimeout(() => {
    timedOut = true
    peer.destroy()
    server.destroy()
  }, limit)
  try {
    const result = await injectLogin(peer, initial, upstream, {
      resource: resource.name,
      credential: resource.credential,
      host: resource.host,
      cache: ctx.saltedPasswords,
      password: () => ctx.credentials.resolve(resource.name, resource.credential),
    })
    if (result.kind === 'cancel') {
      ctx.logger.debug({ event: 'cancel_forwarded', resource: hello.resource, account: token.accountId }, 'CancelRequest passed to the upstream')
      peer.end()
      return undefined
    }
    server = result.upstream
    return {
      upstream: result.upstream,
      toClient: result.toClient,
      toUpstream: result.toUpstream.length > 0 ? result.toUpstream : undefined,
      username: resource.credential.username,
    }
  } catch (err) {
    const e = timedOut ? toKeywayError(new Error(`login not completed within ${limit} ms`), 'ERR_HANDSHAKE_TIMEOUT') : toKeywayError(err)
    const clientSide = e.code === 'ERR_HANDSHAKE_MALFORMED' || e.code === 'ERR_HANDSHAKE_TIMEOUT'
    ctx.metrics.sessionsTotal.inc({ result: clientSide ? 'handshake_error' : 'upstream_error' })
    if (!clientSide) ctx.metrics.upstreamLoginFailures.inc({ resource: hello.resource, code: e.code })
    ctx.logger.warn(
      {
        event: clientSide ? 'client_login_error' : 'upstream_login_failed',
        code: e.code,
        resource: hello.resource,
        account: token.accountId,
        upstream_user: resource.credential.username,
        ...(e.detail?.sqlstate !== undefined ? { sqlstate: e.detail.sqlstate } : {}),
      },
      e.message,
    )
    upstream.destroy()
    server.destroy()
    if (!peer.destroyed) {
      // The client learns which resource and why; the upstream's address and the secret's location stay in the log.
      const said = e.code === 'ERR_CREDENTIAL_UNAVAILABLE' ? `the gateway has no usable credential for resource "${hello.resource}"` : e.message
      peer.end(keywayErrorResponse(e.code, said), () => peer.destroy())
    }
    return undefined
  } finally {
    ctx.clock.clearTimeout(timer)
  }
}
