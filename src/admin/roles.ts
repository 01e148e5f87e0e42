import { isMap, type YAMLMap } from 'yaml'
import { KeywayError } from '../errors.js'
import type { AccountDoc, CompiledPolicy, GrantDoc } from '../policy/index.js'
import { edit, type AdminContext } from './context.js'
import {
  accountEntry,
  checkName,
  compareText,
  dropIfEmpty,
  entryOf,
  existingList,
  findAccount,
  indexWhere,
  listIn,
  plain,
  removeWhere,
  requireResource,
  requireRole,
  sectionList,
} from './document.js'

/** One row of {@link listRoles}: the JSON shape of `keyway admin roles list --json`. */
export interface RoleListEntry {
  readonly name: string
  /** Resources the role grants. */
  readonly grants: readonly string[]
  /** Names (service name or email) of the accounts holding the role. */
  readonly accounts: readonly string[]
}

/** Every role with its grants and holders, sorted by name. */
export function listRoles(policy: CompiledPolicy): RoleListEntry[] {
  return [...policy.roles]
    .map(([name, grants]) => ({ name, grants: [...grants], accounts: holdersOf(policy, name) }))
    .sort((a, b) => compareText(a.name, b.name))
}

/**
 * Creates an empty role.
 *
 * @throws KeywayError ERR_USAGE (bad name), ERR_ALREADY_EXISTS
 */
export async function createRole(ctx: AdminContext, name: string): Promise<{ name: string }> {
  checkName('role', name)
  return edit(ctx, (doc, current) => {
    if (current.roles.has(name)) throw new KeywayError('ERR_ALREADY_EXISTS', `role "${name}" already exists`, { detail: { role: name } })
    const entry = doc.createNode({ name }) as YAMLMap
    listIn(entry, 'grants', false)
    sectionList(doc, 'roles').add(entry)
    return { name }
  }, {})
}

/** Options of {@link deleteRole}. */
export interface DeleteRoleOptions {
  /** Also unassign the role from the accounts holding it (they may be left with No Role). */
  force?: boolean
}

/**
 * Deletes a role. While accounts hold it, deleting is refused with the list
 * of holders, because they would silently lose access; with `force` the role
 * is unassigned from them in the same edit.
 *
 * @returns the accounts the role was unassigned from.
 * @throws KeywayError ERR_NOT_FOUND, ERR_USAGE (held, without force)
 */
export async function deleteRole(ctx: AdminContext, name: string, options: DeleteRoleOptions = {}): Promise<{ name: string; unassigned: string[] }> {
  return edit(ctx, (doc, current) => {
    requireRole(current, name)
    const holders = [...current.accounts.values()].filter((a) => a.roles.includes(name))
    if (holders.length > 0 && options.force !== true) {
      throw new KeywayError(
        'ERR_USAGE',
        `role "${name}" is held by ${holders.map((a) => a.name).join(', ')}; unassign it first, or pass --force to unassign it from them and delete it`,
        { detail: { role: name, holders: holders.map((a) => a.id) } },
      )
    }
    for (const account of holders) {
      const entry = accountEntry(doc, account)
      const roles = existingList(entry, 'roles')
      if (roles !== undefined) removeWhere(roles, (item) => plain(item) === name)
      dropIfEmpty(entry, 'roles')
    }
    const roles = sectionList(doc, 'roles')
    roles.delete(indexWhere(roles, 'name', name))
    return { name, unassigned: holders.map((a) => a.name) }
  }, { accountsWithRole: name })
}

/**
 * Adds a resource to a role: every holder of the role inherits access.
 *
 * @returns changed false when the role already granted it.
 * @throws KeywayError ERR_NOT_FOUND
 */
export async function grantRole(ctx: AdminContext, role: string, resource: string): Promise<{ changed: boolean }> {
  return edit(ctx, (doc, current) => {
    requireRole(current, role)
    requireResource(current, resource)
    if (current.roles.get(role)!.includes(resource)) return { changed: false }
    const grants = listIn(entryOf(doc, 'roles', 'name', role), 'grants', false)
    grants.add(doc.createNode(resource))
    return { changed: true }
  }, {})
}

/**
 * Removes a resource from a role.
 *
 * @throws KeywayError ERR_NOT_FOUND (role, resource, or the role does not grant it)
 */
export async function ungrantRole(ctx: AdminContext, role: string, resource: string): Promise<void> {
  await edit(ctx, (doc, current) => {
    requireRole(current, role)
    if (!current.roles.get(role)!.includes(resource)) {
      throw new KeywayError('ERR_NOT_FOUND', `role "${role}" does not grant "${resource}"`, { detail: { role, resource } })
    }
    const entry = entryOf(doc, 'roles', 'name', role)
    const grants = existingList(entry, 'grants')
    if (grants !== undefined) removeWhere(grants, (item) => plain(item) === resource)
  }, {})
}

/** Options of {@link assignRole}. */
export interface AssignRoleOptions {
  /** Remove the account's permanent direct grants in the same edit instead of refusing. */
  dropDirectGrants?: boolean
}

/**
 * Assigns a role to an account. Direct grants need No Role, so an account
 * holding permanent direct grants is refused (ERR_ROLE_WITH_DIRECT_GRANTS,
 * naming them) unless `dropDirectGrants` removes them in the same edit.
 * Temporary grants stay: they are valid whatever the roles.
 *
 * @returns changed false when the account already held the role; the dropped grants.
 * @throws KeywayError ERR_NOT_FOUND, ERR_ROLE_WITH_DIRECT_GRANTS
 */
export async function assignRole(
  ctx: AdminContext,
  accountRef: string,
  role: string,
  options: AssignRoleOptions = {},
): Promise<{ changed: boolean; droppedGrants: string[] }> {
  return edit(ctx, (doc, current) => {
    const account = findAccount(current, accountRef)
    requireRole(current, role)
    if (account.roles.includes(role)) return { changed: false, droppedGrants: [] }
    const entry = accountEntry(doc, account)
    const direct = permanentGrants(entry)
    if (direct.length > 0 && options.dropDirectGrants !== true) {
      throw new KeywayError(
        'ERR_ROLE_WITH_DIRECT_GRANTS',
        `${account.name} holds permanent direct grants for ${direct.join(', ')}; a role would override them (direct grants need No Role). ` +
          `Pass --drop-direct-grants to remove them while assigning "${role}", or revoke them first (keyway admin revoke ${account.name} RESOURCE)`,
        { detail: { account: account.id, role, grants: direct } },
      )
    }
    const grants = existingList(entry, 'grants')
    if (grants !== undefined) removeWhere(grants, (item) => isMap(item) && !item.has('expires'))
    dropIfEmpty(entry, 'grants')
    listIn(entry, 'roles', false).add(doc.createNode(role))
    return { changed: true, droppedGrants: direct }
  }, { accounts: [accountRef] })
}

/**
 * Removes a role from an account. An account left without roles has No Role:
 * it reaches only what is granted to it directly.
 *
 * @throws KeywayError ERR_NOT_FOUND (account, or it does not hold the role)
 */
export async function unassignRole(ctx: AdminContext, accountRef: string, role: string): Promise<{ noRole: boolean }> {
  return edit(ctx, (doc, current) => {
    const account = findAccount(current, accountRef)
    if (!account.roles.includes(role)) {
      throw new KeywayError('ERR_NOT_FOUND', `${account.name} does not hold role "${role}"`, { detail: { account: account.id, role } })
    }
    const entry = accountEntry(doc, account)
    const roles = existingList(entry, 'roles')
    if (roles !== undefined) removeWhere(roles, (item) => plain(item) === role)
    dropIfEmpty(entry, 'roles')
    return { noRole: account.roles.length === 1 }
  }, { accounts: [accountRef] })
}

/** Resources of an account's permanent (no `expires`) direct grants, from its document entry. */
function permanentGrants(entry: YAMLMap): string[] {
  const grants = (plain<AccountDoc>(entry).grants ?? []) as (GrantDoc | null)[]
  return grants.filter((g): g is GrantDoc => g !== null && g.expires === undefined).map((g) => g.resource)
}

function holdersOf(policy: CompiledPolicy, role: string): string[] {
  return [...policy.accounts.values()].filter((a) => a.roles.includes(role)).map((a) => a.name)
}
