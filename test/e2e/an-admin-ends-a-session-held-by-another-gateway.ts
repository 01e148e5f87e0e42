import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import t from 'tap'
import { initSetup } from '../../src/admin/index.js'
import { systemClock } from '../../src/clock.js'
import { connect, listenEcho, readExactly } from '../helpers/net.js'
import { startPostgres } from '../helpers/postgres.js'
import { keyway, startDaemon, type Daemon } from '../helpers/processes.js'
import { tempRuntimeDir } from '../helpers/runtime-dir.js'
import { within } from '../helpers/until.js'

const PASSWORD = 'correct horse battery'

const POLICY = (echoPort: number) => `version: 1
settings:
  portOverrides: false
  autoConnect: false
resources:
  - name: echo
    kind: server
    type: tcp
    address: 127.0.0.1:${echoPort}
  - name: other
    kind: server
    type: tcp
    address: 127.0.0.1:${echoPort}
roles:
  - name: ops
    grants: [echo, other]
accounts: []
`

/** Sends a line and expects it back through the session. */
async function roundTrip(socket: Socket, text: string): Promise<void> {
  socket.write(text)
  const back = await readExactly(socket, Buffer.byteLength(text))
  if (back.toString() !== text) throw new Error(`echo answered ${JSON.stringify(back.toString())}`)
}

function ended(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) return resolve()
    socket.once('close', () => resolve())
  })
}

interface Listed {
  items: { id: string; account: { name: string }; resource: string; gateway?: string }[]
  next: string | null
  unanswered?: string[]
}

t.test('on the PostgreSQL store, an admin API served by gateway B ends a sidecar session held by gateway A; the other sessions run on', async (t) => {
  const store = await startPostgres(t)
  t.teardown(() => store.stop())
  const echo = await listenEcho(t)
  const root = mkdtempSync(join(tmpdir(), 'keyway-end-elsewhere-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const dir = join(root, 'setup')
  await initSetup(dir, { clock: systemClock })
  appendFileSync(join(dir, 'keyway.yaml'), `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${store.port}/postgres\n  checkInterval: 2s\n  connectTimeout: 2s\n`)
  appendFileSync(join(dir, 'ha-policy.yaml'), POLICY(echo.port))
  const env: Record<string, string> = {
    KEYWAY_CONFIG: join(dir, 'keyway.yaml'),
    KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0',
    KEYWAY_GATEWAY_METRICS: '',
    KEYWAY_ADMIN_LISTEN: '',
    KEYWAY_LOG_LEVEL: 'info',
  }
  const must = async (args: string[], input?: string): Promise<string> => {
    const r = await keyway(args, env, input)
    if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r.stdout
  }
  await must(['store', 'migrate'])
  await must(['store', 'import', join(dir, 'ha-policy.yaml')])
  await must(['admin', 'users', 'create', 'admin@example.com', '--admin', '--password-stdin'], `${PASSWORD}\n`)

  // Gateway A holds the sessions and serves no admin API; gateway B serves the admin API.
  const start = async (admin: string): Promise<{ daemon: Daemon; port: number }> => {
    const daemon = startDaemon(t, ['gateway'], { ...env, KEYWAY_ADMIN_LISTEN: admin })
    const port = Number(String((await daemon.waitLog((l) => l.event === 'gateway_listening', 60_000)).address).split(':').pop())
    return { daemon, port }
  }
  const a = await start('')
  const b = await start('127.0.0.1:0')
  const base = `http://${String((await b.daemon.waitLog((l) => l.event === 'admin_listening', 60_000)).address)}`

  const sidecar = async (name: string, gatewayPort: number) => {
    const token = (await must(['admin', 'services', 'create', name, '--role', 'ops'])).trim()
    const rt = { KEYWAY_SIDECAR_RUNTIME_DIR: tempRuntimeDir(t) }
    startDaemon(t, ['listen'], { ...env, ...rt, KEYWAY_TOKEN: token, KEYWAY_CONTROL: '127.0.0.1:0', KEYWAY_GATEWAY: `127.0.0.1:${gatewayPort}` })
    const run = (args: string[]) => keyway(args, { ...env, ...rt })
    const ready = await run(['wait', '--timeout', '60'])
    if (ready.code !== 0) throw new Error(`${name}: sidecar not ready: ${ready.stderr}`)
    return { token, run }
  }
  const session = async (s: Awaited<ReturnType<typeof sidecar>>, resource: string): Promise<Socket> => {
    const r = await s.run(['connect', resource])
    if (r.code !== 0) throw new Error(`connect ${resource}: ${r.stderr}`)
    const socket = await connect(t, Number(/127\.0\.0\.1:(\d+)/.exec(r.stdout)![1]))
    await roundTrip(socket, `hello ${resource}\n`)
    return socket
  }
  const onA = await sidecar('job-a', a.port)
  const onB = await sidecar('job-b', b.port)
  const target = await session(onA, 'echo')
  const keptOnA = await session(onA, 'other')
  const keptOnB = await session(onB, 'echo')

  const login = await fetch(`${base}/v1/admin/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'admin@example.com', password: PASSWORD }) })
  t.equal(login.status, 200)
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!
  const { csrfToken } = (await login.json()) as { csrfToken: string }
  const list = async (): Promise<Listed> => {
    const r = await fetch(`${base}/v1/admin/sessions`, { headers: { cookie } })
    const text = await r.text()
    t.equal(r.status, 200, text)
    t.notOk(text.includes(onA.token) || text.includes(onB.token), 'never a token')
    return JSON.parse(text) as Listed
  }

  // The list of gateway B's API holds gateway A's sessions too (asked through the store, no write per connection).
  const listed = await list()
  t.equal(listed.unanswered, undefined, 'every gateway answered')
  t.same(listed.items.map((s) => `${s.account.name}/${s.resource}`).sort(), ['job-a/echo', 'job-a/other', 'job-b/echo'], 'sessions of both gateways')
  const victim = listed.items.find((s) => s.account.name === 'job-a' && s.resource === 'echo')!
  t.ok(listed.items.every((s) => typeof s.gateway === 'string'), 'each names its gateway')
  t.not(victim.id.split('.')[0], listed.items.find((s) => s.account.name === 'job-b')!.id.split('.')[0], 'session ids carry different gateway instance ids')

  const gone = ended(target)
  const del = await fetch(`${base}/v1/admin/sessions/${encodeURIComponent(victim.id)}`, { method: 'DELETE', headers: { cookie, 'x-csrf-token': csrfToken } })
  t.equal(del.status, 200, await del.clone().text())
  t.same(await del.json(), { id: victim.id, ended: true, code: 'ERR_SESSION_ENDED_BY_ADMIN' }, 'answered once gateway A acknowledged the end')
  await within(gone, 15_000, 'the client of the ended session to see the end')
  t.pass('the client saw its session end')
  t.match(await a.daemon.waitLog((l) => l.event === 'session_revoked', 15_000), { session: victim.id, code: 'ERR_SESSION_ENDED_BY_ADMIN', resource: 'echo' }, 'gateway A, the holder, audited the end as a local end')
  t.match(await b.daemon.waitLog((l) => l.event === 'admin_change' && l.action === 'end_session', 15_000), { target: victim.id, via: 'session', before: { account_name: 'job-a', resource: 'echo' } }, 'gateway B audited who asked')
  t.notOk(b.daemon.lines.some((l) => l.event === 'session_revoked'), 'gateway B ended nothing itself')

  await roundTrip(keptOnA, 'still here on A\n')
  await roundTrip(keptOnB, 'still here on B\n')
  t.pass('the other sessions, on both gateways, are untouched')
  t.same((await list()).items.map((s) => `${s.account.name}/${s.resource}`).sort(), ['job-a/other', 'job-b/echo'], 'no longer listed')
  const again = await fetch(`${base}/v1/admin/sessions/${encodeURIComponent(victim.id)}`, { method: 'DELETE', headers: { cookie, 'x-csrf-token': csrfToken } })
  t.equal(again.status, 404, 'ending it again: gateway A answers that it is not live')
  t.equal(((await again.json()) as { code: string }).code, 'ERR_NOT_FOUND')
  t.notOk(a.daemon.stderr().includes(onA.token) || b.daemon.stderr().includes(onA.token), 'the token is never logged')

  // `keyway admin serve` holds no session, yet on this store it reaches every gateway's.
  const serve = startDaemon(t, ['admin', 'serve'], { ...env, KEYWAY_ADMIN_LISTEN: '127.0.0.1:0' })
  const alone = `http://${String((await serve.waitLog((l) => l.event === 'admin_listening', 60_000)).address)}`
  const signIn = await fetch(`${alone}/v1/admin/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'admin@example.com', password: PASSWORD }) })
  t.equal(signIn.status, 200)
  const aloneCookie = signIn.headers.get('set-cookie')!.split(';')[0]!
  const fromServe = await fetch(`${alone}/v1/admin/sessions`, { headers: { cookie: aloneCookie } })
  const body = (await fromServe.json()) as Listed
  t.equal(fromServe.status, 200, JSON.stringify(body))
  t.same(body.items.map((s) => `${s.account.name}/${s.resource}`).sort(), ['job-a/other', 'job-b/echo'], 'keyway admin serve lists the sessions of both gateways')
})
