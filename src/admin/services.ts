import { KeywayError } from '../errors.js'
import type { AccountDoc } from '../policy/index.js'
import { edit, type AdminContext } from './context.js'
import { accountEntry, checkName, describeAccount, findAccount, indexWhere, newAccountId, newNode, requireRole, sectionList } from './document.js'
import { checkPositiveDuration, mintServiceToken, type IssuedToken } from './tokens.js'

/** Options of {@link createService}. */
export interface CreateServiceOptions {
  /** A role to assign at once; without one the account has No Role. */
  role?: string
  /** Lifetime of the first token; default none (no `exp`). */
  expiresInMs?: number
}

/** What {@link createService} made. */
export interface CreatedService {
  readonly account: { readonly id: string; readonly name: string; readonly roles: readonly string[] }
  /** The first token: print it once, it cannot be shown again. */
  readonly issued: IssuedToken
}

/**
 * Creates a service account with a fresh token. The policy keeps only the
 * token's id, fingerprint and creation time; the token itself is returned once.
 *
 * The name must be unique among services and use lower-case letters, digits,
 * `-`, `_` and `.`; a name like an account id (`svc_…`, `usr_…`) is refused
 * so that names and ids never clash on the command line.
 *
 * @throws KeywayError ERR_USAGE (bad name or duration), ERR_ALREADY_EXISTS, ERR_NOT_FOUND (unknown role)
 */
export async function createService(ctx: AdminContext, name: string, options: CreateServiceOptions = {}): Promise<CreatedService> {
  checkName('service', name)
  if (/^(svc|usr)_/.test(name)) {
    throw new KeywayError('ERR_USAGE', `"${name}" looks like an account id; choose a service name that does not start with svc_ or usr_`)
  }
  checkPositiveDuration('--expires', options.expiresInMs)
  const id = newAccountId('service')
  // Issued before the lock is taken; if the edit fails, the token was never recorded and is worthless.
  const { issued, record } = await mintServiceToken(ctx, id, options.expiresInMs)
  const roles = options.role === undefined ? [] : [options.role]
  await edit(ctx, (doc, current) => {
    const clash = current.accountByName(name)
    if (clash !== undefined) {
      throw new KeywayError('ERR_ALREADY_EXISTS', `${describeAccount(clash)} already exists; service names must be unique`, { detail: { name } })
    }
    for (const role of roles) requireRole(current, role)
    const account: AccountDoc = { id, type: 'service', name, ...(roles.length > 0 ? { roles } : {}), tokens: [record] }
    sectionList(doc, 'accounts').add(newNode(doc, account))
  }, { accounts: [name] })
  return { account: { id, name, roles }, issued }
}

/**
 * Suspends a service account: it keeps its tokens and grants but reaches
 * nothing, and its open sessions are closed when the gateway reloads.
 *
 * @returns whether anything changed (false when it was already suspended).
 * @throws KeywayError ERR_NOT_FOUND
 */
export async function suspendService(ctx: AdminContext, service: string): Promise<{ id: string; changed: boolean }> {
  return setSuspended(ctx, service, true)
}

/**
 * Lifts a suspension.
 *
 * @returns whether anything changed (false when it was not suspended).
 * @throws KeywayError ERR_NOT_FOUND
 */
export async function resumeService(ctx: AdminContext, service: string): Promise<{ id: string; changed: boolean }> {
  return setSuspended(ctx, service, false)
}

async function setSuspended(ctx: AdminContext, service: string, suspended: boolean): Promise<{ id: string; changed: boolean }> {
  return edit(ctx, (doc, current) => {
    const account = findAccount(current, service, 'service')
    if (account.suspended === suspended) return { id: account.id, changed: false }
    const entry = accountEntry(doc, account)
    if (suspended) entry.set('suspended', true)
    else entry.delete('suspended')
    return { id: account.id, changed: true }
  }, { accounts: [service] })
}

/**
 * Deletes a service account with its tokens and grants. Its tokens stop
 * working when the gateway reloads the policy.
 *
 * @throws KeywayError ERR_NOT_FOUND
 */
export async function deleteService(ctx: AdminContext, service: string): Promise<{ id: string; name: string }> {
  return edit(ctx, (doc, current) => {
    const account = findAccount(current, service, 'service')
    const accounts = sectionList(doc, 'accounts')
    accounts.delete(indexWhere(accounts, 'id', account.id))
    return { id: account.id, name: account.name }
  }, { accounts: [service] })
}
