/**
 * The policy model of Keyway: resources, roles, accounts and their grants,
 * parsed from YAML, validated (every problem at once, located), and compiled
 * into an immutable policy whose `decide` allocates nothing.
 */
export { RESOURCE_KINDS } from './types.js'
export type {
  Account,
  AccountDoc,
  AccountType,
  CompiledPolicy,
  Decision,
  EffectiveResource,
  GrantDoc,
  GrantSource,
  PolicyDoc,
  Resource,
  ResourceDoc,
  ResourceKind,
  RoleDoc,
  Settings,
  SettingsDoc,
  TokenRecord,
  TokenRecordDoc,
} from './types.js'
export { parsePolicyText, locateIn } from './parse.js'
export { loadPolicyFile } from './load.js'
export type { ParsedPolicy } from './parse.js'
export { formatPath } from '../yaml/document.js'
export { validatePolicy, parseInstant, DEFAULT_PORT_RANGE, NO_ROLE_MESSAGE, POLICY_KEYS } from './validate.js'
export type {
  Locate,
  PolicyPath,
  SourcePosition,
  ValidateOptions,
  ValidationResult,
  ValidatedPolicy,
  ValidatedResource,
  ValidatedRole,
  ValidatedAccount,
  ValidatedTokenRecord,
  ValidatedGrants,
} from './validate.js'
export { compilePolicy, compilePolicyText, policyDigest } from './compile.js'
export type { CompileOptions } from './compile.js'
export { explainAccess } from './explain.js'
export type { AccessExplanation } from './explain.js'
export { DEFAULT_POLICY_LIMITS } from './limits.js'
export type { PolicyLimits } from './limits.js'
export { packPolicyFile } from './pack-file.js'
export type { PackFileOptions } from './pack-file.js'
export { packPolicyFileHere } from './pack-here.js'
export type { PackJob } from './pack-here.js'
export type { PackedPolicy } from './pack.js'
export { PolicyStore } from './store.js'
export type { PolicyStoreOptions, ReloadResult } from './store.js'
