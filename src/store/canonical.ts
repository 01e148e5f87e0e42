import { Document, isScalar, visit } from 'yaml'
import { POLICY_KEYS, type AccountDoc, type PolicyDoc } from '../policy/index.js'

/** Orders strings by code unit, the same on every machine (no locale). */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** An object with the keys of `order` that `value` has, in that order (absent keys left out). */
function ordered<T extends object>(value: T, order: readonly string[]): T {
  const out: Record<string, unknown> = {}
  for (const k of order) {
    const v = (value as Record<string, unknown>)[k]
    if (v !== undefined) out[k] = v
  }
  return out as T
}

/** How accounts are listed: services then users, each by name (email), then id. */
function accountKey(a: AccountDoc): string {
  return `${a.type}\u0000${a.name ?? a.email ?? ''}\u0000${a.id}`
}

/**
 * The canonical form of a (valid) policy document: sections, entries and
 * keys in one fixed order, empty lists left out. Two documents with the same
 * content have the same canonical form, whatever order they were written in;
 * it is what the PostgreSQL store reads back and what `keyway store export`
 * writes.
 *
 * Order: resources and roles by name, a role's grants by resource; accounts
 * services first, then users, each by name (email), then id; an account's
 * roles by name, grants by resource, tokens by creation then id. Keys in the
 * order of `POLICY_KEYS`.
 */
export function canonicalPolicy(doc: PolicyDoc): PolicyDoc {
  const out: PolicyDoc = {}
  if (doc.version !== undefined) out.version = doc.version
  if (doc.settings !== undefined && Object.keys(doc.settings).length > 0) out.settings = ordered(doc.settings, POLICY_KEYS.settings)
  const resources = [...(doc.resources ?? [])].sort((a, b) => byText(a.name, b.name)).map((r) => ordered(r, POLICY_KEYS.resource))
  if (resources.length > 0) out.resources = resources
  const roles = [...(doc.roles ?? [])]
    .sort((a, b) => byText(a.name, b.name))
    .map((r) => ordered({ ...r, grants: r.grants && r.grants.length > 0 ? [...r.grants].sort(byText) : undefined }, POLICY_KEYS.role))
  if (roles.length > 0) out.roles = roles
  const accounts = [...(doc.accounts ?? [])]
    .sort((a, b) => byText(accountKey(a), accountKey(b)))
    .map((a) =>
      ordered(
        {
          ...a,
          roles: a.roles && a.roles.length > 0 ? [...a.roles].sort(byText) : undefined,
          grants:
            a.grants && a.grants.length > 0 ? [...a.grants].sort((x, y) => byText(x.resource, y.resource)).map((g) => ordered(g, POLICY_KEYS.grant)) : undefined,
          tokens:
            a.tokens && a.tokens.length > 0
              ? [...a.tokens].sort((x, y) => byText(`${x.created ?? ''}\u0000${x.id}`, `${y.created ?? ''}\u0000${y.id}`)).map((t) => ordered(t, POLICY_KEYS.token))
              : undefined,
        },
        POLICY_KEYS.account,
      ),
    )
  if (accounts.length > 0) out.accounts = accounts
  return out
}

/**
 * Puts `accounts` and each account's roles, grants and token records in the
 * order of {@link canonicalPolicy}, in place, without copying any object: a
 * gateway's whole load (a million grants) sorts instead of rebuilding. Keys
 * are left in the order they were set: the digest and the validator do not
 * depend on it.
 */
export function sortAccountsInPlace(accounts: AccountDoc[]): void {
  const keys = new Map<AccountDoc, string>()
  for (const a of accounts) {
    keys.set(a, accountKey(a))
    if (a.roles !== undefined && a.roles.length > 1) a.roles.sort(byText)
    if (a.grants !== undefined && a.grants.length > 1) a.grants.sort((x, y) => byText(x.resource, y.resource))
    if (a.tokens !== undefined && a.tokens.length > 1) a.tokens.sort((x, y) => byText(`${x.created ?? ''}\u0000${x.id}`, `${y.created ?? ''}\u0000${y.id}`))
  }
  accounts.sort((a, b) => byText(keys.get(a)!, keys.get(b)!))
}

/** The YAML text of a canonical policy: block style, lists of plain values in flow style (`roles: [ops]`), never folded. */
export function formatPolicy(doc: PolicyDoc): string {
  const yaml = new Document(canonicalPolicy(doc))
  visit(yaml, {
    Seq(_key, node) {
      node.flow = node.items.length > 0 && node.items.every((i) => isScalar(i))
    },
  })
  return '# Keyway policy, canonical order (keyway store export)\n' + yaml.toString({ flowCollectionPadding: false, lineWidth: 0 })
}
