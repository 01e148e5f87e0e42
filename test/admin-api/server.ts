import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import { issueToken, LoginLimiter, newTokenId } from '../../src/auth/index.js'
import { createUser, type AdminContext } from '../../src/admin/index.js'
import { AdminServer, clusterSessions, FileAdminBackend, localSessions, SESSION_COOKIE, type AdminServerOptions, type LiveSessionInfo } from '../../src/admin-api/index.js'
import type { SessionFeed } from '../../src/store/index.js'
import { ManualClock, systemClock } from '../../src/clock.js'
import { createLogger } from '../../src/observe/index.js'
import { policyVerifier, writeAdminSetup } from '../helpers/cli.js'


const PASSWORD = 'correct horse battery'

interface Api {
  base: string
  logs: string[]
  ctx: AdminContext
  token(accountId: string, kind?: 'login' | 'service'): Promise<string>
  call(method: string, path: string, init?: { body?: unknown; headers?: Record<string, string>; raw?: string }): Promise<{ status: number; headers: Headers; text: string; json: any }>
  signIn(email?: string): Promise<{ cookie: string; csrf: string }>
}

async function startApi(t: Test, extra: Partial<AdminServerOptions> = {}): Promise<Api> {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(systemClock)
  await createUser(ctx, 'root@example.com', { password: PASSWORD, admin: true })
  await createUser(ctx, 'bob@example.com', { password: PASSWORD })
  const logs: string[] = []
  const logger = createLogger({ level: 'info', destination: new Writable({ write(c, _e, cb) { logs.push(String(c)); cb() } }) as never })
  const verifier = await policyVerifier(setup, systemClock)
  const server = new AdminServer({
    host: '127.0.0.1',
    port: 0,
    backend: new FileAdminBackend(ctx),
    clock: systemClock,
    logger,
    sessionTtlMs: 3_600_000,
    limiter: new LoginLimiter({ clock: new ManualClock(0) }),
    verifyToken: (tok) => verifier.verify(tok),
    ...extra,
  })
  t.teardown(() => server.close())
  const at = await server.start()
  const base = `http://127.0.0.1:${at.port}`
  const api: Api = {
    base,
    logs,
    ctx,
    async token(accountId, kind = 'login') {
      const now = Date.now()
      return issueToken(setup.signingKey, { issuer: 'keyway-test', audience: 'keyway-test', subject: accountId, tokenId: newTokenId(), expiresAt: now + 3_600_000, kind, now })
    },
    async call(method, path, init = {}) {
      const headers: Record<string, string> = { ...init.headers }
      let body: string | undefined
      if (init.raw !== undefined) body = init.raw
      else if (init.body !== undefined) {
        body = JSON.stringify(init.body)
        headers['content-type'] ??= 'application/json'
      }
      const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body }) })
      const text = await res.text()
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        json = undefined
      }
      return { status: res.status, headers: res.headers, text, json }
    },
    async signIn(email = 'root@example.com') {
      const r = await api.call('POST', '/v1/admin/login', { body: { email, password: PASSWORD } })
      if (r.status !== 200) throw new Error(`sign-in failed: ${r.text}`)
      const cookie = r.headers.get('set-cookie')!.split(';')[0]!
      return { cookie, csrf: r.json.csrfToken as string }
    },
  }
  return api
}

const JWT = /[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}/
const HASH = /scrypt\$/

t.test('sign-in: the cookie is HttpOnly, SameSite=Strict, expiring; wrong passwords and non-admins refused and audited', async (t) => {
  const api = await startApi(t)
  const ok = await api.call('POST', '/v1/admin/login', { body: { email: 'root@example.com', password: PASSWORD } })
  t.equal(ok.status, 200)
  const cookie = ok.headers.get('set-cookie')!
  t.match(cookie, new RegExp(`^${SESSION_COOKIE}=[\\w-]{40,}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600$`))
  t.notMatch(cookie, /Secure/, 'plain HTTP on loopback: no Secure flag')
  t.match(ok.json, { account: { email: 'root@example.com' }, csrfToken: String })
  t.notMatch(ok.text, JWT, 'no bearer token unless asked')
  const wrong = await api.call('POST', '/v1/admin/login', { body: { email: 'root@example.com', password: 'nope nope nope' } })
  t.equal(wrong.status, 401)
  t.equal(wrong.json.code, 'ERR_LOGIN_FAILED')
  t.ok(api.logs.some((l) => /"event":"login_failed"/.test(l) && /root@example.com/.test(l)), 'failed sign-in audited')
  t.notOk(api.logs.some((l) => l.includes('nope nope nope')), 'never the password')
  const bob = await api.call('POST', '/v1/admin/login', { body: { email: 'bob@example.com', password: PASSWORD } })
  t.equal(bob.status, 403)
  t.equal(bob.json.code, 'ERR_ADMIN_FORBIDDEN')
  t.equal(bob.headers.get('set-cookie'), null)
  const bad = await api.call('POST', '/v1/admin/login', { body: { email: 'root@example.com' } })
  t.equal(bad.status, 400)
  t.equal(bad.json.code, 'ERR_USAGE')
  for (let i = 0; i < 6; i++) await api.call('POST', '/v1/admin/login', { body: { email: 'x@example.com', password: 'wrong password' } })
  const throttled = await api.call('POST', '/v1/admin/login', { body: { email: 'x@example.com', password: 'wrong password' } })
  t.equal(throttled.status, 429)
  t.equal(throttled.json.code, 'ERR_LOGIN_THROTTLED')
  t.ok(throttled.headers.get('retry-after'))
})

t.test('bearer: an admin login token works; a service token and a non-admin get 403 ERR_ADMIN_FORBIDDEN; nothing gets 401', async (t) => {
  const api = await startApi(t)
  const policy = await new FileAdminBackend(api.ctx).policy()
  const root = policy.accountByName('root@example.com')!.id
  const bob = policy.accountByName('bob@example.com')!.id
  const ok = await api.call('GET', '/v1/admin/accounts', { headers: { authorization: `Bearer ${await api.token(root)}` } })
  t.equal(ok.status, 200, ok.text)
  const nonAdmin = await api.call('GET', '/v1/admin/accounts', { headers: { authorization: `Bearer ${await api.token(bob)}` } })
  t.equal(nonAdmin.status, 403)
  t.equal(nonAdmin.json.code, 'ERR_ADMIN_FORBIDDEN')
  const created = await api.call('POST', '/v1/admin/services', { body: { name: 'ci' }, headers: { authorization: `Bearer ${await api.token(root)}` } })
  t.equal(created.status, 201)
  const svc = await api.call('GET', '/v1/admin/accounts', { headers: { authorization: `Bearer ${created.json.token.token}` } })
  t.equal(svc.status, 403)
  t.equal(svc.json.code, 'ERR_ADMIN_FORBIDDEN')
  const none = await api.call('GET', '/v1/admin/accounts')
  t.equal(none.status, 401)
  t.equal(none.json.code, 'ERR_ADMIN_UNAUTHENTICATED')
  const garbage = await api.call('GET', '/v1/admin/accounts', { headers: { authorization: 'Bearer not-a-token' } })
  t.equal(garbage.status, 401)
  t.equal(garbage.json.code, 'ERR_ADMIN_UNAUTHENTICATED')
  t.notOk(garbage.text.includes('not-a-token'))
})

t.test('CSRF: a cookie-authenticated change needs the session token and a same origin; GETs do not', async (t) => {
  const api = await startApi(t)
  const { cookie, csrf } = await api.signIn()
  const get = await api.call('GET', '/v1/admin/settings', { headers: { cookie } })
  t.equal(get.status, 200)
  const missing = await api.call('POST', '/v1/admin/roles', { body: { name: 'x' }, headers: { cookie } })
  t.equal(missing.status, 403)
  t.equal(missing.json.code, 'ERR_CSRF')
  const wrong = await api.call('POST', '/v1/admin/roles', { body: { name: 'x' }, headers: { cookie, 'x-csrf-token': csrf.slice(1) + 'A' } })
  t.equal(wrong.json.code, 'ERR_CSRF')
  const foreign = await api.call('POST', '/v1/admin/roles', { body: { name: 'x' }, headers: { cookie, 'x-csrf-token': csrf, origin: 'https://evil.example' } })
  t.equal(foreign.status, 403)
  t.equal(foreign.json.code, 'ERR_CSRF')
  const ok = await api.call('POST', '/v1/admin/roles', { body: { name: 'x' }, headers: { cookie, 'x-csrf-token': csrf, origin: api.base } })
  t.equal(ok.status, 201, ok.text)
  const out = await api.call('POST', '/v1/admin/logout', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(out.status, 204)
  t.equal((await api.call('GET', '/v1/admin/settings', { headers: { cookie } })).json.code, 'ERR_ADMIN_UNAUTHENTICATED', 'the session ended')
})

t.test('services: create answers the token once; lists, account views and rotation records never carry it; audit never does', async (t) => {
  const api = await startApi(t)
  const { cookie, csrf } = await api.signIn()
  const h = { cookie, 'x-csrf-token': csrf }
  const created = await api.call('POST', '/v1/admin/services', { body: { name: 'nightly', role: 'ops' }, headers: h })
  t.equal(created.status, 201)
  t.match(created.json, { account: { name: 'nightly', roles: ['ops'], tags: ['service'] }, token: { token: JWT, id: String, fingerprint: /^sha256:/ } })
  const token = created.json.token.token as string
  const dup = await api.call('POST', '/v1/admin/services', { body: { name: 'nightly' }, headers: h })
  t.equal(dup.status, 409)
  t.equal(dup.json.code, 'ERR_ALREADY_EXISTS')
  const badName = await api.call('POST', '/v1/admin/services', { body: { name: 'no spaces allowed' }, headers: h })
  t.equal(badName.status, 400)
  t.equal(badName.json.code, 'ERR_USAGE')
  const badRole = await api.call('POST', '/v1/admin/services', { body: { name: 'x1', role: 'nope' }, headers: h })
  t.equal(badRole.status, 404)
  const extra = await api.call('POST', '/v1/admin/services', { body: { name: 'x2', password: 'x' }, headers: h })
  t.equal(extra.json.code, 'ERR_USAGE', 'unknown fields refused')
  const reads = [
    await api.call('GET', '/v1/admin/accounts', { headers: h }),
    await api.call('GET', '/v1/admin/accounts/nightly', { headers: h }),
    await api.call('GET', '/v1/admin/accounts/root@example.com', { headers: h }),
    await api.call('GET', '/v1/admin/services/nightly/tokens', { headers: h }),
    await api.call('GET', '/v1/admin/roles', { headers: h }),
  ]
  for (const r of reads) {
    t.equal(r.status, 200, r.text)
    t.notOk(r.text.includes(token), 'no token in a read')
    t.notMatch(r.text, JWT)
    t.notMatch(r.text, HASH, 'no password hash')
  }
  t.match(reads[3]!.json.items[0], { id: created.json.token.id, fingerprint: created.json.token.fingerprint, created: String })
  const rotated = await api.call('POST', '/v1/admin/services/nightly/tokens/rotate', { body: { graceSeconds: 0 }, headers: h })
  t.equal(rotated.status, 200)
  t.match(rotated.json.token.token, JWT)
  t.not(rotated.json.token.token, token)
  const revokeOne = await api.call('DELETE', `/v1/admin/services/nightly/tokens/${rotated.json.token.id}`, { headers: h })
  t.same(revokeOne.json.revoked, [rotated.json.token.id])
  const notService = await api.call('GET', '/v1/admin/services/root@example.com/tokens', { headers: h })
  t.equal(notService.status, 404)
  const del = await api.call('DELETE', '/v1/admin/services/nightly', { headers: h })
  t.equal(del.status, 200)
  const logText = api.logs.join('')
  t.notOk(logText.includes(token) || logText.includes(rotated.json.token.token), 'no token in the log')
  t.match(logText, /"event":"admin_change".*"action":"create_service"/)
  t.match(logText, /"action":"rotate_token"/)
  t.match(logText, /"actor_name":"root@example.com"/)
})

t.test('accounts: No Role first, services tagged, paginated', async (t) => {
  const api = await startApi(t)
  const { cookie } = await api.signIn()
  const all = await api.call('GET', '/v1/admin/accounts', { headers: { cookie } })
  t.same(all.json.items.map((a: { name: string }) => a.name), ['alice@example.com', 'bob@example.com', 'root@example.com', 'etl'])
  t.same(all.json.items.map((a: { noRole: boolean }) => a.noRole), [true, true, true, false])
  t.same(all.json.items[3].tags, ['service'])
  t.equal(all.json.next, null)
  const first = await api.call('GET', '/v1/admin/accounts?limit=3', { headers: { cookie } })
  t.equal(first.json.items.length, 3)
  t.equal(first.json.next, '3')
  const second = await api.call('GET', `/v1/admin/accounts?limit=3&cursor=${first.json.next}`, { headers: { cookie } })
  t.same(second.json.items.map((a: { name: string }) => a.name), ['etl'])
  const bad = await api.call('GET', '/v1/admin/accounts?limit=0', { headers: { cookie } })
  t.equal(bad.json.code, 'ERR_USAGE')
  const unknown = await api.call('GET', '/v1/admin/accounts/nobody', { headers: { cookie } })
  t.equal(unknown.status, 404)
  t.equal(unknown.json.code, 'ERR_NOT_FOUND')
})

t.test('grants with If-Match: a stale edit gets 412; direct grant to an account with a role is refused; temporary grants', async (t) => {
  const api = await startApi(t)
  const { cookie, csrf } = await api.signIn()
  const h = { cookie, 'x-csrf-token': csrf }
  const read = await api.call('GET', '/v1/admin/accounts/alice@example.com', { headers: h })
  const etag = read.headers.get('etag')!
  t.match(etag, /^"[\w-]+"$/)
  const first = await api.call('PUT', '/v1/admin/accounts/alice@example.com/grants/pg', { headers: { ...h, 'if-match': etag } })
  t.equal(first.status, 200, first.text)
  t.match(first.json, { kind: 'direct', changed: true })
  // A second admin who read before that change:
  const stale = await api.call('DELETE', '/v1/admin/accounts/alice@example.com/grants/ssh-box', { headers: { ...h, 'if-match': etag } })
  t.equal(stale.status, 412)
  t.equal(stale.json.code, 'ERR_PRECONDITION_FAILED')
  const fresh = await api.call('DELETE', '/v1/admin/accounts/alice@example.com/grants/ssh-box', { headers: { ...h, 'if-match': first.json.etag } })
  t.equal(fresh.status, 200, fresh.text)
  const temp = await api.call('PUT', '/v1/admin/accounts/etl/grants/ssh-box', { body: { seconds: 3600 }, headers: h })
  t.match(temp.json, { kind: 'temporary', expires: String })
  const withRole = await api.call('PUT', '/v1/admin/accounts/etl/grants/ssh-box', { headers: h })
  t.equal(withRole.status, 409)
  t.equal(withRole.json.code, 'ERR_DIRECT_GRANT_WITH_ROLE')
  const unknown = await api.call('PUT', '/v1/admin/accounts/alice@example.com/grants/nope', { headers: h })
  t.equal(unknown.status, 404)
  const assign = await api.call('PUT', '/v1/admin/accounts/bob@example.com/roles/ops', { headers: h })
  t.equal(assign.status, 200, assign.text)
  const unassign = await api.call('DELETE', '/v1/admin/accounts/bob@example.com/roles/ops', { headers: h })
  t.match(unassign.json, { noRole: true })
  const conflict = await api.call('PUT', '/v1/admin/accounts/alice@example.com/roles/ops', { headers: h })
  t.equal(conflict.json.code, 'ERR_ROLE_WITH_DIRECT_GRANTS')
})

t.test('roles, resources and settings', async (t) => {
  const api = await startApi(t)
  const { cookie, csrf } = await api.signIn()
  const h = { cookie, 'x-csrf-token': csrf }
  t.equal((await api.call('POST', '/v1/admin/roles', { body: { name: 'dba' }, headers: h })).status, 201)
  const role = await api.call('GET', '/v1/admin/roles/dba', { headers: h })
  const granted = await api.call('PUT', '/v1/admin/roles/dba/grants/pg', { headers: { ...h, 'if-match': role.headers.get('etag')! } })
  t.equal(granted.status, 200, granted.text)
  const stale = await api.call('PUT', '/v1/admin/roles/dba/grants/web', { headers: { ...h, 'if-match': role.headers.get('etag')! } })
  t.equal(stale.status, 412)
  t.equal((await api.call('DELETE', '/v1/admin/roles/dba/grants/pg', { headers: h })).status, 200)
  t.equal((await api.call('DELETE', '/v1/admin/roles/analysts', { headers: h })).status, 400, 'held roles are not deleted without force')
  t.equal((await api.call('DELETE', '/v1/admin/roles/analysts?force=true', { headers: h })).status, 200)
  t.equal((await api.call('DELETE', '/v1/admin/roles/dba', { headers: h })).status, 200)
  const add = await api.call('POST', '/v1/admin/resources', { body: { name: 'cache', kind: 'datasource', type: 'redis', address: '127.0.0.1:6379' }, headers: h })
  t.equal(add.status, 201, add.text)
  const badPort = await api.call('POST', '/v1/admin/resources', { body: { name: 'c2', kind: 'datasource', type: 'redis', address: '127.0.0.1:6379', portOverride: 70000 }, headers: h })
  t.equal(badPort.json.code, 'ERR_USAGE')
  const badKind = await api.call('POST', '/v1/admin/resources', { body: { name: 'c3', kind: 'printer', type: 'x', address: 'h:1' }, headers: h })
  t.equal(badKind.json.code, 'ERR_USAGE')
  t.same((await api.call('GET', '/v1/admin/resources', { headers: h })).json.items.map((r: { name: string }) => r.name).sort(), ['cache', 'pg', 'ssh-box', 'web'])
  t.equal((await api.call('DELETE', '/v1/admin/resources/cache', { headers: h })).status, 200)
  const settings = await api.call('GET', '/v1/admin/settings', { headers: h })
  t.match(settings.json, { portOverrides: true, autoConnect: false })
  const on = await api.call('PATCH', '/v1/admin/settings', { body: { autoConnect: true }, headers: { ...h, 'if-match': settings.headers.get('etag')! } })
  t.equal(on.status, 200, on.text)
  const stale2 = await api.call('PATCH', '/v1/admin/settings', { body: { autoConnect: false }, headers: { ...h, 'if-match': settings.headers.get('etag')! } })
  t.equal(stale2.status, 412)
  const refused = await api.call('PATCH', '/v1/admin/settings', { body: { portOverrides: false }, headers: h })
  t.equal(refused.json.code, 'ERR_PRECONDITION', 'port overrides cannot go off while auto-connect is on')
    t.equal(refused.status, 409)
  const both = await api.call('PATCH', '/v1/admin/settings', { body: { portOverrides: false, autoConnect: false }, headers: h })
  t.match(both.json, { portOverrides: false, autoConnect: false })
  t.match(api.logs.join(''), /"action":"settings".*"before":\{"portOverrides":true/)
})

t.test('bodies: oversized refused 413, wrong content type 415, bad JSON 400; unknown routes 404; one error shape', async (t) => {
  const api = await startApi(t)
  const { cookie, csrf } = await api.signIn()
  const h = { cookie, 'x-csrf-token': csrf }
  const big = await api.call('POST', '/v1/admin/roles', { raw: JSON.stringify({ name: 'x'.repeat(70_000) }), headers: { ...h, 'content-type': 'application/json' } })
  t.equal(big.status, 413)
  t.same(Object.keys(big.json).sort(), ['code', 'message'])
  t.equal(big.json.code, 'ERR_BODY_TOO_LARGE')
  const form = await api.call('POST', '/v1/admin/roles', { raw: 'name=x', headers: { ...h, 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(form.status, 415)
  t.equal(form.json.code, 'ERR_CONTENT_TYPE')
  const broken = await api.call('POST', '/v1/admin/roles', { raw: '{"name":', headers: { ...h, 'content-type': 'application/json' } })
  t.equal(broken.status, 400)
  t.equal(broken.json.code, 'ERR_USAGE')
  const none = await api.call('GET', '/v1/admin/nothing-here', { headers: h })
  t.equal(none.status, 404)
  t.equal(none.json.code, 'ERR_NOT_FOUND')
  t.equal(none.headers.get('x-frame-options'), 'DENY')
  t.match(none.headers.get('content-security-policy'), /frame-ancestors 'none'/)
})

t.test('openapi.json is OpenAPI 3.1, generated from the request schemas', async (t) => {
  const api = await startApi(t)
  const doc = await api.call('GET', '/v1/admin/openapi.json')
  t.equal(doc.status, 200)
  t.equal(doc.json.openapi, '3.1.0')
  const create = doc.json.paths['/v1/admin/services'].post
  t.same(create.requestBody.content['application/json'].schema.required, ['name'])
  t.ok(create.responses['201'])
  t.same(Object.keys(doc.json.paths['/v1/admin/accounts/{account}/grants/{resource}']).sort(), ['delete', 'put'])
  t.match(doc.json.paths['/v1/admin/resources'].post.requestBody.content['application/json'].schema.properties.kind.enum, ['datasource', 'server', 'cluster', 'website', 'cloud'])
})

t.test('live sessions: listed without tokens and paginated, ended with an audit; unknown ids 404; alone, ERR_ADMIN_NO_GATEWAY', async (t) => {
  const live: LiveSessionInfo[] = [
    { id: 'sB', account: { id: 'svc_b', name: 'job-b', type: 'service' }, resource: 'pg', startedAt: Date.UTC(2026, 0, 1, 0, 0, 2), bytesIn: 10, bytesOut: 20 },
    { id: 'sA', account: { id: 'svc_a', name: 'job-a', type: 'service' }, resource: 'pg', startedAt: Date.UTC(2026, 0, 1, 0, 0, 1), bytesIn: 1, bytesOut: 2 },
  ]
  const ended: string[] = []
  const api = await startApi(t, {
    liveSessions: localSessions('gw-1', {
      list: () => live,
      end: (id) => {
        const i = live.findIndex((s) => s.id === id)
        if (i < 0) return undefined
        ended.push(id)
        return live.splice(i, 1)[0]
      },
    }),
  })
  const { cookie, csrf } = await api.signIn()
  const first = await api.call('GET', '/v1/admin/sessions?limit=1', { headers: { cookie } })
  t.equal(first.status, 200, first.text)
  t.same(first.json, { items: [{ id: 'sA', account: { id: 'svc_a', name: 'job-a', type: 'service' }, resource: 'pg', startedAt: '2026-01-01T00:00:01.000Z', bytes: { in: 1, out: 2 }, gateway: 'gw-1' }], next: '1' }, 'oldest first')
  const second = await api.call('GET', `/v1/admin/sessions?limit=1&cursor=${first.json.next}`, { headers: { cookie } })
  t.same(second.json.items.map((s: { id: string }) => s.id), ['sB'])
  t.equal(second.json.next, null)
  const noCsrf = await api.call('DELETE', '/v1/admin/sessions/sA', { headers: { cookie } })
  t.equal(noCsrf.json.code, 'ERR_CSRF', 'ending a session is a change: CSRF-protected')
  const end = await api.call('DELETE', '/v1/admin/sessions/sA', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(end.status, 200, end.text)
  t.same(end.json, { id: 'sA', ended: true, code: 'ERR_SESSION_ENDED_BY_ADMIN' })
  t.same(ended, ['sA'])
  const audit = api.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'admin_change' && l.action === 'end_session')
  t.match(audit, { target: 'sA', via: 'session', before: { account: 'svc_a', account_name: 'job-a', resource: 'pg' }, after: null })
  const again = await api.call('DELETE', '/v1/admin/sessions/sA', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(again.status, 404)
  t.equal(again.json.code, 'ERR_NOT_FOUND')
  const doc = await api.call('GET', '/v1/admin/openapi.json')
  t.same(Object.keys(doc.json.paths['/v1/admin/sessions/{session}']), ['delete'])
  t.match(doc.json.paths['/v1/admin/sessions'].get.responses['200'].content['application/json'].schema.properties.items.items.required, ['id', 'account', 'resource', 'startedAt', 'bytes'])

  const alone = await startApi(t)
  const s = await alone.signIn()
  const list = await alone.call('GET', '/v1/admin/sessions', { headers: { cookie: s.cookie } })
  t.equal(list.status, 409)
  t.equal(list.json.code, 'ERR_ADMIN_NO_GATEWAY')
  t.match(list.json.message, /keyway admin serve/)
  const del = await alone.call('DELETE', '/v1/admin/sessions/x', { headers: { cookie: s.cookie, 'x-csrf-token': s.csrf } })
  t.equal(del.json.code, 'ERR_ADMIN_NO_GATEWAY')
})

t.test('live sessions across gateways: own ones ended here, others through the feed; a silent holder is 504 ERR_SESSION_UNANSWERED; missing answers are named', async (t) => {
  const session = (id: string, name: string): LiveSessionInfo => ({ id, account: { id: `svc_${name}`, name, type: 'service' }, resource: 'pg', startedAt: Date.UTC(2026, 0, 1), bytesIn: 1, bytesOut: 2 })
  const mine = [session('here.s1', 'job-here')]
  const endedHere: string[] = []
  const asked: { id: string; by: string }[] = []
  const feed: SessionFeed = {
    serve: () => undefined,
    list: async (except) => {
      t.equal(except, 'here', 'the feed is not asked for the serving gateway\'s own sessions')
      return { sessions: [{ ...session('there.s2', 'job-there'), gateway: 'gw-there' }], unanswered: ['gw-silent'] }
    },
    end: async (id, by) => {
      asked.push({ id, by })
      if (id === 'there.s2') return { ended: true, session: { ...session('there.s2', 'job-there'), gateway: 'gw-there' } }
      if (id === 'silent.s3') return { ended: false, reason: 'unanswered', gateway: 'gw-silent' }
      return { ended: false, reason: 'not_found' }
    },
    close: async () => undefined,
  }
  const api = await startApi(t, {
    liveSessions: clusterSessions(feed, {
      instance: 'here',
      name: 'gw-here',
      list: () => mine,
      end: (id) => {
        const i = mine.findIndex((s) => s.id === id)
        if (i < 0) return undefined
        endedHere.push(id)
        return mine.splice(i, 1)[0]
      },
    }),
  })
  const { cookie, csrf } = await api.signIn()
  const listed = await api.call('GET', '/v1/admin/sessions', { headers: { cookie } })
  t.equal(listed.status, 200, listed.text)
  t.same(listed.json.items.map((s: { id: string; gateway: string }) => `${s.gateway}:${s.id}`), ['gw-here:here.s1', 'gw-there:there.s2'])
  t.same(listed.json.unanswered, ['gw-silent'], 'gateways that did not answer are named')

  const here = await api.call('DELETE', '/v1/admin/sessions/here.s1', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(here.status, 200, here.text)
  t.same(endedHere, ['here.s1'], 'an own session is ended here')
  t.same(asked, [], 'without asking the feed')
  const there = await api.call('DELETE', '/v1/admin/sessions/there.s2', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(there.status, 200, there.text)
  t.same(there.json, { id: 'there.s2', ended: true, code: 'ERR_SESSION_ENDED_BY_ADMIN' })
  t.equal(asked[0]?.id, 'there.s2')
  t.match(asked[0]?.by, /^usr_/, 'the feed is told which admin asked')
  const audit = api.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'admin_change' && l.action === 'end_session')
  t.match(audit[1], { target: 'there.s2', before: { account_name: 'job-there', gateway: 'gw-there' }, after: null }, 'audited here, naming the holding gateway')
  const silent = await api.call('DELETE', '/v1/admin/sessions/silent.s3', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(silent.status, 504)
  t.match(silent.json, { code: 'ERR_SESSION_UNANSWERED', detail: { gateway: 'gw-silent' } })
  t.match(silent.json.message, /withdrawn and nothing ended/)
  const unknown = await api.call('DELETE', '/v1/admin/sessions/nobody.s4', { headers: { cookie, 'x-csrf-token': csrf } })
  t.equal(unknown.status, 404)
  t.equal(unknown.json.code, 'ERR_NOT_FOUND')
  t.equal(api.logs.filter((l) => /"action":"end_session"/.test(l)).length, 2, 'only the ended sessions are audited')
})

t.test('a non-loopback address without TLS is refused unless a TLS-terminating proxy is declared', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const options = {
    host: '0.0.0.0',
    port: 0,
    backend: new FileAdminBackend(setup.ctx(systemClock)),
    clock: systemClock,
    logger: createLogger({ level: 'silent' }),
    sessionTtlMs: 60_000,
    limiter: new LoginLimiter({ clock: systemClock }),
    verifyToken: async () => {
      throw new Error('unused')
    },
  }
  t.throws(() => new AdminServer(options), { code: 'ERR_ADMIN_INSECURE_LISTEN' })
  t.doesNotThrow(() => new AdminServer({ ...options, behindTlsProxy: true }))
  t.doesNotThrow(() => new AdminServer({ ...options, host: '127.0.0.1' }))
})

t.test('a session expires on the injected clock; GET /v1/admin/session says who is signed in', async (t) => {
  const clock = new ManualClock()
  const api = await startApi(t, { clock, sessionTtlMs: 60_000 })
  const { cookie, csrf } = await api.signIn()
  const who = await api.call('GET', '/v1/admin/session', { headers: { cookie } })
  t.equal(who.status, 200, who.text)
  t.match(who.json, { account: { email: 'root@example.com' }, via: 'session', csrfToken: csrf, expiresAt: String })
  clock.advance(59_000)
  t.equal((await api.call('GET', '/v1/admin/session', { headers: { cookie } })).status, 200, 'still valid just before its end')
  clock.advance(2_000)
  const late = await api.call('GET', '/v1/admin/session', { headers: { cookie } })
  t.equal(late.status, 401)
  t.equal(late.json.code, 'ERR_ADMIN_UNAUTHENTICATED')
})

t.test('revoking every token of a service removes every record; the answer carries ids, never a token', async (t) => {
  const api = await startApi(t)
  const { cookie, csrf } = await api.signIn()
  const h = { cookie, 'x-csrf-token': csrf }
  const created = await api.call('POST', '/v1/admin/services', { body: { name: 'nightly' }, headers: h })
  t.equal(created.status, 201)
  await api.call('POST', '/v1/admin/services/nightly/tokens/rotate', { body: {}, headers: h })
  const revoked = await api.call('DELETE', '/v1/admin/services/nightly/tokens', { headers: h })
  t.equal(revoked.status, 200, revoked.text)
  t.notMatch(revoked.text, JWT)
  const left = await api.call('GET', '/v1/admin/services/nightly/tokens', { headers: { cookie } })
  t.equal(revoked.json.revoked.length, 2, 'the created and the rotated token')
  t.equal(left.status, 200)
  t.same(left.json.items, [], 'no token record left')
  const noCsrf = await api.call('DELETE', '/v1/admin/services/nightly/tokens', { headers: { cookie } })
  t.equal(noCsrf.status, 403)
  t.equal(noCsrf.json.code, 'ERR_CSRF')
})

t.test('an admin listener on a taken port fails with ERR_PORT_IN_USE; an unexpected backend fault is a 500 ERR_INTERNAL, logged, nothing leaked', async (t) => {
  const api = await startApi(t)
  const setup = await writeAdminSetup(t.testdir())
  const base = {
    host: '127.0.0.1',
    port: Number(new URL(api.base).port),
    backend: new FileAdminBackend(setup.ctx(systemClock)),
    clock: systemClock,
    logger: createLogger({ level: 'silent' }),
    sessionTtlMs: 60_000,
    limiter: new LoginLimiter({ clock: systemClock }),
    verifyToken: async () => {
      throw new Error('unused')
    },
  }
  const second = new AdminServer(base)
  t.teardown(() => second.close())
  await t.rejects(second.start(), { code: 'ERR_PORT_IN_USE' })

  const real = new FileAdminBackend(setup.ctx(systemClock))
  const faulty = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'roles') return async () => { throw new Error('disk on fire at /secret/path') }
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
  const broken = await startApi(t, { backend: faulty })
  const { cookie } = await broken.signIn()
  const r = await broken.call('GET', '/v1/admin/roles', { headers: { cookie } })
  t.equal(r.status, 500)
  t.equal(r.json.code, 'ERR_INTERNAL')
  t.ok(broken.logs.some((l) => /"event":"admin_api_error"/.test(l) && /"code":"ERR_INTERNAL"/.test(l)), 'logged for the operator')
})

t.test('every route of the OpenAPI document is called by this file', async (t) => {
  const api = await startApi(t)
  const doc = await api.call('GET', '/v1/admin/openapi.json')
  const { readFile } = await import('node:fs/promises')
  const source = await readFile(new URL(import.meta.url), 'utf8')
  const calls = [...source.matchAll(/call\('(GET|POST|PUT|PATCH|DELETE)', ['`]([^'`?]+)/g)].map((m) => `${m[1]} ${m[2]}`)
  for (const [path, methods] of Object.entries(doc.json.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(methods)) {
      const pattern = new RegExp(`^${method.toUpperCase()} ${path.replace(/\{[^}]+\}/g, '[^/]+')}$`)
      t.ok(calls.some((c) => pattern.test(c)), `${method.toUpperCase()} ${path} is tested here`)
    }
  }
})
