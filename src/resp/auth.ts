import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { KeywayError } from '../errors.js'
import { startUpstreamTls } from '../net/index.js'
import type { ResourceCredential } from '../policy/index.js'
import { encodeCommand, ReplyReader } from './wire.js'

/** What {@link authenticateRedis} and {@link probeRedis} need besides the upstream socket. */
export interface RedisLoginOptions {
  readonly credential: ResourceCredential
  /** The upstream password (and CA for verify-full), read when needed. */
  readonly password: () => Promise<{ password: string; ca: string | undefined }>
  /** Upstream host, for TLS server name checks. */
  readonly host: string
}

/** A Redis connection the gateway authenticated: forward it, after the bytes given. */
export interface RedisSession {
  /** The upstream, TLS-wrapped when the resource asks for it. */
  readonly upstream: Socket | TLSSocket
  /** Bytes the server sent past the AUTH reply (none from a well-behaved server), for the client first. */
  readonly toClient: Buffer
}

/**
 * Authenticates a Redis connection on the client's behalf before any of the
 * client's bytes reach it: TLS when the resource asks (Redis speaks TLS from
 * the first byte), then `AUTH <username> <password>` (Redis 6 ACL form) or
 * `AUTH <password>` for a resource without a username (the default user),
 * and swallows the `+OK`. The client never sends a password; nothing after
 * the login is parsed.
 *
 * @throws KeywayError ERR_CREDENTIAL_UNAVAILABLE (the secret cannot be read),
 * ERR_UPSTREAM_LOGIN_FAILED (the server refused: `detail.server_message` is its error reply)
 */
export async function authenticateRedis(upstream: Socket, options: RedisLoginOptions): Promise<RedisSession> {
  const secret = await options.password()
  const server = await connectTls(upstream, options.credential, options.host, secret.ca)
  const reader = new ReplyReader(server)
  try {
    server.write(authCommand(options.credential, secret.password))
    expectOk(await reader.line(), options.credential)
  } catch (err) {
    reader.detach()
    if (server !== upstream) server.destroy()
    throw err
  }
  return { upstream: server, toClient: reader.detach() }
}

/**
 * A readiness probe of a Redis upstream with credentials: the login of
 * {@link authenticateRedis}, then `PING`, answered `+PONG`. Resolves when
 * both succeeded; throws a KeywayError as {@link authenticateRedis} does.
 * The caller closes `upstream` in every case.
 */
export async function probeRedis(upstream: Socket, options: RedisLoginOptions): Promise<void> {
  const { upstream: server } = await authenticateRedis(upstream, options)
  const reader = new ReplyReader(server)
  try {
    server.write(encodeCommand(['PING']))
    const pong = await reader.line()
    if (pong !== '+PONG') throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream answered PING with ${JSON.stringify(pong.slice(0, 200))}`, { detail: { server_message: pong.slice(0, 200) } })
  } finally {
    reader.detach()
    server.destroy()
  }
}

function authCommand(credential: ResourceCredential, password: string): Buffer {
  return encodeCommand(credential.username === undefined ? ['AUTH', password] : ['AUTH', credential.username, password])
}

function expectOk(line: string, credential: ResourceCredential): void {
  if (line.startsWith('+')) return
  const said = line.slice(0, 500)
  const who = credential.username === undefined ? 'the default user' : `"${credential.username}"`
  if (line.startsWith('-')) {
    throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream refused the login as ${who}: ${said.slice(1)}`, { detail: { server_message: said.slice(1) } })
  }
  throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream answered AUTH with ${JSON.stringify(said)}: not Redis`)
}

async function connectTls(upstream: Socket, credential: ResourceCredential, host: string, ca: string | undefined): Promise<Socket | TLSSocket> {
  if (credential.upstreamTls === 'disable') return upstream
  return startUpstreamTls(upstream, { mode: credential.upstreamTls, host, ca })
}
