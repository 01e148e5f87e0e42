import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { z } from 'zod'
import { hashPassword, verifyPassword, type SignInLimiter, type VerifiedToken } from '../auth/index.js'
import type { Clock } from '../clock.js'
import { httpStatusOf, KeywayError, toKeywayError, type ErrorCode } from '../errors.js'
import { formatHostPort, isLoopback } from '../net/index.js'
import type { Logger } from '../observe/index.js'
import { registerAdminUi } from '../admin-ui/index.js'
import type { AdminBackend } from './backend.js'
import type { LiveSessionControl } from './live.js'
import { checkIfMatch, etagOf } from './etag.js'
import {
  AddResourceBody,
  AssignRoleBody,
  CreateRoleBody,
  CreateServiceBody,
  ErrorBody,
  ForceQuery,
  GrantBody,
  LiveSessionList,
  LoginBody,
  PageQuery,
  RotateBody,
  SettingsBody,
} from './schemas.js'
import { csrfMatches, SessionStore, type AdminSession } from './sessions.js'

/** The cookie holding an admin's session id. */
export const SESSION_COOKIE = 'keyway_admin'
/** Largest request body the admin API reads. */
export const ADMIN_BODY_LIMIT = 65_536

/** Options of {@link AdminServer}. */
export interface AdminServerOptions {
  readonly host: string
  readonly port: number
  /** Serve HTTPS with this certificate and key; the session cookie is then `Secure`. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer } | undefined
  /** A TLS-terminating proxy sits in front: cookies are `Secure` although this listener is plain HTTP. */
  readonly behindTlsProxy?: boolean
  readonly backend: AdminBackend
  readonly clock: Clock
  readonly logger: Logger
  /** How long a session lasts. */
  readonly sessionTtlMs: number
  /** The one failed sign-in limiter (shared with the gateway's `/v1/login`). */
  readonly limiter: SignInLimiter
  /** Verifies a bearer token against the current policy (the gateway's verifier). */
  readonly verifyToken: (token: string) => Promise<VerifiedToken>
  /** Issues a login token for `accountId` (answers `{"token": true}` logins); absent: not offered. */
  readonly issueLoginToken?: (accountId: string) => Promise<{ token: string; expiresAt: number }>
  /** The live sessions this API lists and ends (`localSessions`, `clusterSessions`); absent when the admin server runs alone on the file store. */
  readonly liveSessions?: LiveSessionControl | undefined
}

/** Who is calling: an admin user, signed in by cookie or bearer. */
interface Caller {
  readonly accountId: string
  readonly name: string
  readonly via: 'session' | 'bearer'
  readonly session?: AdminSession
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** One admin API route: its schemas document it (OpenAPI) and validate it. */
interface Route {
  readonly method: Method
  /** Fastify path (`:param`). */
  readonly path: string
  readonly summary: string
  readonly body?: z.ZodType
  readonly query?: z.ZodType
  /** The success answer, for the OpenAPI document. */
  readonly response?: z.ZodType
  /** Success status. */
  readonly status?: number
  /** Signed-in admins only (all but login). */
  readonly auth: boolean
  handler(req: FastifyRequest, reply: FastifyReply, caller: Caller | undefined): Promise<unknown>
}

/**
 * The admin HTTP API (`/v1/admin/…`), on its own listener: sign-in with
 * sessions and CSRF protection, bearer tokens of admins, every edit
 * validated by the policy operations and audited, ETags against lost
 * updates, one error shape, and an OpenAPI 3.1 document generated from the
 * same schemas that validate the requests.
 */
export class AdminServer {
  readonly #options: AdminServerOptions
  readonly #sessions: SessionStore
  readonly #app: FastifyInstance
  readonly #routes: Route[]
  #dummyHash: Promise<string> | undefined
  #closed: Promise<void> | undefined
  #started = false

  /**
   * @throws KeywayError ERR_ADMIN_INSECURE_LISTEN for a non-loopback address
   *   without TLS, unless `behindTlsProxy`: sessions and passwords would cross the network in clear.
   */
  constructor(options: AdminServerOptions) {
    if (!isLoopback(options.host) && options.tls === undefined && options.behindTlsProxy !== true) {
      throw new KeywayError(
        'ERR_ADMIN_INSECURE_LISTEN',
        `the admin listener ${formatHostPort({ host: options.host, port: options.port })} is not a loopback address and has no TLS: configure admin.tls, or set admin.behindTlsProxy when a TLS-terminating proxy sits in front`,
      )
    }
    this.#options = options
    this.#sessions = new SessionStore({ clock: options.clock, ttlMs: options.sessionTtlMs })
    this.#app = Fastify({
      ...(options.tls ? { https: { cert: options.tls.cert, key: options.tls.key } } : {}),
      bodyLimit: ADMIN_BODY_LIMIT,
      logger: false,
      return503OnClosing: true,
      forceCloseConnections: true,
    } as Parameters<typeof Fastify>[0] & object) as unknown as FastifyInstance
    this.#routes = this.#defineRoutes()
    this.#install()
  }

  /** Listens; resolves to the bound address. */
  async start(): Promise<AddressInfo> {
    try {
      await this.#app.listen({ host: this.#options.host, port: this.#options.port })
    } catch (err) {
      const at = formatHostPort({ host: this.#options.host, port: this.#options.port })
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new KeywayError('ERR_PORT_IN_USE', `the admin listener cannot listen on ${at} (admin.listen): the port is already in use`, { cause: err })
      }
      throw err
    }
    this.#started = true
    return this.address()!
  }

  /** The bound address, once started. */
  address(): AddressInfo | undefined {
    const a = this.#app.server.address()
    return a !== null && typeof a === 'object' ? a : undefined
  }

  /** Stops listening and ends open connections. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#started || this.#app.server.listening ? this.#app.close() : Promise.resolve()
    return this.#closed
  }

  /** The OpenAPI 3.1 document of this API, generated from the route schemas. */
  openApi(): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {}
    const error = { description: 'An error with a stable code (docs/errors.md)', content: { 'application/json': { schema: z.toJSONSchema(ErrorBody) } } }
    for (const r of this.#routes) {
      const path = r.path.replace(/:(\w+)/g, '{$1}')
      const params = [...r.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }))
      const query = r.query ? Object.entries((z.toJSONSchema(r.query) as { properties?: Record<string, unknown> }).properties ?? {}).map(([name, schema]) => ({ name, in: 'query', required: false, schema })) : []
      ;(paths[path] ??= {})[r.method.toLowerCase()] = {
        summary: r.summary,
        ...(params.length + query.length > 0 ? { parameters: [...params, ...query] } : {}),
        ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(r.body) } } } } : {}),
        ...(r.auth ? { security: [{ session: [] }, { bearer: [] }] } : {}),
        responses: { [String(r.status ?? 200)]: { description: 'Success', ...(r.response ? { content: { 'application/json': { schema: z.toJSONSchema(r.response) } } } : {}) }, default: error },
      }
    }
    return {
      openapi: '3.1.0',
      info: { title: 'Keyway admin API', version: '1' },
      paths,
      components: {
        securitySchemes: {
          session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE, description: 'From POST /v1/admin/login; state-changing requests also send X-CSRF-Token.' },
          bearer: { type: 'http', scheme: 'bearer', description: 'A login token of an admin (keyway login).' },
        },
      },
    }
  }

  #install(): void {
    const app = this.#app
    app.addHook('onSend', async (_req, reply, payload) => {
      reply.header('cache-control', 'no-store')
      reply.header('x-content-type-options', 'nosniff')
      reply.header('x-frame-options', 'DENY')
      reply.header('content-security-policy', "default-src 'none'; frame-ancestors 'none'")
      reply.header('referrer-policy', 'no-referrer')
      return payload
    })
    app.setErrorHandler((err: unknown, _req, reply) => {
      const e = fromFastify(err)
      if (httpStatusOf(e.code) >= 500) this.#options.logger.error({ event: 'admin_api_error', code: e.code, err }, 'admin API request failed')
      void reply.code(httpStatusOf(e.code)).send({ code: e.code, message: e.message, ...(e.detail && !e.detail.audited ? { detail: e.detail } : {}) })
    })
    // The web Admin UI at `/`: its pages call the routes below in-process, so they share every check.
    registerAdminUi(app, {
      secureCookies: this.#options.tls !== undefined || this.#options.behindTlsProxy === true,
      logError: (code, err) => this.#options.logger.error({ event: 'admin_api_error', code, err }, 'admin UI page failed'),
    })
    app.setNotFoundHandler((req, reply) => {
      void reply.code(404).send({ code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` })
    })
    for (const r of this.#routes) {
      app.route({
        method: r.method,
        url: r.path,
        handler: async (req, reply) => {
          const caller = r.auth ? await this.#authenticate(req, r.method !== 'GET') : undefined
          const out = await r.handler(req, reply, caller)
          reply.code(r.status ?? 200)
          return out
        },
      })
    }
  }

  async #authenticate(req: FastifyRequest, changes: boolean): Promise<Caller> {
    const header = req.headers.authorization
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(header)
      if (!m) throw new KeywayError('ERR_ADMIN_UNAUTHENTICATED', 'send "Authorization: Bearer <token>" with a token from keyway login')
      let token: VerifiedToken
      try {
        token = await this.#options.verifyToken(m[1]!)
      } catch (err) {
        const e = toKeywayError(err)
        throw new KeywayError('ERR_ADMIN_UNAUTHENTICATED', `the bearer token was refused: ${e.code}`, { detail: { reason: e.code } })
      }
      if (token.account.type !== 'user' || token.kind !== 'login') {
        throw new KeywayError('ERR_ADMIN_FORBIDDEN', 'service tokens cannot use the admin API; sign in as an admin user (keyway login)')
      }
      return { ...(await this.#requireAdmin(token.accountId)), via: 'bearer' }
    }
    const id = cookieOf(req, SESSION_COOKIE)
    const session = id === undefined ? undefined : this.#sessions.get(id)
    if (session === undefined) throw new KeywayError('ERR_ADMIN_UNAUTHENTICATED', 'sign in first: POST /v1/admin/login')
    // A cookie rides along on cross-site requests: a state change must prove it comes from our own page.
    if (changes) {
      this.#checkOrigin(req)
      const given = req.headers['x-csrf-token']
      if (!csrfMatches(session, typeof given === 'string' ? given : undefined)) {
        throw new KeywayError('ERR_CSRF', 'missing or wrong X-CSRF-Token: send the csrfToken of your session')
      }
    }
    return { ...(await this.#requireAdmin(session.accountId)), via: 'session', session }
  }

  #checkOrigin(req: FastifyRequest): void {
    const origin = req.headers.origin
    if (origin === undefined) return
    const host = req.headers.host
    let ok = false
    try {
      ok = host !== undefined && new URL(origin).host === host
    } catch {
      ok = false
    }
    if (!ok) throw new KeywayError('ERR_CSRF', `requests from origin ${origin.slice(0, 100)} are refused`)
  }

  /** The admin flag and the account are read now, so a demotion or suspension takes effect at once. */
  async #requireAdmin(accountId: string): Promise<{ accountId: string; name: string }> {
    const [policy, credentials] = await Promise.all([this.#options.backend.policy(), this.#options.backend.credentials()])
    const account = policy.accounts.get(accountId)
    if (account === undefined || account.suspended || account.type !== 'user' || credentials.get(accountId)?.admin !== true) {
      throw new KeywayError('ERR_ADMIN_FORBIDDEN', 'this account has no admin access')
    }
    return { accountId, name: account.name }
  }

  #audit(caller: Caller | undefined, action: string, target: string, before: unknown, after: unknown): void {
    this.#options.logger.info(
      { event: 'admin_change', actor: caller?.accountId, actor_name: caller?.name, via: caller?.via, action, target, before, after },
      `admin ${action} ${target}`,
    )
  }

  async #login(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    this.#checkOrigin(req)
    const body = parse(LoginBody, req.body)
    const o = this.#options
    const name = body.email.trim().toLowerCase().slice(0, 200)
    const client = req.ip
    const fail = (code: 'ERR_LOGIN_FAILED' | 'ERR_LOGIN_THROTTLED', message: string, retryMs = 0): never => {
      o.logger.warn({ event: 'login_failed', code, client, account: account?.id, account_name: name.slice(0, 100) }, 'admin sign-in failed')
      if (retryMs > 0) void reply.header('retry-after', String(Math.ceil(retryMs / 1000)))
      throw new KeywayError(code, message)
    }
    const policy = await o.backend.policy()
    const account = policy.accountByName(name)
    const wait = o.limiter.retryAfter(name, client)
    if (wait > 0) fail('ERR_LOGIN_THROTTLED', `too many failed sign-ins; retry in ${Math.ceil(wait / 1000)} s`, wait)
    const creds = account?.type === 'user' && !account.suspended ? (await o.backend.credentials()).get(account.id) : undefined
    const hash = creds?.passwordHash
    // Constant work for unknown emails, so timing does not tell which accounts exist.
    const ok = hash ? await verifyPassword(body.password, hash) : await verifyPassword(body.password, await (this.#dummyHash ??= hashPassword('keyway-dummy-password'))).then(() => false)
    if (!ok || account === undefined) {
      o.limiter.failed(name, client)
      return fail('ERR_LOGIN_FAILED', 'email or password is wrong, or the account cannot sign in')
    }
    o.limiter.succeeded(name, client)
    if (creds?.admin !== true) {
      o.logger.warn({ event: 'login_failed', code: 'ERR_ADMIN_FORBIDDEN', client, account: account.id, account_name: name }, 'admin sign-in by a user without admin access')
      throw new KeywayError('ERR_ADMIN_FORBIDDEN', 'this account has no admin access')
    }
    const { id, session } = this.#sessions.create(account.id)
    const secure = o.tls !== undefined || o.behindTlsProxy === true
    const maxAge = Math.floor(o.sessionTtlMs / 1000)
    void reply.header('set-cookie', `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure ? '; Secure' : ''}`)
    o.logger.info({ event: 'admin_login', account: account.id, account_name: account.name, client }, 'admin signed in')
    const bearer = body.token === true && o.issueLoginToken ? await o.issueLoginToken(account.id) : undefined
    return {
      account: { id: account.id, email: account.name },
      csrfToken: session.csrfToken,
      expiresAt: new Date(session.expiresAt).toISOString(),
      ...(bearer ? { token: bearer.token, tokenExpiresAt: new Date(bearer.expiresAt).toISOString() } : {}),
    }
  }

  #defineRoutes(): Route[] {
    const b = this.#options.backend
    const now = (): number => this.#options.clock.now()
    const p = (req: FastifyRequest, name: string): string => (req.params as Record<string, string>)[name]!
    const accountEtag = async (ref: string): Promise<string> => etagOf(await b.account(ref, now()))
    const roleOf = async (name: string) => {
      const role = (await b.roles()).find((r) => r.name === name)
      if (role === undefined) throw new KeywayError('ERR_NOT_FOUND', `no role "${name}"`)
      return role
    }
    const ifMatch = (req: FastifyRequest): string | undefined => {
      const v = req.headers['if-match']
      return typeof v === 'string' ? v : undefined
    }
    const tokensOf = async (service: string) => {
      const view = await b.account(service, now())
      if (view.type !== 'service') throw new KeywayError('ERR_NOT_FOUND', `"${service}" is not a service account`)
      return view
    }
    const live = (): LiveSessionControl => {
      const l = this.#options.liveSessions
      if (l === undefined) {
        throw new KeywayError('ERR_ADMIN_NO_GATEWAY', 'this admin server runs without a gateway (keyway admin serve on the file store): live sessions are listed and ended by the admin listener of the gateway that holds them')
      }
      return l
    }
    const route = (r: Route): Route => r
    return [
      route({ method: 'POST', path: '/v1/admin/login', summary: 'Sign in with email and password: sets the session cookie; answers the CSRF token (and a bearer token when asked)', body: LoginBody, auth: false, handler: (req, reply) => this.#login(req, reply) }),
      route({
        method: 'POST', path: '/v1/admin/logout', summary: 'End this session', auth: true, status: 204,
        handler: async (req, reply) => {
          const id = cookieOf(req, SESSION_COOKIE)
          if (id !== undefined) this.#sessions.end(id)
          void reply.header('set-cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`)
          return undefined
        },
      }),
      route({
        method: 'GET', path: '/v1/admin/session', summary: 'Who is signed in, and the CSRF token of this session', auth: true,
        handler: async (_req, _reply, c) => ({ account: { id: c!.accountId, email: c!.name }, via: c!.via, ...(c!.session ? { csrfToken: c!.session.csrfToken, expiresAt: new Date(c!.session.expiresAt).toISOString() } : {}) }),
      }),
      route({ method: 'GET', path: '/v1/admin/openapi.json', summary: 'This document', auth: false, handler: async () => this.openApi() }),
      route({
        method: 'GET', path: '/v1/admin/accounts', summary: 'Accounts: No Role first, services tagged "service"; paginated', query: PageQuery, auth: true,
        handler: async (req) => page(await b.accounts(), parse(PageQuery, req.query)),
      }),
      route({
        method: 'GET', path: '/v1/admin/accounts/:account', summary: 'One account: resources by kind with where access comes from, tokens (never a token itself); ETag', auth: true,
        handler: async (req, reply) => {
          const view = await b.account(p(req, 'account'), now())
          void reply.header('etag', etagOf(view))
          return view
        },
      }),
      route({
        method: 'PUT', path: '/v1/admin/accounts/:account/grants/:resource', summary: 'Grant a resource: direct (No Role accounts), or temporary for `seconds`; If-Match the account ETag', body: GrantBody, auth: true,
        handler: async (req, _reply, c) => {
          const body = parse(GrantBody, req.body ?? {})
          const account = p(req, 'account')
          const before = await b.account(account, now())
          checkIfMatch(ifMatch(req), etagOf(before), `account ${before.name}`)
          const r = await b.grant(account, p(req, 'resource'), body.seconds === undefined ? undefined : body.seconds * 1000)
          this.#audit(c, 'grant', `${before.id}/${p(req, 'resource')}`, null, r)
          return { ...r, etag: await accountEtag(account) }
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/accounts/:account/grants/:resource', summary: 'Remove the direct and temporary grants of a resource; If-Match the account ETag', auth: true,
        handler: async (req, _reply, c) => {
          const account = p(req, 'account')
          const before = await b.account(account, now())
          checkIfMatch(ifMatch(req), etagOf(before), `account ${before.name}`)
          const r = await b.revoke(account, p(req, 'resource'))
          this.#audit(c, 'revoke', `${before.id}/${p(req, 'resource')}`, r.removed, null)
          return { ...r, etag: await accountEtag(account) }
        },
      }),
      route({
        method: 'PUT', path: '/v1/admin/accounts/:account/roles/:role', summary: 'Assign a role; If-Match the account ETag', body: AssignRoleBody, auth: true,
        handler: async (req, _reply, c) => {
          const body = parse(AssignRoleBody, req.body ?? {})
          const account = p(req, 'account')
          const before = await b.account(account, now())
          checkIfMatch(ifMatch(req), etagOf(before), `account ${before.name}`)
          const r = await b.assignRole(account, p(req, 'role'), body.dropDirectGrants === true)
          this.#audit(c, 'assign_role', before.id, before.roles, [...before.roles, p(req, 'role')])
          return { ...r, etag: await accountEtag(account) }
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/accounts/:account/roles/:role', summary: 'Unassign a role; If-Match the account ETag', auth: true,
        handler: async (req, _reply, c) => {
          const account = p(req, 'account')
          const before = await b.account(account, now())
          checkIfMatch(ifMatch(req), etagOf(before), `account ${before.name}`)
          const r = await b.unassignRole(account, p(req, 'role'))
          this.#audit(c, 'unassign_role', before.id, before.roles, before.roles.filter((x) => x !== p(req, 'role')))
          return { ...r, etag: await accountEtag(account) }
        },
      }),
      route({
        method: 'POST', path: '/v1/admin/services', summary: 'Create a service account: answers its token, once', body: CreateServiceBody, status: 201, auth: true,
        handler: async (req, _reply, c) => {
          const body = parse(CreateServiceBody, req.body)
          const r = await b.createService(body.name, body.role)
          this.#audit(c, 'create_service', r.account.id, null, { name: r.account.name, roles: r.account.roles, token: { id: r.issued.tokenId, fingerprint: r.issued.fingerprint } })
          return { account: { ...r.account, type: 'service', tags: ['service'] }, token: tokenAnswer(r.issued) }
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/services/:service', summary: 'Delete a service account (its tokens stop working)', auth: true,
        handler: async (req, _reply, c) => {
          const r = await b.deleteService(p(req, 'service'))
          this.#audit(c, 'delete_service', r.id, { name: r.name }, null)
          return r
        },
      }),
      route({
        method: 'GET', path: '/v1/admin/services/:service/tokens', summary: 'Token records: id, fingerprint, created, expires (never a token)', auth: true,
        handler: async (req) => {
          const tokens = (await tokensOf(p(req, 'service'))).tokens
          // Only a store that keeps last-used times (PostgreSQL) adds lastUsed.
          const used = await b.tokensLastUsed?.(tokens.map((k) => k.id))
          return { items: used ? tokens.map((k) => ({ ...k, lastUsed: used.has(k.id) ? new Date(used.get(k.id)!).toISOString() : null })) : tokens }
        },
      }),
      route({
        method: 'POST', path: '/v1/admin/services/:service/tokens/rotate', summary: 'Issue a new token (answered once); the old ones keep working for the grace', body: RotateBody, auth: true,
        handler: async (req, _reply, c) => {
          const body = parse(RotateBody, req.body ?? {})
          const r = await b.rotateToken(p(req, 'service'), body.graceSeconds === undefined ? undefined : body.graceSeconds * 1000)
          this.#audit(c, 'rotate_token', r.account.id, { retiring: r.retiring.map((t) => t.id), removed: r.removed }, { id: r.issued.tokenId, fingerprint: r.issued.fingerprint })
          return { account: r.account, token: tokenAnswer(r.issued), retiring: r.retiring, removed: r.removed }
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/services/:service/tokens', summary: 'Revoke every token of a service', auth: true,
        handler: async (req, _reply, c) => {
          const r = await b.revokeTokens(p(req, 'service'))
          this.#audit(c, 'revoke_tokens', p(req, 'service'), r.revoked, null)
          return r
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/services/:service/tokens/:token', summary: 'Revoke one token by id', auth: true,
        handler: async (req, _reply, c) => {
          const r = await b.revokeTokens(p(req, 'service'), p(req, 'token'))
          this.#audit(c, 'revoke_tokens', p(req, 'service'), r.revoked, null)
          return r
        },
      }),
      route({
        method: 'GET', path: '/v1/admin/roles', summary: 'Roles with their grants and holders; paginated', query: PageQuery, auth: true,
        handler: async (req) => page(await b.roles(), parse(PageQuery, req.query)),
      }),
      route({
        method: 'GET', path: '/v1/admin/roles/:role', summary: 'One role; ETag', auth: true,
        handler: async (req, reply) => {
          const role = await roleOf(p(req, 'role'))
          void reply.header('etag', etagOf(role))
          return role
        },
      }),
      route({
        method: 'POST', path: '/v1/admin/roles', summary: 'Create a role', body: CreateRoleBody, status: 201, auth: true,
        handler: async (req, _reply, c) => {
          const r = await b.createRole(parse(CreateRoleBody, req.body).name)
          this.#audit(c, 'create_role', r.name, null, r)
          return r
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/roles/:role', summary: 'Delete a role (refused while held, unless ?force=true); If-Match the role ETag', query: ForceQuery, auth: true,
        handler: async (req, _reply, c) => {
          const before = await roleOf(p(req, 'role'))
          checkIfMatch(ifMatch(req), etagOf(before), `role ${before.name}`)
          const r = await b.deleteRole(before.name, parse(ForceQuery, req.query).force === 'true')
          this.#audit(c, 'delete_role', before.name, before, null)
          return r
        },
      }),
      route({
        method: 'PUT', path: '/v1/admin/roles/:role/grants/:resource', summary: 'Grant a resource to a role; If-Match the role ETag', auth: true,
        handler: async (req, _reply, c) => {
          const before = await roleOf(p(req, 'role'))
          checkIfMatch(ifMatch(req), etagOf(before), `role ${before.name}`)
          const r = await b.grantRole(before.name, p(req, 'resource'))
          const after = await roleOf(before.name)
          this.#audit(c, 'grant_role', before.name, before.grants, after.grants)
          return { ...r, etag: etagOf(after) }
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/roles/:role/grants/:resource', summary: 'Remove a resource from a role; If-Match the role ETag', auth: true,
        handler: async (req, _reply, c) => {
          const before = await roleOf(p(req, 'role'))
          checkIfMatch(ifMatch(req), etagOf(before), `role ${before.name}`)
          await b.ungrantRole(before.name, p(req, 'resource'))
          const after = await roleOf(before.name)
          this.#audit(c, 'ungrant_role', before.name, before.grants, after.grants)
          return { etag: etagOf(after) }
        },
      }),
      route({
        method: 'GET', path: '/v1/admin/resources', summary: 'Resources; paginated', query: PageQuery, auth: true,
        handler: async (req) => page(await b.resources(), parse(PageQuery, req.query)),
      }),
      route({
        method: 'POST', path: '/v1/admin/resources', summary: 'Add a resource', body: AddResourceBody, status: 201, auth: true,
        handler: async (req, _reply, c) => {
          const body = parse(AddResourceBody, req.body)
          const r = await b.addResource({ name: body.name, kind: body.kind, type: body.type, address: body.address, ...(body.portOverride === undefined ? {} : { portOverride: body.portOverride }) })
          this.#audit(c, 'add_resource', body.name, null, body)
          return r
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/resources/:resource', summary: 'Remove a resource (refused while granted, unless ?force=true)', query: ForceQuery, auth: true,
        handler: async (req, _reply, c) => {
          const name = p(req, 'resource')
          const before = (await b.resources()).find((r) => r.name === name)
          const r = await b.removeResource(name, parse(ForceQuery, req.query).force === 'true')
          this.#audit(c, 'remove_resource', name, before ?? null, null)
          return r
        },
      }),
      route({
        method: 'GET', path: '/v1/admin/sessions', summary: 'Live sessions: account, resource, started, bytes, gateway (never a token); paginated', query: PageQuery, response: LiveSessionList, auth: true,
        handler: async (req) => {
          const query = parse(PageQuery, req.query)
          const listing = await live().list()
          const items = [...listing.sessions]
            .sort((x, y) => x.startedAt - y.startedAt || (x.id < y.id ? -1 : 1))
            .map((s) => ({ id: s.id, account: s.account, resource: s.resource, startedAt: new Date(s.startedAt).toISOString(), bytes: { in: s.bytesIn, out: s.bytesOut }, ...(s.gateway === undefined ? {} : { gateway: s.gateway }) }))
          return { ...page(items, query), ...(listing.unanswered.length === 0 ? {} : { unanswered: listing.unanswered }) }
        },
      }),
      route({
        method: 'DELETE', path: '/v1/admin/sessions/:session', summary: 'End a live session: its client is told ERR_SESSION_ENDED_BY_ADMIN', auth: true,
        handler: async (req, _reply, c) => {
          const l = live()
          const id = p(req, 'session')
          // On the PostgreSQL store this waits for the holding gateway's answer (bounded): 200 means it ended.
          const answer = await l.end(id, c!.accountId)
          if (!answer.ended && answer.reason === 'unanswered') {
            throw new KeywayError('ERR_SESSION_UNANSWERED', `gateway "${answer.gateway}" holds session "${id.slice(0, 40)}" but did not answer in time; the request was withdrawn and nothing ended: retry`, { detail: { gateway: answer.gateway } })
          }
          if (!answer.ended) throw new KeywayError('ERR_NOT_FOUND', `no live session "${id.slice(0, 40)}"`)
          const before = answer.session
          const view = { account: before.account.id, account_name: before.account.name, resource: before.resource, startedAt: new Date(before.startedAt).toISOString(), gateway: before.gateway }
          this.#audit(c, 'end_session', id, view, null)
          return { id, ended: true, code: 'ERR_SESSION_ENDED_BY_ADMIN' }
        },
      }),
      route({
        method: 'GET', path: '/v1/admin/settings', summary: 'Settings: port overrides, auto-connect, port range; ETag', auth: true,
        handler: async (_req, reply) => {
          const s = await b.settings()
          void reply.header('etag', etagOf(s))
          return s
        },
      }),
      route({
        method: 'PATCH', path: '/v1/admin/settings', summary: 'Change settings (auto-connect needs port overrides on); If-Match the settings ETag', body: SettingsBody, auth: true,
        handler: async (req, reply, c) => {
          const body = parse(SettingsBody, req.body)
          const before = await b.settings()
          checkIfMatch(ifMatch(req), etagOf(before), 'the settings')
          // Order matters for the dependency: port overrides on before auto-connect on; auto-connect off before port overrides off.
          if (body.portRange !== undefined) await b.setSetting('port-range', `${body.portRange[0]}-${body.portRange[1]}`)
          if (body.portOverrides === true) await b.setSetting('port-overrides', 'on')
          if (body.autoConnect !== undefined) await b.setSetting('auto-connect', body.autoConnect ? 'on' : 'off')
          if (body.portOverrides === false) await b.setSetting('port-overrides', 'off')
          const after = await b.settings()
          this.#audit(c, 'settings', 'settings', before, after)
          void reply.header('etag', etagOf(after))
          return after
        },
      }),
    ]
  }
}

/** The answer carrying a new token: the only place one appears. */
function tokenAnswer(t: { token: string; tokenId: string; fingerprint: string; expiresAt: number }) {
  return { token: t.token, id: t.tokenId, fingerprint: t.fingerprint, expiresAt: Number.isFinite(t.expiresAt) ? new Date(t.expiresAt).toISOString() : null }
}

function page<T>(items: readonly T[], q: { limit?: number | undefined; cursor?: string | undefined }): { items: T[]; next: string | null } {
  const limit = q.limit ?? 100
  const start = q.cursor === undefined ? 0 : Number(q.cursor)
  const end = start + limit
  return { items: items.slice(start, end), next: end < items.length ? String(end) : null }
}

/** Validates `value` with `schema`; ERR_USAGE naming every problem. */
function parse<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const problems = r.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : 'body'}: ${i.message}`)
  throw new KeywayError('ERR_USAGE', problems.join('; '), { detail: { problems } })
}

function cookieOf(req: FastifyRequest, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'ERR_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'ERR_CONTENT_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'ERR_USAGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'ERR_USAGE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'ERR_USAGE',
}

function fromFastify(err: unknown): KeywayError {
  if (err instanceof KeywayError) return err
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && code in FASTIFY_CODES) return new KeywayError(FASTIFY_CODES[code]!, (err as Error).message)
  if ((err as { statusCode?: number }).statusCode === 400) return new KeywayError('ERR_USAGE', (err as Error).message)
  return toKeywayError(err)
}
