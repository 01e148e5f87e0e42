import { appendFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { runKeyway, writeAdminSetup } from '../helpers/cli.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'
import { SCHEMA_VERSION } from '../../src/store/index.js'

let server: Postgres
t.before(async () => {
  server = await startPostgres(t)
})
t.teardown(() => server?.stop())

/** A CLI setup whose configuration says store: postgres, on a database of its own. */
async function pgSetup(dir: string, db: string) {
  const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${db}`)
  await admin.end()
  const setup = await writeAdminSetup(dir)
  appendFileSync(setup.configFile, `store: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${server.port}/${db}\n`)
  return setup
}

t.test('keyway store on store: file, and wrong arguments, are usage errors', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const onFile = await runKeyway(['store', 'migrate', '--config', setup.configFile])
  t.not(onFile.code, 0)
  t.match(onFile.stderr, /ERR_USAGE.*store: file/)
  for (const args of [['store'], ['store', 'import'], ['store', 'export', 'extra'], ['store', 'dance']]) {
    const r = await runKeyway([...args, '--config', setup.configFile])
    t.not(r.code, 0, args.join(' '))
    t.match(r.stderr, /ERR_USAGE/, args.join(' '))
  }
})

t.test('migrate by an older binary: a newer schema it can read is left as it is, one it cannot read is refused; never downgraded', async (t) => {
  const setup = await pgSetup(t.testdir(), 'cli_newer')
  const c = ['--config', setup.configFile]
  const first = await runKeyway(['store', 'migrate', ...c])
  t.equal(first.code, 0, first.stderr)
  const db = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'cli_newer' })
  await db.connect()
  t.teardown(() => db.end())
  // A newer release's additive migration: readable from this binary's version.
  await db.query('INSERT INTO keyway_schema_version (version, readable_from) VALUES ($1, $2)', [SCHEMA_VERSION + 1, SCHEMA_VERSION])
  const readable = await runKeyway(['store', 'migrate', ...c])
  t.equal(readable.code, 0, readable.stderr)
  t.match(readable.stdout, `schema version ${SCHEMA_VERSION + 1}: up to date`)
  // Its destructive migration: readable from its own version only.
  await db.query('UPDATE keyway_schema_version SET readable_from = $1 WHERE version = $1', [SCHEMA_VERSION + 1])
  const unreadable = await runKeyway(['store', 'migrate', ...c])
  t.not(unreadable.code, 0)
  t.match(unreadable.stderr, /ERR_STORE_SCHEMA_NEWER/)
  t.match(unreadable.stderr, `knows version ${SCHEMA_VERSION}`)
  const top = await db.query<{ v: number }>('SELECT max(version) AS v FROM keyway_schema_version')
  t.equal(top.rows[0]?.v, SCHEMA_VERSION + 1, 'the newer version row stays')
})

t.test('migrate, import, export, export again: the same bytes; explain and admin run on the store', async (t) => {
  const setup = await pgSetup(t.testdir(), 'cli_roundtrip')
  const c = ['--config', setup.configFile]
  const migrated = await runKeyway(['store', 'migrate', ...c])
  t.equal(migrated.code, 0, migrated.stderr)
  t.match(migrated.stdout, `schema version ${SCHEMA_VERSION} (was 0)`)
  t.match((await runKeyway(['store', 'migrate', ...c])).stdout, 'up to date')

  const before = await runKeyway(['explain', 'etl', 'pg', ...c])
  t.equal(before.code, 1, before.stderr)
  t.match(before.stdout, /^deny \(ERR_ACCOUNT_UNKNOWN\)/, 'an empty store grants nothing')

  const imported = await runKeyway(['store', 'import', setup.policyFile, ...c])
  t.equal(imported.code, 0, imported.stderr)
  t.match(imported.stdout, 'imported: generation 1')
  const exported = await runKeyway(['store', 'export', ...c])
  t.equal(exported.code, 0, exported.stderr)
  const file = join(setup.dir, 'exported.yaml')
  writeFileSync(file, exported.stdout)
  t.match((await runKeyway(['store', 'import', file, ...c])).stdout, 'unchanged', 'the export is the same policy')
  t.equal((await runKeyway(['store', 'export', ...c])).stdout, exported.stdout, 'byte-identical')

  const allow = await runKeyway(['explain', 'etl', 'pg', ...c])
  t.equal(allow.code, 0, allow.stderr)
  t.match(allow.stdout, /^allow\n/)
  const grant = await runKeyway(['admin', 'grant', 'etl', 'ssh-box', '--for', '1h', ...c])
  t.equal(grant.code, 0, grant.stderr)
  t.match((await runKeyway(['explain', 'etl', 'ssh-box', ...c])).stdout, /temporary/)
  t.match((await runKeyway(['store', 'status', ...c])).stdout, /^generation 2:/)
  t.equal(readFileSync(setup.policyFile, 'utf8'), setup.policyText(), 'the policy file is not touched')

  writeFileSync(join(setup.dir, 'broken.yaml'), 'version: 1\nroles:\n  - name: x\n    grants: [nowhere]\n')
  const broken = await runKeyway(['store', 'import', join(setup.dir, 'broken.yaml'), ...c])
  t.not(broken.code, 0)
  t.match(broken.stderr, /broken\.yaml:4:\d+: unknown resource "nowhere"/, 'located problems, nothing written')
  t.match((await runKeyway(['store', 'status', ...c])).stdout, /^generation 2:/)
})
