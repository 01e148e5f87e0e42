import t from 'tap'
import { parsePolicyText, policyDigest, type PolicyDoc } from '../../src/policy/index.js'
import { canonicalPolicy, formatPolicy } from '../../src/store/index.js'
import { sortAccountsInPlace } from '../../src/store/canonical.js'

const A = `accounts:
  - id: usr_b
    type: user
    email: b@example.com
    roles: [z, a]
  - tokens:
      - fingerprint: sha256:1111111111111111
        id: t2
        created: 2026-02-01T00:00:00Z
      - id: t1
        fingerprint: sha256:0000000000000000
        created: 2026-01-01T00:00:00Z
    name: ci
    type: service
    id: svc_ci
    grants:
      - resource: zz
      - expires: 2030-01-01T00:00:00Z
        resource: aa
roles:
  - name: z
    grants: [zz, aa]
  - name: a
resources:
  - name: zz
    kind: server
    type: ssh
    address: 127.0.0.1:22
  - type: ssh
    name: aa
    kind: server
    address: 127.0.0.1:23
version: 1
`

t.test('the canonical form does not depend on the order a policy was written in', async (t) => {
  const doc = parsePolicyText(A, 'a').value as PolicyDoc
  const shuffled: PolicyDoc = { ...doc, resources: [...doc.resources!].reverse(), roles: [...doc.roles!].reverse(), accounts: [...doc.accounts!].reverse() }
  t.equal(formatPolicy(shuffled), formatPolicy(doc))
  const c = canonicalPolicy(doc)
  t.same(Object.keys(c), ['version', 'resources', 'roles', 'accounts'])
  t.same(c.resources!.map((r) => r.name), ['aa', 'zz'])
  t.same(c.roles!.map((r) => [r.name, r.grants]), [['a', undefined], ['z', ['aa', 'zz']]])
  t.same(c.accounts!.map((a) => a.id), ['svc_ci', 'usr_b'], 'services first, then users')
  t.same(Object.keys(c.accounts![0]!), ['id', 'type', 'name', 'grants', 'tokens'], 'keys in the documented order')
  t.same(c.accounts![0]!.tokens!.map((x) => x.id), ['t1', 't2'], 'tokens by creation')
  t.same(c.accounts![0]!.grants!.map((g) => g.resource), ['aa', 'zz'])
  const text = formatPolicy(doc)
  t.match(text, 'roles: [a, z]', 'plain lists in flow style')
  t.equal(formatPolicy(parsePolicyText(text, 'b').value as PolicyDoc), text, 'formatting its own output changes nothing')
  t.equal(policyDigest(parsePolicyText(text, 'b').value), policyDigest(c))
})

t.test('sorting the accounts in place gives the canonical order and digest, without copying them', async (t) => {
  const doc = parsePolicyText(A, 'a').value as PolicyDoc
  const more = Array.from({ length: 40 }, (_, i) => ({
    id: `svc_${(i * 7919) % 40}`,
    type: 'service' as const,
    name: `s-${(i * 31) % 40}`,
    roles: ['z', 'a'],
    grants: [{ resource: 'zz' }, { resource: 'aa', expires: '2030-01-01T00:00:00Z' }],
  }))
  const accounts = [...more, ...doc.accounts!].reverse()
  const canonical = canonicalPolicy({ ...doc, accounts })
  const sorted = [...accounts]
  const first = sorted[0]
  sortAccountsInPlace(sorted)
  t.same(sorted, canonical.accounts, 'the same accounts in the same order, each sorted the same way')
  t.ok(sorted.includes(first!), 'the objects are the ones given')
  t.equal(policyDigest({ ...canonicalPolicy({ ...doc, accounts: [] }), accounts: sorted }), policyDigest(canonical), 'and the same digest')
})
