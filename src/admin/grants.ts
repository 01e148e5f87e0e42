import { isMap, type YAMLMap } from 'yaml'
import { KeywayError } from '../errors.js'
import type { GrantDoc } from '../policy/index.js'
import { edit, type AdminContext } from './context.js'
import {
  accountEntry,
  dropIfEmpty,
  existingList,
  findAccount,
  isoInstant,
  listIn,
  newNode,
  plain,
  removeWhere,
  requireResource,
  rootMap,
  wholeSecond,
} from './document.js'
import { checkPositiveDuration } from './tokens.js'

/** Options of {@link grantAccess}. */
export interface GrantAccessOptions {
  /** Temporary access for this long; without it the grant is permanent (direct). */
  forMs?: number
}

/** What {@link grantAccess} did. */
export interface GrantAccessResult {
  /** `direct` (permanent) or `temporary`. */
  readonly kind: 'direct' | 'temporary'
  /** ISO end of a temporary grant. */
  readonly expires?: string
  /** False when the account already held exactly this access. */
  readonly changed: boolean
}

/**
 * Grants an account access to one resource.
 *
 * Without `forMs` the grant is direct and permanent, which the seed allows
 * only for accounts with No Role: an account holding a role is refused with
 * ERR_DIRECT_GRANT_WITH_ROLE. With `forMs` the grant is temporary access,
 * allowed whatever the roles, ending at now + forMs (an existing temporary
 * grant for the resource gets the new end). A permanent grant already covers
 * any temporary one, so that case changes nothing.
 *
 * @throws KeywayError ERR_NOT_FOUND, ERR_DIRECT_GRANT_WITH_ROLE, ERR_USAGE
 */
export async function grantAccess(ctx: AdminContext, accountRef: string, resource: string, options: GrantAccessOptions = {}): Promise<GrantAccessResult> {
  checkPositiveDuration('--for', options.forMs)
  return edit(ctx, (doc, current) => {
    const account = findAccount(current, accountRef)
    requireResource(current, resource)
    const entry = accountEntry(doc, account)
    const existing = grantItem(entry, resource)
    const existingExpires = existing === undefined ? undefined : plain<GrantDoc>(existing).expires
    if (options.forMs === undefined) {
      if (account.roles.length > 0) {
        throw new KeywayError(
          'ERR_DIRECT_GRANT_WITH_ROLE',
          `${account.name} has the role${account.roles.length > 1 ? 's' : ''} ${account.roles.join(', ')}: a permanent direct grant needs No Role. ` +
            `Use --for DURATION for temporary access, remove the role (keyway admin roles unassign ${account.name} ROLE), or grant ${resource} to the role`,
          { detail: { account: account.id, resource, roles: [...account.roles] } },
        )
      }
      if (existing === undefined) listIn(entry, 'grants', true).add(newNode(doc, { resource }))
      else if (existingExpires !== undefined) existing.delete('expires')
      return { kind: 'direct', changed: existing === undefined || existingExpires !== undefined }
    }
    if (existing !== undefined && existingExpires === undefined) return { kind: 'direct', changed: false }
    const expires = isoInstant(wholeSecond(ctx.clock.now() + options.forMs))
    if (existing === undefined) listIn(entry, 'grants', true).add(newNode(doc, { resource, expires }))
    else existing.set('expires', expires)
    return { kind: 'temporary', expires, changed: existingExpires !== expires }
  }, { accounts: [accountRef] })
}

/**
 * Removes an account's direct and temporary grants for a resource. Access
 * inherited from a role is not a grant of the account: change the role.
 *
 * @returns what was removed.
 * @throws KeywayError ERR_NOT_FOUND (account, resource, or no such grant)
 */
export async function revokeAccess(ctx: AdminContext, accountRef: string, resource: string): Promise<{ removed: ('direct' | 'temporary')[] }> {
  return edit(ctx, (doc, current) => {
    const account = findAccount(current, accountRef)
    const entry = accountEntry(doc, account)
    const grants = existingList(entry, 'grants')
    const removed: ('direct' | 'temporary')[] = []
    if (grants !== undefined) {
      removeWhere(grants, (item) => {
        const g = plain<GrantDoc>(item)
        if (g.resource !== resource) return false
        removed.push(g.expires === undefined ? 'direct' : 'temporary')
        return true
      })
    }
    if (removed.length === 0) {
      const viaRoles = account.roles.filter((r) => current.roles.get(r)?.includes(resource))
      const why =
        viaRoles.length > 0
          ? `; its access comes from the role${viaRoles.length > 1 ? 's' : ''} ${viaRoles.join(', ')} (keyway admin roles unassign or roles ungrant)`
          : ''
      throw new KeywayError('ERR_NOT_FOUND', `${account.name} holds no direct or temporary grant for "${resource}"${why}`, {
        detail: { account: account.id, resource },
      })
    }
    dropIfEmpty(entry, 'grants')
    return { removed }
  }, { accounts: [accountRef] })
}

/** One temporary grant removed by {@link pruneGrants}. */
export interface PrunedGrant {
  readonly account: string
  readonly resource: string
  /** ISO instant it ended. */
  readonly expires: string
}

/**
 * Removes every temporary grant that has expired (its end is at or before
 * now): they grant nothing any more, and the gateway never needs them.
 * Writes the policy only when something was removed.
 *
 * @returns the grants removed, by account name and resource.
 */
export async function pruneGrants(ctx: AdminContext): Promise<{ pruned: PrunedGrant[] }> {
  const now = ctx.clock.now()
  return edit(ctx, (doc, current) => {
    const pruned: PrunedGrant[] = []
    for (const entry of existingList(rootMap(doc), 'accounts')?.items ?? []) {
      if (!isMap(entry)) continue
      const grants = existingList(entry, 'grants')
      if (grants === undefined) continue
      const id = entry.get('id')
      const name = (typeof id === 'string' ? current.accounts.get(id)?.name : undefined) ?? String(id)
      removeWhere(grants, (item) => {
        const g = plain<GrantDoc>(item)
        if (g.expires === undefined || !(Date.parse(g.expires) <= now)) return false
        pruned.push({ account: name, resource: g.resource, expires: g.expires })
        return true
      })
      dropIfEmpty(entry, 'grants')
    }
    return { pruned }
  }, { accountsWithGrantEndedBy: now })
}

function grantItem(entry: YAMLMap, resource: string): YAMLMap | undefined {
  const grants = existingList(entry, 'grants')
  const item = grants?.items.find((g) => isMap(g) && g.get('resource') === resource)
  return isMap(item) ? item : undefined
}
