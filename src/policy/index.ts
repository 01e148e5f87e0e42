/**
 * The policy model of Keyway: resources, roles, accounts and their grants,
 * parsed from YAML, validated (every problem at once, located), and compiled
 * into an immutable policy whose `decide` allocates nothing.
 */
export { CREDENTIAL_TYPES, RESOURCE_KINDS, UPSTREAM_TLS_MODES } from './types.js'
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
  ResourceCredential,
  ResourceDoc,
  ResourceKind,
  RoleDoc,
  Settings,
  SettingsDoc,
  TokenRecord,
  TokenRecordDoc,
  UpstreamTlsMode,
} from './types.js'
export { parsePolicyText, locateIn } from './parse.js'
export { loadPolicyFile } from './load.js'
export type { ParsedPolicy } from './parse.js'
export { formatPath } from '../yaml/index.js'
export { parseInstant } from './instant.js'
export { validatePolicy, DEFAULT_PORT_RANGE, NO_ROLE_MESSAGE, POLICY_KEYS } from './validate.js'
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
export { compilePolicy, compilePolicyText, packPolicyDocument, policyDigest } from './compile.js'
export { assemblePolicy } from './assemble.js'
export type { CompileOptions } from './compile.js'
export { explainAccess } from './explain.js'
export type { AccessExplanation } from './explain.js'
export { DEFAULT_POLICY_LIMITS, policyTooLarge } from './limits.js'
export type { PolicyLimits } from './limits.js'
export { packPolicyFile } from './pack-file.js'
export type { PackFileOptions } from './pack-file.js'
export { packPolicyFileHere } from './pack-here.js'
export type { PackJob } from './pack-here.js'
export type { PackedPolicy } from './pack.js'
export { packedTransferList } from './pack.js'
export { RowPacker } from './pack-rows.js'
export type { AccountRow, RowPackerOptions } from './pack-rows.js'
export { PolicyStore } from './store.js'
export { ReloadQueue } from './reload-queue.js'
export type { PolicyStoreOptions, ReloadResult } from './store.js'
export { patchDepth, patchDocument, patchPolicy, policyFrame } from './patch.js'
export type { PolicyFrame } from './patch.js'
