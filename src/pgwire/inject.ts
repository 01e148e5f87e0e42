import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { KeywayError } from '../errors.js'
import { startUpstreamTls } from '../net/index.js'
import type { ResourceCredential } from '../policy/index.js'
import {
  AUTH,
  CANCEL_REQUEST,
  encodePassword,
  encodeRequest,
  encodeSaslInitial,
  encodeSaslResponse,
  encodeStartup,
  GSSENC_REQUEST,
  MAX_LOGIN_MESSAGE_LENGTH,
  MAX_STARTUP_LENGTH,
  parseFields,
  parseMechanisms,
  parseStartup,
  PROTOCOL_3_0,
  SSL_REQUEST,
  type StartupMessage,
} from './messages.js'
import { StreamReader } from './reader.js'
import { md5Password, SCRAM_SHA_256, scramClient, type SaltedPasswordCache } from './scram.js'

/** What {@link injectLogin} needs besides the two sockets. */
export interface InjectOptions {
  /** Resource name: the scope of the salted-password cache and of messages. */
  readonly resource: string
  readonly credential: ResourceCredential
  /** The upstream password, read when needed (after the client's startup). */
  readonly password: () => Promise<{ password: string; ca: string | undefined }>
  /** Upstream host, for TLS server name checks. */
  readonly host: string
  readonly cache: SaltedPasswordCache
}

/** A login the gateway completed: forward these with {@link forward}, after the bytes given. */
export interface InjectedSession {
  readonly kind: 'session'
  /** The upstream, TLS-wrapped when the resource asks for it. */
  readonly upstream: Socket | TLSSocket
  /** Bytes for the client first: the server's messages from AuthenticationOk on (ParameterStatus, BackendKeyData, ReadyForQuery...). */
  readonly toClient: Buffer
  /** Bytes the client sent past its startup, for the upstream first. */
  readonly toUpstream: Buffer
  /** The database asked of the upstream. */
  readonly database: string | undefined
}

/** A CancelRequest, forwarded unchanged: nothing more to do. */
export interface ForwardedCancel {
  readonly kind: 'cancel'
}

/**
 * Logs in to a PostgreSQL upstream on the client's behalf. Answers the
 * client's SSLRequest and GSSENCRequest with 'N' (the local hop is loopback,
 * the tunnel is TLS), reads its StartupMessage, connects upstream (TLS when
 * the resource asks), starts up as the resource's user (the client's
 * database unless the resource pins one), authenticates with SCRAM-SHA-256,
 * md5 or cleartext, and stops at the server's AuthenticationOk: from there
 * every byte is the client's to read, unchanged (ParameterStatus,
 * BackendKeyData, ReadyForQuery). The client is never asked for a password.
 * A CancelRequest is passed to the upstream unchanged.
 *
 * On failure throws a KeywayError (ERR_HANDSHAKE_MALFORMED for a client that
 * does not speak the protocol, ERR_CREDENTIAL_UNAVAILABLE,
 * ERR_UPSTREAM_LOGIN_FAILED) whose `detail` may carry the server's SQLSTATE
 * and message; the caller answers the client and closes both sockets.
 */
export async function injectLogin(client: Duplex, initial: Buffer | undefined, upstream: Socket, options: InjectOptions): Promise<InjectedSession | ForwardedCancel> {
  const fromClient = new StreamReader(client, initial, 'ERR_HANDSHAKE_MALFORMED', 'the client')
  let startup: StartupMessage | undefined
  let cancel: Buffer | undefined
  while (startup === undefined && cancel === undefined) {
      await fromClient.need(8)
      const head = fromClient.take(8)
      const length = head.readInt32BE(0)
      const code = head.readInt32BE(4)
      if (length < 8 || length > MAX_STARTUP_LENGTH) throw new KeywayError('ERR_HANDSHAKE_MALFORMED', `the client sent a startup packet of ${length} bytes: not PostgreSQL protocol 3`)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        if (length !== 8) throw new KeywayError('ERR_HANDSHAKE_MALFORMED', 'the client sent a malformed SSLRequest')
        client.write('N')
        continue
      }
      await fromClient.need(length - 8)
      const body = fromClient.take(length - 8)
      if (code === CANCEL_REQUEST) {
        if (length !== 16) throw new KeywayError('ERR_HANDSHAKE_MALFORMED', 'the client sent a malformed CancelRequest')
        cancel = Buffer.concat([head, body])
      } else if (code >> 16 === 3) {
        const parsed = parseStartup(Buffer.concat([head.subarray(4), body]))
        if (typeof parsed === 'string') throw new KeywayError('ERR_HANDSHAKE_MALFORMED', `the client's StartupMessage is malformed: ${parsed}`)
        startup = parsed
      } else {
        throw new KeywayError('ERR_HANDSHAKE_MALFORMED', `the client asked for protocol ${code >> 16}.${code & 0xffff}; PostgreSQL protocol 3 is needed`)
      }
  }
  const toUpstream = fromClient.detach()
  const { credential } = options
  // The secret is read only now: a client that never starts up costs no read.
  const secret = cancel === undefined || credential.upstreamTls !== 'disable' ? await options.password() : undefined
  const server = credential.upstreamTls === 'disable' ? upstream : await startTls(upstream, credential, options.host, secret?.ca)
  if (cancel !== undefined) {
    server.end(cancel)
    return { kind: 'cancel' }
  }
  const database = credential.database ?? startup!.params.find(([k]) => k === 'database')?.[1]
  const params: [string, string][] = [['user', userOf(credential)]]
  if (database !== undefined) params.push(['database', database])
  for (const [k, v] of startup!.params) if (k !== 'user' && k !== 'database') params.push([k, v])
  server.write(encodeStartup({ version: startup!.version, params }))
  const auth = await authenticate(server, secret!.password, options)
  return { kind: 'session', upstream: server, toClient: Buffer.concat([auth.upToOk, auth.rest]), toUpstream, database }
}

/** The PostgreSQL user of a credential (validation makes it required for postgres). */
function userOf(credential: ResourceCredential): string {
  if (credential.username === undefined) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', 'the resource names no username: PostgreSQL needs one')
  return credential.username
}

/** Options of {@link probeLogin}: those of a login, and the database to start up on. */
export interface ProbeOptions extends InjectOptions {
  readonly database: string
}

/**
 * A readiness probe of a PostgreSQL upstream with credentials: a startup
 * as the resource's user on `database` (TLS when the resource asks), the
 * authentication of a real login, and the server's messages up to its
 * first ReadyForQuery; then Terminate. Resolves when the server is ready
 * for queries; throws a KeywayError (ERR_CREDENTIAL_UNAVAILABLE,
 * ERR_UPSTREAM_LOGIN_FAILED with the server's SQLSTATE and message) when not.
 * The caller closes `upstream` in every case.
 */
export async function probeLogin(upstream: Socket, options: ProbeOptions): Promise<void> {
  const { credential } = options
  const secret = await options.password()
  const server = credential.upstreamTls === 'disable' ? upstream : await startTls(upstream, credential, options.host, secret.ca)
  try {
    server.write(encodeStartup({ version: PROTOCOL_3_0, params: [['user', userOf(credential)], ['database', options.database], ['application_name', 'keyway-readiness']] }))
    const { rest } = await authenticate(server, secret.password, options)
    const reader = new StreamReader(server, rest, 'ERR_UPSTREAM_LOGIN_FAILED', 'the upstream')
    for (;;) {
      await reader.need(5)
      const head = reader.take(5)
      const type = String.fromCharCode(head[0]!)
      const length = head.readInt32BE(1)
      if (length < 4 || length > MAX_LOGIN_MESSAGE_LENGTH) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream sent a ${length}-byte message after the login: not PostgreSQL`)
      await reader.need(length - 4)
      const body = reader.take(length - 4)
      if (type === 'E') {
        const f = parseFields(body)
        throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream refused the session of "${userOf(credential)}": ${f.get('M') ?? 'no message'}`, {
          detail: { sqlstate: f.get('C'), server_message: f.get('M') },
        })
      }
      if (type === 'Z') {
        reader.detach()
        server.end(TERMINATE)
        return
      }
    }
  } finally {
    if (server !== upstream) server.destroy()
  }
}

/** Terminate ('X'): the polite end of a session. */
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4])

async function startTls(upstream: Socket, credential: ResourceCredential, host: string, ca: string | undefined): Promise<TLSSocket> {
  upstream.write(encodeRequest(SSL_REQUEST))
  const reader = new StreamReader(upstream, undefined, 'ERR_UPSTREAM_LOGIN_FAILED', 'the upstream')
  await reader.need(1)
  const answer = reader.take(1).toString('latin1')
  // Bytes after the 'S' and before the TLS handshake would be injected plaintext (CVE-2021-23222).
  const extra = reader.detach()
  if (answer !== 'S') throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream does not accept TLS (answered ${JSON.stringify(answer)}), and the resource asks upstreamTls: ${credential.upstreamTls}`)
  if (extra.length > 0) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', 'the upstream sent unencrypted bytes after accepting TLS')
  return startUpstreamTls(upstream, { mode: credential.upstreamTls === 'verify-full' ? 'verify-full' : 'require', host, ca })
}

/** Authenticates a started-up session: `upToOk` is the server's bytes up to and with AuthenticationOk, `rest` what it sent after. */
async function authenticate(server: Socket | TLSSocket, password: string, options: InjectOptions): Promise<{ upToOk: Buffer; rest: Buffer }> {
  const reader = new StreamReader(server, undefined, 'ERR_UPSTREAM_LOGIN_FAILED', 'the upstream')
  const user = userOf(options.credential)
  // NegotiateProtocolVersion and notices before AuthenticationOk are the client's to see too.
  const early: Buffer[] = []
  let scram: ReturnType<typeof scramClient> | undefined
  for (;;) {
    await reader.need(5)
    const head = reader.take(5)
    const type = String.fromCharCode(head[0]!)
    const length = head.readInt32BE(1)
    if (length < 4 || length > MAX_LOGIN_MESSAGE_LENGTH) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream sent a ${length}-byte message during the login: not PostgreSQL`)
    await reader.need(length - 4)
    const body = reader.take(length - 4)
    if (type === 'E') {
      const f = parseFields(body)
      throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream refused the login as "${user}": ${f.get('M') ?? 'no message'}`, {
        detail: { sqlstate: f.get('C'), server_message: f.get('M') },
      })
    }
    if (type === 'v' || type === 'N') {
      early.push(head, body)
      continue
    }
    if (type !== 'R' || body.length < 4) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream sent message '${type}' during the login`)
    const code = body.readInt32BE(0)
    if (code === AUTH.ok) {
      if (scram !== undefined) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', 'the upstream ended SCRAM without its final message')
      return { upToOk: Buffer.concat([...early, head, body]), rest: reader.detach() }
    } else if (code === AUTH.sasl) {
      const mechanisms = parseMechanisms(body)
      if (!mechanisms.includes(SCRAM_SHA_256)) throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream offers only ${mechanisms.join(', ')}; the gateway speaks ${SCRAM_SHA_256}`)
      scram = scramClient({ password, salted: (salt, iterations) => options.cache.get(options.resource, password, salt, iterations) })
      server.write(encodeSaslInitial(SCRAM_SHA_256, scram.clientFirst))
    } else if (code === AUTH.saslContinue && scram !== undefined) {
      server.write(encodeSaslResponse(await scram.final(body.toString('utf8', 4))))
    } else if (code === AUTH.saslFinal && scram !== undefined) {
      scram.verifyServerFinal(body.toString('utf8', 4))
      scram = undefined
    } else if (code === AUTH.md5 && body.length === 8) {
      server.write(encodePassword(md5Password(user, password, body.subarray(4, 8))))
    } else if (code === AUTH.cleartext) {
      server.write(encodePassword(password))
    } else {
      throw new KeywayError('ERR_UPSTREAM_LOGIN_FAILED', `the upstream asks for authentication method ${code}, which the gateway does not speak (it speaks SCRAM-SHA-256, md5 and password)`)
    }
  }
}
