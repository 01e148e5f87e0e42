import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { initSetup } from '../../src/admin/index.js'
import { systemClock } from '../../src/clock.js'
import { loadConfig, type KeywayConfig } from '../../src/config/index.js'
import type { KeywayError } from '../../src/errors.js'
import { createLogger } from '../../src/observe/index.js'
import { parsePolicyText, type PolicyDoc } from '../../src/policy/index.js'
import { MIGRATIONS, PostgresStore, SCHEMA_VERSION } from '../../src/store/index.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'

// Rolling upgrades (issue 19 item 2): binaries of version N and N+1 run against the same
// schema; a binary refuses a schema it cannot read. A newer release is simulated by SQL:
// what its additive migration would add, and its version row with its readable-from marker.

const logger = createLogger({ level: 'silent' })
const N = SCHEMA_VERSION

const POLICY = parsePolicyText(
  `version: 1
resources:
  - name: warehouse
    kind: datasource
    type: postgres
    address: 127.0.0.1:5432
roles:
  - name: etl
    grants: [warehouse]
accounts:
  - id: svc_ci
    type: service
    name: ci
    roles: [etl]
  - id: svc_adhoc
    type: service
    name: adhoc
    grants:
      - resource: warehouse
`,
  'p',
).value as PolicyDoc

let server: Postgres
t.before(async () => {
  server = await startPostgres(t)
})
t.teardown(() => server?.stop())

/** A configuration on a new database `db` of the server. */
async function setup(t: Test, db: string): Promise<KeywayConfig> {
  const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${db}`)
  await admin.end()
  const dir = mkdtempSync(join(tmpdir(), 'keyway-compat-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await initSetup(join(dir, 'setup'), { clock: systemClock })
  const file = join(dir, 'setup', 'keyway.yaml')
  appendFileSync(file, `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${server.port}/${db}\n  checkInterval: 1s\n`)
  return loadConfig({ file, env: {} })
}

/** A store; `workerMinAccounts: 0` takes the load worker's path (its own connection and schema check). */
function open(t: Test, config: KeywayConfig, workerMinAccounts?: number): PostgresStore {
  const store = new PostgresStore({ config, clock: systemClock, logger, ...(workerMinAccounts === undefined ? {} : { workerMinAccounts }) })
  t.teardown(() => store.close())
  return store
}

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, what: string): Promise<KeywayError | undefined> {
  try {
    await p
    t.fail(`${what}: resolved, expected ${code}`)
    return undefined
  } catch (err) {
    t.equal((err as KeywayError).code, code, `${what}: ${(err as Error).message}`)
    return err as KeywayError
  }
}

async function versionRows(store: PostgresStore): Promise<{ version: number; readable_from: number | null }[]> {
  return (await store.pool.query<{ version: number; readable_from: number | null }>('SELECT version, readable_from FROM keyway_schema_version ORDER BY version')).rows
}

t.test('every version row carries its migration’s readable-from marker', async (t) => {
  const store = open(t, await setup(t, 'markers'))
  await store.migrate()
  t.same(
    await versionRows(store),
    MIGRATIONS.map((m, i) => ({ version: i + 1, readable_from: m.readableFrom })),
  )
  for (const [i, m] of MIGRATIONS.entries()) t.ok(m.readableFrom >= 1 && m.readableFrom <= i + 1, `migration ${i + 1}: readable from a version up to its own`)
})

t.test('a database migrated before the marker existed (version 2) gets markers for its old rows', async (t) => {
  const store = open(t, await setup(t, 'before_marker'))
  // What a version-2 binary's `keyway store migrate` left.
  await store.pool.query('CREATE TABLE keyway_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())')
  for (const v of [1, 2]) {
    await store.pool.query(MIGRATIONS[v - 1]!.sql)
    await store.pool.query('INSERT INTO keyway_schema_version (version) VALUES ($1)', [v])
  }
  await rejectsCode(t, store.start(), 'ERR_STORE_SCHEMA_MISSING', 'an older schema: migrate first')
  t.same(await store.migrate(), { from: 2, to: N })
  t.same(
    (await versionRows(store)).map((r) => r.readable_from),
    MIGRATIONS.map((m) => m.readableFrom),
  )
  await store.replace(POLICY)
  t.equal((await store.start()).accounts.size, 2)
})

t.test('rolling upgrade: after an additive migration by version N+1, version N starts, loads, edits and exports; its migrate never downgrades', async (t) => {
  const config = await setup(t, 'additive')
  const owner = open(t, config)
  await owner.migrate()
  await owner.replace(POLICY)
  const gateway = open(t, config)
  await gateway.start()

  // Version N+1's additive migration: a column with a default, a nullable one, a new table.
  await owner.pool.query(`BEGIN;
    ALTER TABLE keyway_resources ADD COLUMN note text;
    ALTER TABLE keyway_accounts ADD COLUMN origin text NOT NULL DEFAULT 'import';
    CREATE TABLE keyway_future (x integer);
    INSERT INTO keyway_schema_version (version, readable_from) VALUES (${N + 1}, ${N});
    COMMIT`)
  await owner.pool.query("UPDATE keyway_resources SET note = 'written by N+1'")

  const fresh = open(t, config)
  t.equal((await fresh.start()).accounts.size, 2, 'a version-N gateway starts')
  const viaWorker = open(t, config, 0)
  t.equal((await viaWorker.start()).accounts.size, 2, 'and its load worker accepts the schema too')

  const admin = open(t, config)
  await admin.admin.createRole('auditor')
  await admin.admin.createService('reporting')
  const reloaded = await gateway.reload()
  t.ok(reloaded.ok, 'a running version-N gateway follows the changes')
  t.ok(gateway.current().roles.has('auditor'))
  t.ok(gateway.current().accountByName('reporting'))
  const origins = await owner.pool.query<{ origin: string }>('SELECT DISTINCT origin FROM keyway_accounts')
  t.same(origins.rows, [{ origin: 'import' }], 'rows version N inserted got version N+1’s default')
  const notes = await owner.pool.query<{ note: string | null }>('SELECT DISTINCT note FROM keyway_resources')
  t.same(notes.rows, [{ note: 'written by N+1' }], 'version N left version N+1’s column alone')
  t.ok((await admin.read()).doc.roles?.some((r) => r.name === 'auditor'), 'reads (export) work')

  t.same(await admin.migrate(), { from: N + 1, to: N + 1 }, 'migrate by version N changes nothing')
  t.equal((await versionRows(owner)).at(-1)?.version, N + 1, 'the newer version row stays')
})

t.test('a newer schema not readable by this binary is refused, naming both versions and the fix; a running gateway keeps serving', async (t) => {
  const config = await setup(t, 'destructive')
  const owner = open(t, config)
  await owner.migrate()
  await owner.replace(POLICY)
  const gateway = open(t, config)
  await gateway.start()

  // Version N+1 dropped something version N uses: readable from N+1 only.
  await owner.pool.query('INSERT INTO keyway_schema_version (version, readable_from) VALUES ($1, $2)', [N + 1, N + 1])
  const err = await rejectsCode(t, open(t, config).start(), 'ERR_STORE_SCHEMA_NEWER', 'start')
  t.match(err?.message, `schema is version ${N + 1}`)
  t.match(err?.message, `this binary knows version ${N}`)
  t.match(err?.message, `run a Keyway release that knows schema version ${N + 1} or later`)
  t.match(err?.detail, { version: N + 1, readableFrom: N + 1, known: N })
  await rejectsCode(t, open(t, config, 0).start(), 'ERR_STORE_SCHEMA_NEWER', 'the load worker')
  await rejectsCode(t, owner.migrate(), 'ERR_STORE_SCHEMA_NEWER', 'migrate')
  await rejectsCode(t, owner.admin.createRole('x'), 'ERR_STORE_SCHEMA_NEWER', 'an edit')
  t.equal((await versionRows(owner)).length, N + 1, 'nothing undone')

  const r = await gateway.reload()
  t.equal(r.ok, false)
  t.equal(r.ok ? undefined : r.error.code, 'ERR_STORE_SCHEMA_NEWER', 'a running gateway reports it')
  t.equal(gateway.current().accounts.size, 2, 'and keeps serving its last good policy')

  // A marker between the two: readable from N, so version N runs again.
  await owner.pool.query('UPDATE keyway_schema_version SET readable_from = $1 WHERE version = $2', [N, N + 1])
  t.ok((await gateway.reload()).ok)
})
