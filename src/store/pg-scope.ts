import type { PoolClient } from 'pg'
import type { EditScope } from '../admin/index.js'
import type { PolicyDoc } from '../policy/index.js'
import { canonicalPolicy } from './canonical.js'
import { loadAccountDocs, loadPolicyFrame } from './pg-rows.js'

/**
 * The ids of the accounts an edit's {@link EditScope} names, found with
 * indexed queries (ids, the unique name key) or one scan of a link table,
 * never by loading the accounts. Runs in the caller's transaction.
 */
export async function scopedAccountIds(client: PoolClient, scope: EditScope): Promise<string[]> {
  const ids = new Set<string>()
  const refs = scope.accounts ?? []
  if (refs.length > 0) {
    // As `findAccount` resolves a reference: a service name as written, a user email in any case, or an id.
    const r = await client.query<{ id: string }>('SELECT id FROM keyway_accounts WHERE id = ANY($1::text[]) OR name_key = ANY($1::text[]) OR name_key = ANY($2::text[])', [
      refs,
      refs.map((x) => x.toLowerCase()),
    ])
    for (const row of r.rows) ids.add(row.id)
  }
  if (scope.accountsWithRole !== undefined) {
    const r = await client.query<{ account: string }>('SELECT account FROM keyway_account_roles WHERE role = $1', [scope.accountsWithRole])
    for (const row of r.rows) ids.add(row.account)
  }
  if (scope.accountsWithGrant !== undefined) {
    const r = await client.query<{ account: string }>('SELECT account FROM keyway_account_grants WHERE resource = $1', [scope.accountsWithGrant])
    for (const row of r.rows) ids.add(row.account)
  }
  if (scope.accountsWithGrantEndedBy !== undefined) {
    // Ends are ISO text, maybe with an offset: compared as instants with pruneGrants' own test (Date.parse),
    // so that the scope holds every account the prune would change.
    const r = await client.query<{ account: string; expires: string }>('SELECT account, expires FROM keyway_account_grants WHERE expires IS NOT NULL')
    for (const row of r.rows) if (Date.parse(row.expires) <= scope.accountsWithGrantEndedBy) ids.add(row.account)
  }
  return [...ids]
}

/**
 * The part of the policy an edit with `scope` may read or change: settings,
 * resources and roles (small tables, whole) and only the accounts the scope
 * names, in canonical order. Validating this part checks every rule the edit
 * can break within it; the rules that span accounts (unique names, the
 * No-Role rule) are the database's constraints too. Runs in the caller's
 * transaction.
 */
export async function loadScopedDoc(client: PoolClient, scope: EditScope): Promise<PolicyDoc> {
  const doc = await loadPolicyFrame(client)
  doc.accounts = await loadAccountDocs(client, await scopedAccountIds(client, scope))
  return canonicalPolicy(doc)
}
