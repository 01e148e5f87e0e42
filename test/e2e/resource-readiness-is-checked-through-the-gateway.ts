import t from 'tap'
import { writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import pg from 'pg'
import { idlePort } from '../helpers/ports.js'
import { startStack, type Stack } from '../helpers/stack.js'

const APP_PASSWORD = 'readiness secret 7a0c'

function generationOf(stack: Stack): number {
  return Math.max(0, ...stack.gateway.lines.filter((l) => l.event === 'policy_reloaded').map((l) => l.generation as number))
}

async function adminAndReload(stack: Stack, ...args: string[]): Promise<void> {
  const before = generationOf(stack)
  await stack.admin(...args)
  await stack.gateway.waitLog((l) => l.event === 'policy_reloaded' && (l.generation as number) > before)
}

async function readyz(control: string, name: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://${control}/readyz/${encodeURIComponent(name)}`)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** Polls `/readyz/NAME` until `want` holds; fails after a generous deadline (a loaded 2-core machine). */
async function readyzUntil(control: string, name: string, want: (status: number) => boolean, ms = 30_000): Promise<{ status: number; body: Record<string, unknown>; ms: number }> {
  const start = Date.now()
  for (;;) {
    const got = await readyz(control, name)
    if (want(got.status)) return { ...got, ms: Date.now() - start }
    if (Date.now() - start > ms) throw new Error(`/readyz/${name} never matched: last ${JSON.stringify(got)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

t.test('/readyz/<resource> and keyway wait --resource answer ready only when a real login through the gateway works', async (t) => {
  const stack = await startStack(t, { postgres: { auth: 'scram' } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.pg.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  t.teardown(() => admin.end().catch(() => undefined))
  await admin.query(`CREATE ROLE app LOGIN PASSWORD '${APP_PASSWORD}'`)
  await admin.query('CREATE DATABASE orders OWNER app')
  const secret = join(stack.dir, 'warehouse-password')
  writeFileSync(secret, 'a wrong password\n', { mode: 0o600 })
  await adminAndReload(stack, 'resources', 'set', 'warehouse', '--username', 'app', '--password-file', secret)
  // A plain TCP resource whose upstream is not up yet, and one the account is not granted.
  const filesUpstream = await idlePort()
  await adminAndReload(stack, 'resources', 'add', 'files', '--kind', 'server', '--type', 'tcp', '--address', `127.0.0.1:${filesUpstream}`, '--port-override', String(await idlePort()))
  await adminAndReload(stack, 'roles', 'grant', 'etl', 'files')
  await adminAndReload(stack, 'resources', 'add', 'secret-db', '--kind', 'datasource', '--type', 'postgres', '--address', `127.0.0.1:${stack.pg.port}`, '--port-override', String(await idlePort()))
  const sidecar = await stack.sidecar(await stack.service('ready-job', 'etl'))

  await t.test('a wrong secret: not ready with ERR_UPSTREAM_LOGIN_FAILED and the server reason; ready soon after the file is fixed in place', async (t) => {
    const wrong = await readyz(sidecar.control, 'warehouse')
    t.equal(wrong.status, 503)
    t.match(wrong.body, { ready: false, resource: 'warehouse', code: 'ERR_UPSTREAM_LOGIN_FAILED', reason: /password authentication failed for user "app"/ })
    const waited = await sidecar.run(['wait', '--resource', 'warehouse', '--timeout', '1'])
    t.equal(waited.code, 1)
    t.match(waited.stderr, /ERR_NOT_READY: .*resource warehouse not ready: ERR_UPSTREAM_LOGIN_FAILED/)
    // The Secret is rotated in place (as the kubelet does): no policy reload.
    writeFileSync(secret, `${APP_PASSWORD}\n`)
    const fixed = await readyzUntil(sidecar.control, 'warehouse', (s) => s === 200, 10_000)
    t.comment(`ready ${fixed.ms} ms after the secret file was fixed (target 2 s)`)
    t.same(fixed.body, { ready: true, resource: 'warehouse' })
    const ok = await sidecar.run(['wait', '--resource', 'warehouse', '--timeout', '30'])
    t.equal(ok.code, 0, ok.stderr)
    // The probe logged in on the `postgres` database and said goodbye: no session is left behind.
    const { rows } = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'keyway-readiness'")
    t.equal(rows[0]!.n, 0, 'the probe ended its session with Terminate')
  })

  await t.test('a pinned database that does not exist is not ready; the pinned one that does is', async (t) => {
    await adminAndReload(stack, 'resources', 'set', 'warehouse', '--database', 'nosuchdb')
    const bad = await readyzUntil(sidecar.control, 'warehouse', (s) => s === 503)
    t.match(bad.body, { code: 'ERR_UPSTREAM_LOGIN_FAILED', reason: /database "nosuchdb" does not exist/ })
    await adminAndReload(stack, 'resources', 'set', 'warehouse', '--database', 'orders')
    await readyzUntil(sidecar.control, 'warehouse', (s) => s === 200)
  })

  await t.test('a resource without credentials is a TCP connect at the gateway: not ready while its upstream is down, ready once it listens', async (t) => {
    const down = await readyz(sidecar.control, 'files')
    t.match(down, { status: 503, body: { ready: false, code: 'ERR_UPSTREAM_UNREACHABLE', reason: /resource "files" is unreachable/ } })
    const accepted: Socket[] = []
    const server = createServer((s) => {
      accepted.push(s)
      s.on('error', () => {})
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(filesUpstream, '127.0.0.1', resolve)
    })
    t.teardown(() => {
      for (const s of accepted) s.destroy()
      server.close()
    })
    const up = await readyzUntil(sidecar.control, 'files', (s) => s === 200, 10_000)
    t.comment(`ready ${up.ms} ms after the upstream started listening`)
    t.ok(accepted.length >= 1, 'the gateway connected to it')
  })

  await t.test('an ungranted or unknown resource is 404 ERR_GRANT_DENIED, alike; keyway wait --resource says so', async (t) => {
    const ungranted = await readyz(sidecar.control, 'secret-db')
    const unknown = await readyz(sidecar.control, 'no-such-resource')
    t.match(ungranted, { status: 404, body: { ready: false, code: 'ERR_GRANT_DENIED' } })
    t.match(unknown, { status: 404, body: { ready: false, code: 'ERR_GRANT_DENIED' } })
    const waited = await sidecar.run(['wait', '--resource', 'no-such-resource', '--timeout', '1'])
    t.equal(waited.code, 1)
    t.match(waited.stderr, /resource no-such-resource not ready: ERR_GRANT_DENIED/)
  })

  await t.test('PostgreSQL down: not ready with ERR_UPSTREAM_UNREACHABLE', async (t) => {
    await admin.end()
    await stack.pg.stop()
    const down = await readyzUntil(sidecar.control, 'warehouse', (s) => s === 503)
    t.match(down.body, { code: 'ERR_UPSTREAM_UNREACHABLE', reason: 'ERR_UPSTREAM_UNREACHABLE: resource "warehouse" is unreachable' })
  })

  t.notOk((stack.gateway.stderr() + sidecar.daemon.stderr()).includes(APP_PASSWORD), 'the secret is never logged')
})
