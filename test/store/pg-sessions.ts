import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { initSetup } from '../../src/admin/index.js'
import { systemClock } from '../../src/clock.js'
import { loadConfig } from '../../src/config/index.js'
import type { LiveSessionInfo } from '../../src/gateway/index.js'
import { createLogger } from '../../src/observe/index.js'
import { PostgresSessionFeed, PostgresStore, SESSIONS_CHANNEL, type SessionHolder } from '../../src/store/index.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'
import { until } from '../helpers/until.js'

const logger = createLogger({ level: 'silent' })

let server: Postgres
t.before(async () => {
  server = await startPostgres(t)
})
t.teardown(() => server?.stop())

/** A migrated database `db` and a pool on it. */
async function database(t: Test, db: string): Promise<pg.Pool> {
  const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${db}`)
  await admin.end()
  const dir = mkdtempSync(join(tmpdir(), 'keyway-sessions-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await initSetup(join(dir, 'setup'), { clock: systemClock })
  const file = join(dir, 'setup', 'keyway.yaml')
  appendFileSync(file, `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${server.port}/${db}\n`)
  const store = new PostgresStore({ config: loadConfig({ file, env: {} }), clock: systemClock, logger })
  await store.migrate()
  await store.close()
  const pool = new pg.Pool({ host: server.host, port: server.port, user: 'postgres', database: db, max: 4 })
  t.teardown(() => pool.end())
  return pool
}

function feed(t: Test, pool: pg.Pool, db: string, requestTimeout = 15_000, user = 'postgres', log = logger): PostgresSessionFeed {
  const f = new PostgresSessionFeed({
    pool,
    listenClient: () => new pg.Client({ host: server.host, port: server.port, user, database: db }),
    clock: systemClock,
    logger: log,
    checkInterval: 1_000,
    requestTimeout,
  })
  t.teardown(() => f.close())
  return f
}

/** A gateway's sessions in memory: what `Gateway` offers the feed. */
function holder(instance: string, name: string, ids: string[]): SessionHolder & { ended: string[]; live: LiveSessionInfo[] } {
  const live: LiveSessionInfo[] = ids.map((id, i) => ({ id: `${instance}.${id}`, account: { id: `svc_${id}`, name: `job-${id}`, type: 'service' }, resource: 'pg', startedAt: Date.UTC(2026, 0, 1, 0, 0, i), bytesIn: 10 * i, bytesOut: 20 * i }))
  const ended: string[] = []
  return {
    instance,
    name,
    live,
    ended,
    list: () => live,
    get: (id) => live.find((s) => s.id === id),
    end: (id) => {
      const i = live.findIndex((s) => s.id === id)
      if (i < 0) return undefined
      ended.push(id)
      return live.splice(i, 1)[0]
    },
  }
}

async function registered(pool: pg.Pool, instance: string): Promise<boolean> {
  return (await pool.query('SELECT 1 FROM keyway_gateways WHERE instance = $1', [instance])).rowCount === 1
}

t.test('an admin API on another gateway lists and ends a session held elsewhere; a forged notification ends nothing', async (t) => {
  const pool = await database(t, 'across')
  const a = holder('gwa', 'gateway-a', ['s1', 's2'])
  const b = holder('gwb', 'gateway-b', ['s3'])
  const holderA = feed(t, pool, 'across')
  holderA.serve(a)
  const holderB = feed(t, pool, 'across')
  holderB.serve(b)
  await until(async () => (await registered(pool, 'gwa')) && (await registered(pool, 'gwb')), 15_000, 'both gateways registered')
  const asker = feed(t, pool, 'across')

  const all = await asker.list()
  t.same(all.unanswered, [], 'every registered gateway answered')
  t.same(all.sessions.map((s) => `${s.gateway}:${s.id}`).sort(), ['gateway-a:gwa.s1', 'gateway-a:gwa.s2', 'gateway-b:gwb.s3'])
  t.same((await asker.list('gwb')).sessions.map((s) => s.id).sort(), ['gwa.s1', 'gwa.s2'], 'the asking gateway lists its own sessions itself')
  t.equal((await pool.query('SELECT count(*)::int AS n FROM keyway_session_requests')).rows[0].n, 0, 'a list request is deleted once answered')

  // A notification is only a hint: a forged one, even naming a session, ends nothing.
  await pool.query('SELECT pg_notify($1, $2)', [SESSIONS_CHANNEL, 'end gwa.s1'])
  await asker.list()
  t.same(a.ended, [], 'nothing ended on a forged notification')

  const ended = await asker.end('gwa.s1', 'usr_admin')
  t.match(ended, { ended: true, session: { id: 'gwa.s1', account: { name: 'job-s1' }, resource: 'pg', gateway: 'gateway-a' } })
  t.same(a.ended, ['gwa.s1'], 'the holding gateway ended it')
  t.same(b.ended, [], 'no other gateway ended anything')
  const row = (await pool.query("SELECT answered_by, requested_by FROM keyway_session_requests WHERE session = 'gwa.s1'")).rows[0]
  t.same(row, { answered_by: 'gwa', requested_by: 'usr_admin' }, 'the request row says who asked and who answered')

  t.same(await asker.end('gwa.s1', 'usr_admin'), { ended: false, reason: 'not_found' }, 'an ended session: its holder answers that it is not live')
  t.same(await asker.end('nobody.s1', 'usr_admin'), { ended: false, reason: 'not_found' }, 'no live gateway has that instance id')
  t.same(await asker.end('no-dot', 'usr_admin'), { ended: false, reason: 'not_found' }, 'not a session id')
  t.same(b.live.map((s) => s.id), ['gwb.s3'], 'the other sessions are untouched')
  t.same(a.live.map((s) => s.id), ['gwa.s2'])

  await holderA.close()
  t.notOk(await registered(pool, 'gwa'), 'a closed gateway unregisters')
  t.same((await asker.list()).sessions.map((s) => s.id), ['gwb.s3'])
})

t.test('a registered gateway that does not answer: the end request is withdrawn (the API answers 504), the list names it', async (t) => {
  const pool = await database(t, 'silent')
  const a = holder('gwa', 'gateway-a', ['s1'])
  const holderA = feed(t, pool, 'silent')
  holderA.serve(a)
  await until(() => registered(pool, 'gwa'), 15_000, 'gateway registered')
  // A gateway that registered and then stopped reading its requests (cut off, stuck).
  await pool.query("INSERT INTO keyway_gateways (instance, name) VALUES ('ghost', 'gateway-ghost')")
  // Long enough for gateway A to answer by its periodic check (1 s) even if it missed the notification.
  const asker = feed(t, pool, 'silent', 6_000)

  // Both wait out the ghost's timeout: at once, so the file waits once.
  const [listed, answer] = await Promise.all([asker.list(), asker.end('ghost.s9', 'usr_admin')])
  t.same(listed.unanswered, ['gateway-ghost'])
  t.same(listed.sessions.map((s) => s.id), ['gwa.s1'], 'the gateways that answered are listed')

  t.same(answer, { ended: false, reason: 'unanswered', gateway: 'gateway-ghost' })
  const row = (await pool.query("SELECT answered_at IS NOT NULL AS closed, answered_by, result FROM keyway_session_requests WHERE session = 'ghost.s9'")).rows[0]
  t.same(row, { closed: true, answered_by: null, result: { withdrawn: true } }, 'withdrawn: a late answer can no longer claim it')
  const late = await pool.query("UPDATE keyway_session_requests SET answered_at = now(), answered_by = 'ghost' WHERE session = 'ghost.s9' AND answered_at IS NULL AND expires_at > now()")
  t.equal(late.rowCount, 0, "the holder's claim (the same conditional UPDATE) finds nothing to claim")
  t.same(a.ended, [])
})

t.test('the database roles of docs/deployment.md are enough: a gateway role answers, an admin role asks; without the grants the gateway says so once', async (t) => {
  const owner = await database(t, 'roles')
  const doc = readFileSync(new URL('../../docs/deployment.md', import.meta.url), 'utf8')
  const block = /### Least-privilege database roles\n\n```sql\n([\s\S]*?)```/.exec(doc)?.[1]
  t.ok(block, 'the roles block of docs/deployment.md')
  for (const statement of block!.split('\n').filter((l) => /^(CREATE ROLE|GRANT)/.test(l))) {
    await owner.query(statement.replace(/--.*$/, '').replace('DATABASE keyway', 'DATABASE roles'))
  }
  const as = (user: string): pg.Pool => {
    const pool = new pg.Pool({ host: server.host, port: server.port, user, database: 'roles', max: 2 })
    t.teardown(() => pool.end())
    return pool
  }
  const a = holder('gwa', 'gateway-a', ['s1'])
  const gatewayRole = as('keyway_gateway')
  feed(t, gatewayRole, 'roles', 15_000, 'keyway_gateway').serve(a)
  await until(() => registered(owner, 'gwa'), 15_000, 'the gateway role registered its gateway')
  const asker = feed(t, as('keyway_admin'), 'roles', 15_000, 'keyway_admin')
  t.same((await asker.list()).sessions.map((s) => s.id), ['gwa.s1'], 'listed with the documented rights')
  t.match(await asker.end('gwa.s1', 'usr_admin'), { ended: true }, 'ended with the documented rights')
  t.same(a.ended, ['gwa.s1'])

  // A gateway role with read rights only: it cannot register, says so once, and serves on.
  await owner.query('CREATE ROLE reader LOGIN')
  await owner.query('GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader')
  const lines: Record<string, unknown>[] = []
  const watching = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } as never })
  feed(t, as('reader'), 'roles', 15_000, 'reader', watching).serve(holder('gwr', 'gateway-r', ['s2']))
  await until(() => lines.some((l) => l.event === 'session_requests_failed'), 15_000, 'session_requests_failed')
  t.match(lines.find((l) => l.event === 'session_requests_failed'), { code: 'ERR_STORE_PERMISSION' })
  t.notOk(await registered(owner, 'gwr'))
  t.same(await asker.end('gwr.s2', 'usr_admin'), { ended: false, reason: 'not_found' }, 'an unregistered gateway is not waited for')
  // Both check every second: two renewals of the other gateway after the failure mean the reader retried too.
  const since = (await owner.query<{ at: Date }>('SELECT now() AS at')).rows[0]!.at
  await until(async () => (await owner.query("SELECT 1 FROM keyway_gateways WHERE instance = 'gwa' AND seen_at > $1::timestamptz + interval '2.5 seconds'", [since])).rowCount === 1, 20_000, 'checks to run meanwhile')
  t.equal(lines.filter((l) => l.event === 'session_requests_failed').length, 1, 'logged once, not at every check')
})
