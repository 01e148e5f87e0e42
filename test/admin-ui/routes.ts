import t, { type Test } from 'tap'
import { createUser, readPolicy } from '../../src/admin/index.js'
import { ADMIN_UI_CSP, SIGNIN_COOKIE } from '../../src/admin-ui/index.js'
import { SESSION_COOKIE } from '../../src/admin-api/index.js'
import { ADMIN_PASSWORD, startAdminUi, type AdminUi } from '../helpers/admin-ui.js'

const JWT = /[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}/

interface Answer {
  status: number
  headers: Headers
  text: string
}

async function get(ui: AdminUi, path: string, cookie?: string): Promise<Answer> {
  const res = await fetch(ui.base + path, { redirect: 'manual', headers: cookie === undefined ? {} : { cookie } })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

async function post(ui: AdminUi, path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(ui.base + path, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

/** The value of hidden field `name` in a page. */
function field(html: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html)
  if (!m) throw new Error(`no field ${name} in the page`)
  return m[1]!.replace(/&quot;/g, '"')
}

/** Signs in through the form; answers the session cookie and the page CSRF token. */
async function signIn(ui: AdminUi, email = 'root@example.com'): Promise<{ cookie: string; csrf: string }> {
  const form = await get(ui, '/signin')
  const pre = form.headers.get('set-cookie')!.split(';')[0]!
  const r = await post(ui, '/signin', { _csrf: field(form.text, '_csrf'), email, password: ADMIN_PASSWORD }, { cookie: pre, origin: ui.base })
  if (r.status !== 303) throw new Error(`sign-in failed: ${r.status} ${r.text}`)
  const cookie = r.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))!.split(';')[0]!
  const users = await get(ui, '/users', cookie)
  return { cookie, csrf: field(users.text, '_csrf') }
}

const PAGES = ['/users', '/accounts/svc_etl', '/roles', '/roles/ops', '/resources', '/settings/port-overrides']

t.test('every page: a signed-out browser is sent to the sign-in page; pages carry the strict CSP and cannot be framed', async (t: Test) => {
  const ui = await startAdminUi(t)
  for (const path of PAGES) {
    const r = await get(ui, path)
    t.equal(r.status, 303, `${path}: redirect`)
    t.equal(r.headers.get('location'), `/signin?next=${encodeURIComponent(path)}`, `${path}: to the sign-in page`)
  }
  t.equal((await get(ui, '/')).headers.get('location'), '/signin')
  const { cookie } = await signIn(ui)
  for (const path of ['/signin', ...PAGES]) {
    const r = await get(ui, path, path === '/signin' ? undefined : cookie)
    t.equal(r.status, 200, `${path}: 200`)
    t.equal(r.headers.get('content-security-policy'), ADMIN_UI_CSP, `${path}: CSP`)
    t.equal(r.headers.get('x-frame-options'), 'DENY', `${path}: not framed`)
    t.equal(r.headers.get('cache-control'), 'no-store', `${path}: not cached`)
    t.match(r.headers.get('content-type'), /^text\/html; charset=utf-8/)
    t.notMatch(r.text, /<script>|<style|style="|\son[a-z]+="/i, `${path}: no inline script, style or handler`)
  }
  t.equal(ADMIN_UI_CSP, "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
  t.equal((await get(ui, '/', cookie)).headers.get('location'), '/users')
  const css = await get(ui, '/ui/admin.css')
  t.match(css.headers.get('content-type'), /^text\/css/)
  t.match((await get(ui, '/ui/admin.js')).headers.get('content-type'), /^text\/javascript/)
  const api = await get(ui, '/v1/admin/accounts')
  t.equal(api.status, 401, 'the API still answers JSON errors')
})

t.test('sign-in: errors on the form, the limiter applies, a form without its cookie or from another origin is refused', async (t: Test) => {
  const ui = await startAdminUi(t)
  const form = await get(ui, '/signin')
  const setCookie = form.headers.get('set-cookie')!
  t.match(setCookie, new RegExp(`^${SIGNIN_COOKIE}=[\\w-]{20,}; Path=/signin; HttpOnly; SameSite=Strict`))
  const pre = setCookie.split(';')[0]!
  const csrf = field(form.text, '_csrf')
  const wrong = await post(ui, '/signin', { _csrf: csrf, email: '<b>x</b>@example.com', password: 'nope nope' }, { cookie: pre })
  t.equal(wrong.status, 401)
  t.match(wrong.text, /role="alert"[^]*email or password is wrong[^]*ERR_LOGIN_FAILED/)
  t.match(wrong.text, /value="&lt;b&gt;x&lt;\/b&gt;@example.com"/, 'what was typed comes back escaped')
  t.notMatch(wrong.text, /<b>x<\/b>/)
  t.equal(wrong.headers.getSetCookie().filter((c) => c.startsWith(SESSION_COOKIE)).length, 0, 'no session')
  const noCookie = await post(ui, '/signin', { _csrf: csrf, email: 'root@example.com', password: ADMIN_PASSWORD })
  t.equal(noCookie.status, 403)
  t.match(noCookie.text, /ERR_CSRF/)
  const foreign = await post(ui, '/signin', { _csrf: csrf, email: 'root@example.com', password: ADMIN_PASSWORD }, { cookie: pre, origin: 'http://evil.example' })
  t.equal(foreign.status, 403)
  const json = await fetch(`${ui.base}/signin`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/json', cookie: pre }, body: '{}' })
  t.equal(json.status, 415, 'a JSON body is not a form')
  const nonAdmin = await post(ui, '/signin', { _csrf: csrf, email: 'bob@example.com', password: ADMIN_PASSWORD }, { cookie: pre })
  t.equal(nonAdmin.status, 403)
  t.match(nonAdmin.text, /ERR_ADMIN_FORBIDDEN/)
  for (let i = 0; i < 6; i++) await post(ui, '/signin', { _csrf: csrf, email: 'x@example.com', password: 'wrong password' }, { cookie: pre })
  const throttled = await post(ui, '/signin', { _csrf: csrf, email: 'x@example.com', password: 'wrong password' }, { cookie: pre })
  t.equal(throttled.status, 429, 'the one login limiter')
  t.match(throttled.text, /ERR_LOGIN_THROTTLED/)
  t.ok(throttled.headers.get('retry-after'))
  t.ok(ui.logs.some((l) => /"event":"login_failed"/.test(l) && /x@example.com/.test(l)), 'failed sign-ins audited')
  const ok = await post(ui, '/signin', { _csrf: csrf, email: 'root@example.com', password: ADMIN_PASSWORD, next: '/roles' }, { cookie: pre, origin: ui.base })
  t.equal(ok.status, 303)
  t.equal(ok.headers.get('location'), '/roles')
  t.ok(ok.headers.getSetCookie().some((c) => c.startsWith(`${SESSION_COOKIE}=`) && /HttpOnly; SameSite=Strict/.test(c)))
  const away = await post(ui, '/signin', { _csrf: csrf, email: 'root@example.com', password: ADMIN_PASSWORD, next: '//evil.example/' }, { cookie: pre })
  t.equal(away.headers.get('location'), '/users', 'never sent to another site')
})

t.test('every form: no CSRF token, a wrong one, or another origin is refused with nothing changed', async (t: Test) => {
  const ui = await startAdminUi(t)
  const { cookie, csrf } = await signIn(ui)
  const before = ui.setup.policyText()
  const forms: [string, Record<string, string>][] = [
    ['/users/services', { name: 'sneaky' }],
    ['/accounts/usr_alice/grants', { resource: 'pg', action: 'grant' }],
    ['/accounts/svc_etl/roles', { role: 'ops', action: 'assign' }],
    ['/roles', { name: 'sneaky' }],
    ['/roles/ops/grants', { resource: 'pg', action: 'grant' }],
    ['/roles/ops/delete', { force: 'true' }],
    ['/resources', { name: 'sneaky', kind: 'server', type: 'ssh', address: '10.0.0.9:22' }],
    ['/resources/web/delete', {}],
    ['/settings/port-overrides', { portOverrides: 'on', autoConnect: 'on', rangeLow: '16000', rangeHigh: '16099' }],
    ['/accounts/svc_etl/tokens/rotate', { graceSeconds: '0' }],
    ['/accounts/svc_etl/tokens/revoke', { token: 'x' }],
    ['/accounts/svc_etl/delete', { confirm: 'yes' }],
    ['/signout', {}],
  ]
  for (const [path, form] of forms) {
    const none = await post(ui, path, form, { cookie })
    t.equal(none.status, 403, `${path}: no token`)
    t.match(none.text, /ERR_CSRF/)
    const wrongToken = await post(ui, path, { ...form, _csrf: csrf.slice(1) + 'x' }, { cookie })
    t.equal(wrongToken.status, 403, `${path}: wrong token`)
    const foreign = await post(ui, path, { ...form, _csrf: csrf }, { cookie, origin: 'http://evil.example' })
    t.equal(foreign.status, 403, `${path}: other origin`)
    const opaque = await post(ui, path, { ...form, _csrf: csrf }, { cookie, origin: 'null' })
    t.equal(opaque.status, 403, `${path}: an opaque origin`)
    const signedOut = await post(ui, path, { ...form, _csrf: csrf })
    t.equal(signedOut.status, 303, `${path}: signed out, sent to sign in`)
  }
  t.equal(ui.setup.policyText(), before, 'nothing changed')
  const json = await fetch(`${ui.base}/roles`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/json', cookie }, body: JSON.stringify({ _csrf: csrf, name: 'x' }) })
  t.equal(json.status, 415)
})

t.test('add service: the token is in the POST answer only (no-store), never on a later page; the change is audited', async (t: Test) => {
  const ui = await startAdminUi(t)
  const { cookie, csrf } = await signIn(ui)
  const r = await post(ui, '/users/services', { _csrf: csrf, name: 'nightly-etl', role: '' }, { cookie, origin: ui.base })
  t.equal(r.status, 201)
  t.equal(r.headers.get('cache-control'), 'no-store')
  const token = JWT.exec(r.text)?.[0]
  t.ok(token, 'the token is shown')
  t.match(r.text, /won(&#39;|')t be able to see it again/)
  t.match(r.text, /data-copy="token"/, 'a copy button')
  const id = (await readPolicy(ui.setup.policyFile)).policy.accountByName('nightly-etl')!.id
  t.match(r.text, `data-replace-url="/accounts/${id}"`, 'with script, a reload asks for the account page')
  for (const path of ['/users', `/accounts/${id}`]) {
    const page = await get(ui, path, cookie)
    t.equal(page.status, 200)
    t.notOk(page.text.includes(token!), `${path}: no token`)
    t.notMatch(page.text, JWT, `${path}: nothing like a token`)
  }
  const again = await post(ui, '/users/services', { _csrf: csrf, name: 'nightly-etl' }, { cookie, origin: ui.base })
  t.equal(again.status, 409, 'posting the form again makes no second token')
  t.match(again.text, /ERR_ALREADY_EXISTS/)
  t.notMatch(again.text, JWT)
  t.match(again.text, /<details class="add" open>/, 'the error is shown on the add service form')
  t.ok(ui.logs.some((l) => /"event":"admin_change"/.test(l) && /"action":"create_service"/.test(l) && /"via":"session"/.test(l)), 'audited as the API is')
  t.notOk(ui.logs.some((l) => l.includes(token!)), 'never the token in a log')
  const bad = await post(ui, '/users/services', { _csrf: csrf, name: '<script>alert(1)</script>' }, { cookie })
  t.equal(bad.status, 400)
  t.match(bad.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/)
  t.notMatch(bad.text, /<script>alert/)
})

t.test('Users page: No Role section first, services tagged; a name with <script> renders as text', async (t: Test) => {
  const ui = await startAdminUi(t)
  await createUser(ui.ctx, '<script>alert(1)</script>@evil.example', { password: ADMIN_PASSWORD })
  const { cookie } = await signIn(ui)
  const r = await get(ui, '/users', cookie)
  const noRole = r.text.indexOf('id="no-role"')
  const withRole = r.text.indexOf('id="with-role"')
  t.ok(noRole > 0 && noRole < withRole, 'No Role comes first')
  t.ok(r.text.indexOf('alice@example.com') > noRole && r.text.indexOf('alice@example.com') < withRole, 'alice (No Role) in the No Role section')
  t.ok(r.text.indexOf('>etl</a>') > withRole, 'etl (a role) after')
  t.match(r.text, />etl<\/a><span class="tag">service<\/span>/)
  t.match(r.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;@evil.example/)
  t.notMatch(r.text, /<script>alert/)
})

t.test('account page: grants by form with the ETag; a stale edit is refused with 412 and nothing changes', async (t: Test) => {
  const ui = await startAdminUi(t)
  const { cookie, csrf } = await signIn(ui)
  const page = await get(ui, '/accounts/usr_alice?kind=datasource', cookie)
  t.match(page.text, /aria-current="page">Datasources/)
  const etag = field(page.text, 'etag')
  const granted = await post(ui, '/accounts/usr_alice/grants', { _csrf: csrf, etag, kind: 'datasource', resource: 'pg', action: 'grant' }, { cookie, origin: ui.base })
  t.equal(granted.status, 303)
  t.equal(granted.headers.get('location'), '/accounts/usr_alice?kind=datasource&done=granted')
  t.match(ui.setup.policyText(), /resource: pg/)
  const before = ui.setup.policyText()
  const stale = await post(ui, '/accounts/usr_alice/grants', { _csrf: csrf, etag, kind: 'website', resource: 'web', action: 'grant' }, { cookie, origin: ui.base })
  t.equal(stale.status, 412)
  t.match(stale.text, /changed since you read it[^]*ERR_PRECONDITION_FAILED/)
  t.match(stale.text, /aria-current="page">Websites/, 'shown where the admin acted')
  t.equal(ui.setup.policyText(), before, 'nothing changed')
  const withRole = await get(ui, '/accounts/svc_etl', cookie)
  const direct = await post(ui, '/accounts/svc_etl/grants', { _csrf: csrf, etag: field(withRole.text, 'etag'), kind: 'server', resource: 'ssh-box', action: 'grant' }, { cookie })
  t.equal(direct.status, 409)
  t.match(direct.text, /ERR_DIRECT_GRANT_WITH_ROLE/)
  const temporary = await post(ui, '/accounts/svc_etl/grants', { _csrf: csrf, etag: field(withRole.text, 'etag'), kind: 'server', resource: 'ssh-box', action: 'temporary', seconds: '3600' }, { cookie })
  t.equal(temporary.status, 303)
  t.match((await get(ui, '/accounts/svc_etl?kind=server', cookie)).text, /Temporary until/)
  const unknown = await get(ui, '/accounts/nobody', cookie)
  t.equal(unknown.status, 404)
  t.match(unknown.text, /ERR_NOT_FOUND/)
})

t.test('settings: auto-connect is disabled while port overrides are off; the dependency is enforced', async (t: Test) => {
  const ui = await startAdminUi(t)
  const { cookie, csrf } = await signIn(ui)
  let page = await get(ui, '/settings/port-overrides', cookie)
  t.match(page.text, /id="autoConnect" name="autoConnect" value="on" aria-describedby/, 'enabled while port overrides are on')
  const off = await post(ui, '/settings/port-overrides', { _csrf: csrf, etag: field(page.text, 'etag'), rangeLow: '16000', rangeHigh: '16099' }, { cookie })
  t.equal(off.status, 303)
  page = await get(ui, '/settings/port-overrides', cookie)
  t.match(page.text, /id="autoConnect" name="autoConnect" value="on" disabled/)
  const refused = await post(ui, '/settings/port-overrides', { _csrf: csrf, etag: field(page.text, 'etag'), autoConnect: 'on', rangeLow: '16000', rangeHigh: '16099' }, { cookie })
  t.equal(refused.status, 409)
  t.match(refused.text, /ERR_PRECONDITION/)
})

t.test('a service\'s tokens: rotation shows the new token once, revocation and deletion by form', async (t: Test) => {
  const ui = await startAdminUi(t)
  const { cookie, csrf } = await signIn(ui)
  const created = await post(ui, '/users/services', { _csrf: csrf, name: 'ci' }, { cookie })
  const first = JWT.exec(created.text)![0]
  const id = (await readPolicy(ui.setup.policyFile)).policy.accountByName('ci')!.id
  const rotated = await post(ui, `/accounts/${id}/tokens/rotate`, { _csrf: csrf, graceSeconds: '3600' }, { cookie })
  t.equal(rotated.status, 200)
  t.equal(rotated.headers.get('cache-control'), 'no-store')
  const second = JWT.exec(rotated.text)?.[0]
  t.ok(second && second !== first, 'the new token, shown once')
  t.match(rotated.text, /New token issued/)
  const page = await get(ui, `/accounts/${id}`, cookie)
  t.notMatch(page.text, JWT, 'the account page shows no token')
  t.equal(page.text.match(/tokens\/revoke/g)?.length, 2, 'both records listed, each with Revoke')
  const tokenId = /name="token" value="(tok_[^"]+)"/.exec(page.text)![1]!
  const revoked = await post(ui, `/accounts/${id}/tokens/revoke`, { _csrf: csrf, token: tokenId }, { cookie })
  t.equal(revoked.status, 303)
  t.equal((await readPolicy(ui.setup.policyFile)).policy.accountByName('ci')!.tokens.size, 1)
  const unconfirmed = await post(ui, `/accounts/${id}/delete`, { _csrf: csrf }, { cookie })
  t.equal(unconfirmed.status, 400, 'deleting needs the box ticked')
  t.match(unconfirmed.text, /tick the box/)
  const deleted = await post(ui, `/accounts/${id}/delete`, { _csrf: csrf, confirm: 'yes' }, { cookie })
  t.equal(deleted.status, 303)
  t.equal(deleted.headers.get('location'), '/users?done=service-deleted')
  t.equal((await readPolicy(ui.setup.policyFile)).policy.accountByName('ci'), undefined)
  t.ok(ui.logs.some((l) => /"action":"rotate_token"/.test(l)) && ui.logs.some((l) => /"action":"delete_service"/.test(l)), 'audited')
  t.notOk(ui.logs.some((l) => l.includes(first) || l.includes(second!)), 'never a token in a log')
})

t.test('roles on an account page: assigning over direct grants needs "Remove its direct grants"; unassign; role and resource edits by form', async (t: Test) => {
  const ui = await startAdminUi(t)
  const { cookie, csrf } = await signIn(ui)
  const etagOf = async (path: string) => field((await get(ui, path, cookie)).text, 'etag')
  const refused = await post(ui, '/accounts/usr_alice/roles', { _csrf: csrf, etag: await etagOf('/accounts/usr_alice'), role: 'ops', action: 'assign', kind: 'server' }, { cookie })
  t.equal(refused.status, 409)
  t.match(refused.text, /ERR_ROLE_WITH_DIRECT_GRANTS/)
  t.match(refused.text, /Remove its direct grants/, 'the way out is on the form')
  const assigned = await post(ui, '/accounts/usr_alice/roles', { _csrf: csrf, etag: await etagOf('/accounts/usr_alice'), role: 'ops', action: 'assign', dropDirectGrants: 'true', kind: 'server' }, { cookie })
  t.equal(assigned.status, 303)
  t.equal(assigned.headers.get('location'), '/accounts/usr_alice?kind=server&done=assigned')
  const page = await get(ui, assigned.headers.get('location')!, cookie)
  t.match(page.text, /From role ops/)
  t.match(page.text, /Role assigned\./)
  const unassigned = await post(ui, '/accounts/usr_alice/roles', { _csrf: csrf, etag: await etagOf('/accounts/usr_alice'), role: 'ops', action: 'unassign' }, { cookie })
  t.equal(unassigned.status, 303)
  t.match((await get(ui, '/accounts/usr_alice', cookie)).text, /No Role: access is granted resource by resource/)

  const stale = await etagOf('/roles/ops')
  t.equal((await post(ui, '/roles/ops/grants', { _csrf: csrf, etag: stale, resource: 'pg', action: 'grant' }, { cookie })).status, 303)
  const staleRole = await post(ui, '/roles/ops/grants', { _csrf: csrf, etag: stale, resource: 'web', action: 'grant' }, { cookie })
  t.equal(staleRole.status, 412, 'a stale role edit is refused too')
  const held = await post(ui, '/roles/analysts/delete', { _csrf: csrf, etag: await etagOf('/roles/analysts') }, { cookie })
  t.equal(held.status, 400, 'a held role is not deleted without "Also unassign it"')
  t.match(held.text, /role &quot;analysts&quot; is held by etl[^]*ERR_USAGE/)
  t.equal((await post(ui, '/roles/analysts/delete', { _csrf: csrf, etag: await etagOf('/roles/analysts'), force: 'true' }, { cookie })).status, 303, 'with it, it is')
  t.equal((await post(ui, '/roles', { _csrf: csrf, name: 'spare' }, { cookie })).headers.get('location'), '/roles/spare?done=role-created')
  t.equal((await post(ui, '/roles/spare/delete', { _csrf: csrf, etag: await etagOf('/roles/spare') }, { cookie })).headers.get('location'), '/roles?done=role-deleted')
  const granted = await post(ui, '/resources/pg/delete', { _csrf: csrf }, { cookie })
  t.equal(granted.status, 400, 'a granted resource is not removed')
  t.match(granted.text, /still granted[^]*ERR_USAGE/)
  t.match(granted.text, /Remove pg and its grants/, 'the way to remove it anyway is offered')
  t.equal((await post(ui, '/resources/pg/delete', { _csrf: csrf, force: 'true' }, { cookie })).status, 303, 'removed with its grants')
  t.notMatch(ui.setup.policyText(), /resource: pg|name: pg/)
  const badPort = await post(ui, '/resources', { _csrf: csrf, name: 'box', kind: 'server', type: 'ssh', address: '10.0.0.9:22', portOverride: '70000' }, { cookie })
  t.equal(badPort.status, 400, 'an out-of-range port is refused')
  t.match(badPort.text, /value="box"/, 'what was typed stays')
  t.equal((await post(ui, '/resources', { _csrf: csrf, name: 'box', kind: 'server', type: 'ssh', address: '10.0.0.9:22' }, { cookie })).status, 303)
  t.equal((await post(ui, '/resources/box/delete', { _csrf: csrf }, { cookie })).status, 303)
})
