import type { Account, AccountDoc, CompiledPolicy, Decision, EffectiveResource, PolicyDoc, ResourceDoc, RoleDoc } from './types.js'

/** The settings, resources and roles of a policy document, indexed by name: what {@link patchDocument} picks from. */
export interface PolicyFrame {
  readonly doc: PolicyDoc
  readonly resources: ReadonlyMap<string, ResourceDoc>
  readonly roles: ReadonlyMap<string, RoleDoc>
}

/** The {@link PolicyFrame} of a policy document (its accounts are left out). */
export function policyFrame(doc: PolicyDoc): PolicyFrame {
  const { accounts: _accounts, ...rest } = doc
  return {
    doc: rest,
    resources: new Map((doc.resources ?? []).map((r) => [r.name, r])),
    roles: new Map((doc.roles ?? []).map((r) => [r.name, r])),
  }
}

/**
 * The smallest policy document that decides for `accounts` as the whole
 * policy would: the frame's settings, the roles the accounts hold, and the
 * resources those roles and the accounts' grants name (in the frame's
 * order). Compiling it costs a few hundred entries, not the whole frame (a
 * thousand resources, tens of thousands of role grants); {@link patchPolicy}
 * answers for the resources it leaves out. A name the frame lacks is kept
 * out too, so that the compile reports it as the whole policy's would.
 */
export function patchDocument(frame: PolicyFrame, accounts: readonly AccountDoc[]): PolicyDoc {
  const roles = new Set<string>()
  const resources = new Set<string>()
  for (const a of accounts) {
    for (const r of a.roles ?? []) roles.add(r)
    for (const g of a.grants ?? []) resources.add(g.resource)
  }
  const roleDocs: RoleDoc[] = []
  for (const name of roles) {
    const role = frame.roles.get(name)
    if (role === undefined) continue
    roleDocs.push(role)
    for (const r of role.grants ?? []) resources.add(r)
  }
  const resourceDocs = (frame.doc.resources ?? []).filter((r) => resources.has(r.name))
  return { ...frame.doc, resources: resourceDocs, roles: roleDocs, accounts: [...accounts] }
}

// As a full compile denies an account a resource it has no grant for (see `assemble.ts`).
const DENY_GRANT: Decision = Object.freeze({ allow: false, code: 'ERR_GRANT_DENIED', via: undefined, role: undefined, expiresAt: undefined, expiredAt: undefined }) as unknown as Decision

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
 * their versions in `patch`, the compile of {@link patchDocument} of those
 * accounts (a changed account absent from `patch` was deleted). Settings,
 * resources and roles are `current`'s: a change to them needs a full
 * compile. A resource the patch leaves out is one the account has no grant
 * of (denied); resources in effective lists are `current`'s (whose override
 * ports were assigned among all resources).
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
  const accounts = new PatchedAccounts(layers)
  const decide = (accountId: string, resource: string, now: number): Decision => {
    const p = owner.get(accountId)
    if (p === undefined) return base.decide(accountId, resource, now)
    const d = p.decide(accountId, resource, now)
    return d.code === 'ERR_RESOURCE_UNKNOWN' && base.resources.has(resource) ? DENY_GRANT : d
  }
  const effectiveResources = (accountId: string, now: number): EffectiveResource[] => {
    const p = owner.get(accountId)
    if (p === undefined) return base.effectiveResources(accountId, now)
    return p.effectiveResources(accountId, now).map((e) => Object.freeze({ resource: base.resources.get(e.resource.name) ?? e.resource, sources: e.sources }))
  }
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
