import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { assemblePolicySync } from '../../src/policy/assemble.js'
import { DEFAULT_POLICY_LIMITS } from '../../src/policy/limits.js'
import { packPolicyFile } from '../../src/policy/pack-file.js'

const dir = mkdtempSync(join(tmpdir(), 'keyway-pack-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const file = join(dir, 'policy.yaml')
const GOOD = `version: 1
resources:
  - { name: db, kind: datasource, type: postgres, address: "127.0.0.1:5000" }
accounts:
  - { id: svc_a, type: service, name: a, grants: [{ resource: db }] }
`

t.test('the worker packs a policy and hands it over; it assembles into a working policy', async (t) => {
  writeFileSync(file, GOOD)
  const packed = await packPolicyFile(file, { limits: DEFAULT_POLICY_LIMITS })
  t.ok(packed.accountRuns instanceof Int32Array)
  const p = assemblePolicySync(packed, 1)
  t.equal(p.decide('svc_a', 'db', 0).allow, true)
  t.equal(p.decide('svc_a', 'nope', 0).code, 'ERR_RESOURCE_UNKNOWN')
})

t.test("the worker's errors come back with their codes, messages and located problems", async (t) => {
  writeFileSync(file, 'version: 1\nroles:\n  - name: r\n    grants: [nope]\n')
  await t.rejects(packPolicyFile(file, { limits: DEFAULT_POLICY_LIMITS }), {
    code: 'ERR_POLICY_INVALID',
    problems: [{ file, line: 4, key: 'roles[0].grants[0]' }],
  })
  writeFileSync(file, GOOD)
  await t.rejects(packPolicyFile(file, { limits: { ...DEFAULT_POLICY_LIMITS, maxAccounts: 0 } }), {
    code: 'ERR_POLICY_TOO_LARGE',
    message: /policyLimits\.maxAccounts/,
    detail: { limit: 'maxAccounts', found: 1, max: 0 },
  })
  await t.rejects(packPolicyFile(join(dir, 'missing.yaml'), { limits: DEFAULT_POLICY_LIMITS }), { code: 'ERR_POLICY_IO', detail: { errno: 'ENOENT' } })
})

t.test('aborting ends the worker and rejects', async (t) => {
  writeFileSync(file, GOOD)
  const ac = new AbortController()
  const packing = packPolicyFile(file, { limits: DEFAULT_POLICY_LIMITS, signal: ac.signal })
  ac.abort()
  await t.rejects(packing, { code: 'ERR_POLICY_IO', message: /cancelled/ })
  await t.rejects(packPolicyFile(file, { limits: DEFAULT_POLICY_LIMITS, signal: ac.signal }), { code: 'ERR_POLICY_IO' })
})
