import t from 'tap'
import { compilePolicy, patchDepth, patchDocument, patchPolicy, policyFrame, type AccountDoc, type CompiledPolicy, type PolicyDoc } from '../../src/policy/index.js'

/** A small deterministic PRNG (mulberry32): a failing seed reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32
  }
}

const NOW = Date.parse('2027-01-01T00:00:00Z')
const TIMES = [NOW, NOW + 2 * 3_600_000]
const RESOURCES = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5']
const ROLES = ['ops', 'dev', 'read']

const frame: PolicyDoc = {
  version: 1,
  settings: { portOverrides: true, portRange: [20000, 20999] },
  resources: RESOURCES.map((name, i) => ({ name, kind: i % 2 === 0 ? 'datasource' : 'server', type: i % 2 === 0 ? 'postgres' : 'ssh', address: `127.0.0.1:${5000 + i}`, ...(i === 3 ? { portOverride: 20000 } : {}) })),
  roles: [
    { name: 'ops', grants: ['r0', 'r1', 'r2'] },
    { name: 'dev', grants: ['r2', 'r3'] },
    { name: 'read', grants: ['r5'] },
  ],
}

/** A random account valid against {@link frame}: direct grants only with No Role. */
function randomAccount(r: () => number, id: string, n: number): AccountDoc {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
  const user = id.startsWith('usr_')
  const roles = [...new Set(Array.from({ length: Math.floor(r() * 3) }, () => pick(ROLES)))]
  const grants = new Map<string, string | undefined>()
  for (let i = Math.floor(r() * 4); i > 0; i--) {
    const temporary = roles.length > 0 || r() < 0.4
    grants.set(pick(RESOURCES), temporary ? new Date(NOW + (r() < 0.5 ? -1 : 1) * 3_600_000).toISOString().replace('.000', '') : undefined)
  }
  const a: AccountDoc = { id, type: user ? 'user' : 'service', ...(user ? { email: `User${n}@Example.com` } : { name: `svc-${n}` }) }
  if (roles.length > 0) a.roles = roles
  if (grants.size > 0) a.grants = [...grants].map(([resource, expires]) => (expires === undefined ? { resource } : { resource, expires }))
  if (r() < 0.15) a.suspended = true
  if (!user && r() < 0.5) a.tokens = [{ id: `tok-${id}-${n}`, fingerprint: 'sha256:0123456789abcdef', ...(r() < 0.3 ? { expires: '2027-01-01T01:00:00Z' } : {}) }]
  return a
}

/** Everything a gateway reads from a policy, in a comparable form. */
function view(p: CompiledPolicy, ids: readonly string[], names: readonly string[]): unknown {
  return {
    size: p.accounts.size,
    keys: [...p.accounts.keys()].sort(),
    iterated: [...p.accounts].length,
    accounts: ids.map((id) => {
      const a = p.accounts.get(id)
      return {
        id,
        has: p.accounts.has(id),
        account: a === undefined ? undefined : { ...a, tokens: [...a.tokens.values()] },
        decisions: TIMES.flatMap((now) => RESOURCES.map((r) => p.decide(id, r, now))),
        effective: TIMES.map((now) => p.effectiveResources(id, now).map((e) => ({ name: e.resource.name, port: e.resource.portOverride, sources: e.sources }))),
      }
    }),
    byName: names.map((n) => p.accountByName(n)?.id),
  }
}

t.test('random edits patched account by account decide exactly as a full compile of the edited document', async (t) => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const r = rng(seed)
    const accounts = new Map<string, AccountDoc>()
    let n = 0
    for (; n < 30; n++) {
      const id = `${r() < 0.3 ? 'usr' : 'svc'}_${n}`
      accounts.set(id, randomAccount(r, id, n))
    }
    const doc = (): PolicyDoc => ({ ...frame, accounts: [...accounts.values()] })
    let patched = compilePolicy(doc())
    const everyId = new Set(accounts.keys())
    for (let edit = 0; edit < 60; edit++) {
      // One change touches one to three accounts: replaced, renamed, created or deleted.
      const changed: string[] = []
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
        const ids = [...accounts.keys()]
        const roll = r()
        if (roll < 0.15 && ids.length > 0) {
          const id = ids[Math.floor(r() * ids.length)]!
          accounts.delete(id)
          changed.push(id)
        } else if (roll < 0.35 || ids.length === 0) {
          const id = `${r() < 0.3 ? 'usr' : 'svc'}_${n}`
          accounts.set(id, randomAccount(r, id, n++))
          changed.push(id)
        } else {
          const id = ids[Math.floor(r() * ids.length)]!
          const was = accounts.get(id)!
          // Same id, new content; sometimes a new name too (n++).
          accounts.set(id, randomAccount(r, id, r() < 0.3 ? n++ : Number((was.name ?? was.email ?? '0').replace(/\D/g, ''))))
          changed.push(id)
        }
      }
      for (const id of changed) everyId.add(id)
      const present = [...new Set(changed)].filter((id) => accounts.has(id)).map((id) => accounts.get(id)!)
      const patch = compilePolicy(patchDocument(policyFrame(frame), present))
      patched = patchPolicy(patched, patch, changed, edit + 2, `test:${edit}`)
    }
    const full = compilePolicy(doc())
    const ids = [...everyId, 'svc_unknown'].sort()
    const names = [...[...accounts.values()].map((a) => a.name ?? a.email!), ...[...accounts.values()].filter((a) => a.email).map((a) => a.email!.toLowerCase()), 'svc-999', 'nobody@example.com']
    t.same(view(patched, ids, names), view(full, ids, names), `seed ${seed}: same accounts, decisions, effective resources and names`)
    t.ok(patched.nextExpiry(NOW) <= full.nextExpiry(NOW), `seed ${seed}: the next expiry is never later than the full compile's`)
    t.same(patchDepth(patched).patches, 60, `seed ${seed}: sixty patches`)
    t.same(patchDepth(full), { patches: 0, accounts: 0 }, 'a full compile carries none')
    t.equal(patched.generation, 61)
    t.equal(patched.digest, 'test:59')
  }
})

t.test('a patched policy is immutable, like a full compile', async (t) => {
  const base = compilePolicy({ ...frame, accounts: [{ id: 'svc_a', type: 'service', name: 'a', roles: ['ops'] }] })
  const patched = patchPolicy(base, compilePolicy({ ...frame, accounts: [] }), ['svc_a'], 2, 'x')
  t.equal(patched.accounts.get('svc_a'), undefined, 'deleted by the patch')
  t.equal(patched.decide('svc_a', 'r0', NOW).code, 'ERR_ACCOUNT_UNKNOWN')
  t.equal(base.decide('svc_a', 'r0', NOW).allow, true, 'the policy patched is unchanged')
  t.ok(Object.isFrozen(patched))
  t.equal((patched.accounts as unknown as { set?: unknown }).set, undefined, 'its accounts have no set')
})
