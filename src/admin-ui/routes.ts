import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AccountListEntry, AccountView, ResourceListEntry, RoleListEntry, SettingsView } from '../admin/index.js'
import { KeywayError, httpStatusOf, toKeywayError } from '../errors.js'
import { accountPage, kindOf } from './account.js'
import { AdminApiClient, ApiFailure, errorOf, type ApiAnswer, type ApiError } from './api.js'
import { ADMIN_CSS, ADMIN_ICON_SVG, ADMIN_JS } from './assets.js'
import { errorPage } from './error-page.js'
import type { SafeHtml } from './html.js'
import { ASSET_PATHS, type FormError, type Viewer } from './layout.js'
import { portOverridesPage } from './settings.js'
import { resourcesPage } from './resources.js'
import { rolePage, rolePath, rolesPage } from './roles.js'
import { sessionsPage, type LiveSessionEntry } from './sessions.js'
import { signInPage } from './signin.js'
import { accountPath, serviceCreatedPage, usersPage } from './users.js'

/** The Content-Security-Policy of every page: no inline script or style, nothing from elsewhere, no framing. */
export const ADMIN_UI_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/** The cookie pairing the sign-in form with its CSRF field (before there is a session). */
export const SIGNIN_COOKIE = 'keyway_signin'

/** Options of {@link registerAdminUi}. */
export interface AdminUiOptions {
  /** Cookies get `Secure` (TLS, or a TLS-terminating proxy in front). */
  readonly secureCookies: boolean
  /** Reports a page that failed with a server error (5xx), with its code. */
  readonly logError?: (code: string, err: unknown) => void
}

/** Fixed success messages, chosen by `?done=` after a redirect (never text from the request). */
const NOTICES: Readonly<Record<string, string>> = {
  granted: 'Access granted.',
  temporary: 'Temporary access granted.',
  removed: 'Access removed.',
  assigned: 'Role assigned.',
  unassigned: 'Role unassigned.',
  'role-created': 'Role created.',
  'role-deleted': 'Role deleted.',
  'role-granted': 'Resource granted to the role.',
  'role-removed': 'Resource removed from the role.',
  'resource-added': 'Resource added.',
  'resource-removed': 'Resource removed.',
  saved: 'Settings saved.',
  'token-revoked': 'Token revoked.',
  'service-deleted': 'Service account deleted.',
  'session-ended': 'Session ended.',
  'signed-out': 'Signed out.',
}

type Form = Readonly<Record<string, string>>

/** What a page handler gets. */
interface Ctx {
  readonly req: FastifyRequest
  readonly reply: FastifyReply
  readonly api: AdminApiClient
  readonly viewer: Viewer
  readonly params: Readonly<Record<string, string>>
  readonly query: Readonly<Record<string, string>>
}

/** How a page is drawn again after a failed change: the error where the admin acted, and what they typed. */
interface Redraw {
  readonly error?: FormError
  readonly values?: Form
  readonly notice?: string | undefined
}

/** A form handler's outcome: a redirect (Post/Redirect/Get), or a page drawn in the POST's own answer. */
type Outcome = { readonly redirect: string } | { readonly status: number; readonly body: SafeHtml }

/**
 * Registers the web Admin UI on `app` (the admin API's fastify instance):
 * server-rendered pages at `/`, a stylesheet and a script under `/ui/`.
 * Every read and change goes through the admin API on the same instance
 * ({@link AdminApiClient}), with the browser's session and CSRF token.
 */
export function registerAdminUi(app: FastifyInstance, options: AdminUiOptions): void {
  void app.register(async (ui) => {
    // Forms post urlencoded bodies; only these routes take them (the API stays JSON only).
    ui.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)))
    })
    ui.addHook('onSend', async (_req, reply, payload) => {
      reply.header('content-security-policy', ADMIN_UI_CSP)
      reply.header('x-frame-options', 'DENY')
      reply.header('cache-control', 'no-store')
      // Not no-referrer: with it, browsers send `Origin: null` on form posts, and the origin check needs the real one.
      reply.header('referrer-policy', 'same-origin')
      return payload
    })
    ui.setErrorHandler((err: unknown, _req, reply) => {
      const e = toKeywayError(mapFastifyError(err))
      if (httpStatusOf(e.code) >= 500) options.logError?.(e.code, err)
      void sendHtml(reply, httpStatusOf(e.code), errorPage({ status: httpStatusOf(e.code), code: e.code, message: e.message }))
    })

    ui.get(ASSET_PATHS.css, async (_req, reply) => reply.type('text/css; charset=utf-8').send(ADMIN_CSS))
    ui.get(ASSET_PATHS.js, async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(ADMIN_JS))
    ui.get(ASSET_PATHS.icon, async (_req, reply) => reply.type('image/svg+xml').send(ADMIN_ICON_SVG))

    ui.get('/', async (req, reply) => {
      const who = await viewerOf(new AdminApiClient(app, req))
      return reply.redirect(who.viewer === undefined ? '/signin' : '/users', 303)
    })

    // Sign-in: a double-submit token pairs the form with a cookie, so another site cannot sign a browser in.
    const signInForm = (reply: FastifyReply, o: { email?: string; next?: string | undefined; error?: ApiError; notice?: string | undefined }): SafeHtml => {
      const csrf = randomBytes(24).toString('base64url')
      void reply.header('set-cookie', `${SIGNIN_COOKIE}=${csrf}; Path=/signin; HttpOnly; SameSite=Strict; Max-Age=3600${options.secureCookies ? '; Secure' : ''}`)
      return signInPage({ csrf, ...o })
    }
    ui.get('/signin', async (req, reply) => {
      const who = await viewerOf(new AdminApiClient(app, req))
      const q = req.query as Record<string, string>
      if (who.viewer !== undefined) return reply.redirect(safeNext(q.next), 303)
      return sendHtml(reply, 200, signInForm(reply, { next: safeNextOrUndefined(q.next), notice: NOTICES[q.done ?? ''] }))
    })
    ui.post('/signin', async (req, reply) => {
      const form = formOf(req)
      const email = (form.email ?? '').slice(0, 320)
      const next = safeNextOrUndefined(form.next)
      const refuse = (status: number, error: ApiError) => sendHtml(reply, status, signInForm(reply, { email, next, error }))
      if (!sameOrigin(req) || !secretEquals(cookieOf(req, SIGNIN_COOKIE), form._csrf)) {
        return refuse(403, { status: 403, code: 'ERR_CSRF', message: 'This sign-in form expired or came from another site; sign in again.' })
      }
      if (email.trim() === '' || (form.password ?? '') === '') {
        return refuse(400, { status: 400, code: 'ERR_USAGE', message: 'Enter your email and password.' })
      }
      const r = await new AdminApiClient(app, req).call('POST', '/v1/admin/login', { body: { email, password: (form.password ?? '').slice(0, 1024) } })
      if (!r.ok) {
        if (r.retryAfter !== undefined) void reply.header('retry-after', r.retryAfter)
        return refuse(r.status, errorOf(r))
      }
      void reply.header('set-cookie', [...cookiesOf(r), `${SIGNIN_COOKIE}=; Path=/signin; HttpOnly; SameSite=Strict; Max-Age=0`])
      return reply.redirect(next ?? '/users', 303)
    })
    ui.post('/signout', async (req, reply) => {
      const form = formOf(req)
      const api = new AdminApiClient(app, req)
      const r = await api.call('POST', '/v1/admin/logout', { csrf: form._csrf })
      if (!r.ok && r.status !== 401) {
        const who = await viewerOf(api)
        return sendHtml(reply, r.status, errorPage(errorOf(r), who.viewer))
      }
      void reply.header('set-cookie', cookiesOf(r))
      return reply.redirect('/signin?done=signed-out', 303)
    })

    /** A page: signed-in admins only; others go to the sign-in page. */
    const view = (path: string, draw: (c: Ctx, redraw: Redraw) => Promise<SafeHtml>): void => {
      ui.get(path, async (req, reply) => {
        const api = new AdminApiClient(app, req)
        const who = await viewerOf(api)
        if (who.viewer === undefined) return who.error === undefined ? reply.redirect(`/signin?next=${encodeURIComponent(req.url)}`, 303) : sendHtml(reply, who.error.status, errorPage(who.error))
        const c: Ctx = { req, reply, api, viewer: who.viewer, params: req.params as Record<string, string>, query: req.query as Record<string, string> }
        try {
          return sendHtml(reply, 200, await draw(c, { notice: NOTICES[c.query.done ?? ''] }))
        } catch (err) {
          if (err instanceof ApiFailure) return sendHtml(reply, err.error.status, errorPage(err.error, who.viewer))
          throw err
        }
      })
    }

    /** A form: same origin, the session's CSRF token, then the change through the API. */
    const action = (path: string, act: (c: Ctx, form: Form) => Promise<Outcome>): void => {
      ui.post(path, async (req, reply) => {
        const form = formOf(req)
        const api = new AdminApiClient(app, req)
        const who = await viewerOf(api)
        if (who.viewer === undefined) return who.error === undefined ? reply.redirect('/signin', 303) : sendHtml(reply, who.error.status, errorPage(who.error))
        if (!sameOrigin(req) || !secretEquals(who.viewer.csrf, form._csrf)) {
          return sendHtml(reply, 403, errorPage({ status: 403, code: 'ERR_CSRF', message: 'This form did not come from this Admin UI (missing or wrong CSRF token, or another origin); nothing was changed. Reload the page and try again.' }, who.viewer))
        }
        const c: Ctx = { req, reply, api, viewer: who.viewer, params: req.params as Record<string, string>, query: {} }
        try {
          const out = await act(c, form)
          if ('redirect' in out) return reply.redirect(out.redirect, 303)
          return sendHtml(reply, out.status, out.body)
        } catch (err) {
          if (err instanceof ApiFailure) return sendHtml(reply, err.error.status, errorPage(err.error, who.viewer))
          throw err
        }
      })
    }

    /** Draws a page again in a failed POST's answer, with the error next to the form that failed. */
    const failed = async (c: Ctx, r: ApiAnswer, at: string, draw: (c: Ctx, redraw: Redraw) => Promise<SafeHtml>, values?: Form): Promise<Outcome> => {
      const error = { ...errorOf(r), at }
      return { status: r.status, body: await draw(c, { error, ...(values === undefined ? {} : { values }) }) }
    }

    // Users.
    const drawUsers = async (c: Ctx, d: Redraw): Promise<SafeHtml> => {
      const cursor = /^\d{1,9}$/.test(c.query.cursor ?? '') ? c.query.cursor! : undefined
      const list: ApiAnswer<{ items: AccountListEntry[]; next: string | null }> = await c.api.call('GET', `/v1/admin/accounts?limit=200${cursor === undefined ? '' : `&cursor=${cursor}`}`)
      if (!list.ok) throw new ApiFailure(errorOf(list))
      const roles = await c.api.all<RoleListEntry>('/v1/admin/roles')
      return usersPage({ viewer: c.viewer, accounts: list.json.items, next: list.json.next, roles: roles.map((r) => r.name), ...d })
    }
    view('/users', drawUsers)
    action('/users/services', async (c, form) => {
      const name = (form.name ?? '').trim()
      const r: ApiAnswer = await c.api.call('POST', '/v1/admin/services', { csrf: form._csrf, body: { name, ...(form.role ? { role: form.role } : {}) } })
      if (!r.ok) return failed(c, r, 'add-service', drawUsers, { name, role: form.role ?? '' })
      // The token is in this answer only: no redirect, no copy kept anywhere (Cache-Control: no-store).
      return { status: 201, body: serviceCreatedPage({ viewer: c.viewer, account: r.json.account, token: r.json.token, how: 'created' }) }
    })

    // Accounts.
    const drawAccount = async (c: Ctx, d: Redraw, kind?: string): Promise<SafeHtml> => {
      const ref = c.params.account!
      const r: ApiAnswer<AccountView> = await c.api.call('GET', `/v1/admin/accounts/${encodeURIComponent(ref)}`)
      if (!r.ok) throw new ApiFailure(errorOf(r))
      const [resources, roles] = await Promise.all([c.api.all<ResourceListEntry>('/v1/admin/resources'), c.api.all<RoleListEntry>('/v1/admin/roles')])
      return accountPage({ viewer: c.viewer, account: r.json, etag: r.etag ?? '', resources, roles: roles.map((x) => x.name), kind: kindOf(kind ?? c.query.kind), ...d })
    }
    view('/accounts/:account', drawAccount)
    action('/accounts/:account/grants', async (c, form) => {
      const account = c.params.account!
      const resource = form.resource ?? ''
      const path = `/v1/admin/accounts/${encodeURIComponent(account)}/grants/${encodeURIComponent(resource)}`
      const how = form.action
      let r: ApiAnswer
      if (how === 'remove') r = await c.api.call('DELETE', path, { csrf: form._csrf, ifMatch: form.etag })
      else if (how === 'grant') r = await c.api.call('PUT', path, { csrf: form._csrf, ifMatch: form.etag, body: {} })
      else if (how === 'temporary') r = await c.api.call('PUT', path, { csrf: form._csrf, ifMatch: form.etag, body: { seconds: Number(form.seconds) } })
      else r = usage('choose grant, temporary or remove')
      if (!r.ok) return failed(c, r, 'grants', (cc, d) => drawAccount(cc, d, form.kind))
      return { redirect: `${accountPath(account)}?kind=${kindOf(form.kind)}&done=${how === 'remove' ? 'removed' : how === 'grant' ? 'granted' : 'temporary'}` }
    })
    action('/accounts/:account/roles', async (c, form) => {
      const account = c.params.account!
      const path = `/v1/admin/accounts/${encodeURIComponent(account)}/roles/${encodeURIComponent(form.role ?? '')}`
      let r: ApiAnswer
      if (form.action === 'assign') r = await c.api.call('PUT', path, { csrf: form._csrf, ifMatch: form.etag, body: form.dropDirectGrants === 'true' ? { dropDirectGrants: true } : {} })
      else if (form.action === 'unassign') r = await c.api.call('DELETE', path, { csrf: form._csrf, ifMatch: form.etag })
      else r = usage('choose assign or unassign')
      if (!r.ok) return failed(c, r, 'roles', (cc, d) => drawAccount(cc, d, form.kind))
      return { redirect: `${accountPath(account)}?kind=${kindOf(form.kind)}&done=${form.action === 'assign' ? 'assigned' : 'unassigned'}` }
    })

    // A service's tokens: a rotation shows the new token once, as create does.
    action('/accounts/:account/tokens/rotate', async (c, form) => {
      const grace = Number(form.graceSeconds)
      const r: ApiAnswer = await c.api.call('POST', `/v1/admin/services/${encodeURIComponent(c.params.account!)}/tokens/rotate`, { csrf: form._csrf, body: { graceSeconds: Number.isInteger(grace) ? grace : -1 } })
      if (!r.ok) return failed(c, r, 'tokens', drawAccount)
      const view: ApiAnswer<AccountView> = await c.api.call('GET', `/v1/admin/accounts/${encodeURIComponent(c.params.account!)}`)
      const roles = view.ok ? view.json.roles : []
      return { status: 200, body: serviceCreatedPage({ viewer: c.viewer, account: { ...r.json.account, roles }, token: r.json.token, how: 'rotated' }) }
    })
    action('/accounts/:account/tokens/revoke', async (c, form) => {
      const r = await c.api.call('DELETE', `/v1/admin/services/${encodeURIComponent(c.params.account!)}/tokens/${encodeURIComponent(form.token ?? '')}`, { csrf: form._csrf })
      if (!r.ok) return failed(c, r, 'tokens', drawAccount)
      return { redirect: `${accountPath(c.params.account!)}?done=token-revoked` }
    })
    action('/accounts/:account/delete', async (c, form) => {
      const r = form.confirm === 'yes' ? await c.api.call('DELETE', `/v1/admin/services/${encodeURIComponent(c.params.account!)}`, { csrf: form._csrf }) : usage('tick the box to confirm: its tokens stop working at once')
      if (!r.ok) return failed(c, r, 'delete', drawAccount)
      return { redirect: '/users?done=service-deleted' }
    })

    // Roles.
    const drawRoles = async (c: Ctx, d: Redraw): Promise<SafeHtml> => rolesPage({ viewer: c.viewer, roles: await c.api.all<RoleListEntry>('/v1/admin/roles'), ...d })
    view('/roles', drawRoles)
    action('/roles', async (c, form) => {
      const name = (form.name ?? '').trim()
      const r = await c.api.call('POST', '/v1/admin/roles', { csrf: form._csrf, body: { name } })
      if (!r.ok) return failed(c, r, 'create-role', drawRoles, { name })
      return { redirect: `${rolePath(name)}?done=role-created` }
    })
    const drawRole = async (c: Ctx, d: Redraw): Promise<SafeHtml> => {
      const r: ApiAnswer<RoleListEntry> = await c.api.call('GET', `/v1/admin/roles/${encodeURIComponent(c.params.role!)}`)
      if (!r.ok) throw new ApiFailure(errorOf(r))
      return rolePage({ viewer: c.viewer, role: r.json, etag: r.etag ?? '', resources: await c.api.all<ResourceListEntry>('/v1/admin/resources'), ...d })
    }
    view('/roles/:role', drawRole)
    action('/roles/:role/grants', async (c, form) => {
      const role = c.params.role!
      const path = `/v1/admin/roles/${encodeURIComponent(role)}/grants/${encodeURIComponent(form.resource ?? '')}`
      let r: ApiAnswer
      if (form.action === 'grant') r = await c.api.call('PUT', path, { csrf: form._csrf, ifMatch: form.etag })
      else if (form.action === 'remove') r = await c.api.call('DELETE', path, { csrf: form._csrf, ifMatch: form.etag })
      else r = usage('choose grant or remove')
      if (!r.ok) return failed(c, r, 'role', drawRole)
      return { redirect: `${rolePath(role)}?done=${form.action === 'grant' ? 'role-granted' : 'role-removed'}` }
    })
    action('/roles/:role/delete', async (c, form) => {
      const r = await c.api.call('DELETE', `/v1/admin/roles/${encodeURIComponent(c.params.role!)}${form.force === 'true' ? '?force=true' : ''}`, { csrf: form._csrf, ifMatch: form.etag })
      if (!r.ok) return failed(c, r, 'role', drawRole)
      return { redirect: '/roles?done=role-deleted' }
    })

    // Resources.
    const drawResources = async (c: Ctx, d: Redraw): Promise<SafeHtml> => {
      const [resources, settings] = await Promise.all([c.api.all<ResourceListEntry>('/v1/admin/resources'), c.api.call<SettingsView>('GET', '/v1/admin/settings')])
      if (!settings.ok) throw new ApiFailure(errorOf(settings))
      return resourcesPage({ viewer: c.viewer, resources, portOverrides: settings.json.portOverrides, ...d })
    }
    view('/resources', drawResources)
    action('/resources', async (c, form) => {
      const values = { name: form.name ?? '', kind: form.kind ?? '', type: form.type ?? '', address: form.address ?? '', portOverride: form.portOverride ?? '' }
      const port = values.portOverride.trim()
      const body = { name: values.name.trim(), kind: values.kind, type: values.type.trim(), address: values.address.trim(), ...(port === '' ? {} : { portOverride: /^\d{1,5}$/.test(port) ? Number(port) : -1 }) }
      const r = await c.api.call('POST', '/v1/admin/resources', { csrf: form._csrf, body })
      if (!r.ok) return failed(c, r, 'add-resource', drawResources, values)
      return { redirect: '/resources?done=resource-added' }
    })
    action('/resources/:resource/delete', async (c, form) => {
      const r = await c.api.call('DELETE', `/v1/admin/resources/${encodeURIComponent(c.params.resource!)}${form.force === 'true' ? '?force=true' : ''}`, { csrf: form._csrf })
      if (!r.ok) return failed(c, r, 'resources', drawResources, { remove: c.params.resource! })
      return { redirect: '/resources?done=resource-removed' }
    })

    // Live sessions.
    const drawSessions = async (c: Ctx, d: Redraw): Promise<SafeHtml> => {
      const r: ApiAnswer<{ items: LiveSessionEntry[]; next: string | null; unanswered?: string[] }> = await c.api.call('GET', '/v1/admin/sessions?limit=500')
      // An admin server without a gateway has no sessions: the page says so instead of failing.
      if (!r.ok && errorOf(r).code === 'ERR_ADMIN_NO_GATEWAY') return sessionsPage({ viewer: c.viewer, sessions: [], unavailable: errorOf(r), ...d })
      if (!r.ok) throw new ApiFailure(errorOf(r))
      return sessionsPage({ viewer: c.viewer, sessions: r.json.items, unanswered: r.json.unanswered, ...d })
    }
    view('/sessions', drawSessions)
    action('/sessions/:session/end', async (c, form) => {
      const r = await c.api.call('DELETE', `/v1/admin/sessions/${encodeURIComponent(c.params.session!)}`, { csrf: form._csrf })
      if (!r.ok) return failed(c, r, 'sessions', drawSessions)
      return { redirect: '/sessions?done=session-ended' }
    })

    // Settings > Port Overrides.
    ui.get('/settings', async (_req, reply) => reply.redirect('/settings/port-overrides', 303))
    const drawSettings = async (c: Ctx, d: Redraw): Promise<SafeHtml> => {
      const r: ApiAnswer<SettingsView> = await c.api.call('GET', '/v1/admin/settings')
      if (!r.ok) throw new ApiFailure(errorOf(r))
      return portOverridesPage({ viewer: c.viewer, settings: r.json, etag: r.etag ?? '', ...d })
    }
    view('/settings/port-overrides', drawSettings)
    action('/settings/port-overrides', async (c, form) => {
      const low = Number(form.rangeLow)
      const high = Number(form.rangeHigh)
      const body = { portOverrides: form.portOverrides === 'on', autoConnect: form.autoConnect === 'on', portRange: [low, high] }
      const r = await c.api.call('PATCH', '/v1/admin/settings', { csrf: form._csrf, ifMatch: form.etag, body })
      if (!r.ok) return failed(c, r, 'settings', drawSettings)
      return { redirect: '/settings/port-overrides?done=saved' }
    })
  })
}

/** Who is signed in, by asking the API with the browser's cookie. */
async function viewerOf(api: AdminApiClient): Promise<{ viewer?: Viewer; error?: ApiError }> {
  const r = await api.call('GET', '/v1/admin/session')
  if (r.status === 401) return {}
  if (!r.ok) return { error: errorOf(r) }
  if (typeof r.json?.csrfToken !== 'string') return {}
  return { viewer: { email: String(r.json.account?.email ?? ''), csrf: r.json.csrfToken } }
}

function usage(message: string): ApiAnswer {
  return { status: 400, ok: false, json: { code: 'ERR_USAGE', message }, etag: undefined, setCookie: undefined, retryAfter: undefined }
}

function sendHtml(reply: FastifyReply, status: number, body: SafeHtml): FastifyReply {
  return reply.code(status).type('text/html; charset=utf-8').send(body.toString())
}

/**
 * The posted form. Only urlencoded bodies are forms: a JSON or text body
 * posted to a page is refused, so the API's content-type rule holds here too.
 *
 * @throws KeywayError ERR_CONTENT_TYPE
 */
function formOf(req: FastifyRequest): Form {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded' || req.body === null || typeof req.body !== 'object') {
    throw new KeywayError('ERR_CONTENT_TYPE', 'the Admin UI takes HTML forms (application/x-www-form-urlencoded)')
  }
  return req.body as Form
}

/** A browser's Origin, when it sends one, must be this listener's own. */
function sameOrigin(req: FastifyRequest): boolean {
  const origin = req.headers.origin
  if (origin === undefined) return true
  try {
    return new URL(origin).host === req.headers.host
  } catch {
    return false
  }
}

function secretEquals(expected: string | undefined, given: string | undefined): boolean {
  if (expected === undefined || given === undefined || expected === '') return false
  const a = Buffer.from(expected)
  const b = Buffer.from(given)
  return a.length === b.length && timingSafeEqual(a, b)
}

function cookieOf(req: FastifyRequest, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

function cookiesOf(r: ApiAnswer): string[] {
  return r.setCookie === undefined ? [] : Array.isArray(r.setCookie) ? r.setCookie : [r.setCookie]
}

/** Where to go after signing in: a page of this UI only (never another site, never the API). */
function safeNextOrUndefined(next: string | undefined): string | undefined {
  if (next === undefined || !/^\/(?![/\\])[\w\-./%?=&]*$/.test(next) || next.startsWith('/v1/') || next.startsWith('/signin')) return undefined
  return next
}

function safeNext(next: string | undefined): string {
  return safeNextOrUndefined(next) ?? '/users'
}

const FASTIFY_CODES: Readonly<Record<string, 'ERR_BODY_TOO_LARGE' | 'ERR_CONTENT_TYPE' | 'ERR_USAGE'>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'ERR_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'ERR_CONTENT_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'ERR_USAGE',
}

function mapFastifyError(err: unknown): unknown {
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && code in FASTIFY_CODES) return new KeywayError(FASTIFY_CODES[code]!, (err as Error).message)
  if ((err as { statusCode?: number }).statusCode === 400) return new KeywayError('ERR_USAGE', (err as Error).message)
  return err
}
