import type { PoolClient } from 'pg'
import type { Credentials, UserCredentials } from '../credentials/index.js'
import type { AccountDoc, PolicyDoc, ResourceDoc, SettingsDoc } from '../policy/index.js'
import { canonicalPolicy, sortAccountsInPlace } from './canonical.js'

/** One table's rows: primary key (joined) → the row's column values. */
type Rows = Map<string, unknown[]>

/** A table of the policy: its name, key columns and value columns. */
interface Table {
  readonly table: string
  readonly key: readonly string[]
  readonly columns: readonly string[]
}

// Parents before children: upserts run in this order, deletes in reverse (every reference is deferred anyway).
const TABLES: readonly Table[] = [
  { table: 'keyway_settings', key: ['name'], columns: ['value'] },
  {
    table: 'keyway_resources',
    key: ['name'],
    columns: ['kind', 'type', 'address', 'port_override', 'username', 'password_file', 'password_env', 'database', 'upstream_tls', 'upstream_ca'],
  },
  { table: 'keyway_roles', key: ['name'], columns: [] },
  { table: 'keyway_role_grants', key: ['role', 'resource'], columns: [] },
  { table: 'keyway_accounts', key: ['id'], columns: ['type', 'name', 'email', 'suspended'] },
  { table: 'keyway_account_roles', key: ['account', 'role'], columns: [] },
  { table: 'keyway_account_grants', key: ['account', 'resource'], columns: ['expires'] },
  { table: 'keyway_tokens', key: ['account', 'id'], columns: ['fingerprint', 'created', 'expires'] },
]

const RESOURCE_FIELDS = ['portOverride', 'username', 'passwordFile', 'passwordEnv', 'database', 'upstreamTls', 'upstreamCa'] as const
const SETTING_NAMES = ['version', 'portOverrides', 'autoConnect', 'portRange'] as const

/** The rows of every table for a (valid) policy document. */
export function rowsOf(doc: PolicyDoc): Map<string, Rows> {
  const out = new Map<string, Rows>(TABLES.map((t) => [t.table, new Map()]))
  const put = (table: string, key: unknown[], values: unknown[]): void => {
    out.get(table)!.set(JSON.stringify(key), [...key, ...values])
  }
  const settings: Record<string, unknown> = { version: doc.version, ...(doc.settings ?? {}) }
  for (const name of SETTING_NAMES) if (settings[name] !== undefined) put('keyway_settings', [name], [JSON.stringify(settings[name])])
  for (const r of doc.resources ?? []) {
    put('keyway_resources', [r.name], [r.kind, r.type, r.address, ...RESOURCE_FIELDS.map((f) => r[f] ?? null)])
  }
  for (const role of doc.roles ?? []) {
    put('keyway_roles', [role.name], [])
    for (const g of role.grants ?? []) put('keyway_role_grants', [role.name, g], [])
  }
  for (const a of doc.accounts ?? []) {
    put('keyway_accounts', [a.id], [a.type, a.name ?? null, a.email ?? null, a.suspended ?? null])
    for (const role of a.roles ?? []) put('keyway_account_roles', [a.id, role], [])
    for (const g of a.grants ?? []) put('keyway_account_grants', [a.id, g.resource], [g.expires ?? null])
    for (const t of a.tokens ?? []) put('keyway_tokens', [a.id, t.id], [t.fingerprint, t.created ?? null, t.expires ?? null])
  }
  return out
}

/** What {@link writeChanges} did, per table: rows inserted or updated, rows deleted. */
export type ChangeSummary = Record<string, { upserted: number; deleted: number }>

/** The tables whose rows belong to one account (its id is the first key column). */
const ACCOUNT_TABLES: ReadonlySet<string> = new Set(['keyway_accounts', 'keyway_account_roles', 'keyway_account_grants', 'keyway_tokens'])

/**
 * What a write touched, for the change log: the accounts whose rows changed,
 * and whether any other table (settings, resources, roles) changed.
 */
export interface TouchedRows {
  readonly accounts: Set<string>
  other: boolean
}

/**
 * Writes only the rows that differ between `before` and `after` (two
 * documents' {@link rowsOf}): deletes children first, then upserts parents
 * first. Runs inside the caller's transaction. Notes in `touched` which
 * accounts' rows changed.
 */
export async function writeChanges(client: PoolClient, before: Map<string, Rows>, after: Map<string, Rows>, touched?: TouchedRows): Promise<ChangeSummary> {
  const summary: ChangeSummary = {}
  const touch = (table: string, row: readonly unknown[]): void => {
    if (touched === undefined) return
    if (ACCOUNT_TABLES.has(table)) touched.accounts.add(String(row[0]))
    else touched.other = true
  }
  for (const t of [...TABLES].reverse()) {
    const old = before.get(t.table)!
    const now = after.get(t.table)!
    const gone = [...old.keys()].filter((k) => !now.has(k)).map((k) => JSON.parse(k) as unknown[])
    for (const key of gone) touch(t.table, key)
    for (const batch of batches(gone, t.key.length)) {
      // (k1, k2) IN ((..), (..)): one statement per batch, not one per row.
      const tuples = batch.map((_, r) => `(${t.key.map((_, c) => `$${r * t.key.length + c + 1}`).join(', ')})`)
      await client.query(`DELETE FROM ${t.table} WHERE (${t.key.join(', ')}) IN (${tuples.join(', ')})`, batch.flat())
    }
    if (gone.length > 0) summary[t.table] = { upserted: 0, deleted: gone.length }
  }
  for (const t of TABLES) {
    const old = before.get(t.table)!
    const now = after.get(t.table)!
    const cols = [...t.key, ...t.columns]
    const changed: unknown[][] = []
    for (const [k, row] of now) {
      const was = old.get(k)
      if (was === undefined || JSON.stringify(was) !== JSON.stringify(row)) {
        changed.push(row)
        touch(t.table, row)
      }
    }
    for (const batch of batches(changed, cols.length)) {
      const tuples = batch.map((_, r) => `(${cols.map((_, c) => `$${r * cols.length + c + 1}`).join(', ')})`)
      await client.query(
        `INSERT INTO ${t.table} (${cols.join(', ')}) VALUES ${tuples.join(', ')} ` +
          (t.columns.length === 0
            ? 'ON CONFLICT DO NOTHING'
            : `ON CONFLICT (${t.key.join(', ')}) DO UPDATE SET ${t.columns.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`),
        batch.flat(),
      )
    }
    if (changed.length > 0) summary[t.table] = { deleted: summary[t.table]?.deleted ?? 0, upserted: changed.length }
  }
  return summary
}

/** `rows` cut into batches that stay under PostgreSQL's 65,535 parameters per statement. */
function* batches(rows: unknown[][], width: number): Generator<unknown[][]> {
  const size = Math.max(1, Math.floor(30_000 / Math.max(1, width)))
  for (let i = 0; i < rows.length; i += size) yield rows.slice(i, i + size)
}

/** Present values only: SQL NULL is an absent key. */
function set<T extends object>(target: T, key: keyof T, value: unknown): void {
  if (value !== null && value !== undefined) (target as Record<string, unknown>)[key as string] = value
}

/** Reads the whole policy document from the tables, in canonical order. Runs in the caller's transaction. */
export async function loadPolicyDoc(client: PoolClient): Promise<PolicyDoc> {
  const doc = await loadPolicyFrame(client)
  doc.accounts = await loadAccountDocs(client)
  return canonicalPolicy(doc)
}

/**
 * Reads the policy without its accounts (`accounts: []`): settings,
 * resources and roles, the small tables. Runs in the caller's transaction.
 */
export async function loadPolicyFrame(client: PoolClient): Promise<PolicyDoc> {
  const doc: PolicyDoc = {}
  const settings: SettingsDoc = {}
  for (const row of (await client.query<{ name: string; value: unknown }>('SELECT name, value FROM keyway_settings')).rows) {
    if (row.name === 'version') doc.version = row.value as 1
    else (settings as Record<string, unknown>)[row.name] = row.value
  }
  if (Object.keys(settings).length > 0) doc.settings = settings
  const resources: ResourceDoc[] = []
  // Named columns: a newer schema (a rolling upgrade) may have added some this binary does not know.
  const resourceColumns = TABLES[1]!.key.concat(TABLES[1]!.columns).join(', ')
  for (const r of (await client.query<Record<string, unknown>>(`SELECT ${resourceColumns} FROM keyway_resources`)).rows) {
    const res = { name: r.name, kind: r.kind, type: r.type, address: r.address } as ResourceDoc
    set(res, 'portOverride', r.port_override)
    set(res, 'username', r.username)
    set(res, 'passwordFile', r.password_file)
    set(res, 'passwordEnv', r.password_env)
    set(res, 'database', r.database)
    set(res, 'upstreamTls', r.upstream_tls)
    set(res, 'upstreamCa', r.upstream_ca)
    resources.push(res)
  }
  doc.resources = resources
  const roleGrants = new Map<string, string[]>()
  for (const r of (await client.query<{ name: string }>('SELECT name FROM keyway_roles')).rows) roleGrants.set(r.name, [])
  for (const g of (await client.query<{ role: string; resource: string }>('SELECT role, resource FROM keyway_role_grants')).rows) roleGrants.get(g.role)?.push(g.resource)
  doc.roles = [...roleGrants].map(([name, grants]) => (grants.length > 0 ? { name, grants } : { name }))
  doc.accounts = []
  return doc
}

/**
 * Reads the accounts `ids` (every account when absent) with their roles,
 * grants and token records, in no particular order; an id with no account is
 * left out. Runs in the caller's transaction.
 */
export async function loadAccountDocs(client: PoolClient, ids?: readonly string[]): Promise<AccountDoc[]> {
  if (ids?.length === 0) return []
  const where = (column: string): string => (ids === undefined ? '' : ` WHERE ${column} = ANY($1::text[])`)
  const params = ids === undefined ? [] : [ids]
  const accounts = new Map<string, AccountDoc>()
  for (const a of (await client.query<Record<string, unknown>>(`SELECT id, type, name, email, suspended FROM keyway_accounts${where('id')}`, params)).rows) {
    const acc = { id: a.id, type: a.type } as AccountDoc
    set(acc, 'name', a.name)
    set(acc, 'email', a.email)
    set(acc, 'suspended', a.suspended)
    accounts.set(acc.id, acc)
  }
  for (const r of (await client.query<{ account: string; role: string }>(`SELECT account, role FROM keyway_account_roles${where('account')}`, params)).rows) {
    const a = accounts.get(r.account)
    if (a) (a.roles ??= []).push(r.role)
  }
  for (const g of (await client.query<{ account: string; resource: string; expires: string | null }>(`SELECT account, resource, expires FROM keyway_account_grants${where('account')}`, params)).rows) {
    const a = accounts.get(g.account)
    if (a) (a.grants ??= []).push(g.expires === null ? { resource: g.resource } : { resource: g.resource, expires: g.expires })
  }
  for (const t of (await client.query<Record<string, string | null>>(`SELECT account, id, fingerprint, created, expires FROM keyway_tokens${where('account')}`, params)).rows) {
    const a = accounts.get(t.account!)
    if (!a) continue
    const rec = { id: t.id!, fingerprint: t.fingerprint! }
    set(rec, 'created' as never, t.created)
    set(rec, 'expires' as never, t.expires)
    ;(a.tokens ??= []).push(rec)
  }
  return [...accounts.values()]
}

/**
 * The whole policy document in canonical order, as {@link loadPolicyDoc}
 * reads it (same digest), for a gateway's whole load: the accounts are
 * sorted in place rather than rebuilt, which spares a million short-lived
 * objects. Runs in the caller's transaction.
 */
export async function loadPolicyDocSorted(client: PoolClient): Promise<PolicyDoc> {
  const doc = canonicalPolicy(await loadPolicyFrame(client))
  const accounts = await loadAccountDocs(client)
  sortAccountsInPlace(accounts)
  if (accounts.length > 0) doc.accounts = accounts
  return doc
}

/**
 * Every account as one row, its links resolved by the database to indexes of
 * `resourceNames` and `roleNames` (the frame's, canonical order), in
 * canonical order: the rows a `RowPacker` packs (see `AccountRow` in policy/),
 * which orders an account's few grants and roles itself (two aggregates of
 * one group see its rows in the same order). The database joins, groups and
 * sorts the accounts (on its own core); no row per grant reaches JavaScript.
 * Runs in the caller's transaction.
 */
export function accountRowsQuery(resourceNames: readonly string[], roleNames: readonly string[]): { text: string; values: unknown[]; rowMode: 'array' } {
  return {
    rowMode: 'array',
    values: [resourceNames, roleNames],
    text: `
WITH res AS (SELECT name, (ord - 1)::integer AS i FROM unnest($1::text[]) WITH ORDINALITY AS u(name, ord)),
     rol AS (SELECT name, (ord - 1)::integer AS i FROM unnest($2::text[]) WITH ORDINALITY AS u(name, ord)),
     g AS (SELECT g.account, json_agg(coalesce(res.i, -1)) AS idx, json_agg(g.expires) AS exp
           FROM keyway_account_grants g LEFT JOIN res ON res.name = g.resource GROUP BY g.account),
     r AS (SELECT r.account, json_agg(coalesce(rol.i, -1)) AS idx
           FROM keyway_account_roles r LEFT JOIN rol ON rol.name = r.role GROUP BY r.account),
     t AS (SELECT account, json_agg(json_build_array(id, fingerprint, created, expires)) AS tokens FROM keyway_tokens GROUP BY account)
SELECT a.id, a.type, a.name, a.email, a.suspended, r.idx, g.idx, g.exp, t.tokens
FROM keyway_accounts a LEFT JOIN r ON r.account = a.id LEFT JOIN g ON g.account = a.id LEFT JOIN t ON t.account = a.id
ORDER BY a.type COLLATE "C", coalesce(a.name, a.email, '') COLLATE "C", a.id COLLATE "C"`,
  }
}

/** The generation of the last committed change; 0 before the first. */
export async function currentGeneration(client: Pick<PoolClient, 'query'>): Promise<number> {
  const r = await client.query<{ g: string | null }>('SELECT max(generation) AS g FROM keyway_changes')
  return Number(r.rows[0]?.g ?? 0)
}

/** Reads the user credentials table. */
export async function loadCredentials(client: Pick<PoolClient, 'query'>): Promise<Credentials> {
  const out = new Map<string, UserCredentials>()
  for (const r of (await client.query<{ account: string; password_hash: string | null; admin: boolean | null }>('SELECT account, password_hash, admin FROM keyway_user_credentials')).rows) {
    out.set(r.account, { ...(r.password_hash === null ? {} : { passwordHash: r.password_hash }), ...(r.admin === null ? {} : { admin: r.admin }) })
  }
  return out
}

/** Writes the credentials that differ between `before` and `after`. Runs in the caller's transaction. */
export async function writeCredentials(client: PoolClient, before: Credentials, after: Credentials): Promise<number> {
  let n = 0
  for (const id of before.keys()) {
    if (!after.has(id)) {
      await client.query('DELETE FROM keyway_user_credentials WHERE account = $1', [id])
      n++
    }
  }
  for (const [id, c] of after) {
    const was = before.get(id)
    if (was !== undefined && was.passwordHash === c.passwordHash && was.admin === c.admin) continue
    await client.query(
      'INSERT INTO keyway_user_credentials (account, password_hash, admin) VALUES ($1, $2, $3) ON CONFLICT (account) DO UPDATE SET password_hash = EXCLUDED.password_hash, admin = EXCLUDED.admin',
      [id, c.passwordHash ?? null, c.admin ?? null],
    )
    n++
  }
  return n
}
