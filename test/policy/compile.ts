import t from 'tap'
import fc from 'fast-check'
import { PerformanceObserver, performance } from 'node:perf_hooks'
import { ManualClock } from '../../src/clock.js'
import { DocumentError, isKeywayError } from '../../src/errors.js'
import { compilePolicy, compilePolicyText, policyDigest } from '../../src/policy/compile.js'
import type { CompiledPolicy, Decision, PolicyDoc } from '../../src/policy/types.js'
import { NO_ROLE_MESSAGE } from '../../src/policy/validate.js'
import { DAY, HOUR, START, baseDoc, clone, fixtureText } from '../fixtures/policy/docs.js'

const at = (iso: string): number => Date.parse(iso)

function fixture(generation?: number): CompiledPolicy {
  return compilePolicyText(fixtureText('valid.yaml'), 'valid.yaml', generation)
}

function documentError(fn: () => unknown): DocumentError {
  try {
    fn()
  } catch (err) {
    if (err instanceof DocumentError) return err
    throw err
  }
  throw new Error('expected a DocumentError')
}

t.test('compiles the fixture: settings, resources with assigned ports, roles, accounts', async (t) => {
  const p = fixture()
  t.equal(p.generation, 1)
  t.match(p.digest, /^[0-9a-f]{64}$/)
  t.same(p.settings, { portOverrides: true, autoConnect: true, portRange: [15000, 15010] })
  t.same([...p.resources.keys()], ['prod-db', 'cache', 'bastion', 'k8s-prod', 'grafana'])
  // cache asks for 15000; the others get the lowest free ports in document order.
  t.same(
    [...p.resources.values()].map((r) => [r.name, r.portOverride]),
    [['prod-db', 15001], ['cache', 15000], ['bastion', 15002], ['k8s-prod', 15003], ['grafana', 15004]],
  )
  t.same(p.resources.get('bastion'), { name: 'bastion', kind: 'server', type: 'ssh', host: 'fd00::10', port: 22, portOverride: 15002 })
  t.same(p.roles.get('ops'), ['bastion', 'k8s-prod', 'prod-db'])
  t.same(p.roles.get('empty'), [])
  const ci = p.accounts.get('svc_ci')!
  t.match(ci, { id: 'svc_ci', type: 'service', name: 'ci-pipeline', email: undefined, roles: ['engineering'], suspended: false })
  t.same([...ci.tokens.keys()], ['tok_1', 'tok_0'])
  t.same(ci.tokens.get('tok_0'), { id: 'tok_0', fingerprint: 'sha256:fedcba9876543210', expiresAt: at('2026-01-02T00:00:00Z') })
  t.equal(ci.tokens.get('tok_1')?.expiresAt, Infinity)
  const alice = p.accounts.get('usr_alice')!
  t.match(alice, { type: 'user', name: 'Alice@Example.com', email: 'Alice@Example.com' })
  t.equal(p.accounts.get('svc_bi')?.suspended, true)
  t.equal(fixture(7).generation, 7)
})

t.test('decide follows the order: account, suspended, resource, temporary, direct, roles, expired', async (t) => {
  const p = fixture()
  const now = START
  t.match(p.decide('svc_nobody', 'prod-db', now), { allow: false, code: 'ERR_ACCOUNT_UNKNOWN' })
  t.match(p.decide('svc_bi', 'prod-db', now), { allow: false, code: 'ERR_ACCOUNT_SUSPENDED' }, 'suspended wins over its role')
  t.match(p.decide('svc_bi', 'nothing', now), { allow: false, code: 'ERR_ACCOUNT_SUSPENDED' })
  t.match(p.decide('svc_ci', 'nothing', now), { allow: false, code: 'ERR_RESOURCE_UNKNOWN' })
  t.match(p.decide('svc_ci', 'prod-db', now), { allow: true, code: undefined, via: 'role', role: 'engineering' })
  t.match(p.decide('svc_ci', 'grafana', now), { allow: true, via: 'temporary', expiresAt: at('2026-01-08T00:00:00Z') })
  t.match(p.decide('svc_ci', 'bastion', now), { allow: false, code: 'ERR_GRANT_DENIED' })
  t.match(p.decide('svc_etl', 'prod-db', now), { allow: true, via: 'direct' })
  t.match(p.decide('svc_etl', 'bastion', now), { allow: true, via: 'temporary', expiresAt: at('2026-01-03T12:00:00Z') })
  t.match(p.decide('svc_etl', 'k8s-prod', now), { allow: false, code: 'ERR_GRANT_DENIED' })
  // Roles are tried in the account's order.
  t.match(p.decide('usr_alice', 'prod-db', now), { allow: true, via: 'role', role: 'ops' })
  t.match(p.decide('usr_alice', 'cache', now), { allow: true, via: 'role', role: 'engineering' })
  t.match(p.decide('usr_alice', 'grafana', now), { allow: false, code: 'ERR_GRANT_DENIED' })
})

t.test('temporary access: allowed until 1 ms before expiry, ERR_GRANT_EXPIRED from expiry on', async (t) => {
  const p = fixture()
  const clock = new ManualClock(START)
  const expiry = at('2026-01-08T00:00:00Z')
  clock.advance(expiry - 1 - clock.now())
  t.match(p.decide('svc_ci', 'grafana', clock.now()), { allow: true, via: 'temporary', expiresAt: expiry })
  clock.advance(1)
  t.equal(clock.now(), expiry)
  const d = p.decide('svc_ci', 'grafana', clock.now())
  t.match(d, { allow: false, code: 'ERR_GRANT_EXPIRED', expiredAt: expiry })
  clock.advance(DAY)
  t.equal(p.decide('svc_ci', 'grafana', clock.now()), d, 'the same frozen denial later on')

  // A temporary grant that a role also covers: temporary first, then the role.
  const cacheExpiry = at('2026-01-05T00:00:00Z')
  t.match(p.decide('svc_ci', 'cache', cacheExpiry - 1), { allow: true, via: 'temporary', expiresAt: cacheExpiry })
  t.match(p.decide('svc_ci', 'cache', cacheExpiry), { allow: true, via: 'role', role: 'engineering' })

  // No Role account: its temporary grant runs out, its direct grants stay.
  const etl = at('2026-01-03T12:00:00Z')
  t.match(p.decide('svc_etl', 'bastion', etl), { allow: false, code: 'ERR_GRANT_EXPIRED', expiredAt: etl })
  t.match(p.decide('svc_etl', 'prod-db', etl + 365 * DAY), { allow: true, via: 'direct' })
})

t.test('decide allocates nothing: the same frozen objects on every call', async (t) => {
  const p = fixture()
  const cases: [string, string, number][] = [
    ['svc_nobody', 'prod-db', START],
    ['svc_bi', 'prod-db', START],
    ['svc_ci', 'nothing', START],
    ['svc_ci', 'prod-db', START],
    ['svc_ci', 'grafana', START],
    ['svc_ci', 'grafana', at('2026-02-01T00:00:00Z')],
    ['svc_ci', 'bastion', START],
    ['svc_etl', 'prod-db', START],
    ['svc_etl', 'bastion', START],
  ]
  for (const [a, r, now] of cases) {
    const first = p.decide(a, r, now)
    t.ok(Object.isFrozen(first), `${a} ${r} frozen`)
    for (let i = 0; i < 3; i++) t.equal(p.decide(a, r, now + i), first, `${a} ${r} identical`)
  }
  // One allow per role, shared by every account holding it.
  t.equal(p.decide('svc_ci', 'prod-db', START), p.decide('usr_alice', 'cache', START))
  // Shared denials across accounts.
  t.equal(p.decide('svc_ci', 'bastion', START), p.decide('svc_etl', 'k8s-prod', START))
  // A decision cannot be changed by its holder.
  const d = p.decide('svc_ci', 'prod-db', START) as { allow: boolean }
  t.throws(() => {
    d.allow = false
  }, TypeError)
  t.equal(p.decide('svc_ci', 'prod-db', START).allow, true)
})

t.test('decide allocates nothing: no young-generation GC over 2,000,000 calls', async (t) => {
  const p = fixture()
  const queries: [string, string][] = [
    ['svc_ci', 'prod-db'],
    ['svc_ci', 'grafana'],
    ['svc_ci', 'bastion'],
    ['svc_etl', 'prod-db'],
    ['svc_etl', 'bastion'],
    ['usr_alice', 'cache'],
    ['svc_bi', 'cache'],
    ['svc_ci', 'nothing'],
    ['svc_nobody', 'cache'],
  ]
  const times = [START, at('2026-01-04T00:00:00Z'), at('2026-02-01T00:00:00Z')]
  let allowed = 0
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const q = queries[i % queries.length]!
      if (p.decide(q[0], q[1], times[i % times.length]!).allow) allowed++
    }
  }
  run(200_000) // let the JIT settle first
  const collections: number[] = []
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) collections.push(e.startTime)
  })
  observer.observe({ entryTypes: ['gc'] })
  await new Promise((resolve) => setImmediate(resolve))
  const from = performance.now()
  run(2_000_000)
  const to = performance.now()
  // GC entries are delivered asynchronously, on a later turn of the event loop.
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
  observer.disconnect()
  // 48 bytes a call would be ~96 MB: dozens of scavenges.
  t.same(collections.filter((s) => s >= from && s <= to), [], 'no collection while deciding')
  t.ok(allowed > 0)
})

t.test('the compiled policy is frozen: mutation throws', async (t) => {
  const p = fixture()
  t.ok(Object.isFrozen(p))
  t.throws(() => {
    ;(p as { generation: number }).generation = 2
  }, TypeError)
  t.throws(() => {
    ;(p as unknown as { decide: unknown }).decide = () => undefined
  }, TypeError)
  t.throws(() => (p.resources as Map<string, unknown>).set('x', {}), TypeError)
  t.throws(() => (p.resources as Map<string, unknown>).delete('prod-db'), TypeError)
  t.throws(() => (p.roles as Map<string, unknown>).clear(), TypeError)
  t.throws(() => (p.accounts as Map<string, unknown>).set('svc_x', {}), TypeError)
  t.throws(() => (p.accounts.get('svc_ci')!.tokens as Map<string, unknown>).delete('tok_1'), TypeError)
  t.throws(() => (p.roles.get('ops') as string[]).push('grafana'), TypeError)
  t.throws(() => (p.accounts.get('svc_ci')!.roles as string[]).push('ops'), TypeError)
  t.throws(() => {
    ;(p.accounts.get('svc_ci') as { suspended: boolean }).suspended = true
  }, TypeError)
  t.throws(() => {
    ;(p.resources.get('cache') as { port: number }).port = 1
  }, TypeError)
  t.throws(() => {
    ;(p.settings as { autoConnect: boolean }).autoConnect = false
  }, TypeError)
  t.throws(() => {
    ;(p.settings.portRange as unknown as number[])[0] = 1
  }, TypeError)
  t.equal(p.resources.size, 5, 'still intact')
  t.ok(p.resources instanceof Map, 'still a Map for readers')
})

t.test('the compiled policy does not share state with the document', async (t) => {
  const doc = baseDoc()
  const p = compilePolicy(doc)
  doc.accounts![0]!.roles!.length = 0
  doc.roles![0]!.grants!.push('ssh')
  doc.resources!.pop()
  t.match(p.decide('svc_role', 'db', START), { allow: true, via: 'role' })
  t.match(p.decide('svc_role', 'ssh', START), { allow: false, code: 'ERR_GRANT_DENIED' })
  t.same(p.roles.get('eng'), ['db'])
})

t.test('effectiveResources: reachable resources with every source, sorted by kind then name', async (t) => {
  const p = fixture()
  const names = (a: string, now: number): string[] => p.effectiveResources(a, now).map((e) => e.resource.name)
  const ci = p.effectiveResources('svc_ci', START)
  t.same(
    ci.map((e) => [e.resource.name, e.resource.kind, e.sources]),
    [
      ['cache', 'datasource', [{ via: 'temporary', expiresAt: at('2026-01-05T00:00:00Z') }, { via: 'role', role: 'engineering' }]],
      ['prod-db', 'datasource', [{ via: 'role', role: 'engineering' }]],
      ['grafana', 'website', [{ via: 'temporary', expiresAt: at('2026-01-08T00:00:00Z') }]],
    ],
  )
  t.equal(ci[1]?.resource, p.resources.get('prod-db'), 'the compiled resource itself')
  t.same(names('svc_ci', at('2026-01-08T00:00:00Z')), ['cache', 'prod-db'], 'expired grants are gone')
  t.same(names('usr_alice', START), ['cache', 'prod-db', 'bastion', 'k8s-prod'])
  t.same(
    p.effectiveResources('usr_alice', START).find((e) => e.resource.name === 'prod-db')?.sources,
    [{ via: 'role', role: 'ops' }, { via: 'role', role: 'engineering' }],
  )
  t.same(p.effectiveResources('svc_etl', START).map((e) => [e.resource.name, e.sources[0]?.via]), [
    ['cache', 'direct'],
    ['prod-db', 'direct'],
    ['bastion', 'temporary'],
  ])
  t.same(p.effectiveResources('svc_bi', START), [], 'a suspended account reaches nothing')
  t.same(p.effectiveResources('svc_nobody', START), [])
})

t.test('nextExpiry: earliest temporary grant or token expiry strictly after now', async (t) => {
  const p = fixture()
  const tok0 = at('2026-01-02T00:00:00Z')
  const etl = at('2026-01-03T12:00:00Z')
  const cache = at('2026-01-05T00:00:00Z')
  const grafana = at('2026-01-08T00:00:00Z')
  t.equal(p.nextExpiry(START), tok0)
  t.equal(p.nextExpiry(tok0 - 1), tok0)
  t.equal(p.nextExpiry(tok0), etl, 'an instant that is now has passed')
  t.equal(p.nextExpiry(etl), cache)
  t.equal(p.nextExpiry(cache + 1), grafana)
  t.equal(p.nextExpiry(grafana), Infinity)
  t.equal(compilePolicy({}).nextExpiry(START), Infinity)
})

t.test('accountByName: service names exactly, user emails without case', async (t) => {
  const p = fixture()
  t.equal(p.accountByName('ci-pipeline'), p.accounts.get('svc_ci'))
  t.equal(p.accountByName('Alice@Example.com'), p.accounts.get('usr_alice'))
  t.equal(p.accountByName('alice@example.com'), p.accounts.get('usr_alice'))
  t.equal(p.accountByName('ALICE@EXAMPLE.COM'), p.accounts.get('usr_alice'))
  t.equal(p.accountByName('svc_ci'), undefined, 'ids are not names')
  t.equal(p.accountByName('nobody'), undefined)
})

t.test('digest: canonical, so key order and YAML style do not matter', async (t) => {
  const a = fixture().digest
  t.equal(fixture().digest, a, 'stable')
  const text = fixtureText('valid.yaml')
  const restyled = `# another comment\n${text.replace('  portOverrides: true\n  autoConnect: true\n', '  autoConnect: true\n  portOverrides: true\n').replace('grants: [prod-db, cache]', 'grants:\n      - prod-db\n      - cache')}`
  t.not(restyled, text)
  t.equal(compilePolicyText(restyled, 'x.yaml').digest, a, 'reordered keys, block list, comments')
  t.not(compilePolicyText(text.replace('nightly-etl', 'nightly-etl2'), 'x.yaml').digest, a, 'a real change')
  t.not(compilePolicyText(text.replace('roles: [ops, engineering]', 'roles: [engineering, ops]'), 'x.yaml').digest, a, 'list order matters')
  const doc = baseDoc()
  const reordered = Object.fromEntries(Object.entries(clone(doc)).reverse())
  t.equal(policyDigest(reordered), policyDigest(doc))
  t.equal(compilePolicy(doc).digest, policyDigest(doc))
  t.equal(compilePolicy(null).digest, compilePolicy({}).digest)
})

t.test('an invalid document throws DocumentError with every problem, located', async (t) => {
  const err = documentError(() => compilePolicyText(fixtureText('invalid.yaml'), 'invalid.yaml'))
  t.ok(isKeywayError(err, 'ERR_POLICY_INVALID'))
  t.same(
    err.problems.map((p) => `${p.line}:${p.col} ${p.key}`),
    [
      '3:3 settings.autoConnect',
      '4:1 resourcs',
      '7:5 resources[0].kind',
      '8:5 resources[0].type',
      '9:5 resources[0].address',
      '10:5 resources[1].name',
      '13:5 resources[1].address',
      '16:18 roles[0].grants[1]',
      '21:5 accounts[0].email',
      '22:18 accounts[0].roles[1]',
      '24:9 accounts[0].grants[0]',
      '25:9 accounts[0].grants[1].resource',
      '26:9 accounts[0].grants[1].expires',
    ],
  )
  t.ok(err.problems.every((p) => p.file === 'invalid.yaml'))
  t.equal(err.problems[10]?.message, NO_ROLE_MESSAGE)
  t.match(err.problems[1]?.message, /did you mean `resources`/)
  t.match(err.message.split('\n')[0], /^invalid\.yaml:3:3: autoConnect: true needs portOverrides: true .* \(settings\.autoConnect\)$/)
  t.equal(err.message.split('\n').length, 13)
})

t.test('compilePolicy without a locator: problems at 0:0 in <policy>', async (t) => {
  const doc = baseDoc()
  doc.accounts![0]!.grants = [{ resource: 'ssh' }]
  const err = documentError(() => compilePolicy(doc))
  t.same(err.problems, [{ file: '<policy>', line: 0, col: 0, key: 'accounts[0].grants[0]', message: NO_ROLE_MESSAGE }])
  t.equal(documentError(() => compilePolicy(doc, { file: 'mem' })).problems[0]?.file, 'mem')
})

t.test('accounts with many grants, and roles kept as sorted arrays, decide the same', async (t) => {
  const resources = Array.from({ length: 100 }, (_, i) => ({ name: `r${i}`, kind: 'server' as const, type: 'ssh', address: `h${i}:22` }))
  const doc: PolicyDoc = {
    resources,
    roles: [
      { name: 'even', grants: resources.filter((_, i) => i % 2 === 0).map((r) => r.name) },
      { name: 'high', grants: resources.slice(90).map((r) => r.name).reverse() },
    ],
    accounts: [
      // 40 grants, listed out of order: binary search over the sorted copy.
      { id: 'svc_many', type: 'service', name: 'many', grants: resources.slice(0, 40).reverse().map((r, i) => (i % 2 ? { resource: r.name } : { resource: r.name, expires: '2026-01-02T00:00:00Z' })) },
      { id: 'svc_roles', type: 'service', name: 'roles', roles: ['even', 'high'] },
    ],
  }
  for (const p of [compilePolicy(doc), compilePolicy(doc, { bitsetMaxBytes: 0 })]) {
    for (let i = 0; i < 100; i++) {
      const d = p.decide('svc_many', `r${i}`, START)
      if (i >= 40) t.equal(d.code, 'ERR_GRANT_DENIED')
      else t.equal(d.allow ? d.via : d.code, (39 - i) % 2 ? 'direct' : 'temporary', `r${i}`)
      const later = p.decide('svc_many', `r${i}`, START + DAY)
      if (i < 40 && (39 - i) % 2 === 0) t.equal(later.code, 'ERR_GRANT_EXPIRED')
      const r = p.decide('svc_roles', `r${i}`, START)
      t.equal(r.allow ? (r.via === 'role' ? r.role : r.via) : r.code, i % 2 === 0 ? 'even' : i >= 90 ? 'high' : 'ERR_GRANT_DENIED', `role r${i}`)
    }
  }
})

// ---------------------------------------------------------------------------
// Property: decide, effectiveResources and nextExpiry agree with a naive
// reading of the rules, on random valid policies, at every interesting instant.
// ---------------------------------------------------------------------------

interface Model {
  doc: PolicyDoc
  instants: number[]
}

const modelArb: fc.Arbitrary<Model> = fc
  .record({
    resourceCount: fc.integer({ min: 1, max: 70 }),
    roles: fc.array(fc.array(fc.nat(69), { maxLength: 40 }), { maxLength: 5 }),
    accounts: fc.array(
      fc.record({
        roles: fc.array(fc.nat(4), { maxLength: 3 }),
        suspended: fc.boolean(),
        grants: fc.array(fc.record({ resource: fc.nat(69), expires: fc.option(fc.integer({ min: -5 * 24, max: 5 * 24 }), { nil: undefined }) }), { maxLength: 14 }),
      }),
      { minLength: 1, maxLength: 8 },
    ),
  })
  .map(({ resourceCount, roles, accounts }) => {
    const resources = Array.from({ length: resourceCount }, (_, i) => ({ name: `r${i}`, kind: 'server' as const, type: 'ssh', address: `h${i}:22` }))
    const roleDocs = roles.map((g, i) => ({ name: `role${i}`, grants: [...new Set(g.filter((x) => x < resourceCount))].map((x) => `r${x}`) }))
    const instants = new Set<number>([START])
    const accountDocs = accounts.map((a, i) => {
      const accountRoles = [...new Set(a.roles.filter((x) => x < roleDocs.length))].map((x) => `role${x}`)
      const seen = new Set<number>()
      const grants = []
      for (const g of a.grants) {
        const r = g.resource % resourceCount
        if (seen.has(r)) continue
        seen.add(r)
        // Direct grants only without roles (the No Role rule); otherwise temporary.
        const hours = g.expires ?? (accountRoles.length > 0 ? 1 : undefined)
        if (hours === undefined) grants.push({ resource: `r${r}` })
        else {
          const exp = START + hours * HOUR
          instants.add(exp).add(exp - 1)
          grants.push({ resource: `r${r}`, expires: new Date(exp).toISOString() })
        }
      }
      return { id: `svc_${i}`, type: 'service' as const, name: `s${i}`, roles: accountRoles, suspended: a.suspended, grants }
    })
    return { doc: { resources, roles: roleDocs, accounts: accountDocs }, instants: [...instants] }
  })

function reference(doc: PolicyDoc, accountId: string, resource: string, now: number): Record<string, unknown> {
  const a = doc.accounts!.find((x) => x.id === accountId)
  if (!a) return { allow: false, code: 'ERR_ACCOUNT_UNKNOWN' }
  if (a.suspended) return { allow: false, code: 'ERR_ACCOUNT_SUSPENDED' }
  if (!doc.resources!.some((r) => r.name === resource)) return { allow: false, code: 'ERR_RESOURCE_UNKNOWN' }
  const g = (a.grants ?? []).find((x) => x.resource === resource)
  if (g?.expires !== undefined && now < Date.parse(g.expires)) return { allow: true, via: 'temporary', expiresAt: Date.parse(g.expires) }
  if (g && g.expires === undefined) return { allow: true, via: 'direct' }
  for (const r of a.roles ?? []) {
    if (doc.roles!.find((x) => x.name === r)!.grants!.includes(resource)) return { allow: true, via: 'role', role: r }
  }
  if (g?.expires !== undefined) return { allow: false, code: 'ERR_GRANT_EXPIRED', expiredAt: Date.parse(g.expires) }
  return { allow: false, code: 'ERR_GRANT_DENIED' }
}

function plain(d: Decision): Record<string, unknown> {
  return Object.fromEntries(Object.entries(d).filter(([, v]) => v !== undefined))
}

t.test('property: decide agrees with a naive reading of the rules', async (t) => {
  fc.assert(
    fc.property(modelArb, fc.boolean(), ({ doc, instants }, sortedRoles) => {
      const p = compilePolicy(doc, sortedRoles ? { bitsetMaxBytes: 0 } : {})
      const resources = [...doc.resources!.map((r) => r.name), 'ghost']
      const accounts = [...doc.accounts!.map((a) => a.id), 'svc_ghost']
      const allExpiries = doc.accounts!.flatMap((a) => (a.grants ?? []).filter((g) => g.expires).map((g) => Date.parse(g.expires!)))
      for (const now of instants) {
        for (const a of accounts) {
          const reachable = new Set(p.effectiveResources(a, now).map((e) => e.resource.name))
          for (const r of resources) {
            const got = p.decide(a, r, now)
            const want = reference(doc, a, r, now)
            if (JSON.stringify(plain(got)) !== JSON.stringify(want)) {
              throw new Error(`${a} ${r} at ${now}: got ${JSON.stringify(plain(got))}, want ${JSON.stringify(want)}`)
            }
            if (reachable.has(r) !== got.allow) throw new Error(`effectiveResources disagrees for ${a} ${r} at ${now}`)
          }
        }
        const next = Math.min(Infinity, ...allExpiries.filter((x) => x > now))
        if (p.nextExpiry(now) !== next) throw new Error(`nextExpiry(${now}) = ${p.nextExpiry(now)}, want ${next}`)
      }
    }),
    { numRuns: 150, seed: 20260101 },
  )
  t.pass('150 random policies agree')
})
