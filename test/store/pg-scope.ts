import { appendFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { createUser, initSetup, pruneGrants, setPassword } from '../../src/admin/index.js'
import { ManualClock, systemClock, type Clock } from '../../src/clock.js'
import { loadConfig, type KeywayConfig } from '../../src/config/index.js'
import type { KeywayError } from '../../src/errors.js'
import { createLogger } from '../../src/observe/index.js'
import { parsePolicyText, type CompiledPolicy } from '../../src/policy/index.js'
import { openStore, PostgresStore, type AdminOperations } from '../../src/store/index.js'
import { writeAdminSetup } from '../helpers/cli.js'
import { startPostgres, type Postgres } from '../helpers/postgres.js'

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
  - id: usr_ann
    type: user
    email: Ann@Example.com
`

let server: Postgres
t.before(async () => {
  server = await startPostgres(t)
})
t.teardown(() => server?.stop())

async function pgConfig(t: Test, db: string, extra = ''): Promise<KeywayConfig> {
  const admin = new pg.Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${db}`)
  await admin.end()
  const dir = mkdtempSync(join(tmpdir(), 'keyway-scope-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await initSetup(join(dir, 'setup'), { clock: systemClock })
  const file = join(dir, 'setup', 'keyway.yaml')
  appendFileSync(file, `\nstore: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${server.port}/${db}\n  checkInterval: 1s\n${extra}`)
  return loadConfig({ file, env: {} })
}

async function pgStore(t: Test, db: string, extra = '', clock: Clock = systemClock): Promise<PostgresStore> {
  const store = new PostgresStore({ config: await pgConfig(t, db, extra), clock, logger })
  t.teardown(() => store.close())
  await store.migrate()
  await store.replace(parsePolicyText(POLICY, 'p').value as never)
  return store
}

async function fileOps(t: Test): Promise<AdminOperations> {
  const setup = await writeAdminSetup(t.testdir(), POLICY)
  const store = openStore(loadConfig({ file: setup.configFile, env: {} }), { clock: new ManualClock(Date.now()), logger })
  t.teardown(() => store.close())
  return store.admin
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'resolved'
  } catch (err) {
    return (err as KeywayError).code
  }
}

/** Bad edits, each refused before anything is written, whatever the store. */
const BAD: [string, string, (a: AdminOperations) => Promise<unknown>][] = [
  ['a grant of an unknown resource', 'ERR_NOT_FOUND', (a) => a.grant('adhoc', 'nope', 3_600_000)],
  ['a grant to an unknown account', 'ERR_NOT_FOUND', (a) => a.grant('nobody', 'cache')],
  ['a direct grant to an account holding a role', 'ERR_DIRECT_GRANT_WITH_ROLE', (a) => a.grant('ci', 'cache')],
  ['a role for an account with direct grants', 'ERR_ROLE_WITH_DIRECT_GRANTS', (a) => a.assignRole('adhoc', 'etl', false)],
  ['an unknown role assigned', 'ERR_NOT_FOUND', (a) => a.assignRole('ci', 'nope', false)],
  ['a role unassigned that the account does not hold', 'ERR_NOT_FOUND', (a) => a.unassignRole('adhoc', 'etl')],
  ['a service name taken', 'ERR_ALREADY_EXISTS', (a) => a.createService('ci')],
  ['a new service with an unknown role', 'ERR_NOT_FOUND', (a) => a.createService('loader', 'nope')],
  ['a role still held, without force', 'ERR_USAGE', (a) => a.deleteRole('etl', false)],
  ['a resource still granted to an account, without force', 'ERR_USAGE', (a) => a.removeResource('cache', false)],
  ['a resource name taken', 'ERR_ALREADY_EXISTS', (a) => a.addResource({ name: 'cache', kind: 'server', type: 'ssh', address: '127.0.0.1:22' })],
  ['an override port taken', 'ERR_ALREADY_EXISTS', (a) => a.addResource({ name: 'box', kind: 'server', type: 'ssh', address: '127.0.0.1:22', portOverride: 20002 })],
  ['a revocation of access that comes from a role', 'ERR_NOT_FOUND', (a) => a.revoke('ci', 'warehouse')],
  ['an unknown token revoked', 'ERR_NOT_FOUND', (a) => a.revokeTokens('ci', 'nope')],
  ['a token rotated for an unknown service', 'ERR_NOT_FOUND', (a) => a.rotateToken('nobody', 0)],
  ['a user deleted as a service', 'ERR_NOT_FOUND', (a) => a.deleteService('ann@example.com')],
  ['an unknown resource granted to a role', 'ERR_NOT_FOUND', (a) => a.grantRole('etl', 'nope')],
  ['auto-connect turned off overrides', 'ERR_PRECONDITION', async (a) => {
    await a.setSetting('auto-connect', 'on')
    return a.setSetting('port-overrides', 'off')
  }],
]

t.test('a bad edit gets the same error code from the file store and from PostgreSQL, and PostgreSQL writes nothing', async (t) => {
  const store = await pgStore(t, 'bad')
  const file = await fileOps(t)
  for (const [what, code, run] of BAD) {
    const before = await store.generation()
    const onFile = await codeOf(run(file))
    const onPg = await codeOf(run(store.admin))
    t.equal(onFile, code, `file: ${what}`)
    t.equal(onPg, code, `postgres: ${what}`)
    const after = await store.generation()
    // The last case turns auto-connect on first: that edit is written, the bad one is not.
    t.equal(after - before, what.startsWith('auto-connect') ? 1 : 0, `postgres: ${what}: nothing written`)
  }
})

/** What two policies decide and name, account by account, resource by resource. */
function view(p: CompiledPolicy): unknown {
  const now = Date.parse('2027-01-01T00:00:00Z')
  return [...p.accounts.values()]
    .map((a) => ({
      name: a.name,
      roles: [...a.roles].sort(),
      suspended: a.suspended,
      decisions: [...p.resources.keys()].sort().map((r) => `${r}:${p.decide(a.id, r, now).allow}`),
    }))
    .sort((x, y) => (x.name < y.name ? -1 : 1))
}

t.test('good edits that reach several accounts (force) end in the same policy on both stores', async (t) => {
  const store = await pgStore(t, 'good')
  const file = await fileOps(t)
  for (const a of [file, store.admin]) {
    await a.createRole('reporting')
    await a.grantRole('reporting', 'cache')
    await a.createService('loader', 'reporting')
    await a.assignRole('ANN@example.com', 'reporting', false)
    await a.grant('loader', 'warehouse', 3_600_000)
    await a.deleteRole('etl', true)
    await a.removeResource('cache', true)
    await a.grant('ci', 'warehouse')
  }
  t.same(view(await store.admin.policy()), view(await file.policy()))
  t.same((await store.admin.policy()).accountByName('ci')?.roles, [], 'the role was unassigned from its holder')
})

t.test('a scoped edit logs the accounts it changed; a change to roles or resources logs none (gateways reload it whole)', async (t) => {
  const store = await pgStore(t, 'log')
  await store.admin.revoke('adhoc', 'cache')
  await store.admin.createRole('quiet')
  await store.admin.deleteRole('quiet', false)
  const rows = await store.pool.query<{ summary: { accounts?: string[] } }>('SELECT summary FROM keyway_changes ORDER BY generation')
  t.same(
    rows.rows.map((r) => r.summary.accounts),
    [undefined, ['svc_adhoc'], undefined, undefined],
    'import: whole; revoke: one account; role edits: whole',
  )
})

t.test('limits: a scoped edit over policyLimits is refused with ERR_POLICY_TOO_LARGE, nothing written', async (t) => {
  const store = await pgStore(t, 'limits', 'policyLimits:\n  maxAccounts: 3\n  maxTokens: 3\n')
  const before = await store.generation()
  t.equal(await codeOf(store.admin.createService('loader')), 'ERR_POLICY_TOO_LARGE', 'a fourth account')
  t.equal(await codeOf(store.admin.rotateToken('ci', 3_600_000)), 'resolved', 'a second token: within the limit')
  t.equal(await codeOf(store.admin.rotateToken('ci', 3_600_000)), 'resolved', 'a third token: within the limit')
  t.equal(await codeOf(store.admin.rotateToken('ci', 3_600_000)), 'ERR_POLICY_TOO_LARGE', 'a fourth token')
  t.equal(await store.generation(), before + 2, 'only the edits within the limits were written')
})

t.test('user operations, showing an account and pruning grants read only the accounts they name, on PostgreSQL', async (t) => {
  // 2031: the temporary grant of adhoc (to 2030) has ended; ci's token and ann are untouched.
  const store = await pgStore(t, 'users', '', new ManualClock(Date.parse('2031-01-01T00:00:00Z')))
  const ctx = store.adminContext()
  const digests = async (): Promise<string[]> =>
    (await store.pool.query<{ digest: string }>('SELECT digest FROM keyway_changes ORDER BY generation')).rows.map((r) => r.digest)
  const logged = async (): Promise<unknown> =>
    (await store.pool.query<{ summary: { accounts?: string[] } }>('SELECT summary FROM keyway_changes ORDER BY generation DESC LIMIT 1')).rows[0]!.summary.accounts

  const before = (await digests()).length
  t.equal(await codeOf(createUser(ctx, 'ANN@example.COM')), 'ERR_ALREADY_EXISTS', 'an email taken, written in another case')
  t.equal((await digests()).length, before, 'nothing written')
  const created = await createUser(ctx, 'Bob@Example.com', { password: 'correct horse' })
  t.same(await logged(), [created.id], 'a new user: one account written')
  t.match((await digests()).at(-1), /^scope:/, 'a new user: a scoped edit, not a whole load')
  t.equal((await setPassword(ctx, 'BOB@example.com', 'another horse')).id, created.id, 'a password set by email in any case')

  const read = await ctx.storage!.read({ accounts: ['ci'] })
  t.same([...read.policy.accounts.keys()], ['svc_ci'], 'a scoped read holds the named account only')
  t.equal(read.policy.resources.size, 2, 'and every resource')
  const view = await store.admin.account('adhoc', Date.parse('2031-01-01T00:00:00Z'))
  t.same(view.expiredGrants, [{ resource: 'warehouse', expired: '2030-01-01T00:00:00Z' }], 'show: the ended grant')

  const pruned = await pruneGrants(ctx)
  t.same(pruned.pruned, [{ account: 'adhoc', resource: 'warehouse', expires: '2030-01-01T00:00:00Z' }], 'prune: the ended grant only')
  t.same(await logged(), ['svc_adhoc'], 'prune: one account written')
  t.match((await digests()).at(-1), /^scope:/, 'prune: a scoped edit')
  const n = (await digests()).length
  t.same((await pruneGrants(ctx)).pruned, [], 'a second prune finds nothing')
  t.equal((await digests()).length, n, 'and writes nothing')
  t.same(
    view.resources.datasource.map((r) => r.name),
    ['cache'],
    'show read the account before the prune: cache is still granted',
  )
  const policy = await store.admin.policy()
  t.same([...policy.accounts.values()].map((a) => a.name).sort(), ['Ann@Example.com', 'adhoc', 'bob@example.com', 'ci'], 'the whole policy keeps every account')
})
