/**
 * Generates large, valid, deterministic policy documents in memory for the
 * policy benchmarks (bench/policy-compile.ts).
 */
import type { PolicyDoc } from '../src/policy/index.js'

/** Sizes of a generated policy. */
export interface GenerateOptions {
  accounts: number
  roles: number
  resources: number
  /** Grants per role. */
  roleGrants: number
  /** Grants per account: direct on half of them for No Role accounts, the rest temporary. */
  accountGrants: number
}

/** Deterministic PRNG (mulberry32): the same policy and lookups on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const KINDS = ['datasource', 'server', 'cluster', 'website', 'cloud'] as const
const TYPES = ['postgres', 'mysql', 'ssh', 'k8s', 'http', 'aws'] as const
export const NOW = Date.UTC(2026, 0, 1)

function pickDistinct(random: () => number, n: number, k: number, out: number[]): number[] {
  out.length = 0
  while (out.length < k) {
    const x = Math.floor(random() * n)
    if (!out.includes(x)) out.push(x)
  }
  return out
}

/**
 * A valid policy of the given size, the same on every run: resources spread
 * over every kind, roles with `roleGrants` distinct resources each, and
 * accounts (9 in 10 services, 1 in 10 users) alternating No Role (direct and
 * temporary grants) and 1–3 roles (temporary grants only, as the No Role rule
 * requires). `grants` counts role grants plus account grants.
 */
export function generate(o: GenerateOptions): { doc: PolicyDoc; grants: number } {
  const random = rng(42)
  const resourceNames = Array.from({ length: o.resources }, (_, i) => `res-${String(i).padStart(5, '0')}`)
  const resources = resourceNames.map((name, i) => ({
    name,
    kind: KINDS[i % KINDS.length]!,
    type: TYPES[i % TYPES.length]!,
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:5432`,
  }))
  const roleNames = Array.from({ length: o.roles }, (_, i) => `role-${i}`)
  const scratch: number[] = []
  let grants = 0
  const roles = roleNames.map((name) => {
    const g = pickDistinct(random, o.resources, o.roleGrants, scratch).map((i) => resourceNames[i]!)
    grants += g.length
    return { name, grants: g }
  })
  // Every temporary grant gets its own instant (the worst case for compile):
  // about 1 in 10 already expired at NOW, the rest within 30 days.
  const instant = (): string => new Date(NOW + Math.floor((random() * 33 - 3) * 86_400) * 1000).toISOString()
  const accounts = []
  for (let i = 0; i < o.accounts; i++) {
    const service = i % 10 !== 0
    const noRole = i % 2 === 0
    const roleList = noRole ? [] : pickDistinct(random, o.roles, 1 + (i % 3), scratch).map((r) => roleNames[r]!)
    const accountGrants = pickDistinct(random, o.resources, o.accountGrants, scratch).map((r, j) =>
      noRole && j < Math.ceil(o.accountGrants / 2)
        ? { resource: resourceNames[r]! }
        : { resource: resourceNames[r]!, expires: instant() },
    )
    grants += accountGrants.length
    accounts.push(
      service
        ? {
            id: `svc_${i}`,
            type: 'service' as const,
            name: `service-${i}`,
            roles: roleList,
            grants: accountGrants,
            tokens: [{ id: `tok-${i}`, fingerprint: `sha256:${(i * 2654435761 >>> 0).toString(16).padStart(16, '0')}` }],
          }
        : {
            id: `usr_${i}`,
            type: 'user' as const,
            email: `user${i}@example.test`,
            roles: roleList,
            grants: accountGrants,
          },
    )
  }
  const doc: PolicyDoc = {
    version: 1,
    settings: { portOverrides: true, autoConnect: true, portRange: [20000, 39999] },
    resources,
    roles,
    accounts,
  }
  return { doc, grants }
}

