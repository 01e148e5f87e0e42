import t from 'tap'
import { checkPolicyLimits, DEFAULT_POLICY_LIMITS, type PolicyLimits } from '../../src/policy/limits.js'
import { compilePolicy } from '../../src/policy/compile.js'

const doc = {
  resources: [
    { name: 'a', kind: 'server', type: 'ssh', address: 'h:22' },
    { name: 'b', kind: 'server', type: 'ssh', address: 'h:23' },
  ],
  roles: [{ name: 'r', grants: ['a', 'b'] }],
  accounts: [
    { id: 'svc_1', type: 'service', name: 's1', grants: [{ resource: 'a' }], tokens: [{ id: 't1', fingerprint: 'sha256:0123456789abcdef' }] },
    { id: 'svc_2', type: 'service', name: 's2', roles: ['r'] },
  ],
}

const exactly: PolicyLimits = { maxBytes: 1, maxAccounts: 2, maxRoles: 1, maxResources: 2, maxGrants: 3, maxTokens: 1 }

t.test('a policy exactly at every limit passes; one over any limit is ERR_POLICY_TOO_LARGE naming it', async (t) => {
  t.doesNotThrow(() => checkPolicyLimits(doc, exactly, 'p.yaml'))
  t.doesNotThrow(() => compilePolicy(doc, { limits: exactly }))
  for (const limit of ['maxAccounts', 'maxRoles', 'maxResources', 'maxGrants', 'maxTokens'] as const) {
    const limits = { ...exactly, [limit]: exactly[limit] - 1 }
    t.throws(() => checkPolicyLimits(doc, limits, 'p.yaml'), { code: 'ERR_POLICY_TOO_LARGE', detail: { limit, found: exactly[limit], max: exactly[limit] - 1 } }, limit)
    t.throws(() => compilePolicy(doc, { limits }), { code: 'ERR_POLICY_TOO_LARGE', message: new RegExp(`policyLimits\\.${limit}`) })
  }
})

t.test('malformed documents are left to validation', async (t) => {
  for (const bad of [null, 'text', [1], { accounts: 'x', roles: [null] }, { accounts: [null, { grants: 'x' }] }]) {
    t.doesNotThrow(() => checkPolicyLimits(bad, exactly, 'p.yaml'))
  }
})

t.test('the defaults admit 100,000 accounts and 1,000,000 grants', async (t) => {
  t.ok(DEFAULT_POLICY_LIMITS.maxAccounts >= 100_000)
  t.ok(DEFAULT_POLICY_LIMITS.maxGrants >= 1_000_000)
  t.ok(Object.isFrozen(DEFAULT_POLICY_LIMITS))
})
