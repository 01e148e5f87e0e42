/**
 * The control plane: operations behind `keyway admin` and `keyway init`. Every
 * change goes through {@link editPolicyFile} (locked, validated, atomic, with
 * comments and order kept); tokens are shown once and only their id and
 * fingerprint are stored.
 */
export { editPolicyFile, writeFileAtomic, compileEdited, type EditPolicyOptions } from './edit.js'
export { adminContextFromConfig, type AdminContext, type AdminStorage, type EditScope } from './context.js'
export { editCredentials, migratePasswords, readCredentialsOf, credentialsFileOf } from './credentials.js'
export { readPolicy, readPolicyOf, isoInstant, NAME_PATTERN, type ReadPolicy } from './document.js'
export { createService, suspendService, resumeService, deleteService, type CreateServiceOptions, type CreatedService } from './services.js'
export {
  rotateToken,
  revokeTokens,
  mintServiceToken,
  DEFAULT_ROTATION_GRACE_MS,
  type IssuedToken,
  type RotateTokenOptions,
  type RotateTokenResult,
} from './tokens.js'
export {
  createUser,
  setPassword,
  listAccounts,
  showAccount,
  formatSource,
  MIN_PASSWORD_LENGTH,
  type CreateUserOptions,
  type AccountListEntry,
  type AccountView,
  type AccountResourceView,
} from './users.js'
export {
  listRoles,
  createRole,
  deleteRole,
  grantRole,
  ungrantRole,
  assignRole,
  unassignRole,
  type RoleListEntry,
  type DeleteRoleOptions,
  type AssignRoleOptions,
} from './roles.js'
export { grantAccess, pruneGrants, revokeAccess, type GrantAccessOptions, type GrantAccessResult, type PrunedGrant } from './grants.js'
export {
  addResource,
  listResources,
  removeResource,
  setResource,
  type AddResourceOptions,
  type ResourceCredentialOptions,
  type SetResourceOptions,
  type ResourceListEntry,
  type RemoveResourceOptions,
} from './resources.js'
export { setSetting, showSettings, SETTING_NAMES, type SettingName, type SettingsView, type SetSettingResult } from './settings.js'
export { initSetup, ensureDevState, ensurePolicy, INIT_FILES, type InitSetupOptions, type InitSetupResult, type EnsureDevStateOptions } from './init.js'
