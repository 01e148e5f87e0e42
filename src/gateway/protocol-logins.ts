import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { ErrorCode } from '../errors.js'
import type { ForwardEndpoint } from '../forward/index.js'
import { injectLogin, keywayErrorResponse, probeLogin, type SaltedPasswordCache } from '../pgwire/index.js'
import type { Resource, ResourceCredential } from '../policy/index.js'
import { authenticateRedis, keywayErrorReply, probeRedis } from '../resp/index.js'
import type { SecretResolver } from '../secrets/index.js'

/** A resource the gateway logs in to with its credential. */
export type CredentialedResource = Resource & { readonly credential: ResourceCredential }

/** What a protocol's login needs of the gateway. */
export interface ProtocolLoginContext {
  readonly credentials: SecretResolver
  readonly saltedPasswords: SaltedPasswordCache
}

/** A login done: forward `upstream` after writing `toClient` to the client and `toUpstream` (if any) upstream. */
export interface ProtocolSession {
  readonly kind: 'session'
  readonly upstream: Socket | TLSSocket
  readonly toClient: Buffer
  readonly toUpstream: Buffer | undefined
}

/**
 * One protocol's side of credential injection: the seam every protocol the
 * gateway logs in to implements (PostgreSQL, Redis). The gateway picks it by
 * the resource's `type`; before and after the login everything else
 * (admission, forwarding, audit) is the same for all of them.
 */
export interface ProtocolLogin {
  /**
   * Whether the login reads the client first (PostgreSQL's startup): then a
   * client that sends garbage or nothing in time is the client's fault.
   */
  readonly readsClient: boolean
  /** The upstream user a credential without `username` logs in as (Redis: `default`), for the audit. */
  readonly defaultUser: string | undefined
  /**
   * Logs in upstream on the client's behalf. Resolves with the session to
   * forward, or `{kind: 'done'}` when nothing is left to forward (a
   * PostgreSQL CancelRequest passed on). Throws a KeywayError the caller
   * tells the client with {@link refusal}.
   */
  login(peer: ForwardEndpoint, initial: Buffer | undefined, upstream: Socket, resource: CredentialedResource, ctx: ProtocolLoginContext): Promise<ProtocolSession | { readonly kind: 'done' }>
  /** The bytes that tell this protocol's client that Keyway refused or ended it, with `code`. */
  refusal(code: ErrorCode, message: string): Buffer
  /**
   * A real login and the protocol's least request, for readiness
   * (PostgreSQL: up to ReadyForQuery on the pinned database, else
   * `postgres`; Redis: AUTH and PING). Throws a KeywayError when the
   * upstream is not usable; the caller closes `upstream`.
   */
  probe(upstream: Socket, resource: CredentialedResource, ctx: ProtocolLoginContext): Promise<void>
}

const secretOf = (resource: CredentialedResource, ctx: ProtocolLoginContext) => () => ctx.credentials.resolve(resource.name, resource.credential)

const postgres: ProtocolLogin = {
  readsClient: true,
  defaultUser: undefined,
  async login(peer, initial, upstream, resource, ctx) {
    const result = await injectLogin(peer, initial, upstream, {
      resource: resource.name,
      credential: resource.credential,
      host: resource.host,
      cache: ctx.saltedPasswords,
      password: secretOf(resource, ctx),
    })
    if (result.kind === 'cancel') return { kind: 'done' }
    return { kind: 'session', upstream: result.upstream, toClient: result.toClient, toUpstream: result.toUpstream.length > 0 ? result.toUpstream : undefined }
  },
  refusal: keywayErrorResponse,
  probe(upstream, resource, ctx) {
    return probeLogin(upstream, {
      resource: resource.name,
      credential: resource.credential,
      host: resource.host,
      cache: ctx.saltedPasswords,
      password: secretOf(resource, ctx),
      database: resource.credential.database ?? 'postgres',
    })
  },
}

const redis: ProtocolLogin = {
  readsClient: false,
  defaultUser: 'default',
  async login(_peer, initial, upstream, resource, ctx) {
    // The client's bytes wait unread (in `initial` and its socket) until the AUTH is answered.
    const result = await authenticateRedis(upstream, { credential: resource.credential, host: resource.host, password: secretOf(resource, ctx) })
    return { kind: 'session', upstream: result.upstream, toClient: result.toClient, toUpstream: initial }
  },
  refusal: keywayErrorReply,
  probe(upstream, resource, ctx) {
    return probeRedis(upstream, { credential: resource.credential, host: resource.host, password: secretOf(resource, ctx) })
  },
}

/** The protocol logins by resource type: one per entry of the policy's CREDENTIAL_TYPES. */
export const PROTOCOL_LOGINS: ReadonlyMap<string, ProtocolLogin> = new Map([
  ['postgres', postgres],
  ['redis', redis],
])
