import t from 'tap'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import pg from 'pg'
import { startStack, type Stack } from '../helpers/stack.js'
import type { Teardown } from '../helpers/net.js'

// The job's user and password: only the gateway's secret file holds the password.
const APP_PASSWORD = 'correct horse battery staple 7f3a'
const MIB = 1024 * 1024

/** The backend key pg keeps from BackendKeyData (not in its typings). */
function backendKey(c: pg.Client): { processID: number | null; secretKey: number | null } {
  return c as unknown as { processID: number | null; secretKey: number | null }
}

async function client(t: Teardown, port: number, database = 'postgres'): Promise<pg.Client> {
  // No password: the job never holds one. The user it names is ignored upstream.
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'etl-job', database, connectionTimeoutMillis: 10_000 })
  c.on('error', () => {})
  await c.connect()
  t.teardown(() => c.end().catch(() => undefined))
  return c
}

/** COPY ... TO STDOUT through `c`, as its bytes: sha256 and length. */
function copyOut(c: pg.Client, sql: string): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    let bytes = 0
    const submittable = {
      submit(connection: { query(text: string): void }) {
        connection.query(sql)
      },
      handleCopyData(msg: { chunk: Buffer }) {
        hash.update(msg.chunk)
        bytes += msg.chunk.length
      },
      handleCommandComplete() {},
      handleReadyForQuery() {
        resolve({ sha256: hash.digest('hex'), bytes })
      },
      handleError(err: Error) {
        reject(err)
      },
    }
    void c.query(submittable as never)
  })
}

/** The newest policy generation the gateway has logged. */
function generationOf(stack: Stack): number {
  return Math.max(0, ...stack.gateway.lines.filter((l) => l.event === 'policy_reloaded').map((l) => l.generation as number))
}

/**
 * Runs `keyway admin ARGS` and waits until the gateway has loaded a policy
 * newer than the one it had before the edit (not merely newer than the last
 * one this test waited for: other edits, such as creating the service, also
 * reload it).
 */
async function adminAndReload(stack: Stack, ...args: string[]): Promise<void> {
  const before = generationOf(stack)
  await stack.admin(...args)
  await stack.gateway.waitLog((l) => l.event === 'policy_reloaded' && (l.generation as number) > before)
}

t.test('the gateway logs in to PostgreSQL with the resource credentials: the job holds no password', async (t) => {
  const stack = await startStack(t, { postgres: { auth: 'scram' } })
  const admin = new pg.Client({ host: '127.0.0.1', port: stack.pg.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  t.teardown(() => admin.end().catch(() => undefined))
  await admin.query(`CREATE ROLE app LOGIN PASSWORD '${APP_PASSWORD}'`)
  await admin.query('CREATE DATABASE orders OWNER app')

  // Without a password, the user cannot log in directly: SCRAM is required.
  const direct = new pg.Client({ host: '127.0.0.1', port: stack.pg.port, user: 'app', database: 'postgres', password: 'not it' })
  direct.on('error', () => {})
  await t.rejects(direct.connect(), { code: '28P01' }, 'scram-sha-256 is required of app')

  const secret = join(stack.dir, 'warehouse-password')
  writeFileSync(secret, `${APP_PASSWORD}\n`, { mode: 0o600 })
  await adminAndReload(stack, 'resources', 'set', 'warehouse', '--username', 'app', '--password-file', secret)
  const listed = JSON.parse((await stack.admin('resources', 'list', '--json')).stdout) as { name: string; username: string | null }[]
  t.match(listed, [{ name: 'warehouse', username: 'app' }])

  const sidecar = await stack.sidecar(await stack.service('etl-nightly', 'etl'))
  const port = stack.overridePort

  await t.test('pg connects with no password and runs as the upstream user, on the database it asked for', async (t) => {
    const c = await client(t, port, 'orders')
    const { rows } = await c.query<{ u: string; d: string }>('SELECT current_user AS u, current_database() AS d')
    t.same(rows, [{ u: 'app', d: 'orders' }])
    t.ok(backendKey(c).processID !== null && backendKey(c).secretKey !== null, 'BackendKeyData reached the client')
    const start = await stack.gateway.waitLog((l) => l.event === 'session_start')
    t.match(start, { account_name: 'etl-nightly', resource: 'warehouse', upstream_user: 'app' })
  })

  await t.test('a CancelRequest on a second connection cancels the running query', async (t) => {
    const c = await client(t, port)
    const sleeping = c.query('SELECT pg_sleep(60)')
    // The query must be running before the cancel is sent (polled for up to a minute on a loaded machine).
    for (let i = 0; i < 1200; i++) {
      const { rows } = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'")
      if (rows[0]!.n > 0) break
      await new Promise((r) => setTimeout(r, 50))
    }
    const cancel = Buffer.alloc(16)
    cancel.writeInt32BE(16, 0)
    cancel.writeInt32BE(80877102, 4)
    cancel.writeInt32BE(backendKey(c).processID!, 8)
    cancel.writeInt32BE(backendKey(c).secretKey!, 12)
    const s = connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.end(cancel)
    const began = Date.now()
    await t.rejects(sleeping, { code: '57014' }, 'canceling statement due to user request')
    t.ok(Date.now() - began < 30_000, 'cancelled well before pg_sleep(60) ends')
    const { rows } = await c.query<{ ok: number }>('SELECT 1 AS ok')
    t.same(rows, [{ ok: 1 }], 'the session goes on after the cancel')
  })

  await t.test('a 32 MiB COPY out is byte for byte the same as a direct one', async (t) => {
    const sql = "COPY (SELECT i, md5(i::text) || repeat('k', 990) FROM generate_series(1, 33000) AS i) TO STDOUT"
    const through = await copyOut(await client(t, port), sql)
    const direct = await copyOut(admin, sql)
    t.ok(through.bytes > 32 * MIB, `${through.bytes} bytes`)
    t.same(through, direct)
  })

  await t.test('a wrong secret: the client gets 28000 and ERR_UPSTREAM_LOGIN_FAILED, the log and the metric say why', async (t) => {
    const wrong = join(stack.dir, 'wrong-password')
    writeFileSync(wrong, 'not the password\n', { mode: 0o600 })
    await adminAndReload(stack, 'resources', 'set', 'warehouse', '--password-file', wrong)
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'etl-job', database: 'postgres', connectionTimeoutMillis: 10_000 })
    c.on('error', () => {})
    await t.rejects(c.connect(), { code: '28000', message: /ERR_UPSTREAM_LOGIN_FAILED: .*password authentication failed for user "app"/ })
    t.match(await stack.gateway.waitLog((l) => l.event === 'upstream_login_failed'), { code: 'ERR_UPSTREAM_LOGIN_FAILED', resource: 'warehouse', upstream_user: 'app', sqlstate: '28P01' })
    const metrics = await (await fetch(`http://127.0.0.1:${stack.gatewayMetricsPort}/metrics`)).text()
    t.match(metrics, /keyway_gateway_upstream_login_failures_total\{resource="warehouse",code="ERR_UPSTREAM_LOGIN_FAILED"\} 1/)
  })

  await t.test('a missing secret fails that resource with ERR_CREDENTIAL_UNAVAILABLE, not the policy', async (t) => {
    await adminAndReload(stack, 'resources', 'set', 'warehouse', '--password-file', join(stack.dir, 'no-such-secret'))
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'etl-job', database: 'postgres', connectionTimeoutMillis: 10_000 })
    c.on('error', () => {})
    await t.rejects(c.connect(), { code: '08004', message: /ERR_CREDENTIAL_UNAVAILABLE: the gateway has no usable credential for resource "warehouse"/ })
    t.match(await stack.gateway.waitLog((l) => l.event === 'upstream_login_failed' && l.code === 'ERR_CREDENTIAL_UNAVAILABLE'), { resource: 'warehouse' })
  })

  await t.test('revoking the grant ends a live injected session', async (t) => {
    await adminAndReload(stack, 'resources', 'set', 'warehouse', '--password-file', secret)
    const c = await client(t, port)
    await c.query('SELECT 1')
    const ended = new Promise<void>((resolve) => c.once('end', () => resolve()))
    await stack.admin('roles', 'ungrant', 'etl', 'warehouse')
    await ended
    t.match(await stack.gateway.waitLog((l) => l.event === 'session_revoked'), { resource: 'warehouse', code: 'ERR_GRANT_DENIED' })
  })

  const logs = stack.gateway.stderr() + sidecar.daemon.stderr()
  t.notOk(logs.includes(APP_PASSWORD), 'the secret is never logged')
  t.notOk(logs.includes('not the password'), 'nor a wrong one')
})
