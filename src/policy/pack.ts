import { RESOURCE_KINDS, type ResourceCredential, type Settings } from './types.js'
import type { ValidatedPolicy } from './validate.js'

/**
 * A validated policy in its transferable form: flat typed arrays and one
 * string table, with every index and sort that compiling needs already done.
 * A worker thread builds it and hands it over with `postMessage` (the typed
 * arrays' buffers moved, not copied; see {@link packedTransferList});
 * `assemblePolicy` then wraps it into a `CompiledPolicy` in short slices.
 *
 * String `i` of the table is the UTF-8 of `strings.subarray(stringEnds[i - 1] ?? 0, stringEnds[i])`
 * (read it with `StringTable`); -1 stands for "none". The table is
 * bytes, not one string, so that it moves with the other buffers: a string
 * of a few MB is copied when the message arrives, in one step that held a
 * reloading gateway's event loop for tens of milliseconds.
 */
export interface PackedPolicy {
  /** sha256 of the canonical document (see `policyDigest`). */
  readonly digest: string
  readonly settings: Settings
  readonly strings: Uint8Array
  /** Byte end of each string in {@link strings}. */
  readonly stringEnds: Int32Array
  readonly resourceCount: number
  /** {@link RESOURCE_STRIDE} ints per resource: name, type, host (strings), kind (index into RESOURCE_KINDS), port, override port or -1. */
  readonly resources: Int32Array
  /** Upstream credentials by resource index (few, plain objects: cloned, not moved). */
  readonly credentials: ReadonlyArray<readonly [number, ResourceCredential]>
  readonly roleCount: number
  /** String of each role's name. */
  readonly roleNames: Int32Array
  /** Role `r`'s grants are `roleGrants[roleGrantEnds[r] .. roleGrantEnds[r + 1])`. */
  readonly roleGrantEnds: Int32Array
  /** Resource indexes granted by each role, in document order. */
  readonly roleGrants: Int32Array
  /** The same, sorted within each role: set when {@link roleBits} is not (too large). */
  readonly roleSorted: Int32Array | undefined
  /** One bitset over resources per role, {@link roleWords} words each. */
  readonly roleBits: Uint32Array | undefined
  readonly roleWords: number
  readonly accountCount: number
  /** {@link ACCOUNT_STRIDE} ints per account: id, name, email (strings or -1), offset of its run in {@link accountRuns}, first token, token end. */
  readonly accounts: Int32Array
  /**
   * One run per account, what `decide` reads: [flags, grant count, role
   * count, grant base, role indexes..., granted resource indexes...]. `grant
   * base` indexes {@link grantExpires}.
   */
  readonly accountRuns: Int32Array
  /** Resource of each account grant, grouped by account and sorted within an account when it has many. */
  readonly grantResources: Int32Array
  /** Epoch ms of each account grant's end; Infinity for a direct grant. */
  readonly grantExpires: Float64Array
  /** Two strings per token record: id, fingerprint. */
  readonly tokens: Int32Array
  readonly tokenExpires: Float64Array
  /** Every grant and token expiry, sorted, each once. */
  readonly expiries: Float64Array
}

/** Ints per resource in {@link PackedPolicy.resources}. */
export const RESOURCE_STRIDE = 6
/** Ints per account in {@link PackedPolicy.accounts}. */
export const ACCOUNT_STRIDE = 6
/** Ints before an account run's roles. */
export const RUN_HEADER = 4
/** Flag bits of an account run. */
export const F_SUSPENDED = 1
export const F_USER = 2
/** An account's grants are scanned linearly up to this many, else binary-searched (so sorted). */
export const LINEAR_MAX = 8
/** Role grants are bitsets while all of them fit in this many bytes; beyond, sorted index arrays. */
export const BITSET_MAX_BYTES = 64 * 2 ** 20

const KIND_INDEX = new Map<string, number>(RESOURCE_KINDS.map((k, i) => [k, i]))

/**
 * Packs a validated policy (see {@link PackedPolicy}). Sorts the grants of
 * accounts with many in place, so `v` is consumed.
 */
export function packPolicy(v: ValidatedPolicy, digest: string, bitsetMaxBytes = BITSET_MAX_BYTES): PackedPolicy {
  const table: string[] = []
  const str = (s: string | undefined): number => {
    if (s === undefined) return -1
    table.push(s)
    return table.length - 1
  }

  const resourceCount = v.resources.length
  const resources = new Int32Array(resourceCount * RESOURCE_STRIDE)
  const credentials: [number, ResourceCredential][] = []
  for (let i = 0, o = 0; i < resourceCount; i++, o += RESOURCE_STRIDE) {
    const r = v.resources[i]!
    resources[o] = str(r.name)
    resources[o + 1] = str(r.type)
    resources[o + 2] = str(r.host)
    resources[o + 3] = KIND_INDEX.get(r.kind)!
    resources[o + 4] = r.port
    resources[o + 5] = r.portOverride ?? -1
    if (r.credential !== undefined) credentials.push([i, r.credential])
  }

  const roleCount = v.roles.length
  const roleNames = new Int32Array(roleCount)
  const roleGrantEnds = new Int32Array(roleCount + 1)
  let roleGrantTotal = 0
  for (const r of v.roles) roleGrantTotal += r.resourceIndexes.length
  const roleGrants = new Int32Array(roleGrantTotal)
  const roleWords = (resourceCount + 31) >>> 5
  const roleBits = roleCount * roleWords * 4 <= bitsetMaxBytes ? new Uint32Array(roleCount * roleWords) : undefined
  const roleSorted = roleBits === undefined ? new Int32Array(roleGrantTotal) : undefined
  for (let i = 0, at = 0; i < roleCount; i++) {
    const r = v.roles[i]!
    roleNames[i] = str(r.name)
    roleGrants.set(r.resourceIndexes, at)
    if (roleBits !== undefined) {
      const base = i * roleWords
      for (const idx of r.resourceIndexes) roleBits[base + (idx >>> 5)]! |= 1 << (idx & 31)
    } else roleSorted!.set(r.resourceIndexes.slice().sort(), at)
    at += r.resourceIndexes.length
    roleGrantEnds[i + 1] = at
  }
  const roleIndex = new Map<string, number>()
  for (let i = 0; i < roleCount; i++) roleIndex.set(v.roles[i]!.name, i)

  const accountCount = v.accounts.length
  const accounts = new Int32Array(accountCount * ACCOUNT_STRIDE)
  let runSize = 0
  let tokenCount = 0
  for (const a of v.accounts) {
    runSize += RUN_HEADER + a.roles.length + (a.grantEnd - a.grantStart)
    tokenCount += a.tokens.length
  }
  const accountRuns = new Int32Array(runSize)
  // Own buffers (they are moved to another thread), not views of validation's larger ones.
  const grantResources = v.grants.resource.slice(0, v.grants.count)
  const grantExpires = v.grants.expiresAt.slice(0, v.grants.count)
  const tokens = new Int32Array(tokenCount * 2)
  const tokenExpires = new Float64Array(tokenCount)
  const expiries: number[] = []
  let o = 0
  let t = 0
  for (let ai = 0, ao = 0; ai < accountCount; ai++, ao += ACCOUNT_STRIDE) {
    const a = v.accounts[ai]!
    const gs = a.grantStart
    const ge = a.grantEnd
    if (ge - gs > LINEAR_MAX) sortRange(grantResources, grantExpires, gs, ge)
    for (let j = gs; j < ge; j++) if (grantExpires[j] !== Infinity) expiries.push(grantExpires[j]!)
    accounts[ao] = str(a.id)
    accounts[ao + 1] = str(a.name)
    accounts[ao + 2] = str(a.email)
    accounts[ao + 3] = o
    accounts[ao + 4] = t
    for (const tr of a.tokens) {
      tokens[2 * t] = str(tr.id)
      tokens[2 * t + 1] = str(tr.fingerprint)
      tokenExpires[t++] = tr.expiresAt
      if (tr.expiresAt !== Infinity) expiries.push(tr.expiresAt)
    }
    accounts[ao + 5] = t
    accountRuns[o] = (a.suspended ? F_SUSPENDED : 0) | (a.type === 'user' ? F_USER : 0)
    accountRuns[o + 1] = ge - gs
    accountRuns[o + 2] = a.roles.length
    accountRuns[o + 3] = gs
    o += RUN_HEADER
    for (const r of a.roles) accountRuns[o++] = roleIndex.get(r)!
    for (let j = gs; j < ge; j++) accountRuns[o++] = grantResources[j]!
  }

  // TextEncoder's array has a buffer of its own (Buffer.from may share a pool), so it can move.
  const encoder = new TextEncoder()
  const strings = encoder.encode(table.join(''))
  const stringEnds = new Int32Array(table.length)
  let end = 0
  // Only non-ASCII text has more bytes than characters: then each string is measured.
  const ascii = strings.length === table.reduce((n, x) => n + x.length, 0)
  for (let i = 0; i < table.length; i++) stringEnds[i] = end += ascii ? table[i]!.length : encoder.encode(table[i]!).length
  const s = v.settings
  return {
    digest,
    settings: { portOverrides: s.portOverrides, autoConnect: s.autoConnect, portRange: [s.portRange[0], s.portRange[1]] },
    strings,
    stringEnds,
    resourceCount,
    resources,
    credentials,
    roleCount,
    roleNames,
    roleGrantEnds,
    roleGrants,
    roleSorted,
    roleBits,
    roleWords,
    accountCount,
    accounts,
    accountRuns,
    grantResources,
    grantExpires,
    tokens,
    tokenExpires,
    expiries: uniqueSorted(expiries),
  }
}

/** The buffers of a packed policy, to move (not copy) with `postMessage`. */
export function packedTransferList(p: PackedPolicy): ArrayBuffer[] {
  const arrays = [
    p.strings,
    p.stringEnds,
    p.resources,
    p.roleNames,
    p.roleGrantEnds,
    p.roleGrants,
    p.roleSorted,
    p.roleBits,
    p.accounts,
    p.accountRuns,
    p.grantResources,
    p.grantExpires,
    p.tokens,
    p.tokenExpires,
    p.expiries,
  ]
  const out = new Set<ArrayBuffer>()
  for (const a of arrays) if (a !== undefined) out.add(a.buffer as ArrayBuffer)
  return [...out]
}

/** Sorts grants [start, end) by resource index, keeping each expiry with its resource. */
function sortRange(res: Int32Array, exp: Float64Array, start: number, end: number): void {
  let sorted = true
  for (let i = start + 1; i < end && sorted; i++) sorted = res[i - 1]! <= res[i]!
  // Already in order (a store's rows are): nothing to move.
  if (sorted) return
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
