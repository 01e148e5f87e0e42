import { hashPassword } from '../auth/index.js'
import { KeywayError } from '../errors.js'
import { compilePolicy, parseInstant, RESOURCE_KINDS, type AccountDoc, type AccountType, type CompiledPolicy, type GrantSource, type ResourceKind } from '../policy/index.js'
import { formatHostPort } from '../net/index.js'
import type { Credentials } from '../credentials/index.js'
import { edit, type AdminContext } from './context.js'
import { editCredentials } from './credentials.js'
import { compareText, describeAccount, findAccount, isoInstant, newAccountId, newNode, readPolicyOf, sectionList, type ReadPolicy } from './document.js'

/** Shortest password `setPassword` accepts. */
export const MIN_PASSWORD_LENGTH = 8

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

/** Options of {@link createUser}. */
export interface CreateUserOptions {
  /** Initial password; without one the user cannot log in until {@link setPassword}. */
  password?: string
  /** Grants admin access (the Admin UI and API); kept in the credentials file. */
  admin?: boolean
}

/**
 * Creates a user account (a person, who logs in with email and password).
 * The email is stored in lower case; it must be unique.
 *
 * @throws KeywayError ERR_USAGE (not an email, password too short), ERR_ALREADY_EXISTS
 */
export async function createUser(ctx: AdminContext, email: string, options: CreateUserOptions = {}): Promise<{ id: string; email: string; admin: boolean }> {
  const normalized = email.trim().toLowerCase()
  if (!EMAIL.test(normalized)) throw new KeywayError('ERR_USAGE', `"${email}" is not an email address; write it as name@example.com`)
  // scrypt is slow on purpose: hash before taking the lock.
  const passwordHash = options.password === undefined ? undefined : await hashChecked(options.password)
  const id = newAccountId('user')
  await edit(ctx, (doc, current) => {
    const clash = current.accountByName(normalized)
    if (clash !== undefined) throw new KeywayError('ERR_ALREADY_EXISTS', `${describeAccount(clash)} already exists`, { detail: { email: normalized } })
    const account: AccountDoc = { id, type: 'user', email: normalized }
    sectionList(doc, 'accounts').add(newNode(doc, account))
  }, { accounts: [normalized] })
  // The hash goes to the credentials file, never the policy; a crash in between leaves a user without a password.
  if (passwordHash !== undefined || options.admin === true) {
    await editCredentials(ctx, (users) =>
      void users.set(id, { ...users.get(id), ...(passwordHash === undefined ? {} : { passwordHash }), ...(options.admin === true ? { admin: true } : {}) }),
    )
  }
  return { id, email: normalized, admin: options.admin === true }
}

/**
 * Sets a user's password: its scrypt hash goes to the credentials file
 * (locked, atomic, 0600), never to the policy.
 *
 * @throws KeywayError ERR_USAGE (too short), ERR_NOT_FOUND (no such user), ERR_CREDENTIALS_MODE
 */
export async function setPassword(ctx: AdminContext, email: string, password: string): Promise<{ id: string; email: string }> {
  const passwordHash = await hashChecked(password)
  const account = findAccount((await readPolicyOf(ctx, { accounts: [email] })).policy, email, 'user')
  await editCredentials(ctx, (users) => void users.set(account.id, { ...users.get(account.id), passwordHash }))
  return { id: account.id, email: account.name }
}

async function hashChecked(password: string): Promise<string> {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new KeywayError('ERR_USAGE', `the password must have at least ${MIN_PASSWORD_LENGTH} characters`)
  }
  return hashPassword(password)
}

/** One row of {@link listAccounts}: the stable JSON shape of `keyway admin users list --json`. */
export interface AccountListEntry {
  readonly id: string
  readonly type: AccountType
  /** Service name or user email. */
  readonly name: string
  /** Users only; null for services. */
  readonly email: string | null
  readonly roles: readonly string[]
  /** True when the account has no role: its access is granted resource by resource. */
  readonly noRole: boolean
  readonly suspended: boolean
  /** `service` for service accounts, as the Users page marks them. */
  readonly tags: readonly string[]
}

/**
 * Every account, as the Users page shows them: accounts with No Role first,
 * then the others; each group sorted by name.
 */
export function listAccounts(policy: CompiledPolicy): AccountListEntry[] {
  const entries: AccountListEntry[] = [...policy.accounts.values()].map((a) => ({
    id: a.id,
    type: a.type,
    name: a.name,
    email: a.type === 'user' ? (a.email ?? a.name) : null,
    roles: [...a.roles],
    noRole: a.roles.length === 0,
    suspended: a.suspended,
    tags: a.type === 'service' ? ['service'] : [],
  }))
  return entries.sort((x, y) => Number(!x.noRole) - Number(!y.noRole) || compareText(x.name, y.name))
}

/** One resource in {@link AccountView}, with every source of access. */
export interface AccountResourceView {
  readonly name: string
  readonly type: string
  readonly address: string
  /** The local port a sidecar binds, when port overrides are on. */
  readonly portOverride: number | null
  /** Where access comes from: `role NAME`, `direct`, or `temporary until ISO`. */
  readonly sources: readonly string[]
}

/** What `keyway admin users show` displays. */
export interface AccountView {
  readonly id: string
  readonly type: AccountType
  readonly name: string
  readonly email: string | null
  readonly roles: readonly string[]
  readonly noRole: boolean
  readonly suspended: boolean
  readonly tags: readonly string[]
  /** Users: whether a password is set (never the hash). */
  readonly passwordSet: boolean | null
  /**
   * Reachable resources by kind, in the seed's tab order (datasource, server,
   * cluster, website, cloud); every kind is present, maybe empty. For a
   * suspended account: what it would reach once resumed.
   */
  readonly resources: { readonly [K in ResourceKind]: readonly AccountResourceView[] }
  /** Temporary grants that have ended (kept in the policy until revoked). */
  readonly expiredGrants: readonly { readonly resource: string; readonly expired: string }[]
  /** Services: token records (never a token). */
  readonly tokens: readonly {
    readonly id: string
    readonly fingerprint: string
    readonly created: string | null
    readonly expires: string | null
    readonly expired: boolean
  }[]
}

/** Formats a grant source for people: `role ops`, `direct`, `temporary until 2026-01-01T08:00:00Z`. */
export function formatSource(source: GrantSource): string {
  switch (source.via) {
    case 'role':
      return `role ${source.role}`
    case 'direct':
      return 'direct'
    case 'temporary':
      return `temporary until ${isoInstant(source.expiresAt)}`
  }
}

/**
 * Everything about one account at `now`: its resources grouped by kind with
 * where each one's access comes from, its suspension, and its token records.
 *
 * @throws KeywayError ERR_NOT_FOUND
 */
export function showAccount(read: ReadPolicy, ref: string, now: number, credentials: Credentials = new Map()): AccountView {
  const account = findAccount(read.policy, ref)
  const raw = (read.doc.accounts ?? []).find((a) => a?.id === account.id)
  let policy = read.policy
  if (account.suspended) {
    // A suspended account reaches nothing; show what it would reach once resumed.
    const doc = structuredClone(read.doc)
    for (const a of doc.accounts ?? []) if (a?.id === account.id) delete a.suspended
    policy = compilePolicy(doc)
  }
  const byKind = Object.fromEntries(RESOURCE_KINDS.map((k) => [k, [] as AccountResourceView[]])) as Record<ResourceKind, AccountResourceView[]>
  for (const { resource, sources } of policy.effectiveResources(account.id, now)) {
    byKind[resource.kind].push({
      name: resource.name,
      type: resource.type,
      address: formatHostPort({ host: resource.host, port: resource.port }),
      portOverride: resource.portOverride ?? null,
      sources: sources.map(formatSource),
    })
  }
  const expiredGrants = (raw?.grants ?? [])
    .filter((g) => g.expires !== undefined && !(now < parseInstant(g.expires)))
    .map((g) => ({ resource: g.resource, expired: g.expires! }))
  const tokens = [...account.tokens.values()].map((t) => {
    const rec = raw?.tokens?.find((r) => r.id === t.id)
    return {
      id: t.id,
      fingerprint: t.fingerprint,
      created: rec?.created ?? null,
      expires: t.expiresAt === Infinity ? null : (rec?.expires ?? isoInstant(t.expiresAt)),
      expired: !(now < t.expiresAt),
    }
  })
  return {
    id: account.id,
    type: account.type,
    name: account.name,
    email: account.type === 'user' ? (account.email ?? account.name) : null,
    roles: [...account.roles],
    noRole: account.roles.length === 0,
    suspended: account.suspended,
    tags: account.type === 'service' ? ['service'] : [],
    passwordSet: account.type === 'user' ? credentials.get(account.id)?.passwordHash !== undefined : null,
    resources: byKind,
    expiredGrants,
    tokens,
  }
}
