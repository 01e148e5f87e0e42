import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { initSetup } from '../../src/admin/index.js'
import { systemClock } from '../../src/clock.js'
import { loadConfig, type KeywayConfig } from '../../src/config/index.js'
import { DocumentError, type KeywayError } from '../../src/errors.js'
import { createLogger } from '../../src/observe/index.js'
import {
  DEFAULT_POLICY_LIMITS,
  packPolicyDocument,
  policyDigest,
  RESOURCE_KINDS,
  type AccountDoc,
  type PackedPolicy,
  type PolicyDoc,
  type PolicyLimits,
} from '../../src/policy/index.js'
import { canonicalPolicy, PostgresStore } from '../../src/store/index.js'
import { loadPackedPolicy } from '../../src/store/pg-load.js'
import { loadPolicyDocSorted } from '../../src/store/pg-rows.js'
import { postgresSettings } from '../../src/store/pg-store.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'

// A gateway's whole load packs the account rows straight into the packed form
// (RowPacker); it must give exactly what compiling the canonical document gives,
// and hand over to that compile (its problems, its errors) whenever it cannot vouch.

const logger = createLogger({ level: 'silent' })
const LABEL = 'postgresql store'
const LIMITS: PolicyLimits = { ...DEFAULT_POLICY_LIMITS, maxBytes: Number.MAX_SAFE_INTEGER }

let server: Postgres
let setupDir: string
t.before(async () => {
  server = await startPostgres(t)
  const dir = mkdtempSync(join(tmpdir(), 'keyway-load-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await initSetup(join(dir, 'setup'), { clock: systemClock })
  setupDir = join(dir, 'setup')
})
t.teardown(() => server?.stop())

/** A migrated database `db` holding `doc`, and its store (superuser: tests break rules by SQL). */
async function database(t: Test, db: string, doc: PolicyDoc | { template: string }): Promise<{ config: KeywayConfig; store: PostgresStore }> {
  const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  // A copy of a template database is a file copy: much cheaper than migrating and importing again.
  await admin.query(`CREATE DATABASE ${db}${'template' in doc ? ` TEMPLATE ${doc.template}` : ''}`)
  await admin.end()
  // One `keyway init` setup for every database: each gets its own copy of the configuration.
  const file = join(setupDir, `keyway-${db}.yaml`)
  writeFileSync(file, readFileSync(join(setupDir, 'keyway.yaml'), 'utf8'))
  appendFileSync(file, `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${server.port}/${db}\n  checkInterval: 1h\n`)
  const config = loadConfig({ file, env: {} })
  const store = new PostgresStore({ config, clock: systemClock, logger })
  t.teardown(() => store.close())
  if (!('template' in doc)) {
    await store.migrate()
    await store.replace(doc)
  }
  return { config, store }
}

/** Typed arrays as plain arrays, so that two packed policies compare field by field. */
function plain(p: PackedPolicy): Record<string, unknown> {
  return Object.fromEntries(Object.entries(p).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v]))
}

type Outcome = { packed: Record<string, unknown> } | { code: string; message: string; problems?: unknown }

function outcome(fn: () => PackedPolicy): Outcome {
  try {
    return { packed: plain(fn()) }
  } catch (err) {
    return { code: (err as KeywayError).code, message: (err as Error).message, ...(err instanceof DocumentError ? { problems: err.problems } : {}) }
  }
}

/** What compiling the canonical document of the store gives (the reference). */
async function reference(store: PostgresStore, limits: PolicyLimits): Promise<Outcome> {
  const client = await store.pool.connect()
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    const doc = await loadPolicyDocSorted(client)
    await client.query('COMMIT')
    return outcome(() => packPolicyDocument(doc, { file: LABEL, limits }))
  } finally {
    client.release()
  }
}

/** What the load worker gives, and how it packed. */
async function load(config: KeywayConfig, limits: PolicyLimits): Promise<{ outcome: Outcome; path?: string }> {
  try {
    const r = await loadPackedPolicy({ settings: postgresSettings(config), limits, label: LABEL })
    return { outcome: { packed: plain(r.packed) }, path: r.path }
  } catch (err) {
    return { outcome: { code: (err as KeywayError).code, message: (err as Error).message, ...(err instanceof DocumentError ? { problems: err.problems } : {}) } }
  }
}

/** A small seeded generator (the same policy on every run). */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let x = Math.imul(s ^ (s >>> 15), 1 | s)
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** A valid policy with what makes packing differ: users in mixed case, many and few grants, every instant form, tokens in any order, suspended true, false and absent. */
function randomPolicy(seed: number, accounts: number): PolicyDoc {
  const random = rng(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
  const some = <T>(xs: readonly T[], n: number): T[] => {
    const copy = [...xs]
    const out: T[] = []
    while (out.length < n && copy.length > 0) out.push(copy.splice(Math.floor(random() * copy.length), 1)[0]!)
    return out
  }
  const resources = Array.from({ length: 30 }, (_, i) => ({
    name: pick(['db', 'Cache', 'box', 'wéb', 'z']) + `-${i}`,
    kind: RESOURCE_KINDS[i % RESOURCE_KINDS.length]!,
    type: pick(['postgres', 'redis', 'ssh']),
    address: `10.0.${i}.1:${1000 + i}`,
    ...(i % 7 === 3 ? { portOverride: 20_900 + i } : {}),
  }))
  const names = resources.map((r) => r.name)
  const roles = Array.from({ length: 8 }, (_, i) => ({ name: `${pick(['ops', 'Etl', 'read'])}-${i}`, ...(i === 5 ? {} : { grants: some(names, 1 + (i % 5)) }) }))
  const instants = ['2030-01-01T00:00:00Z', '2020-06-01T12:30:00.250Z', '2031-03-04T05:06:07+02:00', '2029-12-31T23:59:59-05:30', '2026-12-05T00:00:00Z']
  const list: AccountDoc[] = []
  for (let i = 0; i < accounts; i++) {
    const user = random() < 0.3
    const roleList = random() < 0.5 ? [] : some(roles, 1 + Math.floor(random() * 3)).map((r) => r.name)
    const grants = some(names, Math.floor(random() * 13)).map((resource) =>
      roleList.length === 0 && random() < 0.5 ? { resource } : { resource, expires: pick(instants) },
    )
    const tokens = user
      ? []
      : Array.from({ length: Math.floor(random() * 4) }, (_, j) => ({
          id: `tok-${i}-${pick(['a', 'b', 'c'])}${j}`,
          fingerprint: `sha256:${(i * 7919 + j).toString(16).padStart(16, '0')}`,
          ...(random() < 0.7 ? { created: pick(instants) } : {}),
          ...(random() < 0.3 ? { expires: pick(instants) } : {}),
        }))
    const suspended = pick([true, false, undefined])
    list.push({
      id: user ? `usr_${i}` : `svc_${i}`,
      type: user ? 'user' : 'service',
      ...(user ? { email: `${pick(['ann', 'Bob', 'zoë'])}.${i}@${pick(['example.com', 'Example.COM'])}` } : { name: `${pick(['ci', 'ETL', 'backup', 'é'])}-${i}` }),
      ...(roleList.length > 0 ? { roles: roleList } : {}),
      ...(grants.length > 0 ? { grants } : {}),
      ...(tokens.length > 0 ? { tokens } : {}),
      ...(suspended === undefined ? {} : { suspended }),
    })
  }
  return { version: 1, settings: { portOverrides: true, portRange: [20_000, 20_999] }, resources, roles, accounts: list }
}

t.test('the packed rows are exactly the compiled canonical document, digest included', async (t) => {
  for (const [i, doc] of [randomPolicy(1, 400), randomPolicy(2, 150), { ...randomPolicy(3, 0), accounts: [] }].entries()) {
    const { config, store } = await database(t, `same_${i}`, doc)
    const expected = await reference(store, LIMITS)
    const got = await load(config, LIMITS)
    t.equal(got.path, 'rows', `policy ${i}: packed from the rows`)
    t.same(got.outcome, expected, `policy ${i}: the same packed policy`)
    t.equal((got.outcome as { packed: { digest: string } }).packed.digest, policyDigest(canonicalPolicy(doc)), `policy ${i}: the policy's digest`)
  }
})

t.test('a gateway’s whole load takes the rows’ path', async (t) => {
  const { config } = await database(t, 'gateway_path', randomPolicy(4, 50))
  const gateway = new PostgresStore({ config, clock: systemClock, logger, workerMinAccounts: 0 })
  t.teardown(() => gateway.close())
  t.equal((await gateway.start()).accounts.size, 50)
  t.equal(gateway.lastWholeLoadPath, 'rows')
})

t.test('names whose code-unit order differs from the database’s byte order: compiled from the document, same result', async (t) => {
  const doc = randomPolicy(5, 20)
  // U+1F600 sorts before U+FFFD by UTF-16 code unit (canonical order), after it by UTF-8 byte (COLLATE "C").
  doc.accounts!.push({ id: 'svc_smile', type: 'service', name: '\u{1F600}x' }, { id: 'svc_repl', type: 'service', name: '\uFFFDx' })
  const { config, store } = await database(t, 'astral', doc)
  const got = await load(config, LIMITS)
  t.equal(got.path, 'document')
  t.same(got.outcome, await reference(store, LIMITS))
})

t.test('over a limit: the same ERR_POLICY_TOO_LARGE as a compile', async (t) => {
  const { config, store } = await database(t, 'limits', randomPolicy(6, 60))
  for (const limit of ['maxAccounts', 'maxGrants', 'maxTokens', 'maxRoles', 'maxResources'] as const) {
    const limits = { ...LIMITS, [limit]: 5 }
    const expected = await reference(store, limits)
    t.match(expected, { code: 'ERR_POLICY_TOO_LARGE' }, limit)
    t.same((await load(config, limits)).outcome, expected, limit)
  }
})

t.test('rows that break a rule (written by hand, constraints off): refused with the problems a compile reports', async (t) => {
  const cases: [string, string][] = [
    [
      'direct_with_role',
      'INSERT INTO keyway_account_grants (account, resource, expires) SELECT r.account, s.name, NULL FROM keyway_account_roles r CROSS JOIN keyway_resources s ' +
        'WHERE NOT EXISTS (SELECT 1 FROM keyway_account_grants g WHERE g.account = r.account AND g.resource = s.name) LIMIT 1',
    ],
    ['unknown_resource', "INSERT INTO keyway_account_grants (account, resource, expires) SELECT id, 'nowhere', '2030-01-01T00:00:00Z' FROM keyway_accounts LIMIT 1"],
    ['unknown_role', "INSERT INTO keyway_account_roles (account, role) SELECT id, 'nobody' FROM keyway_accounts WHERE type = 'user' LIMIT 1"],
    ['bad_expires', "UPDATE keyway_account_grants SET expires = 'tomorrow' WHERE expires IS NOT NULL AND account = (SELECT min(account) FROM keyway_account_grants WHERE expires IS NOT NULL)"],
    ['service_email', "UPDATE keyway_accounts SET email = 'x@example.com' WHERE id = (SELECT min(id) FROM keyway_accounts WHERE type = 'service')"],
    ['user_name', "UPDATE keyway_accounts SET name = 'ann' WHERE id = (SELECT min(id) FROM keyway_accounts WHERE type = 'user')"],
    ['bad_id', "INSERT INTO keyway_accounts (id, type, name) VALUES ('svc bad', 'service', 'bad-one')"],
    ['bad_email', "INSERT INTO keyway_accounts (id, type, email) VALUES ('usr_bad', 'user', 'not-an-email')"],
    ['bad_name', "INSERT INTO keyway_accounts (id, type, name) VALUES ('svc_pad', 'service', ' padded')"],
    ['bad_token_created', "UPDATE keyway_tokens SET created = 'yesterday' WHERE id = (SELECT min(id) FROM keyway_tokens)"],
    ['empty_token_id', "INSERT INTO keyway_tokens (account, id, fingerprint) SELECT id, '', 'sha256:0123456789abcdef' FROM keyway_accounts WHERE type = 'service' LIMIT 1"],
    ['unknown_type', "ALTER TABLE keyway_accounts DROP CONSTRAINT keyway_accounts_type_check; INSERT INTO keyway_accounts (id, type, name) VALUES ('svc_robot', 'robot', 'robot')"],
  ]
  // A template no one is connected to.
  await (await database(t, 'broken_template', randomPolicy(7, 40))).store.close()
  for (const [name, sql] of cases) {
    const { config, store } = await database(t, `broken_${name}`, { template: 'broken_template' })
    await store.pool.query(`BEGIN; SET LOCAL session_replication_role = replica; ${sql}; COMMIT`)
    const expected = await reference(store, LIMITS)
    t.match(expected, { code: 'ERR_POLICY_INVALID' }, `${name}: the compile refuses it`)
    t.same((await load(config, LIMITS)).outcome, expected, `${name}: so does the load, with the same problems`)
  }
})
