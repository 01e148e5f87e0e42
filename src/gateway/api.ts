import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  hashPassword,
  issueToken,
  newTokenId,
  tokenFingerprint,
  verifyPassword,
  type SignInLimiter,
  type SigningKey,
  type TokenVerifier,
  type VerifiedToken,
} from '../auth/index.js'
import type { Clock } from '../clock.js'
import { httpStatusOf, KeywayError, toKeywayError, type ErrorCode } from '../errors.js'
import { readJson, sendJson, type Logger, type RefusalAudit } from '../observe/index.js'
import type { CompiledPolicy } from '../policy/index.js'
import { API_PATHS, LoginRequestSchema, type LoginResponse, type ReadyResponse, type ResourcesResponse, type TokenDeadline, type WhoamiResponse } from '../protocol/index.js'
import type { Peer } from './api-guard.js'
import type { GatewayMetrics } from './metrics.js'
import type { UpstreamReadiness } from './readiness.js'

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
  /** Where refusals are written, rate-limited. */
  readonly audit: RefusalAudit
  /** The real client of a request (behind a PROXY-protocol load balancer too). */
  readonly peerOf: (req: IncomingMessage) => Peer
  /** Failed logins, per account and per address: a growing delay. */
  readonly limiter: SignInLimiter
  /** A user's password hash from the credentials file; undefined when none is set. */
  readonly passwordHashOf: (accountId: string) => Promise<string | undefined>
  /** Per-resource readiness through this gateway (`GET /v1/ready`); absent: the route answers ERR_NOT_FOUND. */
  readonly readiness?: UpstreamReadiness
  /** While the policy store fails closed, the code every call is refused with (`ERR_STORE_STALE`). */
  readonly unavailable?: () => ErrorCode | undefined
}

/** Password checks running at once; more are answered 429. */
const MAX_CONCURRENT_LOGINS = 4

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
  // The closed policy is empty: without this a sidecar would be told its account is unknown, a token refusal.
  const refuseWhileDown = (): void => {
    const down = ctx.unavailable?.()
    if (down) throw new KeywayError(down, 'the policy store has been unreachable too long: this gateway refuses every call until it answers')
  }
  const authenticate = async (req: IncomingMessage): Promise<VerifiedToken> => {
    refuseWhileDown()
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
    [`GET ${API_PATHS.ready}`]: async (req, res) => {
      const token = await authenticate(req)
      const readiness = ctx.readiness
      if (readiness === undefined) throw new KeywayError('ERR_NOT_FOUND', `no route GET ${API_PATHS.ready}`)
      const name = new URL(req.url ?? '/', 'https://gateway').searchParams.get('resource') ?? ''
      if (name === '') throw new KeywayError('ERR_USAGE', `send ${API_PATHS.ready}?resource=NAME`)
      const policy = ctx.policy()
      const decision = policy.decide(token.accountId, name, ctx.clock.now())
      // Only for granted resources: an unknown name answers as an ungranted one, so a token cannot tell which names exist.
      if (!decision.allow) {
        const code = decision.code === 'ERR_RESOURCE_UNKNOWN' ? 'ERR_GRANT_DENIED' : decision.code
        throw new KeywayError(code, `access to "${name.slice(0, 200)}" denied: ${code}`, { detail: { accountId: token.accountId } })
      }
      const r = await readiness.check(policy.resources.get(name)!)
      const body: ReadyResponse = {
        resource: name,
        ready: r.ready,
        ...(r.code !== undefined ? { code: r.code } : {}),
        ...(r.message !== undefined ? { message: r.message } : {}),
        checkedAt: new Date(r.checkedAt).toISOString(),
      }
      sendJson(res, 200, body)
    },
    [`POST ${API_PATHS.login}`]: async (req, res) => {
      if (!ctx.signingKey) throw new KeywayError('ERR_LOGIN_FAILED', 'login is not enabled on this gateway (no signing key)')
      refuseWhileDown()
      let raw: unknown
      try {
        raw = await readJson(req)
      } catch {
        throw new KeywayError('ERR_USAGE', 'send JSON {"email": "...", "password": "..."}')
      }
      const parsed = LoginRequestSchema.safeParse(raw)
      if (!parsed.success) throw new KeywayError('ERR_USAGE', 'send JSON {"email": "...", "password": "..."}')
      const body = parsed.data
      const peer = ctx.peerOf(req)
      const name = body.email.trim().toLowerCase().slice(0, 200)
      const account = ctx.policy().accountByName(name)
      const fail = (code: 'ERR_LOGIN_FAILED' | 'ERR_LOGIN_THROTTLED', message: string, retryMs = 0): never => {
        ctx.metrics.authFailures.inc({ code })
        ctx.metrics.loginFailures.inc({ code })
        // The account as typed (an unknown one too), never the password.
        ctx.audit.refused({ event: 'login_failed', code, client: peer.text, account: account?.id, extra: { account_name: name.slice(0, 100) } }, 'login failed')
        if (retryMs > 0) res.setHeader('retry-after', String(Math.ceil(retryMs / 1000)))
        throw new KeywayError(code, message, { detail: { audited: true } })
      }
      const wait = ctx.limiter.retryAfter(name, peer.host)
      if (wait > 0) fail('ERR_LOGIN_THROTTLED', `too many failed logins; retry in ${Math.ceil(wait / 1000)} s`, wait)
      if (loginsRunning >= MAX_CONCURRENT_LOGINS) fail('ERR_LOGIN_THROTTLED', 'too many logins at once; retry in a second', 1_000)
      let ok: boolean
      loginsRunning++
      try {
        const hash = account && account.type === 'user' && !account.suspended ? await ctx.passwordHashOf(account.id) : undefined
        ok = hash
          ? await verifyPassword(body.password, hash)
          : await verifyPassword(body.password, await (dummyHash ??= hashPassword('keyway-dummy-password'))).then(() => false)
      } finally {
        loginsRunning--
      }
      if (!ok || !account) {
        ctx.limiter.failed(name, peer.host)
        return fail('ERR_LOGIN_FAILED', 'email or password is wrong, or the account cannot log in')
      }
      ctx.limiter.succeeded(name, peer.host)
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
      ctx.logger.info({ event: 'login', account: account.id, account_name: account.name, client: peer.text }, 'user logged in')
      const out: LoginResponse = { token, expiresAt: new Date(expiresAt).toISOString() }
      sendJson(res, 200, out)
    },
  }

  return (req, res) => {
    const path = new URL(req.url ?? '/', 'https://gateway').pathname
    const route = routes[`${req.method} ${path}`]
    if (!route) {
      auditRefusal(ctx, req, path, new KeywayError('ERR_NOT_FOUND', `no route ${req.method} ${path}`))
      return sendJson(res, httpStatusOf('ERR_NOT_FOUND'), { code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${path}` })
    }
    route(req, res).catch((err: unknown) => {
      const e = toKeywayError(err)
      if (e.code === 'ERR_INTERNAL') ctx.logger.error({ event: 'api_error', err: e }, 'API request failed')
      else if (e.detail?.audited !== true) auditRefusal(ctx, req, path, e)
      if (!res.headersSent) sendJson(res, httpStatusOf(e.code), { code: e.code, message: e.message })
      else res.destroy()
    })
  }
}

/** Audits a refused API call: code, path, the token's fingerprint and account when a token came, and the client. */
function auditRefusal(ctx: ApiContext, req: IncomingMessage, path: string, e: KeywayError): void {
  const detailFp = e.detail?.fingerprint
  const detailAccount = e.detail?.accountId
  const presented = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1]
  ctx.audit.refused(
    {
      event: 'api_denied',
      code: e.code,
      client: ctx.peerOf(req).text,
      account: typeof detailAccount === 'string' ? detailAccount : undefined,
      tokenFp: typeof detailFp === 'string' ? detailFp : presented !== undefined ? tokenFingerprint(presented) : undefined,
      extra: { method: String(req.method).slice(0, 10), path: path.slice(0, 100) },
    },
    e.message,
  )
}
