import t from 'tap'
import fc from 'fast-check'
import { assemblePolicy, assemblePolicySync } from '../../src/policy/assemble.js'
import { compilePolicy, packPolicyDocument } from '../../src/policy/compile.js'
import { packedTransferList, type PackedPolicy } from '../../src/policy/pack.js'
import type { CompiledPolicy, PolicyDoc } from '../../src/policy/types.js'

const START = Date.UTC(2026, 0, 1)
const HOUR = 3_600_000

/** What `postMessage` does to a packed policy: a structured clone with its buffers moved. */
function overTheWire(p: PackedPolicy): PackedPolicy {
  return structuredClone(p, { transfer: packedTransferList(p) })
}

interface Model {
  doc: PolicyDoc
  instants: number[]
}

const modelArb: fc.Arbitrary<Model> = fc
  .record({
    resourceCount: fc.integer({ min: 1, max: 40 }),
    roles: fc.array(fc.array(fc.nat(39), { maxLength: 20 }), { maxLength: 5 }),
    accounts: fc.array(
      fc.record({
        user: fc.boolean(),
        roles: fc.array(fc.nat(4), { maxLength: 3 }),
        suspended: fc.boolean(),
        grants: fc.array(fc.record({ resource: fc.nat(39), expires: fc.option(fc.integer({ min: -48, max: 48 }), { nil: undefined }) }), { maxLength: 12 }),
        tokens: fc.array(fc.option(fc.integer({ min: -48, max: 48 }), { nil: undefined }), { maxLength: 3 }),
      }),
      { minLength: 1, maxLength: 8 },
    ),
  })
  .map(({ resourceCount, roles, accounts }) => {
    const resources = Array.from({ length: resourceCount }, (_, i) => ({
      name: `r${i}`,
      kind: (['datasource', 'server', 'website'] as const)[i % 3]!,
      type: 'ssh',
      address: i % 4 === 0 ? `[fd00::${i + 1}]:22` : `h${i}.example:22`,
    }))
    const roleDocs = roles.map((g, i) => ({ name: `role${i}`, grants: [...new Set(g.filter((x) => x < resourceCount))].map((x) => `r${x}`) }))
    const instants = new Set<number>([START])
    const at = (hours: number): string => {
      const ms = START + hours * HOUR
      instants.add(ms).add(ms - 1)
      return new Date(ms).toISOString()
    }
    const accountDocs = accounts.map((a, i) => {
      const accountRoles = [...new Set(a.roles.filter((x) => x < roleDocs.length))].map((x) => `role${x}`)
      const seen = new Set<number>()
      const grants = []
      for (const g of a.grants) {
        const r = g.resource % resourceCount
        if (seen.has(r)) continue
        seen.add(r)
        const hours = g.expires ?? (accountRoles.length > 0 ? 1 : undefined)
        grants.push(hours === undefined ? { resource: `r${r}` } : { resource: `r${r}`, expires: at(hours) })
      }
      const common = { roles: accountRoles, suspended: a.suspended, grants }
      return a.user
        ? { id: `usr_${i}`, type: 'user' as const, email: `User${i}@Example.test`, ...common }
        : {
            id: `svc_${i}`,
            type: 'service' as const,
            name: `s${i}`,
            tokens: a.tokens.map((h, k) => ({ id: `t${i}-${k}`, fingerprint: 'sha256:0123456789abcdef', ...(h === undefined ? {} : { expires: at(h) }) })),
            ...common,
          }
    })
    return { doc: { settings: { portOverrides: true }, resources, roles: roleDocs, accounts: accountDocs }, instants: [...instants] }
  })

/** Throws at the first way `got` differs from `want`. */
function assertSame(got: CompiledPolicy, want: CompiledPolicy, model: Model): void {
  const eq = (what: string, a: unknown, b: unknown): void => {
    const x = JSON.stringify(a, (_k, v: unknown) => (v instanceof Map ? [...v] : v === Infinity ? 'Infinity' : v))
    const y = JSON.stringify(b, (_k, v: unknown) => (v instanceof Map ? [...v] : v === Infinity ? 'Infinity' : v))
    if (x !== y) throw new Error(`${what}: got ${x}, want ${y}`)
  }
  eq('digest', got.digest, want.digest)
  eq('settings', got.settings, want.settings)
  eq('resources', got.resources, want.resources)
  eq('roles', got.roles, want.roles)
  eq('accounts', got.accounts, want.accounts)
  const resources = [...model.doc.resources!.map((r) => r.name), 'ghost']
  const accounts = [...model.doc.accounts!.map((a) => a.id), 'svc_ghost']
  for (const a of model.doc.accounts!) {
    const name = a.type === 'user' ? a.email!.toUpperCase() : a.name!
    eq(`accountByName(${name})`, got.accountByName(name), want.accountByName(name))
  }
  for (const now of model.instants) {
    eq(`nextExpiry(${now})`, got.nextExpiry(now), want.nextExpiry(now))
    for (const a of accounts) {
      eq(`effectiveResources(${a}, ${now})`, got.effectiveResources(a, now), want.effectiveResources(a, now))
      for (const r of resources) eq(`decide(${a}, ${r}, ${now})`, got.decide(a, r, now), want.decide(a, r, now))
    }
  }
}

t.test('property: a policy packed, moved over the wire and assembled in slices decides exactly like a synchronous compile', async (t) => {
  await fc.assert(
    fc.asyncProperty(modelArb, fc.boolean(), async (model, sortedRoles) => {
      const options = sortedRoles ? { bitsetMaxBytes: 0 } : {}
      const want = compilePolicy(model.doc, options)
      // sliceMs 0: yield to the loop at every step, the most interleaved a reload can be.
      const got = await assemblePolicy(overTheWire(packPolicyDocument(model.doc, options)), 1, 0)
      assertSame(got, want, model)
    }),
    { numRuns: 100, seed: 20261204 },
  )
  t.pass('100 random policies agree')
})

t.test('assembling in slices lets other callbacks run in between; the result is immutable', async (t) => {
  const doc: PolicyDoc = {
    resources: Array.from({ length: 3_000 }, (_, i) => ({ name: `r${i}`, kind: 'server' as const, type: 'ssh', address: `h${i}:22` })),
    accounts: Array.from({ length: 3_000 }, (_, i) => ({ id: `svc_${i}`, type: 'service' as const, name: `s${i}`, grants: [{ resource: `r${i}` }] })),
  }
  const packed = packPolicyDocument(doc)
  let turns = 0
  const ticker = setInterval(() => turns++, 0)
  t.teardown(() => clearInterval(ticker))
  const p = await assemblePolicy(packed, 7, 0)
  clearInterval(ticker)
  t.ok(turns > 0, `timers ran ${turns} times during assembly`)
  t.equal(p.generation, 7)
  t.equal(p.decide('svc_5', 'r5', START).allow, true)
  t.throws(() => (p.accounts as Map<string, unknown>).set('x', 1), TypeError)
  t.throws(() => (p.accounts.get('svc_1')!.tokens as Map<string, unknown>).set('x', 1), TypeError)
  t.ok(Object.isFrozen(p.settings.portRange))
  t.same(assemblePolicySync(packed, 7).decide('svc_5', 'r4', START).code, 'ERR_GRANT_DENIED')
})
