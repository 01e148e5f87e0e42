import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { hashPassword, issueToken, newTokenId, verifyPassword, type SigningKey, type TokenVerifier, type VerifiedToken } from '../auth/index.js'
import type { Clock } from '../clock.js'
import { KeywayError, toKeywayError, type ErrorCode } from '../errors.js'
import { readJson, sendJson, type Logger } from '../observe/index.js'
import type { CompiledPolicy } from '../policy/index.js'
import { API_PATHS, type LoginResponse, type ResourcesResponse, type TokenDeadline, type WhoamiResponse } from '../protocol/index.js'
import type { GatewayMetrics } from './metrics.js'

/** What the API needs from the gateway around it. */
export interface ApiContext {
  readonly verifier: TokenVerifier
  readonly policy: () => CompiledPolicy
  readonly clock: Clock
  readonly logger: Logger
  readonly metrics: GatewayMetrics
  /** Signs login tokens; undefined disables login. */
  readonly signingKey: SigningKey | undefined
  readonly issuer: string
  readonly audience: string
  readonly loginTtl: number
}

/** Password checks running at once; more are answered 429. */
const MAX_CONCURRENT_LOGINS = 4

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  ERR_USAGE: 400,
  ERR_NOT_FOUND: 404,
  ERR_ACCOUNT_SUSPENDED: 403,
  ERR_INTERNAL: 500,
}

function statusOf(code: ErrorCode): number {
  return STATUS_OF[code] ?? (code.startsWith('ERR_TOKEN') || code.startsWith('ERR_ACCOUNT') || code === 'ERR_LOGIN_FAILED' ? 401 : 400)
}

function bearer(req: IncomingMessage): string {
  const header = req.headers.authorization ?? ''
  const m = /^Bearer\s+(\S+)$/i.exec(header)
  if (!m) throw new KeywayError('ERR_TOKEN_MISSING', 'send the token as "Authorization: Bearer <token>"')
  return m[1]!
}

/** The account's view for a sidecar: settings and bindable resources, never upstream addresses. */
export function resourcesView(policy: CompiledPolicy, accountId: string, now: number): ResourcesResponse {
  return {
    settings: { portOverrides: policy.settings.portOverrides, autoConnect: policy.settings.autoConnect },
    resources: policy.effectiveResources(accountId, now).map(({ resource }) => ({
      name: resource.name,
      kind: resource.kind,
      type: resource.type,
      portOverride: resource.portOverride ?? null,
    })),
    generation: policy.generation,
  }
}

/** When `token` stops working under `policy`: its `exp` or, earlier, the end of its rotation grace. */
export function tokenDeadline(policy: CompiledPolicy, token: VerifiedToken): TokenDeadline {
  const record = token.kind === 'service' ? policy.accounts.get(token.accountId)?.tokens.get(token.tokenId) : undefined
  const graceEnd = record?.expiresAt ?? Infinity
  const end = Math.min(token.expiresAt, graceEnd)
  return { expiresAt: Number.isFinite(end) ? new Date(end).toISOString() : null, rotatedOut: graceEnd < token.expiresAt }
}

/**
 * The gateway's HTTP API for sidecars and `keyway login` (docs/protocol.md).
 * Returns a request handler for node:http.
 */
export function createApiHandler(ctx: ApiContext): (req: IncomingMessage, res: ServerResponse) => void {
  // Constant work for unknown emails, so timing does not tell which accounts exist.
  let dummyHash: Promise<string> | undefined
  // scrypt runs on libuv's small thread pool, which policy reads and DNS
  // lookups share: unauthenticated logins get a bounded share of it.
  let loginsRunning = 0
  const authenticate = async (req: IncomingMessage): Promise<VerifiedToken> => {
    try {
      return await ctx.verifier.verify(bearer(req))
    } catch (err) {
      const e = toKeywayError(err)
      ctx.metrics.authFailures.inc({ code: e.code })
      throw e
    }
  }

  const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>> = {
    [`GET ${API_PATHS.whoami}`]: async (req, res) => {
      const token = await authenticate(req)
      const body: WhoamiResponse = {
        account: { id: token.account.id, name: token.account.name, type: token.account.type, roles: [...token.account.roles] },
        token: {
          id: token.tokenId,
          fingerprint: token.fingerprint,
          kind: token.kind,
          expiresAt: Number.isFinite(token.expiresAt) ? new Date(token.expiresAt).toISOString() : null,
        },
      }
      sendJson(res, 200, body)
    },
    [`GET ${API_PATHS.resources}`]: async (req, res) => {
      const token = await authenticate(req)
      const policy = ctx.policy()
      const view: ResourcesResponse = { ...resourcesView(policy, token.accountId, ctx.clock.now()), token: tokenDeadline(policy, token) }
      // The tag ignores the generation: an unrelated policy change is not a change for this sidecar.
      const etag = `"${createHash('sha256').update(JSON.stringify([view.settings, view.resources, view.token])).digest('base64url').slice(0, 22)}"`
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, { etag })
        res.end()
        return
      }
      sendJson(res, 200, view, { etag })
    },
    [`POST ${API_PATHS.login}`]: async (req, res) => {
      if (!ctx.signingKey) throw new KeywayError('ERR_LOGIN_FAILED', 'login is not enabled on this gateway (no signing key)')
      let body: { email?: unknown; password?: unknown }
      try {
        body = (await readJson(req)) as typeof body
      } catch {
        throw new KeywayError('ERR_USAGE', 'send JSON {"email": "...", "password": "..."}')
      }
      if (typeof body.email !== 'string' || typeof body.password !== 'string') {
        throw new KeywayError('ERR_USAGE', 'send JSON {"email": "...", "password": "..."}')
      }
      if (loginsRunning >= MAX_CONCURRENT_LOGINS) {
        res.setHeader('retry-after', '1')
        throw new KeywayError('ERR_LOGIN_FAILED', 'too many logins at once; retry in a second', { detail: { status: 429 } })
      }
      const account = ctx.policy().accountByName(body.email)
      const usable = account && account.type === 'user' && !account.suspended && account.passwordHash
      let ok: boolean
      loginsRunning++
      try {
        ok = usable
          ? await verifyPassword(body.password, account.passwordHash!)
          : await verifyPassword(body.password, await (dummyHash ??= hashPassword('keyway-dummy-password'))).then(() => false)
      } finally {
        loginsRunning--
      }
      if (!ok || !account) {
        ctx.metrics.authFailures.inc({ code: 'ERR_LOGIN_FAILED' })
        ctx.logger.warn({ event: 'login_failed', email: body.email.slice(0, 100) }, 'login failed')
        throw new KeywayError('ERR_LOGIN_FAILED', 'email or password is wrong, or the account cannot log in')
      }
      const now = ctx.clock.now()
      const expiresAt = now + ctx.loginTtl
      const token = await issueToken(ctx.signingKey, {
        issuer: ctx.issuer,
        audience: ctx.audience,
        subject: account.id,
        tokenId: newTokenId(),
        expiresAt,
        kind: 'login',
        now,
      })
      ctx.logger.info({ event: 'login', account: account.id, account_name: account.name }, 'user logged in')
      const out: LoginResponse = { token, expiresAt: new Date(expiresAt).toISOString() }
      sendJson(res, 200, out)
    },
  }

  return (req, res) => {
    const path = new URL(req.url ?? '/', 'https://gateway').pathname
    const route = routes[`${req.method} ${path}`]
    if (!route) return sendJson(res, 404, { code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${path}` })
    route(req, res).catch((err: unknown) => {
      const e = toKeywayError(err)
      if (e.code === 'ERR_INTERNAL') ctx.logger.error({ event: 'api_error', err: e }, 'API request failed')
      const status = typeof e.detail?.status === 'number' ? e.detail.status : statusOf(e.code)
      if (!res.headersSent) sendJson(res, status, { code: e.code, message: e.message })
      else res.destroy()
    })
  }
}
