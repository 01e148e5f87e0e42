import {
  addResource,
  assignRole,
  createRole,
  createService,
  deleteRole,
  deleteService,
  grantAccess,
  grantRole,
  listAccounts,
  listResources,
  listRoles,
  readCredentialsOf,
  readPolicyOf,
  removeResource,
  revokeAccess,
  revokeTokens,
  rotateToken,
  setSetting,
  showAccount,
  showSettings,
  unassignRole,
  ungrantRole,
  type AccountListEntry,
  type AccountView,
  type AddResourceOptions,
  type AdminContext,
  type CreatedService,
  type GrantAccessResult,
  type ResourceListEntry,
  type RoleListEntry,
  type RotateTokenResult,
  type SettingsView,
} from '../admin/index.js'
import type { Credentials } from '../credentials/index.js'
import type { CompiledPolicy } from '../policy/index.js'

/**
 * The admin operations as domain operations, whatever store holds the
 * policy: the file (through the `keyway admin` operations: locked, validated,
 * atomic) or PostgreSQL (the same operations, run in one serialized
 * transaction). On the file every edit validates the whole policy; on
 * PostgreSQL an operation that names the accounts it touches (`EditScope`)
 * validates the settings, resources, roles and those accounts, and the
 * database's constraints check what spans accounts: the same refusals with
 * the same error codes.
 */
export interface AdminOperations {
  /** The policy as it is now (read fresh: the API must never answer from a stale copy). */
  policy(): Promise<CompiledPolicy>
  /** User credentials (password hashes, admin flags). */
  credentials(): Promise<Credentials>
  accounts(): Promise<AccountListEntry[]>
  account(ref: string, now: number): Promise<AccountView>
  roles(): Promise<RoleListEntry[]>
  resources(): Promise<ResourceListEntry[]>
  settings(): Promise<SettingsView>
  createService(name: string, role?: string): Promise<CreatedService>
  deleteService(name: string): Promise<{ id: string; name: string }>
  rotateToken(service: string, graceMs?: number): Promise<RotateTokenResult>
  revokeTokens(service: string, tokenId?: string): Promise<{ revoked: string[] }>
  createRole(name: string): Promise<{ name: string }>
  deleteRole(name: string, force: boolean): Promise<{ name: string; unassigned: string[] }>
  grantRole(role: string, resource: string): Promise<{ changed: boolean }>
  ungrantRole(role: string, resource: string): Promise<void>
  assignRole(account: string, role: string, dropDirectGrants: boolean): Promise<{ changed: boolean; droppedGrants: string[] }>
  unassignRole(account: string, role: string): Promise<{ noRole: boolean }>
  grant(account: string, resource: string, forMs?: number): Promise<GrantAccessResult>
  revoke(account: string, resource: string): Promise<{ removed: ('direct' | 'temporary')[] }>
  addResource(options: AddResourceOptions): Promise<unknown>
  removeResource(name: string, force: boolean): Promise<unknown>
  setSetting(name: 'port-overrides' | 'auto-connect' | 'port-range', value: string): Promise<unknown>
  /** When each of `tokenIds` was last used (epoch ms), for those the store knows; absent: the store keeps none (the file). */
  tokensLastUsed?(tokenIds: readonly string[]): Promise<ReadonlyMap<string, number>>
}

/**
 * {@link AdminOperations} on an admin context: the operations of `keyway
 * admin`. With a plain context they edit the policy file; with a context
 * whose `storage` is a database store they run against it, unchanged.
 */
export class ContextAdminOperations implements AdminOperations {
  readonly #ctx: AdminContext

  constructor(ctx: AdminContext) {
    this.#ctx = ctx
  }

  async policy(): Promise<CompiledPolicy> {
    return (await readPolicyOf(this.#ctx)).policy
  }

  credentials(): Promise<Credentials> {
    return readCredentialsOf(this.#ctx)
  }

  async accounts(): Promise<AccountListEntry[]> {
    return listAccounts(await this.policy())
  }

  async account(ref: string, now: number): Promise<AccountView> {
    return showAccount(await readPolicyOf(this.#ctx, { accounts: [ref] }), ref, now, await this.credentials())
  }

  async roles(): Promise<RoleListEntry[]> {
    return listRoles(await this.policy())
  }

  async resources(): Promise<ResourceListEntry[]> {
    return listResources(await this.policy())
  }

  async settings(): Promise<SettingsView> {
    return showSettings(await this.policy())
  }

  createService(name: string, role?: string): Promise<CreatedService> {
    return createService(this.#ctx, name, role === undefined ? {} : { role })
  }

  deleteService(name: string): Promise<{ id: string; name: string }> {
    return deleteService(this.#ctx, name)
  }

  rotateToken(service: string, graceMs?: number): Promise<RotateTokenResult> {
    return rotateToken(this.#ctx, service, graceMs === undefined ? {} : { graceMs })
  }

  revokeTokens(service: string, tokenId?: string): Promise<{ revoked: string[] }> {
    return revokeTokens(this.#ctx, service, tokenId)
  }

  createRole(name: string): Promise<{ name: string }> {
    return createRole(this.#ctx, name)
  }

  deleteRole(name: string, force: boolean): Promise<{ name: string; unassigned: string[] }> {
    return deleteRole(this.#ctx, name, { force })
  }

  grantRole(role: string, resource: string): Promise<{ changed: boolean }> {
    return grantRole(this.#ctx, role, resource)
  }

  ungrantRole(role: string, resource: string): Promise<void> {
    return ungrantRole(this.#ctx, role, resource)
  }

  assignRole(account: string, role: string, dropDirectGrants: boolean): Promise<{ changed: boolean; droppedGrants: string[] }> {
    return assignRole(this.#ctx, account, role, { dropDirectGrants })
  }

  unassignRole(account: string, role: string): Promise<{ noRole: boolean }> {
    return unassignRole(this.#ctx, account, role)
  }

  grant(account: string, resource: string, forMs?: number): Promise<GrantAccessResult> {
    return grantAccess(this.#ctx, account, resource, forMs === undefined ? {} : { forMs })
  }

  revoke(account: string, resource: string): Promise<{ removed: ('direct' | 'temporary')[] }> {
    return revokeAccess(this.#ctx, account, resource)
  }

  addResource(options: AddResourceOptions): Promise<unknown> {
    return addResource(this.#ctx, options)
  }

  removeResource(name: string, force: boolean): Promise<unknown> {
    return removeResource(this.#ctx, name, { force })
  }

  setSetting(name: 'port-overrides' | 'auto-connect' | 'port-range', value: string): Promise<unknown> {
    return setSetting(this.#ctx, name, value)
  }
}
