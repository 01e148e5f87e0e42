import type { Account, CompiledPolicy, Decision, EffectiveResource } from './types.js'

/**
 * How a patched policy is made: the full compile it started from, the
 * patches applied since (oldest first), and for each changed account the
 * patch that holds its latest version (absent from that patch: deleted).
 */
interface Layers {
  readonly base: CompiledPolicy
  readonly patches: readonly CompiledPolicy[]
  readonly owner: ReadonlyMap<string, CompiledPolicy>
}

const LAYERS = new WeakMap<CompiledPolicy, Layers>()

/** How far a policy is from its last full compile: patches applied, accounts they changed. */
export function patchDepth(policy: CompiledPolicy): { readonly patches: number; readonly accounts: number } {
  const l = LAYERS.get(policy)
  return l === undefined ? { patches: 0, accounts: 0 } : { patches: l.patches.length, accounts: l.owner.size }
}

/**
 * A new compiled policy: `current` with the accounts `changed` replaced by
 * their versions in `patch`, the compile of a policy holding the same
 * settings, resources and roles and only those accounts (a changed account
 * absent from `patch` was deleted). Settings, resources and roles are
 * `current`'s: a change to them needs a full compile.
 *
 * Costs one Map copy of the accounts changed since the last full compile,
 * never a pass over the whole policy, so a gateway applies one change of a
 * policy of 100,000 accounts in well under a millisecond (the patch's own
 * compile aside). `decide` costs one more Map lookup than the full compile's.
 * Decisions are those of a full compile of the same document; account
 * iteration order is not (unchanged accounts first).
 */
export function patchPolicy(current: CompiledPolicy, patch: CompiledPolicy, changed: Iterable<string>, generation: number, digest: string): CompiledPolicy {
  const was = LAYERS.get(current) ?? { base: current, patches: [], owner: new Map<string, CompiledPolicy>() }
  const owner = new Map(was.owner)
  for (const id of changed) owner.set(id, patch)
  const layers: Layers = { base: was.base, patches: [...was.patches, patch], owner }
  const { base, patches } = layers
  const holder = (id: string): CompiledPolicy => owner.get(id) ?? base

  const accounts = new PatchedAccounts(layers)
  const decide = (accountId: string, resource: string, now: number): Decision => holder(accountId).decide(accountId, resource, now)
  const effectiveResources = (accountId: string, now: number): EffectiveResource[] => holder(accountId).effectiveResources(accountId, now)
  const accountByName = (name: string): Account | undefined => {
    for (let i = patches.length - 1; i >= 0; i--) {
      const p = patches[i]!
      const a = p.accountByName(name)
      if (a !== undefined && owner.get(a.id) === p) return a
    }
    const a = base.accountByName(name)
    return a !== undefined && !owner.has(a.id) ? a : undefined
  }
  // An expiry of a replaced account version only wakes a caller early: it finds nothing changed.
  const nextExpiry = (now: number): number => {
    let next = base.nextExpiry(now)
    for (const p of patches) next = Math.min(next, p.nextExpiry(now))
    return next
  }
  const policy: CompiledPolicy = Object.freeze({
    generation,
    digest,
    settings: base.settings,
    resources: base.resources,
    roles: base.roles,
    accounts,
    accountByName,
    decide,
    effectiveResources,
    nextExpiry,
  })
  LAYERS.set(policy, layers)
  return policy
}

/** The accounts of a patched policy, read through its layers; immutable. */
class PatchedAccounts implements ReadonlyMap<string, Account> {
  readonly #l: Layers
  readonly size: number

  constructor(layers: Layers) {
    this.#l = layers
    let size = layers.base.accounts.size
    for (const [id, p] of layers.owner) {
      if (layers.base.accounts.has(id)) size--
      if (p.accounts.has(id)) size++
    }
    this.size = size
    Object.freeze(this)
  }

  get(id: string): Account | undefined {
    const p = this.#l.owner.get(id)
    return (p ?? this.#l.base).accounts.get(id)
  }

  has(id: string): boolean {
    return this.get(id) !== undefined
  }

  *entries(): MapIterator<[string, Account]> {
    const { base, owner } = this.#l
    for (const e of base.accounts) if (!owner.has(e[0])) yield e
    for (const [id, p] of owner) {
      const a = p.accounts.get(id)
      if (a !== undefined) yield [id, a]
    }
  }

  *keys(): MapIterator<string> {
    for (const [id] of this.entries()) yield id
  }

  *values(): MapIterator<Account> {
    for (const [, a] of this.entries()) yield a
  }

  [Symbol.iterator](): MapIterator<[string, Account]> {
    return this.entries()
  }

  forEach(fn: (value: Account, key: string, map: ReadonlyMap<string, Account>) => void, thisArg?: unknown): void {
    for (const [id, a] of this.entries()) fn.call(thisArg, a, id, this)
  }
}
