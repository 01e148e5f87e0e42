import { KeywayError } from '../errors.js'

/**
 * Bounds on a policy, checked before it is validated and compiled: a policy
 * over any of them is refused with `ERR_POLICY_TOO_LARGE` (a running gateway
 * keeps its last good policy). They bound the time and memory a reload may
 * take; the defaults admit 100,000 accounts and 1,000,000 grants.
 */
export interface PolicyLimits {
  /** Size of the policy file, bytes. */
  readonly maxBytes: number
  /** Entries of `accounts:`. */
  readonly maxAccounts: number
  /** Entries of `roles:`. */
  readonly maxRoles: number
  /** Entries of `resources:`. */
  readonly maxResources: number
  /** Role grants plus account grants. */
  readonly maxGrants: number
  /** Token records of all accounts. */
  readonly maxTokens: number
}

/** The default {@link PolicyLimits}. */
export const DEFAULT_POLICY_LIMITS: PolicyLimits = Object.freeze({
  maxBytes: 128 * 2 ** 20,
  maxAccounts: 100_000,
  maxRoles: 10_000,
  maxResources: 100_000,
  maxGrants: 1_000_000,
  maxTokens: 200_000,
})

/** The setting under which each limit is configured, for error messages. */
const SETTING: Record<keyof PolicyLimits, string> = {
  maxBytes: 'policyLimits.maxBytes',
  maxAccounts: 'policyLimits.maxAccounts',
  maxRoles: 'policyLimits.maxRoles',
  maxResources: 'policyLimits.maxResources',
  maxGrants: 'policyLimits.maxGrants',
  maxTokens: 'policyLimits.maxTokens',
}

/** The error for a policy over `limit`: names the count, the limit and the setting that raises it. */
export function policyTooLarge(file: string, limit: keyof PolicyLimits, found: number, max: number, what: string): KeywayError {
  return new KeywayError(
    'ERR_POLICY_TOO_LARGE',
    `policy ${file} has ${found} ${what}, over the limit of ${max}: split the policy, remove unused entries, or raise ${SETTING[limit]}`,
    { detail: { file, limit, found, max } },
  )
}

/**
 * Counts the entities of a parsed (not yet validated) policy document and
 * throws `ERR_POLICY_TOO_LARGE` for the first count over its limit. Entries
 * of the wrong shape are counted as they are (validation reports them).
 */
export function checkPolicyLimits(doc: unknown, limits: PolicyLimits, file: string): void {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return
  const d = doc as Record<string, unknown>
  const list = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : [])
  const resources = list(d.resources)
  if (resources.length > limits.maxResources) throw policyTooLarge(file, 'maxResources', resources.length, limits.maxResources, 'resources')
  const roles = list(d.roles)
  if (roles.length > limits.maxRoles) throw policyTooLarge(file, 'maxRoles', roles.length, limits.maxRoles, 'roles')
  const accounts = list(d.accounts)
  if (accounts.length > limits.maxAccounts) throw policyTooLarge(file, 'maxAccounts', accounts.length, limits.maxAccounts, 'accounts')
  let grants = 0
  let tokens = 0
  for (const r of roles) if (r !== null && typeof r === 'object') grants += list((r as Record<string, unknown>).grants).length
  for (const a of accounts) {
    if (a === null || typeof a !== 'object') continue
    grants += list((a as Record<string, unknown>).grants).length
    tokens += list((a as Record<string, unknown>).tokens).length
  }
  if (grants > limits.maxGrants) throw policyTooLarge(file, 'maxGrants', grants, limits.maxGrants, 'grants (role grants plus account grants)')
  if (tokens > limits.maxTokens) throw policyTooLarge(file, 'maxTokens', tokens, limits.maxTokens, 'token records')
}
