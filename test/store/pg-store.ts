import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { createUser, initSetup } from '../../src/admin/index.js'
import { ManualClock, systemClock } from '../../src/clock.js'
import { loadConfig, type KeywayConfig } from '../../src/config/index.js'
import { type KeywayError } from '../../src/errors.js'
import { createLogger } from '../../src/observe/index.js'
import { compilePolicyText, parsePolicyText, policyDigest, type CompiledPolicy } from '../../src/policy/index.js'
import { formatPolicy, PostgresStore, SCHEMA_VERSION } from '../../src/store/index.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'
import { until } from '../helpers/until.js'

const logger = createLogger({ level: 'silent' })

const POLICY = `version: 1
settings:
  portOverrides: true
  portRange: [20000, 20999]
resources:
  - name: warehouse
    kind: datasource
    type: postgres
    address: 127.0.0.1:5432
    portOverride: 20001
  - name: cache
    kind: datasource
    type: redis
    address: 127.0.0.1:6379
    portOverride: 20002
roles:
  - name: etl
    grants: [warehouse]
accounts:
  - id: svc_ci
    type: service
    name: ci
    roles: [etl]
    tokens:
      - id: tok1
        fingerprint: sha256:0123456789abcdef
        created: 2026-01-01T00:00:00Z
  - id: svc_adhoc
    type: service
    name: adhoc
    grants:
      - resource: cache
      - resource: warehouse
        expires: 2030-01-01T00:00:00Z
`

/** A setup from `keyway init` whose configuration says `store: postgres` on database `db` of `server`. */
async function setup(t: Test, server: Postgres, db: string, extra = ''): Promise<{ dir: string; config: KeywayConfig }> {
  const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${db}`)
  await admin.end()
  const dir = mkdtempSync(join(tmpdir(), 'keyway-store-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await initSetup(join(dir, 'setup'), { clock: systemClock })
  const file = join(dir, 'setup', 'keyway.yaml')
  appendFileSync(file, `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${server.port}/${db}\n  checkInterval: 1s\n${extra}`)
  return { dir: join(dir, 'setup'), config: loadConfig({ file, env: {} }) }
}

function open(t: Test, config: KeywayConfig, clock = systemClock as ManualClock | typeof systemClock): PostgresStore {
  const store = new PostgresStore({ config, clock, logger })
  t.teardown(() => store.close())
  return store
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, what: string): Promise<void> {
  try {
    await p
    t.fail(`${what}: resolved, expected ${code}`)
  } catch (err) {
    t.equal((err as KeywayError).code, code, `${what}: ${(err as Error).message}`)
  }
}

let server: Postgres
t.before(async () => {
  server = await startPostgres(t)
})
t.teardown(() => server?.stop())

t.test('migrations: a fresh database is migrated once, a database without the schema and an empty store are refused with their codes', async (t) => {
  const { config } = await setup(t, server, 'fresh')
  const store = open(t, config)
  await rejectsCode(t, store.start(), 'ERR_STORE_SCHEMA_MISSING', 'no schema')
  t.same(await store.migrate(), { from: 0, to: SCHEMA_VERSION })
  t.same(await store.migrate(), { from: SCHEMA_VERSION, to: SCHEMA_VERSION }, 'a second run changes nothing')
  await rejectsCode(t, store.start(), 'ERR_STORE_EMPTY', 'the schema but no policy: a gateway never serves an empty one')
})

t.test('a schema newer than the binary knows is refused, by the gateway and by migrate', async (t) => {
  const { config } = await setup(t, server, 'newer')
  const store = open(t, config)
  await store.migrate()
  // Without a readable-from marker a version counts as readable from itself only (test/store/pg-schema-compat.ts has the rest).
  await store.pool.query('INSERT INTO keyway_schema_version (version) VALUES ($1)', [SCHEMA_VERSION + 1])
  await rejectsCode(t, store.start(), 'ERR_STORE_SCHEMA_NEWER', 'start')
  await rejectsCode(t, store.migrate(), 'ERR_STORE_SCHEMA_NEWER', 'migrate')
  await rejectsCode(t, store.admin.createRole('x'), 'ERR_STORE_SCHEMA_NEWER', 'an edit')
})

t.test('bad connections: a password in the connection string, nothing listening, a role without rights', async (t) => {
  const { dir, config } = await setup(t, server, 'conns')
  const file = join(dir, 'keyway.yaml')
  writeFileSync(join(dir, 'with-password.yaml'), readFileSync(file, 'utf8').replace('postgresql://postgres@', 'postgresql://postgres:hunter2@'))
  t.throws(() => loadConfig({ file: join(dir, 'with-password.yaml'), env: {} }), { code: 'ERR_CONFIG_INVALID', message: /holds a password/ })
  t.throws(() => loadConfig({ file, env: { KEYWAY_POSTGRES_CONNECTION: 'postgresql://u@h/db?password=x' } }), { code: 'ERR_CONFIG_INVALID' })
  t.throws(() => loadConfig({ file, env: { KEYWAY_POSTGRES_CONNECTION: 'host=localhost user=x' } }), { code: 'ERR_CONFIG_INVALID', message: /not a connection URL/ })

  // A port nothing listens on: the server's own port after it... use port 1, which nothing serves.
  const nowhere = loadConfig({ file, env: { KEYWAY_POSTGRES_CONNECTION: 'postgresql://postgres@127.0.0.1:1/conns', KEYWAY_POSTGRES_CONNECT_TIMEOUT: '2s' } })
  await rejectsCode(t, open(t, nowhere).start(), 'ERR_STORE_UNREACHABLE', 'nothing listening')

  const owner = open(t, config)
  await owner.migrate()
  await owner.replace(parsePolicyText(POLICY, 'p').value as never)
  await owner.pool.query('CREATE ROLE nobody LOGIN')
  const noRights = loadConfig({ file, env: { KEYWAY_POSTGRES_CONNECTION: `postgresql://nobody@127.0.0.1:${server.port}/conns` } })
  await rejectsCode(t, open(t, noRights).start(), 'ERR_STORE_PERMISSION', 'a role that may not read')
  await owner.pool.query('GRANT SELECT ON ALL TABLES IN SCHEMA public TO nobody')
  const reader = open(t, noRights)
  t.equal((await reader.start()).accounts.size, 2, 'read rights are enough for a gateway')
  await rejectsCode(t, reader.admin.createRole('x'), 'ERR_STORE_PERMISSION', 'but not for an edit')
})

t.test('import and export are lossless: export, import, export gives the same bytes and the same digest', async (t) => {
  const { dir, config } = await setup(t, server, 'roundtrip')
  const store = open(t, config)
  await store.migrate()
  const first = await store.replace(parsePolicyText(POLICY, 'p').value as never)
  t.equal(first.generation, 1)
  t.equal((await store.replace(parsePolicyText(POLICY, 'p').value as never)).generation, undefined, 'importing the same policy again writes nothing')
  const exported = formatPolicy((await store.read()).doc)
  const original = compilePolicyText(POLICY, 'original')
  const back = compilePolicyText(exported, 'exported')
  t.same([...back.accounts.keys()].sort(), [...original.accounts.keys()].sort())
  t.same(back.settings, original.settings)
  t.same(back.decide('svc_adhoc', 'warehouse', Date.UTC(2029, 0, 1)), original.decide('svc_adhoc', 'warehouse', Date.UTC(2029, 0, 1)))
  t.equal(back.accounts.get('svc_ci')!.tokens.get('tok1')!.fingerprint, 'sha256:0123456789abcdef')
  writeFileSync(join(dir, 'exported.yaml'), exported)
  await store.replace(parsePolicyText(exported, 'e').value as never)
  const again = formatPolicy((await store.read()).doc)
  t.equal(again, exported, 'byte-identical')
  t.equal(policyDigest(parsePolicyText(again, 'a').value), policyDigest(parsePolicyText(exported, 'e').value), 'same digest')
  t.equal((await store.start()).digest, back.digest, 'the gateway serves the digest of the export')
})

t.test('every admin operation runs on the store, validated as on the file', async (t) => {
  const { config } = await setup(t, server, 'ops')
  const store = open(t, config)
  await store.migrate()
  await store.replace(parsePolicyText(POLICY, 'p').value as never)
  const a = store.admin
  const created = await a.createService('loader', 'etl')
  t.match(created.issued.token, /^eyJ/, 'a token is returned once')
  let p = await a.policy()
  t.same(p.accountByName('loader')?.roles, ['etl'])
  t.notOk(JSON.stringify((await store.read()).doc).includes(created.issued.token), 'the token itself is never stored')
  await rejectsCode(t, a.createService('loader'), 'ERR_ALREADY_EXISTS', 'a duplicate name')
  await rejectsCode(t, a.grant('loader', 'cache'), 'ERR_DIRECT_GRANT_WITH_ROLE', 'a direct grant while holding a role')
  t.equal((await a.grant('loader', 'cache', 3_600_000)).kind, 'temporary')
  const rotated = await a.rotateToken('loader', 0)
  p = await a.policy()
  t.same([...p.accountByName('loader')!.tokens.keys()], [rotated.issued.tokenId], 'a zero grace revokes the old token')
  t.same((await a.revokeTokens('loader')).revoked, [rotated.issued.tokenId])
  await a.createRole('reporting')
  t.same(await a.grantRole('reporting', 'cache'), { changed: true })
  await a.assignRole('adhoc', 'reporting', true)
  p = await a.policy()
  t.same(p.accountByName('adhoc')?.roles, ['reporting'])
  t.equal(p.decide('svc_adhoc', 'cache', Date.now()).allow, true)
  await a.unassignRole('adhoc', 'reporting')
  t.same((await a.grant('adhoc', 'cache')).kind, 'direct')
  t.same((await a.revoke('adhoc', 'cache')).removed, ['direct'])
  await a.addResource({ name: 'ssh-box', kind: 'server', type: 'ssh', address: '127.0.0.1:22' })
  p = await a.policy()
  t.ok(p.resources.get('ssh-box')!.portOverride! >= 20000, 'an override port is assigned from the range')
  await rejectsCode(t, a.addResource({ name: 'dup-port', kind: 'server', type: 'ssh', address: '127.0.0.1:22', portOverride: 20001 }), 'ERR_ALREADY_EXISTS', 'a taken override port')
  await a.setSetting('auto-connect', 'on')
  t.equal((await a.policy()).settings.autoConnect, true)
  await a.removeResource('ssh-box', true)
  await a.deleteRole('reporting', true)
  t.same(await a.deleteService('loader'), { id: created.account.id, name: 'loader' })
  const ctx = store.adminContext()
  await createUser(ctx, 'alice@example.com', { password: 'correct horse battery', admin: true })
  const alice = (await a.policy()).accountByName('alice@example.com')!
  t.match(await store.passwordHashOf(alice.id), /^scrypt\$/, 'the password hash is in the credentials table')
  t.equal((await a.credentials()).get(alice.id)?.admin, true)
  t.notOk(formatPolicy((await store.read()).doc).includes('scrypt'), 'and never in the policy')
  const changes = await store.pool.query('SELECT generation FROM keyway_changes ORDER BY generation')
  t.same(changes.rows.map((r) => Number(r.generation)), changes.rows.map((_, i) => i + 1), 'one change-log row per committed change, generations in a row')
})

t.test('the database enforces unique names, unique override ports and the No-Role rule itself', async (t) => {
  const { config } = await setup(t, server, 'constraints')
  const store = open(t, config)
  await store.migrate()
  await store.replace(parsePolicyText(POLICY, 'p').value as never)
  const sqlFails = async (sql: string, code: string, what: string): Promise<void> => {
    const c = await store.pool.connect()
    try {
      await c.query('BEGIN')
      await c.query(sql)
      await c.query('COMMIT')
      t.fail(`${what}: committed`)
    } catch (err) {
      t.equal((err as { code?: string }).code, code, `${what}: ${(err as Error).message}`)
      await c.query('ROLLBACK')
    } finally {
      c.release()
    }
  }
  await sqlFails("INSERT INTO keyway_accounts (id, type, name) VALUES ('svc_other', 'service', 'ci')", '23505', 'a second service named ci')
  await sqlFails("INSERT INTO keyway_accounts (id, type, email) VALUES ('usr_a', 'user', 'A@x.io'); INSERT INTO keyway_accounts (id, type, email) VALUES ('usr_b', 'user', 'a@X.io')", '23505', 'one email in two cases')
  await sqlFails("UPDATE keyway_resources SET port_override = 20001 WHERE name = 'cache'", '23505', 'one override port twice')
  await sqlFails("INSERT INTO keyway_account_grants (account, resource) VALUES ('svc_ci', 'cache')", '23514', 'a direct grant to an account with a role')
  await sqlFails("INSERT INTO keyway_account_roles (account, role) VALUES ('svc_adhoc', 'etl')", '23514', 'a role for an account with a direct grant')
})

t.test('20 admins racing: every edit lands, none is lost', async (t) => {
  const { config } = await setup(t, server, 'race')
  const stores = [open(t, config), open(t, config), open(t, config)]
  await stores[0]!.migrate()
  await stores[0]!.replace(parsePolicyText(POLICY, 'p').value as never)
  const before = await stores[0]!.generation()
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      i % 2 === 0 ? stores[i % 3]!.admin.createRole(`role-${i}`) : stores[i % 3]!.admin.createService(`svc-${i}`),
    ),
  )
  const p = await stores[1]!.admin.policy()
  for (let i = 0; i < 20; i++) t.ok(i % 2 === 0 ? p.roles.has(`role-${i}`) : p.accountByName(`svc-${i}`), `edit ${i} landed`)
  t.equal(await stores[2]!.generation(), before + 20, 'twenty changes, twenty generations')
})

t.test('change feed: a gateway store sees a change through LISTEN, and catches up after missing notifications', async (t) => {
  const { config } = await setup(t, server, 'feed')
  const admin = open(t, config)
  await admin.migrate()
  await admin.replace(parsePolicyText(POLICY, 'p').value as never)
  const clock = new ManualClock(Date.now())
  const gateway = open(t, config, clock)
  const first = await gateway.start()
  const seen: CompiledPolicy[] = []
  gateway.onChange((p) => seen.push(p))
  gateway.watch()
  await until(() => (gateway.readyDetail().store as { listening: boolean }).listening, 20_000, 'LISTEN')
  await admin.admin.revoke('adhoc', 'cache')
  await until(() => seen.length > 0, 20_000, 'the change to arrive by NOTIFY')
  t.equal(seen.at(-1)!.decide('svc_adhoc', 'cache', Date.now()).allow, false, 'the revocation is in force')
  t.ok(seen.at(-1)!.generation > first.generation)

  // A change whose NOTIFY never reaches the listener (written with NOTIFY suppressed): the periodic check finds it.
  await gateway.pool.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
  await admin.admin.createRole('quiet')
  clock.advance(1000)
  await until(() => gateway.current().roles.has('quiet'), 20_000, 'the resync to load the missed change')
  t.pass('resynced')
})

t.test('PostgreSQL stopped: the last good policy stays; with maxStaleness the gateway fails closed', async (t) => {
  const own = await startPostgres(t)
  t.teardown(() => own.stop())
  const { config } = await setup(t, own, 'outage', '  maxStaleness: 30s\n  connectTimeout: 1s\n')
  const admin = open(t, config)
  await admin.migrate()
  await admin.replace(parsePolicyText(POLICY, 'p').value as never)
  await admin.close()
  const clock = new ManualClock(Date.now())
  const gateway = open(t, config, clock)
  await gateway.start()
  const seen: CompiledPolicy[] = []
  gateway.onChange((p) => seen.push(p))
  gateway.watch()
  await until(() => (gateway.readyDetail().store as { listening: boolean }).listening, 20_000, 'LISTEN')
  await own.stop()
  clock.advance(1000)
  await until(() => (gateway.readyDetail().store as { reachable: boolean }).reachable === false, 20_000, 'the outage to be noticed')
  t.equal(gateway.current().decide('svc_ci', 'warehouse', Date.now()).allow, true, 'the last good policy is served')
  t.notOk(gateway.stale())
  for (let i = 0; i < 40 && !gateway.stale(); i++) {
    clock.advance(1000)
    await new Promise((r) => setTimeout(r, 20))
  }
  await until(() => gateway.stale(), 20_000, 'failing closed after maxStaleness')
  t.equal(gateway.current().decide('svc_ci', 'warehouse', Date.now()).allow, false, 'fails closed')
  t.equal(seen.at(-1)!.accounts.size, 0, 'observers got the closed policy (sessions end)')
  t.match(gateway.readyDetail(), { store: { code: 'ERR_STORE_STALE' } })
})
