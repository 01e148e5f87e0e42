/**
 * Micro-benchmarks of the per-tunnel checks, in process, on the policy and
 * token that bench/run.ts created with the CLI: `decide` and token
 * verification (uncached: the EdDSA check; cached: the gateway's default
 * cache). Figures in µs per call: median and p99 over batches.
 */
import { join } from 'node:path'
import { createTokenVerifier, loadKeySet } from '../src/auth/index.js'
import { systemClock } from '../src/clock.js'
import { loadConfig } from '../src/config/index.js'
import { loadPolicyFile } from '../src/policy/index.js'
import type { KeywaySetup } from './peers.js'
import type { Figures } from './workloads.js'

function quantiles(perCall: number[]): { median: number; p99: number } {
  const s = [...perCall].sort((a, b) => a - b)
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!
  return { median: at(0.5), p99: at(0.99) }
}

/** Times `fn` in `batches` batches of `size` calls; per-call µs of each batch. */
async function timeBatches(batches: number, size: number, fn: () => unknown): Promise<number[]> {
  const out: number[] = []
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < size; i++) {
      const r = fn()
      if (r instanceof Promise) await r
    }
    out.push(Number(process.hrtime.bigint() - t0) / 1000 / size)
  }
  return out
}

/** `decide` and token verification on the run's real policy and token. */
export async function micro(setup: KeywaySetup, quick: boolean): Promise<Record<string, Figures>> {
  const config = loadConfig({ file: setup.config, env: {} })
  const policy = await loadPolicyFile(config.policy)
  const account = policy.accountByName('bench-job')
  if (!account) throw new Error('bench-job account missing')
  const now = Date.now()
  let allowed = 0
  const decideBatches = await timeBatches(quick ? 200 : 1000, 1000, () => {
    if (policy.decide(account.id, 'redis', now).allow) allowed++
  })
  if (allowed === 0) throw new Error('decide never allowed')
  const keySet = await loadKeySet(join(setup.stateDir, 'jwks.json'))
  const base = {
    keySet: () => keySet,
    issuer: config.tokens.issuer,
    audience: config.tokens.audience,
    clock: systemClock,
    clockToleranceSec: 30,
    requireExp: false,
    policy: () => policy,
  }
  const uncached = createTokenVerifier({ ...base, cacheSize: 0 })
  const cached = createTokenVerifier({ ...base, cacheSize: config.tokens.cacheSize })
  await uncached.verify(setup.token)
  await cached.verify(setup.token)
  const verifyUncached = await timeBatches(quick ? 50 : 200, 20, () => uncached.verify(setup.token))
  const verifyCached = await timeBatches(quick ? 100 : 500, 200, () => cached.verify(setup.token))
  return {
    decide: quantiles(decideBatches),
    verifyUncached: quantiles(verifyUncached),
    verifyCached: quantiles(verifyCached),
  }
}
