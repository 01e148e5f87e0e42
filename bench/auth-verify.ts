/**
 * Token verification cost, per call, in µs: uncached (the EdDSA signature
 * check runs) and cached (hash + LRU lookup + policy check).
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/auth-verify.js
 */
import {
  createKeySet,
  createTokenVerifier,
  generateSigningKey,
  importSigningKey,
  issueToken,
  type TokenVerifier,
} from '../src/auth/index.js'
import { systemClock } from '../src/clock.js'
import type { Account, CompiledPolicy, TokenRecord } from '../src/policy/types.js'

const N = Number(process.env.N ?? 20_000)
const WARMUP = 2_000
const ISS = 'https://keyway.bench'
const AUD = 'keyway-gateway'

function policyWith(tokenIds: string[]): CompiledPolicy {
  const tokens = new Map<string, TokenRecord>(tokenIds.map((id) => [id, { id, fingerprint: 'sha256:0', expiresAt: Infinity }]))
  const account: Account = {
    id: 'svc_bench',
    type: 'service',
    name: 'bench',
    email: undefined,
    roles: [],
    suspended: false,
    tokens,
  }
  const unused = (): never => {
    throw new Error('unused')
  }
  return {
    generation: 1,
    digest: 'bench',
    settings: { portOverrides: false, autoConnect: false, portRange: [15000, 15999] },
    resources: new Map(),
    roles: new Map(),
    accounts: new Map([[account.id, account]]),
    accountByName: () => account,
    decide: unused,
    effectiveResources: unused,
    nextExpiry: () => Infinity,
  }
}

async function time(tokens: readonly string[], verifier: TokenVerifier): Promise<number[]> {
  const samples: number[] = new Array(tokens.length)
  for (let i = 0; i < tokens.length; i++) {
    const start = process.hrtime.bigint()
    await verifier.verify(tokens[i]!)
    samples[i] = Number(process.hrtime.bigint() - start) / 1000
  }
  return samples
}

function summary(name: string, samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length
  return `${name.padEnd(34)} n=${String(samples.length).padStart(6)}  median ${at(0.5).toFixed(1).padStart(7)} µs  p99 ${at(0.99)
    .toFixed(1)
    .padStart(7)} µs  mean ${mean.toFixed(1).padStart(7)} µs`
}

async function main(): Promise<void> {
  const gen = await generateSigningKey()
  const key = await importSigningKey(gen.privateJwk)
  const keySet = await createKeySet({ keys: [gen.publicJwk] })
  const now = Date.now()
  const ids = Array.from({ length: N + WARMUP }, (_, i) => `tok_${i}`)
  const policy = policyWith(ids)
  const fresh = await Promise.all(
    ids.map((tokenId) => issueToken(key, { issuer: ISS, audience: AUD, subject: 'svc_bench', tokenId, kind: 'service', now })),
  )
  const base = { keySet, issuer: ISS, audience: AUD, clock: systemClock, policy: () => policy }

  const off = createTokenVerifier({ ...base, cacheSize: 0 })
  await time(fresh.slice(0, WARMUP), off)
  const sameUncached = await time(new Array<string>(N).fill(fresh[0]!), off)

  const on = createTokenVerifier({ ...base, cacheSize: 2 * (N + WARMUP) })
  await time(fresh.slice(0, WARMUP), on)
  const freshMisses = await time(fresh.slice(WARMUP), on)
  const cached = await time(new Array<string>(N).fill(fresh[0]!), on)

  console.log(`node ${process.version}, ${process.arch}, token ${fresh[0]!.length} chars`)
  console.log(summary('uncached (cacheSize 0, same token)', sameUncached))
  console.log(summary('uncached (fresh tokens, cache on)', freshMisses))
  console.log(summary('cached (hit)', cached))
  console.log(`stats: ${JSON.stringify(on.stats)}`)
}

await main()
