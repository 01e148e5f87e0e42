import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { stringify } from 'yaml'
import { DEFAULT_POLICY_LIMITS, type PolicyLimits } from '../../src/policy/limits.js'
import { compilePolicyText } from '../../src/policy/compile.js'
import { PolicyStore, type ReloadResult } from '../../src/policy/store.js'
import { packPolicyFileHere } from '../../src/policy/pack-here.js'
import type { PackFileOptions } from '../../src/policy/pack-file.js'
import type { CompiledPolicy, PolicyDoc } from '../../src/policy/types.js'
import { generate, NOW, rng } from '../../bench/policy-generate.js'

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-store-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function small(accounts: number): PolicyDoc {
  return {
    version: 1,
    resources: [{ name: 'db', kind: 'datasource', type: 'postgres', address: '127.0.0.1:5000' }],
    roles: [{ name: 'reader', grants: ['db'] }],
    accounts: Array.from({ length: accounts }, (_, i) => ({
      id: `svc_${i}`,
      type: 'service' as const,
      name: `s${i}`,
      roles: ['reader'],
      tokens: [{ id: `t${i}`, fingerprint: 'sha256:0123456789abcdef' }],
    })),
  }
}

// The worker's own steps on this thread: these tests are about what the store
// does with a result (a worker start costs seconds under the test runner's
// TypeScript loader); test/policy/pack-file.ts covers the worker.
const here = async (file: string, o: PackFileOptions) => packPolicyFileHere({ file, limits: o.limits })

function storeFor(t: Test, file: string, limits?: Partial<PolicyLimits>, worker = false): PolicyStore {
  const store = new PolicyStore({ file, limits: { ...DEFAULT_POLICY_LIMITS, ...limits }, ...(worker ? {} : { pack: here }) })
  t.teardown(() => store.close())
  return store
}

t.test('a policy over a count limit is refused on reload with ERR_POLICY_TOO_LARGE; the last good one stays', async (t) => {
  const file = join(tempDir(t), 'policy.yaml')
  writeFileSync(file, stringify(small(3)))
  const store = storeFor(t, file, { maxAccounts: 3, maxTokens: 3 })
  const first = await store.start()
  t.equal(first.accounts.size, 3)

  for (const [doc, limit] of [
    [small(4), 'maxAccounts'],
    [{ ...small(3), accounts: small(3).accounts!.map((a) => ({ ...a, tokens: [...a.tokens!, { id: 'x', fingerprint: 'sha256:0123456789abcdef' }] })) }, 'maxTokens'],
  ] as const) {
    writeFileSync(file, stringify(doc))
    const result = await store.reload()
    t.equal(result.ok, false, limit)
    if (result.ok) continue
    t.equal(result.error.code, 'ERR_POLICY_TOO_LARGE')
    t.match(result.error.message, `policyLimits.${limit}`, 'the message names the setting that raises the limit')
    t.match(result.error.detail, { limit })
    t.equal(store.current(), first, 'the last good policy is kept')
    t.equal(store.lastError?.code, 'ERR_POLICY_TOO_LARGE')
  }

  writeFileSync(file, stringify(small(2)))
  const ok = await store.reload()
  t.equal(ok.ok, true)
  t.equal(store.current().accounts.size, 2)
  t.equal(store.current().generation, 2)
})

t.test('a policy file over maxBytes is refused unread; the last good one stays; a first load over it fails start()', async (t) => {
  const file = join(tempDir(t), 'policy.yaml')
  const good = stringify(small(2))
  writeFileSync(file, good)
  const store = storeFor(t, file, { maxBytes: good.length + 100 })
  const first = await store.start()
  writeFileSync(file, good + '#'.repeat(200) + '\n')
  const result = await store.reload()
  t.equal(result.ok, false)
  if (!result.ok) {
    t.equal(result.error.code, 'ERR_POLICY_TOO_LARGE')
    t.match(result.error.message, 'policyLimits.maxBytes')
  }
  t.equal(store.current(), first)

  const fresh = storeFor(t, file, { maxBytes: good.length })
  await t.rejects(fresh.start(), { code: 'ERR_POLICY_TOO_LARGE' })
})

/** Samples `decide` on both policies: the same decisions, field for field. */
function sameDecisions(t: Test, got: CompiledPolicy, want: CompiledPolicy, doc: PolicyDoc, lookups: number): void {
  const random = rng(11)
  const accounts = doc.accounts!
  const resources = doc.resources!
  let differences = 0
  for (let i = 0; i < lookups; i++) {
    const a = accounts[Math.floor(random() * accounts.length)]!.id
    const r = resources[Math.floor(random() * resources.length)]!.name
    const now = NOW + Math.floor((random() * 40 - 5) * 86_400_000)
    if (JSON.stringify(got.decide(a, r, now)) !== JSON.stringify(want.decide(a, r, now))) differences++
  }
  t.equal(differences, 0, `${lookups} sampled decisions agree`)
  t.equal(got.digest, want.digest)
  t.same([...got.accounts.keys()], [...want.accounts.keys()])
}

t.test('the event loop keeps turning while a large policy reloads, and the result decides like a synchronous compile', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'policy.yaml')
  writeFileSync(file, stringify(small(1)))
  const store = storeFor(t, file, {}, true)
  await store.start()

  const { doc } = generate({ accounts: 5_000, roles: 100, resources: 2_000, roleGrants: 200, accountGrants: 6 })
  const text = stringify(doc)
  writeFileSync(file, text)

  // What a reload used to cost the loop in one piece: parse, validate and compile on this thread.
  const t0 = performance.now()
  const sync = compilePolicyText(text, file)
  const unslicedMs = performance.now() - t0

  let last = performance.now()
  let maxGap = 0
  const ticker = setInterval(() => {
    const now = performance.now()
    maxGap = Math.max(maxGap, now - last)
    last = now
  }, 1)
  t.teardown(() => clearInterval(ticker))
  const result: ReloadResult = await store.reload()
  // The stretch since the last tick counts too: a reload that blocked to its end resolves before any timer runs again.
  maxGap = Math.max(maxGap, performance.now() - last)
  clearInterval(ticker)
  t.equal(result.ok, true)
  t.comment(`unsliced ${unslicedMs.toFixed(0)} ms, longest event-loop gap during the reload ${maxGap.toFixed(0)} ms`)
  // Generous: a busy machine deschedules us now and then, but never for a whole compile's worth.
  t.ok(maxGap < unslicedMs / 4, `longest gap ${maxGap.toFixed(0)} ms is far below the unsliced ${unslicedMs.toFixed(0)} ms`)
  sameDecisions(t, store.current(), sync, doc, 50_000)
})
