import { createHash } from 'node:crypto'
import { DocumentError } from '../errors.js'
import { parsePolicyText } from './parse.js'
import {
  RESOURCE_KINDS,
  type Account,
  type CompiledPolicy,
  type Decision,
  type EffectiveResource,
  type GrantSource,
  type Resource,
  type TokenRecord,
} from './types.js'
import { POLICY_KEYS, validatePolicy, type Locate } from './validate.js'

/** Options of {@link compilePolicy}. */
export interface CompileOptions {
  /** File name put in problems. Default `<policy>`. */
  file?: string
  /** Locates a document path in the source, for problem positions (see `ParsedPolicy.locate`). */
  locate?: Locate
  /** The policy's generation (see {@link CompiledPolicy.generation}). Default 1. */
  generation?: number
  /**
   * Tuning: role grants are kept as bitsets over resources (one memory load
   * per role when deciding) while all of them fit in this many bytes, else as
   * sorted index arrays (binary search). Default 64 MiB.
   */
  bitsetMaxBytes?: number
}

const IMMUTABLE = 'a compiled policy is immutable: edit the policy document and compile it again'

/**
 * A Map that refuses to change once built: `set`, `delete` and `clear` throw.
 * Reads are the native Map's, so lookups cost the same.
 */
class ReadonlyPolicyMap<K, V> extends Map<K, V> {
  constructor(entries: Iterable<readonly [K, V]> = []) {
    super()
    for (const [k, v] of entries) Map.prototype.set.call(this, k, v)
    Object.freeze(this)
  }

  override set(_key: K, _value: V): this {
    throw new TypeError(IMMUTABLE)
  }

  override delete(_key: K): boolean {
    throw new TypeError(IMMUTABLE)
  }

  override clear(): void {
    throw new TypeError(IMMUTABLE)
  }
}

// Every decision has the same six fields in the same order, so code reading
// decisions sees one hidden class.
function decision(
  allow: boolean,
  code: Decision['code'],
  via: GrantSource['via'] | undefined,
  role: string | undefined,
  expiresAt: number | undefined,
  expiredAt: number | undefined,
): Decision {
  return Object.freeze({ allow, code, via, role, expiresAt, expiredAt }) as unknown as Decision
}

const DENY_ACCOUNT_UNKNOWN = decision(false, 'ERR_ACCOUNT_UNKNOWN', undefined, undefined, undefined, undefined)
const DENY_ACCOUNT_SUSPENDED = decision(false, 'ERR_ACCOUNT_SUSPENDED', undefined, undefined, undefined, undefined)
const DENY_RESOURCE_UNKNOWN = decision(false, 'ERR_RESOURCE_UNKNOWN', undefined, undefined, undefined, undefined)
const DENY_GRANT = decision(false, 'ERR_GRANT_DENIED', undefined, undefined, undefined, undefined)
// A direct allow carries no per-grant data, so every direct grant shares one.
const ALLOW_DIRECT = decision(true, undefined, 'direct', undefined, undefined, undefined)
const DIRECT_SOURCE: GrantSource = Object.freeze({ via: 'direct' })
const NO_TOKENS: ReadonlyMap<string, TokenRecord> = new ReadonlyPolicyMap()
const NO_ROLE_NAMES: readonly string[] = Object.freeze([])
const KIND_ORDER = new Map<string, number>(RESOURCE_KINDS.map((k, i) => [k, i]))

// Each account is one run of a packed Int32Array, so deciding touches one or
// two cache lines for it: [flags, grant count, role count, grant base, role
// indexes..., granted resource indexes...]. `grant base` indexes the parallel
// arrays of expiries and preallocated decisions.
const HEADER = 4
const F_SUSPENDED = 1
// An account's grants are scanned linearly up to this many, else binary-searched.
const LINEAR_MAX = 8
// Role grants are bitsets over resource indexes (one load per role on decide)
// while they fit in this many bytes; beyond, sorted index arrays.
const BITSET_MAX_BYTES = 64 * 2 ** 20

/**
 * Validates a policy document and compiles it into an immutable, indexed
 * {@link CompiledPolicy}. Throws `DocumentError('ERR_POLICY_INVALID')` carrying
 * every problem found.
 *
 * `decide` on the result is two Map lookups, a scan of the account's few
 * grants, one bit test per role of the account and one comparison, and
 * allocates nothing: every decision it can return is built here, frozen,
 * ahead of time (one per role, one per temporary grant and its expiry, and
 * shared ones for direct grants and denials).
 */
export function compilePolicy(doc: unknown, options: CompileOptions = {}): CompiledPolicy {
  const result = validatePolicy(doc, { file: options.file ?? '<policy>', ...(options.locate ? { locate: options.locate } : {}) })
  if (!result.ok) throw new DocumentError('ERR_POLICY_INVALID', result.problems)
  const v = result.policy

  // Resources: name → index; everything below speaks indexes.
  const resourceList: Resource[] = v.resources.map((r) =>
    Object.freeze({ name: r.name, kind: r.kind, type: r.type, host: r.host, port: r.port, portOverride: r.portOverride, credential: r.credential }),
  )
  const resourceIndex = new Map<string, number>()
  for (let i = 0; i < resourceList.length; i++) resourceIndex.set(resourceList[i]!.name, i)
  const resources = new ReadonlyPolicyMap<string, Resource>(resourceList.map((r) => [r.name, r]))

  // Roles.
  const roleCount = v.roles.length
  const words = (resourceList.length + 31) >>> 5
  const bits = roleCount * words * 4 <= (options.bitsetMaxBytes ?? BITSET_MAX_BYTES) ? new Uint32Array(roleCount * words) : undefined
  const roleSorted: Int32Array[] = []
  const roleResources: Int32Array[] = []
  const roleAllow: Decision[] = []
  const roleSource: GrantSource[] = []
  const roleIndex = new Map<string, number>()
  const roleNames: [string, readonly string[]][] = []
  for (let i = 0; i < roleCount; i++) {
    const r = v.roles[i]!
    roleIndex.set(r.name, i)
    roleResources.push(r.resourceIndexes)
    if (bits !== undefined) {
      const base = i * words
      for (const idx of r.resourceIndexes) bits[base + (idx >>> 5)]! |= 1 << (idx & 31)
    } else roleSorted.push(r.resourceIndexes.slice().sort())
    roleAllow.push(decision(true, undefined, 'role', r.name, undefined, undefined))
    roleSource.push(Object.freeze({ via: 'role', role: r.name }))
    roleNames.push([r.name, Object.freeze(r.grants.slice())])
  }
  const roles = new ReadonlyPolicyMap(roleNames)

  // Accounts and their grants.
  const accountCount = v.accounts.length
  let packedSize = 0
  for (const a of v.accounts) packedSize += HEADER + a.roles.length + (a.grantEnd - a.grantStart)
  const packed = new Int32Array(packedSize)
  const grantRes = v.grants.resource.subarray(0, v.grants.count)
  const grantExp = v.grants.expiresAt.subarray(0, v.grants.count)
  const grantAllow: Decision[] = []
  const grantExpired: Decision[] = []
  const expiries: number[] = []
  const accountOffset = new Map<string, number>()
  const accountObjects: Account[] = []
  const byName = new Map<string, Account>()
  let o = 0
  for (let ai = 0; ai < accountCount; ai++) {
    const a = v.accounts[ai]!
    const gs = a.grantStart
    const ge = a.grantEnd
    if (ge - gs > LINEAR_MAX) sortRange(grantRes, grantExp, gs, ge)
    for (let j = gs; j < ge; j++) {
      const exp = grantExp[j]!
      if (exp === Infinity) {
        grantAllow.push(ALLOW_DIRECT)
        grantExpired.push(DENY_GRANT)
      } else {
        grantAllow.push(decision(true, undefined, 'temporary', undefined, exp, undefined))
        grantExpired.push(decision(false, 'ERR_GRANT_EXPIRED', undefined, undefined, undefined, exp))
        expiries.push(exp)
      }
    }
    accountOffset.set(a.id, o)
    packed[o] = a.suspended ? F_SUSPENDED : 0
    packed[o + 1] = ge - gs
    packed[o + 2] = a.roles.length
    packed[o + 3] = gs
    o += HEADER
    for (const r of a.roles) packed[o++] = roleIndex.get(r)!
    for (let j = gs; j < ge; j++) packed[o++] = grantRes[j]!

    let tokens = NO_TOKENS
    if (a.tokens.length > 0) {
      tokens = new ReadonlyPolicyMap(
        a.tokens.map((t) => {
          if (t.expiresAt !== Infinity) expiries.push(t.expiresAt)
          return [t.id, Object.freeze({ id: t.id, fingerprint: t.fingerprint, expiresAt: t.expiresAt })] as const
        }),
      )
    }
    const account: Account = Object.freeze({
      id: a.id,
      type: a.type,
      name: a.name,
      email: a.email,
      roles: a.roles.length === 0 ? NO_ROLE_NAMES : Object.freeze(a.roles.slice()),
      suspended: a.suspended,
      tokens,
    })
    accountObjects.push(account)
    byName.set(a.type === 'user' ? a.name.toLowerCase() : a.name, account)
  }
  const accounts = new ReadonlyPolicyMap(accountObjects.map((a) => [a.id, a]))
  const sortedExpiries = uniqueSorted(expiries)

  /** Position (in `packed`) of resource `ri` among the `n` grants at `at`, or -1. */
  const findGrant = (at: number, n: number, ri: number): number => {
    if (n <= LINEAR_MAX) {
      for (let k = at, end = at + n; k < end; k++) if (packed[k] === ri) return k
      return -1
    }
    let lo = at
    let hi = at + n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (packed[mid]! < ri) lo = mid + 1
      else hi = mid
    }
    return lo < at + n && packed[lo] === ri ? lo : -1
  }

  const roleGrants = (r: number, ri: number): boolean => {
    if (bits !== undefined) return (bits[r * words + (ri >>> 5)]! & (1 << (ri & 31))) !== 0
    const s = roleSorted[r]!
    let lo = 0
    let hi = s.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (s[mid]! < ri) lo = mid + 1
      else hi = mid
    }
    return lo < s.length && s[lo] === ri
  }

  const decide = (accountId: string, resource: string, now: number): Decision => {
    const o = accountOffset.get(accountId)
    if (o === undefined) return DENY_ACCOUNT_UNKNOWN
    if ((packed[o]! & F_SUSPENDED) !== 0) return DENY_ACCOUNT_SUSPENDED
    const ri = resourceIndex.get(resource)
    if (ri === undefined) return DENY_RESOURCE_UNKNOWN
    const roleAt = o + HEADER
    const roleEnd = roleAt + packed[o + 2]!
    // A valid temporary grant wins, then a direct grant (validation allows one only with No Role).
    const k = findGrant(roleEnd, packed[o + 1]!, ri)
    const g = k < 0 ? -1 : packed[o + 3]! + (k - roleEnd)
    if (g >= 0 && now < grantExp[g]!) return grantAllow[g]!
    for (let i = roleAt; i < roleEnd; i++) {
      const r = packed[i]!
      if (roleGrants(r, ri)) return roleAllow[r]!
    }
    return g >= 0 ? grantExpired[g]! : DENY_GRANT
  }

  const effectiveResources = (accountId: string, now: number): EffectiveResource[] => {
    const o = accountOffset.get(accountId)
    if (o === undefined || (packed[o]! & F_SUSPENDED) !== 0) return []
    const found = new Map<number, GrantSource[]>()
    const add = (ri: number, source: GrantSource): void => {
      const list = found.get(ri)
      if (list === undefined) found.set(ri, [source])
      else list.push(source)
    }
    const gs = packed[o + 3]!
    for (let g = gs, ge = gs + packed[o + 1]!; g < ge; g++) {
      const exp = grantExp[g]!
      if (!(now < exp)) continue
      add(grantRes[g]!, exp === Infinity ? DIRECT_SOURCE : Object.freeze({ via: 'temporary', expiresAt: exp }))
    }
    for (let i = o + HEADER, re = o + HEADER + packed[o + 2]!; i < re; i++) {
      const r = packed[i]!
      for (const ri of roleResources[r]!) add(ri, roleSource[r]!)
    }
    const out: EffectiveResource[] = []
    for (const [ri, sources] of found) out.push(Object.freeze({ resource: resourceList[ri]!, sources: Object.freeze(sources) }))
    out.sort(
      (x, y) =>
        KIND_ORDER.get(x.resource.kind)! - KIND_ORDER.get(y.resource.kind)! ||
        (x.resource.name < y.resource.name ? -1 : x.resource.name > y.resource.name ? 1 : 0),
    )
    return out
  }

  const nextExpiry = (now: number): number => {
    // First expiry strictly after now.
    let lo = 0
    let hi = sortedExpiries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (sortedExpiries[mid]! <= now) lo = mid + 1
      else hi = mid
    }
    return lo < sortedExpiries.length ? sortedExpiries[lo]! : Infinity
  }

  const accountByName = (name: string): Account | undefined => byName.get(name) ?? byName.get(name.toLowerCase())

  return Object.freeze({
    generation: options.generation ?? 1,
    digest: policyDigest(doc),
    settings: v.settings,
    resources,
    roles,
    accounts,
    accountByName,
    decide,
    effectiveResources,
    nextExpiry,
  })
}

/**
 * Parses and compiles policy YAML in one step; problems carry this text's
 * lines and columns. Throws `DocumentError('ERR_POLICY_INVALID')`.
 */
export function compilePolicyText(text: string, file: string, generation?: number): CompiledPolicy {
  const parsed = parsePolicyText(text, file)
  return compilePolicy(parsed.value, { file, locate: parsed.locate, ...(generation === undefined ? {} : { generation }) })
}

/** Sorts grants [start, end) by resource index, keeping each expiry with its resource. */
function sortRange(res: Int32Array, exp: Float64Array, start: number, end: number): void {
  const order = Array.from({ length: end - start }, (_, i) => start + i)
  order.sort((x, y) => res[x]! - res[y]!)
  const r = order.map((i) => res[i]!)
  const e = order.map((i) => exp[i]!)
  res.set(r, start)
  exp.set(e, start)
}

function uniqueSorted(values: number[]): Float64Array {
  const all = Float64Array.from(values).sort()
  let n = 0
  for (let i = 0; i < all.length; i++) if (n === 0 || all[i] !== all[n - 1]) all[n++] = all[i]!
  return all.slice(0, n)
}

// ---------------------------------------------------------------------------
// Digest
// ---------------------------------------------------------------------------

type Kind = keyof typeof POLICY_KEYS
const SORTED_KEYS: Record<Kind, readonly string[]> = {
  policy: [...POLICY_KEYS.policy].sort(),
  settings: [...POLICY_KEYS.settings].sort(),
  resource: [...POLICY_KEYS.resource].sort(),
  role: [...POLICY_KEYS.role].sort(),
  account: [...POLICY_KEYS.account].sort(),
  grant: [...POLICY_KEYS.grant].sort(),
  token: [...POLICY_KEYS.token].sort(),
}
const QUOTED_KEYS = Object.fromEntries(
  Object.entries(SORTED_KEYS).map(([k, keys]) => [k, keys.map((x) => JSON.stringify(x))]),
) as unknown as Record<Kind, readonly string[]>
/** Kind of the items of list-valued keys, and of mapping-valued keys. */
const CHILD_KIND: Partial<Record<string, Kind>> = {
  'policy.settings': 'settings',
  'policy.resources': 'resource',
  'policy.roles': 'role',
  'policy.accounts': 'account',
  'account.grants': 'grant',
  'account.tokens': 'token',
}

/**
 * sha256 (hex) of the canonical JSON of a validated policy document: object
 * keys sorted, no whitespace, absent keys left out. Key order, comments and
 * YAML style do not change it. Written by the document's schema (no key
 * sorting per object) and streamed into the hash, so a million grants never
 * become one string. Only meaningful for documents that passed validation
 * (unknown keys are not written).
 */
export function policyDigest(doc: unknown): string {
  const hash = createHash('sha256')
  let buf = ''
  const flush = (): void => {
    if (buf.length >= 65536) {
      hash.update(buf)
      buf = ''
    }
  }
  const q = JSON.stringify
  const value = (v: unknown, kind: Kind | undefined): void => {
    if (v === null || typeof v !== 'object') {
      buf += v === undefined ? 'null' : typeof v === 'number' && !Number.isFinite(v) ? 'null' : q(v)
      return
    }
    if (Array.isArray(v)) {
      buf += '['
      for (let i = 0; i < v.length; i++) {
        if (i > 0) buf += ','
        value(v[i], kind)
      }
      buf += ']'
      flush()
      return
    }
    if (v instanceof Date) {
      buf += q(v.toISOString())
      return
    }
    const o = v as Record<string, unknown>
    if (kind === 'grant') {
      // The hot case: a million of these.
      buf += o.expires === undefined ? `{"resource":${q(o.resource)}}` : `{"expires":${q(o.expires)},"resource":${q(o.resource)}}`
      return
    }
    const keys = kind === undefined ? Object.keys(o).sort() : SORTED_KEYS[kind]
    const quoted = kind === undefined ? keys.map((k) => q(k)) : QUOTED_KEYS[kind]
    buf += '{'
    let first = true
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!
      const x = o[k]
      if (x === undefined) continue
      buf += first ? `${quoted[i]!}:` : `,${quoted[i]!}:`
      first = false
      if (typeof x === 'string') buf += q(x)
      else value(x, kind === undefined ? undefined : CHILD_KIND[`${kind}.${k}`])
    }
    buf += '}'
  }
  const root = doc ?? {}
  value(root, typeof root === 'object' && !Array.isArray(root) ? 'policy' : undefined)
  hash.update(buf)
  return hash.digest('hex')
}
