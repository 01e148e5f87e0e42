import t from 'tap'
import { pgClient, startStack } from '../helpers/stack.js'

const PASSWORD = 'correct horse battery'

t.test('an admin lists the live sessions of the gateway and ends one: the client is told ERR_SESSION_ENDED_BY_ADMIN, the end is audited', async (t) => {
  const stack = await startStack(t)
  const created = await stack.run(['admin', 'users', 'create', 'admin@example.com', '--admin', '--password-stdin'], {}, `${PASSWORD}\n`)
  t.equal(created.code, 0, created.stderr)
  const base = `http://${String((await stack.gateway.waitLog((l) => l.event === 'admin_listening')).address)}`
  const token = await stack.service('nightly', 'etl')
  await stack.sidecar(token)
  const job = await pgClient(t, stack.overridePort)
  t.same((await job.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'a live session through the chain')

  const login = await fetch(`${base}/v1/admin/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'admin@example.com', password: PASSWORD }) })
  t.equal(login.status, 200)
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!
  const { csrfToken } = (await login.json()) as { csrfToken: string }

  const listed = await fetch(`${base}/v1/admin/sessions`, { headers: { cookie } })
  const text = await listed.text()
  t.equal(listed.status, 200, text)
  t.notOk(text.includes(token), 'never the token')
  const { items } = JSON.parse(text) as { items: { id: string; account: { name: string }; resource: string; startedAt: string; bytes: { in: number; out: number }; gateway?: string }[] }
  t.equal(items.length, 1, 'the one live session')
  const session = items[0]!
  t.match(session, { account: { name: 'nightly' }, resource: 'warehouse', gateway: String })
  t.ok(session.bytes.in > 0 && session.bytes.out > 0, 'bytes so far')
  t.ok(Math.abs(Date.parse(session.startedAt) - Date.now()) < 600_000, 'started just now')

  const ended = new Promise<void>((resolve) => job.once('end', () => resolve()))
  const errored = new Promise<Error>((resolve) => job.once('error', resolve))
  const del = await fetch(`${base}/v1/admin/sessions/${encodeURIComponent(session.id)}`, { method: 'DELETE', headers: { cookie, 'x-csrf-token': csrfToken } })
  t.equal(del.status, 200, await del.clone().text())
  await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error('the session did not end within 10 s')), 10_000).unref())])
  const told = await Promise.race([errored, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000).unref())])
  t.match(told?.message, /An admin ended this live session/, 'the PostgreSQL client is told why')
  t.match(await stack.gateway.waitLog((l) => l.event === 'session_revoked'), { session: session.id, code: 'ERR_SESSION_ENDED_BY_ADMIN' })
  t.match(await stack.gateway.waitLog((l) => l.event === 'session_end' && l.session === session.id), { reason: 'revoked:ERR_SESSION_ENDED_BY_ADMIN' })
  t.match(await stack.gateway.waitLog((l) => l.event === 'admin_change' && l.action === 'end_session'), { target: session.id, via: 'session', before: { account_name: 'nightly', resource: 'warehouse' } })
  const after = (await (await fetch(`${base}/v1/admin/sessions`, { headers: { cookie } })).json()) as { items: unknown[] }
  t.same(after.items, [], 'no longer listed')
  const again = await fetch(`${base}/v1/admin/sessions/${encodeURIComponent(session.id)}`, { method: 'DELETE', headers: { cookie, 'x-csrf-token': csrfToken } })
  t.equal(again.status, 404)
  t.notOk(stack.gateway.stderr().includes(token), 'the token is never logged')
})
