import { createHash } from 'node:crypto'
import { parseInstant } from './instant.js'
import { policyTooLarge, type PolicyLimits } from './limits.js'
import { packPolicy, type PackedPolicy } from './pack.js'
import type { AccountType, PolicyDoc } from './types.js'
import { ACCOUNT_PATTERNS, validatePolicy, type ValidatedAccount, type ValidatedPolicy, type ValidatedTokenRecord } from './validate.js'

/**
 * One account as a store reads it, its links already resolved to indexes
 * (see {@link RowPacker}): `[id, type, name, email, suspended, roles,
 * grants, expires, tokens]`, where `roles` are indexes into
 * {@link RowPacker.roleNames} and `grants` into {@link RowPacker.resourceNames},
 * in any order (-1: a name the frame lacks), `expires` the grants'
 * `expires` in the same order (null: a direct grant), and `tokens`
 * `[id, fingerprint, created, expires]` records; null for none.
 */
export type AccountRow = readonly [
  id: unknown,
  type: unknown,
  name: unknown,
  email: unknown,
  suspended: unknown,
  roles: readonly unknown[] | null,
  grants: readonly unknown[] | null,
  expires: readonly unknown[] | null,
  tokens: readonly (readonly unknown[])[] | null,
]

/** Options of {@link RowPacker.create}. */
export interface RowPackerOptions {
  /** What names the policy in errors. */
  readonly file: string
  readonly limits: PolicyLimits
}

const { serviceId: SERVICE_ID, userId: USER_ID, name: NAME, email: EMAIL, fingerprint: FINGERPRINT } = ACCOUNT_PATTERNS
const NONE: readonly never[] = Object.freeze([])
const q = JSON.stringify

/** Orders strings by code unit (as `canonicalPolicy` does). */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Packs a policy whose accounts arrive as rows in canonical order, straight
 * into the packed form: no policy document of the accounts, no validator
 * pass over one (a million grant objects), and the digest written as the
 * rows go by. For a store's whole load (PostgreSQL: `pg-load-worker.ts`).
 *
 * It only vouches: every rule the validator checks on an account is checked
 * here too (types, id and name patterns, unique ids and names, known roles
 * and resources, no duplicates, the No-Role rule, instants, token records,
 * the limits), and anything it cannot vouch for (a row that breaks a rule,
 * rows out of canonical order) makes {@link add} return false: the caller
 * then compiles the whole document with `packPolicyDocument`, which reports
 * every problem with its path as usual. When it vouches, the result is the
 * same `PackedPolicy`, digest included, that `packPolicyDocument` makes of
 * the canonical document (test/store/pg-load.ts compares them).
 */
export class RowPacker {
  /** The frame's resource names, in canonical order: a grant's index is its position here. */
  readonly resourceNames: readonly string[]
  /** The frame's role names, in canonical order. */
  readonly roleNames: readonly string[]
  readonly #frame: PolicyDoc
  readonly #validated: ValidatedPolicy
  readonly #options: RowPackerOptions
  readonly #quotedResources: string[]
  readonly #quotedRoles: string[]
  readonly #roleGrants: number
  readonly #accounts: ValidatedAccount[] = []
  readonly #ids = new Set<string>()
  readonly #names = new Set<string>()
  #grantResource = new Int32Array(1024)
  #grantExpires = new Float64Array(1024)
  #grantCount = 0
  #tokenCount = 0
  #prev: { type: string; display: string; id: string } | undefined
  readonly #hash = createHash('sha256')
  #buf = '{'

  private constructor(frame: PolicyDoc, validated: ValidatedPolicy, options: RowPackerOptions) {
    this.#frame = frame
    this.#validated = validated
    this.#options = options
    this.resourceNames = validated.resources.map((r) => r.name)
    this.roleNames = validated.roles.map((r) => r.name)
    this.#quotedResources = this.resourceNames.map((n) => q(n))
    this.#quotedRoles = this.roleNames.map((n) => q(n))
    let n = 0
    for (const r of validated.roles) n += r.resourceIndexes.length
    this.#roleGrants = n
  }

  /**
   * A packer for the accounts of `frame` (a canonical policy document
   * without accounts: settings, resources, roles), or undefined when the
   * frame itself is not valid (compile the whole document to report why).
   */
  static create(frame: PolicyDoc, options: RowPackerOptions): RowPacker | undefined {
    if (frame.accounts !== undefined && frame.accounts.length > 0) return undefined
    const v = validatePolicy(frame, { file: options.file })
    return v.ok ? new RowPacker(frame, v.policy, options) : undefined
  }

  /**
   * Adds the next account; false when the packer cannot vouch for it (see
   * {@link RowPacker}): stop and compile the document instead.
   */
  add(row: AccountRow): boolean {
    const [id, type, name, email, suspended, roles, grants, expires, tokens] = row
    if (typeof id !== 'string') return false
    let display: string
    let key: string
    if (type === 'service') {
      if (!SERVICE_ID.test(id) || email !== null || typeof name !== 'string' || !NAME.test(name)) return false
      display = key = name
    } else if (type === 'user') {
      if (!USER_ID.test(id) || name !== null || typeof email !== 'string' || !EMAIL.test(email)) return false
      display = email
      key = email.toLowerCase()
    } else return false
    if (suspended !== null && typeof suspended !== 'boolean') return false
    // Canonical order: services then users, by name (email), then id.
    const prev = this.#prev
    if (prev !== undefined && (byText(prev.type, type) || byText(prev.display, display) || byText(prev.id, id)) >= 0) return false
    if (this.#ids.has(id) || this.#names.has(key)) return false

    // Written as the digest writes an account: keys sorted, absent ones left out.
    let s = this.#accounts.length === 0 ? '"accounts":[{' : ',{'
    if (type === 'user') s += `"email":${q(email)},`

    let accountRoles: readonly string[] = NONE
    let roleOrder: readonly number[] | undefined
    if (roles !== null) {
      if (!Array.isArray(roles) || roles.length === 0) return false
      roleOrder = ascending(roles, this.roleNames.length)
      if (roleOrder === undefined) return false
      const names: string[] = []
      for (let j = 0; j < roles.length; j++) names.push(this.roleNames[roles[roleOrder[j]!] as number]!)
      accountRoles = names
    }

    const grantStart = this.#grantCount
    if (grants !== null) {
      const n = grants.length
      if (!Array.isArray(grants) || n === 0 || !Array.isArray(expires) || expires.length !== n) return false
      const order = ascending(grants, this.resourceNames.length)
      if (order === undefined) return false
      this.#reserve(n)
      const res = this.#grantResource
      const exp = this.#grantExpires
      let at = grantStart
      s += '"grants":['
      for (let j = 0; j < n; j++) {
        const ri = grants[order[j]!] as number
        const e = expires[order[j]!]
        if (j > 0) s += ','
        if (e === null) {
          if (accountRoles.length > 0) return false
          exp[at] = Infinity
          s += `{"resource":${this.#quotedResources[ri]!}}`
        } else {
          if (typeof e !== 'string') return false
          const t = parseInstant(e)
          if (t !== t) return false
          exp[at] = t
          s += `{"expires":${q(e)},"resource":${this.#quotedResources[ri]!}}`
        }
        res[at++] = ri
      }
      s += '],'
    } else if (expires !== null) return false

    s += `"id":${q(id)}`
    if (type === 'service') s += `,"name":${q(name)}`
    if (accountRoles.length > 0) {
      s += ',"roles":['
      for (let j = 0; j < roles!.length; j++) s += (j > 0 ? ',' : '') + this.#quotedRoles[roles![roleOrder![j]!] as number]!
      s += ']'
    }
    if (suspended !== null) s += `,"suspended":${suspended ? 'true' : 'false'}`

    let records: readonly ValidatedTokenRecord[] = NONE
    if (tokens !== null) {
      const checked = checkTokens(tokens)
      if (checked === undefined) return false
      records = checked.records
      s += `,"tokens":[${checked.json}]`
    }
    s += `,"type":${q(type)}}`

    // Only now, with every check passed: the state changes.
    this.#grantCount = grantStart + (grants === null ? 0 : grants.length)
    this.#tokenCount += records.length
    this.#ids.add(id)
    this.#names.add(key)
    this.#prev = { type, display, id }
    this.#accounts.push({
      id,
      type: type as AccountType,
      name: display,
      email: type === 'user' ? display : undefined,
      roles: accountRoles,
      suspended: suspended === true,
      grantStart,
      grantEnd: this.#grantCount,
      tokens: records,
    })
    this.#write(s)
    return true
  }

  /**
   * The packed policy of the frame and the accounts added.
   *
   * @throws KeywayError ERR_POLICY_TOO_LARGE, as `packPolicyDocument` would
   */
  finish(): PackedPolicy {
    const f = this.#frame
    const l = this.#options.limits
    const file = this.#options.file
    const resources = f.resources?.length ?? 0
    const roles = f.roles?.length ?? 0
    const accounts = this.#accounts.length
    const grants = this.#roleGrants + this.#grantCount
    if (resources > l.maxResources) throw policyTooLarge(file, 'maxResources', resources, l.maxResources, 'resources')
    if (roles > l.maxRoles) throw policyTooLarge(file, 'maxRoles', roles, l.maxRoles, 'roles')
    if (accounts > l.maxAccounts) throw policyTooLarge(file, 'maxAccounts', accounts, l.maxAccounts, 'accounts')
    if (grants > l.maxGrants) throw policyTooLarge(file, 'maxGrants', grants, l.maxGrants, 'grants (role grants plus account grants)')
    if (this.#tokenCount > l.maxTokens) throw policyTooLarge(file, 'maxTokens', this.#tokenCount, l.maxTokens, 'token records')

    let first = accounts === 0
    if (!first) this.#write(']')
    for (const k of ['resources', 'roles', 'settings', 'version'] as const) {
      const v = f[k]
      if (v === undefined) continue
      this.#write(`${first ? '' : ','}${q(k)}:${sortedJson(v)}`)
      first = false
    }
    this.#write('}')
    this.#hash.update(this.#buf)
    this.#buf = ''
    const digest = this.#hash.digest('hex')
    const v = this.#validated
    return packPolicy(
      {
        settings: v.settings,
        resources: v.resources,
        roles: v.roles,
        accounts: this.#accounts,
        grants: { count: this.#grantCount, resource: this.#grantResource, expiresAt: this.#grantExpires },
      },
      digest,
    )
  }

  #write(s: string): void {
    this.#buf += s
    if (this.#buf.length >= 65536) {
      this.#hash.update(this.#buf)
      this.#buf = ''
    }
  }

  /** Room for `n` more grants. */
  #reserve(n: number): void {
    const need = this.#grantCount + n
    if (need <= this.#grantResource.length) return
    let size = this.#grantResource.length * 2
    while (size < need) size *= 2
    const res = new Int32Array(size)
    res.set(this.#grantResource.subarray(0, this.#grantCount))
    const exp = new Float64Array(size)
    exp.set(this.#grantExpires.subarray(0, this.#grantCount))
    this.#grantResource = res
    this.#grantExpires = exp
  }
}

const IDENTITY: number[] = []

/**
 * The positions of `xs` in ascending order of value (read the first
 * `xs.length`: an already sorted list gets a shared, longer identity), when every value is an
 * index below `limit` and none repeats (a repeat is a duplicate grant or
 * role: the validator's to report); undefined otherwise. An account holds a
 * few: already sorted (the usual case) costs one pass, otherwise an
 * insertion sort.
 */
function ascending(xs: readonly unknown[], limit: number): readonly number[] | undefined {
  const n = xs.length
  let sorted = true
  for (let j = 0; j < n; j++) {
    const x = xs[j]
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= limit) return undefined
    if (j > 0 && x <= (xs[j - 1] as number)) sorted = false
  }
  if (sorted) {
    while (IDENTITY.length < n) IDENTITY.push(IDENTITY.length)
    return IDENTITY
  }
  const order = Array.from({ length: n }, (_, j) => j)
  for (let j = 1; j < n; j++) {
    const o = order[j]!
    const v = xs[o] as number
    let k = j - 1
    while (k >= 0 && (xs[order[k]!] as number) > v) {
      order[k + 1] = order[k]!
      k--
    }
    order[k + 1] = o
  }
  for (let j = 1; j < n; j++) if (xs[order[j]!] === xs[order[j - 1]!]) return undefined
  return order
}

/** An account's token records checked as the validator checks them, in canonical order, with their digest JSON; undefined when one breaks a rule. */
function checkTokens(tokens: readonly (readonly unknown[])[]): { records: ValidatedTokenRecord[]; json: string } | undefined {
  if (!Array.isArray(tokens) || tokens.length === 0) return undefined
  const list = tokens.length > 1 ? [...tokens].sort((x, y) => byText(`${(x[2] as string | null) ?? ''}\u0000${String(x[0])}`, `${(y[2] as string | null) ?? ''}\u0000${String(y[0])}`)) : tokens
  const records: ValidatedTokenRecord[] = []
  const seen = new Set<string>()
  let json = ''
  for (const t of list) {
    if (!Array.isArray(t)) return undefined
    const [id, fingerprint, created, expires] = t as unknown[]
    if (typeof id !== 'string' || id === '' || seen.has(id)) return undefined
    if (typeof fingerprint !== 'string' || !FINGERPRINT.test(fingerprint)) return undefined
    if (created !== null && (typeof created !== 'string' || Number.isNaN(parseInstant(created)))) return undefined
    let expiresAt = Infinity
    if (expires !== null) {
      if (typeof expires !== 'string') return undefined
      expiresAt = parseInstant(expires)
      if (Number.isNaN(expiresAt)) return undefined
    }
    seen.add(id)
    records.push({ id, fingerprint, expiresAt })
    json +=
      (json === '' ? '{' : ',{') +
      (created === null ? '' : `"created":${q(created)},`) +
      (expires === null ? '' : `"expires":${q(expires)},`) +
      `"fingerprint":${q(fingerprint)},"id":${q(id)}}`
  }
  return { records, json }
}

/** JSON with every object's keys sorted and undefined values left out: how the digest writes the (valid) frame. */
function sortedJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return v === undefined || (typeof v === 'number' && !Number.isFinite(v)) ? 'null' : q(v)
  if (Array.isArray(v)) return `[${v.map((x) => sortedJson(x)).join(',')}]`
  const o = v as Record<string, unknown>
  const parts: string[] = []
  for (const k of Object.keys(o).sort()) if (o[k] !== undefined) parts.push(`${q(k)}:${sortedJson(o[k])}`)
  return `{${parts.join(',')}}`
}
