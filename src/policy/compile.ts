import { createHash } from 'node:crypto'
import { DocumentError } from '../errors.js'
import { assemblePolicySync } from './assemble.js'
import { checkPolicyLimits, type PolicyLimits } from './limits.js'
import { packPolicy, type PackedPolicy } from './pack.js'
import { parsePolicyText } from './parse.js'
import type { CompiledPolicy } from './types.js'
import { POLICY_KEYS, validatePolicy, type Locate } from './validate.js'

/** Options of {@link compilePolicy}. */
export interface CompileOptions {
  /** File name put in problems. Default `<policy>`. */
  file?: string
  /** Locates a document path in the source, for problem positions (see `ParsedPolicy.locate`). */
  locate?: Locate
  /** The policy's generation (see {@link CompiledPolicy.generation}). Default 1. */
  generation?: number
  /**
   * Tuning: role grants are kept as bitsets over resources (one memory load
   * per role when deciding) while all of them fit in this many bytes, else as
   * sorted index arrays (binary search). Default 64 MiB.
   */
  bitsetMaxBytes?: number
  /** Refuse a document over these entity counts with `ERR_POLICY_TOO_LARGE` (before validating it). Default: no limits. */
  limits?: PolicyLimits
}

/**
 * Validates a policy document and compiles it into an immutable, indexed
 * {@link CompiledPolicy}. Throws `DocumentError('ERR_POLICY_INVALID')` carrying
 * every problem found, or `KeywayError('ERR_POLICY_TOO_LARGE')`.
 *
 * The same path as a reload, run at once: {@link packPolicyDocument} (what a
 * reload runs on a worker thread), then `assemblePolicySync` (what a reload
 * runs in slices).
 */
export function compilePolicy(doc: unknown, options: CompileOptions = {}): CompiledPolicy {
  return assemblePolicySync(packPolicyDocument(doc, options), options.generation ?? 1)
}

/**
 * Checks limits, validates, digests and packs a policy document into its
 * transferable form. Throws like {@link compilePolicy}.
 */
export function packPolicyDocument(doc: unknown, options: CompileOptions = {}): PackedPolicy {
  const file = options.file ?? '<policy>'
  if (options.limits) checkPolicyLimits(doc, options.limits, file)
  const result = validatePolicy(doc, { file, ...(options.locate ? { locate: options.locate } : {}) })
  if (!result.ok) throw new DocumentError('ERR_POLICY_INVALID', result.problems)
  return packPolicy(result.policy, policyDigest(doc), options.bitsetMaxBytes)
}

/**
 * Parses and compiles policy YAML in one step; problems carry this text's
 * lines and columns. Throws `DocumentError('ERR_POLICY_INVALID')`.
 */
export function compilePolicyText(text: string, file: string, generation?: number): CompiledPolicy {
  const parsed = parsePolicyText(text, file)
  return compilePolicy(parsed.value, { file, locate: parsed.locate, ...(generation === undefined ? {} : { generation }) })
}

// ---------------------------------------------------------------------------
// Digest
// ---------------------------------------------------------------------------

type Kind = keyof typeof POLICY_KEYS
const SORTED_KEYS: Record<Kind, readonly string[]> = {
  policy: [...POLICY_KEYS.policy].sort(),
  settings: [...POLICY_KEYS.settings].sort(),
  resource: [...POLICY_KEYS.resource].sort(),
  role: [...POLICY_KEYS.role].sort(),
  account: [...POLICY_KEYS.account].sort(),
  grant: [...POLICY_KEYS.grant].sort(),
  token: [...POLICY_KEYS.token].sort(),
}
const QUOTED_KEYS = Object.fromEntries(
  Object.entries(SORTED_KEYS).map(([k, keys]) => [k, keys.map((x) => JSON.stringify(x))]),
) as unknown as Record<Kind, readonly string[]>
/** Kind of the items of list-valued keys, and of mapping-valued keys. */
const CHILD_KIND: Partial<Record<string, Kind>> = {
  'policy.settings': 'settings',
  'policy.resources': 'resource',
  'policy.roles': 'role',
  'policy.accounts': 'account',
  'account.grants': 'grant',
  'account.tokens': 'token',
}

/**
 * sha256 (hex) of the canonical JSON of a validated policy document: object
 * keys sorted, no whitespace, absent keys left out. Key order, comments and
 * YAML style do not change it. Written by the document's schema (no key
 * sorting per object) and streamed into the hash, so a million grants never
 * become one string. Only meaningful for documents that passed validation
 * (unknown keys are not written).
 */
export function policyDigest(doc: unknown): string {
  const hash = createHash('sha256')
  let buf = ''
  const flush = (): void => {
    if (buf.length >= 65536) {
      hash.update(buf)
      buf = ''
    }
  }
  const q = JSON.stringify
  const value = (v: unknown, kind: Kind | undefined): void => {
    if (v === null || typeof v !== 'object') {
      buf += v === undefined ? 'null' : typeof v === 'number' && !Number.isFinite(v) ? 'null' : q(v)
      return
    }
    if (Array.isArray(v)) {
      buf += '['
      for (let i = 0; i < v.length; i++) {
        if (i > 0) buf += ','
        value(v[i], kind)
      }
      buf += ']'
      flush()
      return
    }
    if (v instanceof Date) {
      buf += q(v.toISOString())
      return
    }
    const o = v as Record<string, unknown>
    if (kind === 'grant') {
      // The hot case: a million of these.
      buf += o.expires === undefined ? `{"resource":${q(o.resource)}}` : `{"expires":${q(o.expires)},"resource":${q(o.resource)}}`
      return
    }
    const keys = kind === undefined ? Object.keys(o).sort() : SORTED_KEYS[kind]
    const quoted = kind === undefined ? keys.map((k) => q(k)) : QUOTED_KEYS[kind]
    buf += '{'
    let first = true
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!
      const x = o[k]
      if (x === undefined) continue
      buf += first ? `${quoted[i]!}:` : `,${quoted[i]!}:`
      first = false
      if (typeof x === 'string') buf += q(x)
      else value(x, kind === undefined ? undefined : CHILD_KIND[`${kind}.${k}`])
    }
    buf += '}'
  }
  const root = doc ?? {}
  value(root, typeof root === 'object' && !Array.isArray(root) ? 'policy' : undefined)
  hash.update(buf)
  return hash.digest('hex')
}
