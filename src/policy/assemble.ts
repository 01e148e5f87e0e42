import { setImmediate as nextTurn } from 'node:timers/promises'
import { performance } from 'node:perf_hooks'
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
import { ACCOUNT_STRIDE, F_SUSPENDED, F_USER, LINEAR_MAX, RESOURCE_STRIDE, RUN_HEADER, type PackedPolicy } from './pack.js'
import { StringTable } from './string-table.js'

const IMMUTABLE = 'a compiled policy is immutable: edit the policy document and compile it again'

/**
 * A Map that refuses to change once built: `set`, `delete` and `clear` throw.
 * Reads are the native Map's, so lookups cost the same. Filled with
 * {@link fill} (freezing an object does not freeze a Map's entries).
 */
class ReadonlyPolicyMap<K, V> extends Map<K, V> {
  constructor() {
    super()
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

const fill = <K, V>(map: Map<K, V>, key: K, value: V): void => {
  Map.prototype.set.call(map, key, value)
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

/** Items built between two checks of the time spent (a check is one `performance.now()`). */
const STEP = 256

/**
 * Wraps a packed policy into a {@link CompiledPolicy}, yielding every few
 * hundred items so a caller can spread the work over turns of the event loop
 * ({@link assemblePolicy}) or run it at once ({@link assemblePolicySync}).
 * Builds the maps and the frozen objects `decide` returns; the typed arrays
 * are used as they are.
 *
 * `decide` on the result is two Map lookups, a scan of the account's few
 * grants, one bit test per role of the account and one comparison, and
 * allocates nothing once warm: every decision it returns is frozen and
 * kept (one per role, shared ones for direct grants and denials, built
 * here; those of a temporary grant and its expiry built at its first
 * decision, then the same object every time).
 */
export function* assembleSteps(p: PackedPolicy, generation: number): Generator<void, CompiledPolicy, void> {
  const table = new StringTable(p.strings, p.stringEnds)
  const str = (i: number): string => table.get(i)
  const opt = (i: number): string | undefined => (i < 0 ? undefined : str(i))

  // Resources: name → index; everything below speaks indexes.
  const resourceList: Resource[] = []
  const resourceIndex = new Map<string, number>()
  const resources = new ReadonlyPolicyMap<string, Resource>()
  const credentials = new Map(p.credentials)
  for (let i = 0, o = 0; i < p.resourceCount; i++, o += RESOURCE_STRIDE) {
    const override = p.resources[o + 5]!
    const r: Resource = Object.freeze({
      name: str(p.resources[o]!),
      kind: RESOURCE_KINDS[p.resources[o + 3]!]!,
      type: str(p.resources[o + 1]!),
      host: str(p.resources[o + 2]!),
      port: p.resources[o + 4]!,
      portOverride: override < 0 ? undefined : override,
      credential: credentials.get(i),
    })
    resourceList.push(r)
    resourceIndex.set(r.name, i)
    fill(resources, r.name, r)
    if (i % STEP === STEP - 1) yield
  }

  // Roles.
  const { roleBits: bits, roleSorted, roleWords: words, roleGrants, roleGrantEnds } = p
  const roleAllow: Decision[] = []
  const roleSource: GrantSource[] = []
  const roleNames: string[] = []
  const roles = new ReadonlyPolicyMap<string, readonly string[]>()
  for (let i = 0; i < p.roleCount; i++) {
    const name = str(p.roleNames[i]!)
    roleNames.push(name)
    const grants: string[] = []
    for (let k = roleGrantEnds[i]!, end = roleGrantEnds[i + 1]!; k < end; k++) grants.push(resourceList[roleGrants[k]!]!.name)
    fill(roles, name, Object.freeze(grants))
    roleAllow.push(decision(true, undefined, 'role', name, undefined, undefined))
    roleSource.push(Object.freeze({ via: 'role', role: name }))
    if (i % STEP === STEP - 1) yield
  }

  // Account grants: the decisions they return. A direct grant's are shared; a temporary
  // grant's two are built the first time it is decided and kept, so deciding allocates
  // nothing after that, and a load builds nothing per grant: no two million objects nobody
  // may ask for, and no array of a million slots (growing one moved megabytes in one step).
  const grantRes = p.grantResources
  const grantExp = p.grantExpires
  const temporaryAllow = new Map<number, Decision>()
  const temporaryExpired = new Map<number, Decision>()
  const allowGrant = (g: number): Decision => {
    const d = decision(true, undefined, 'temporary', undefined, grantExp[g]!, undefined)
    temporaryAllow.set(g, d)
    return d
  }
  const expiredGrant = (g: number): Decision => {
    const d = decision(false, 'ERR_GRANT_EXPIRED', undefined, undefined, undefined, grantExp[g]!)
    temporaryExpired.set(g, d)
    return d
  }

  // Accounts.
  const packed = p.accountRuns
  const accountOffset = new Map<string, number>()
  const accounts = new ReadonlyPolicyMap<string, Account>()
  const byName = new Map<string, Account>()
  for (let ai = 0, ao = 0; ai < p.accountCount; ai++, ao += ACCOUNT_STRIDE) {
    const id = str(p.accounts[ao]!)
    const o = p.accounts[ao + 3]!
    const flags = packed[o]!
    const roleCount = packed[o + 2]!
    let accountRoles = NO_ROLE_NAMES
    if (roleCount > 0) {
      const names: string[] = new Array(roleCount)
      for (let k = 0; k < roleCount; k++) names[k] = roleNames[packed[o + RUN_HEADER + k]!]!
      accountRoles = Object.freeze(names)
    }
    let tokens = NO_TOKENS
    const ts = p.accounts[ao + 4]!
    const te = p.accounts[ao + 5]!
    if (te > ts) {
      const map = new ReadonlyPolicyMap<string, TokenRecord>()
      for (let t = ts; t < te; t++) {
        const tid = str(p.tokens[2 * t]!)
        fill(map, tid, Object.freeze({ id: tid, fingerprint: str(p.tokens[2 * t + 1]!), expiresAt: p.tokenExpires[t]! }))
      }
      tokens = map
    }
    const user = (flags & F_USER) !== 0
    const account: Account = Object.freeze({
      id,
      type: user ? 'user' : 'service',
      name: str(p.accounts[ao + 1]!),
      email: opt(p.accounts[ao + 2]!),
      roles: accountRoles,
      suspended: (flags & F_SUSPENDED) !== 0,
      tokens,
    })
    accountOffset.set(id, o)
    fill(accounts, id, account)
    byName.set(user ? account.name.toLowerCase() : account.name, account)
    if (ai % STEP === STEP - 1) yield
  }
  const sortedExpiries = p.expiries

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

  const roleGrantsResource = (r: number, ri: number): boolean => {
    if (bits !== undefined) return (bits[r * words + (ri >>> 5)]! & (1 << (ri & 31))) !== 0
    const s = roleSorted!
    let lo = roleGrantEnds[r]!
    let hi = roleGrantEnds[r + 1]!
    const end = hi
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (s[mid]! < ri) lo = mid + 1
      else hi = mid
    }
    return lo < end && s[lo] === ri
  }

  const decide = (accountId: string, resource: string, now: number): Decision => {
    const o = accountOffset.get(accountId)
    if (o === undefined) return DENY_ACCOUNT_UNKNOWN
    if ((packed[o]! & F_SUSPENDED) !== 0) return DENY_ACCOUNT_SUSPENDED
    const ri = resourceIndex.get(resource)
    if (ri === undefined) return DENY_RESOURCE_UNKNOWN
    const roleAt = o + RUN_HEADER
    const roleEnd = roleAt + packed[o + 2]!
    // A valid temporary grant wins, then a direct grant (validation allows one only with No Role).
    const k = findGrant(roleEnd, packed[o + 1]!, ri)
    const g = k < 0 ? -1 : packed[o + 3]! + (k - roleEnd)
    if (g >= 0 && now < grantExp[g]!) return grantExp[g] === Infinity ? ALLOW_DIRECT : (temporaryAllow.get(g) ?? allowGrant(g))
    for (let i = roleAt; i < roleEnd; i++) {
      const r = packed[i]!
      if (roleGrantsResource(r, ri)) return roleAllow[r]!
    }
    if (g < 0) return DENY_GRANT
    // A direct grant never ends; only a temporary one has an expired decision.
    return grantExp[g] === Infinity ? DENY_GRANT : (temporaryExpired.get(g) ?? expiredGrant(g))
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
    for (let i = o + RUN_HEADER, re = o + RUN_HEADER + packed[o + 2]!; i < re; i++) {
      const r = packed[i]!
      for (let k = roleGrantEnds[r]!, end = roleGrantEnds[r + 1]!; k < end; k++) add(roleGrants[k]!, roleSource[r]!)
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

  const s = p.settings
  return Object.freeze({
    generation,
    digest: p.digest,
    settings: Object.freeze({
      portOverrides: s.portOverrides,
      autoConnect: s.autoConnect,
      portRange: Object.freeze([s.portRange[0], s.portRange[1]] as [number, number]),
    }),
    resources,
    roles,
    accounts,
    accountByName,
    decide,
    effectiveResources,
    nextExpiry,
  })
}

/** Wraps a packed policy into a {@link CompiledPolicy} at once (start-up, the CLI, tests). */
export function assemblePolicySync(p: PackedPolicy, generation: number): CompiledPolicy {
  const steps = assembleSteps(p, generation)
  for (;;) {
    const r = steps.next()
    if (r.done === true) return r.value
  }
}

/**
 * Wraps a packed policy into a {@link CompiledPolicy} in slices of about
 * `sliceMs` of work, letting the event loop turn between slices (a reload in
 * a serving gateway).
 */
export async function assemblePolicy(p: PackedPolicy, generation: number, sliceMs = 4): Promise<CompiledPolicy> {
  const steps = assembleSteps(p, generation)
  let start = performance.now()
  for (;;) {
    const r = steps.next()
    if (r.done === true) return r.value
    if (performance.now() - start >= sliceMs) {
      await nextTurn()
      start = performance.now()
    }
  }
}
