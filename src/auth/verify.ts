// jose loads on the first verification only (the sidecar never verifies a token: issue 22).
import type { CryptoKey, JWTPayload } from 'jose'
import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'
import { KeywayError, type ErrorCode } from '../errors.js'
import type { Account, CompiledPolicy } from '../policy/index.js'
import { fingerprintFromHash, tokenHash } from './fingerprint.js'
import { decodeJsonSegment } from './json-segment.js'
import type { TokenKind } from './issue.js'
import { SIGNING_ALG, type KeySet } from './keys.js'

/** Tokens longer than this are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 8192

/** A token that verified and is allowed by the current policy. */
export interface VerifiedToken {
  /** `sub`. */
  readonly accountId: string
  /** `jti`. */
  readonly tokenId: string
  /** `kw`. */
  readonly kind: TokenKind
  /** `iat`, epoch ms. */
  readonly issuedAt: number
  /** `exp`, epoch ms, or Infinity when the token has none. */
  readonly expiresAt: number
  /** `sha256:<16 hex>` of the token, for logs. */
  readonly fingerprint: string
  /** The account as the policy that admitted the token describes it. */
  readonly account: Account
}

/** The cryptographic part of a verification. */
type VerifiedClaims = Omit<VerifiedToken, 'account'>

/** A cache entry: the claims and the key that verified them. */
interface CacheEntry {
  readonly claims: VerifiedClaims
  readonly kid: string
  readonly key: CryptoKey
}

/** Options of {@link createTokenVerifier}. */
export interface TokenVerifierOptions {
  /**
   * The verification keys, or a function answering the current ones (read on
   * every call, so a reloaded key set takes effect without a new verifier).
   */
  keySet: KeySet | (() => KeySet)
  /** Required `iss`. */
  issuer: string
  /** Required `aud` (the token's aud must contain it). */
  audience: string
  clock: Clock
  /** Leeway for exp, nbf and iat, in seconds. Default 30. */
  clockToleranceSec?: number
  /** Require `exp` on every token. Default false (service tokens may be open-ended); login tokens always need one. */
  requireExp?: boolean
  /** Most verified tokens kept in the cache. 0 disables the cache. Default 10000. */
  cacheSize?: number
  /** The current policy, read on every verification. */
  policy: () => CompiledPolicy
}

/** Counters of a {@link TokenVerifier}'s cache. */
export interface TokenVerifierStats {
  /** Verifications answered from the cache (no signature check). */
  readonly hits: number
  /** Verifications that ran the signature check. */
  readonly misses: number
}

/** Verifies bearer tokens; see {@link createTokenVerifier}. */
export interface TokenVerifier {
  /**
   * Verifies `token` and checks it against the current policy.
   *
   * @throws KeywayError with an ERR_TOKEN_* or ERR_ACCOUNT_* code. Neither the
   *   message nor the detail ever holds the token; the detail holds its fingerprint.
   */
  verify(token: string): Promise<VerifiedToken>
  /**
   * Drops every cached verification. Not needed for policy changes (checked on
   * every call) nor for keys leaving the key set (cached entries re-check their
   * key); use it after a key rotation or compromise to force every token
   * through the signature check again.
   */
  clearCache(): void
  /** Entries in the cache now (expired entries may linger until touched). */
  readonly cacheSize: number
  /** Cache counters since creation. */
  readonly stats: TokenVerifierStats
}

/**
 * Creates a token verifier.
 *
 * Cheap checks run first (size, shape, header), then jose verifies the EdDSA
 * signature and the registered claims. The result of that cryptographic part
 * is cached by the token's sha256, never past the token's `exp`. The policy
 * part ({@link checkTokenStillValid}) and the expiry run on every call, cached
 * or not, against the policy of the moment: a policy change takes effect on the
 * next call without touching the cache. A cached entry also re-checks that its
 * key is still in the current key set. `clearCache()` is for key rotation.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const { issuer, audience, clock, policy } = options
  const keySetOption = options.keySet
  const currentKeySet = typeof keySetOption === 'function' ? keySetOption : () => keySetOption
  const toleranceSec = options.clockToleranceSec ?? 30
  const toleranceMs = toleranceSec * 1000
  const requireExp = options.requireExp ?? false
  const maxEntries = options.cacheSize ?? 10_000
  if (!(toleranceSec >= 0) || !Number.isFinite(toleranceSec)) {
    throw new KeywayError('ERR_CONFIG_INVALID', 'clockToleranceSec must be a finite number >= 0')
  }
  if (!Number.isInteger(maxEntries) || maxEntries < 0) throw new KeywayError('ERR_CONFIG_INVALID', 'cacheSize must be an integer >= 0')

  const cache =
    maxEntries === 0
      ? undefined
      : new LRUCache<string, CacheEntry>({
          max: maxEntries,
          // TTLs follow the injected clock; resolution 0 so a jump of a manual clock is seen at once.
          perf: { now: () => clock.now() },
          ttlResolution: 0,
        })
  const stats = { hits: 0, misses: 0 }
  const requiredClaims = requireExp ? ['sub', 'jti', 'iat', 'iss', 'aud', 'exp'] : ['sub', 'jti', 'iat', 'iss', 'aud']

  async function verifyClaims(token: string, fingerprint: string, now: number): Promise<CacheEntry> {
    const { kid, key } = precheck(token, currentKeySet(), fingerprint)
    stats.misses++
    let payload: JWTPayload
    try {
      const { jwtVerify } = await import('jose')
      ;({ payload } = await jwtVerify(token, key, {
        algorithms: [SIGNING_ALG],
        issuer,
        audience,
        typ: 'JWT',
        requiredClaims,
        clockTolerance: toleranceSec,
        currentDate: new Date(now),
      }))
    } catch (err) {
      throw fromJose(err, fingerprint)
    }
    const { sub, jti, iat, exp, kw } = payload as JWTPayload & { kw?: unknown }
    if (typeof sub !== 'string' || sub === '') throw reject('ERR_TOKEN_CLAIM_MISSING', 'claim "sub" is not a non-empty string', fingerprint)
    if (typeof jti !== 'string' || jti === '') throw reject('ERR_TOKEN_CLAIM_MISSING', 'claim "jti" is not a non-empty string', fingerprint)
    if (typeof iat !== 'number') throw reject('ERR_TOKEN_CLAIM_MISSING', 'claim "iat" is not a number', fingerprint)
    if (kw !== 'service' && kw !== 'login') throw reject('ERR_TOKEN_CLAIM_MISSING', 'claim "kw" is not "service" or "login"', fingerprint)
    if (exp === undefined && kw === 'login') throw reject('ERR_TOKEN_CLAIM_MISSING', 'login token has no "exp"', fingerprint)
    // jose checks iat only with maxTokenAge; a token from the future is refused here.
    if (iat * 1000 > now + toleranceMs) throw reject('ERR_TOKEN_NOT_YET_VALID', 'token issued in the future ("iat")', fingerprint)
    const claims: VerifiedClaims = Object.freeze({
      accountId: sub,
      tokenId: jti,
      kind: kw,
      issuedAt: iat * 1000,
      expiresAt: exp === undefined ? Infinity : exp * 1000,
      fingerprint,
    })
    return { claims, kid, key }
  }

  async function verify(token: string): Promise<VerifiedToken> {
    if (typeof token !== 'string' || token === '') throw new KeywayError('ERR_TOKEN_MISSING', 'no token was presented')
    // Cap before hashing too: hashing a huge string is the one cost an attacker could inflate.
    if (token.length > MAX_TOKEN_LENGTH) {
      throw new KeywayError('ERR_TOKEN_MALFORMED', `token rejected: longer than ${MAX_TOKEN_LENGTH} characters`, {
        detail: { length: token.length },
      })
    }
    const now = clock.now()
    const hash = tokenHash(token)
    const fingerprint = fingerprintFromHash(hash)
    let entry = cache?.get(hash)
    if (entry !== undefined) {
      stats.hits++
      // A key removed from (or replaced in) the key set takes its cached tokens with it.
      if (currentKeySet().get(entry.kid) !== entry.key) {
        cache!.delete(hash)
        throw reject('ERR_TOKEN_KID_UNKNOWN', 'token key id is not in the key set', fingerprint, undefined, { kid: shorten(entry.kid) })
      }
    } else {
      entry = await verifyClaims(token, fingerprint, now)
      if (cache !== undefined) {
        const { expiresAt } = entry.claims
        if (expiresAt === Infinity) cache.set(hash, entry)
        // lru-cache keeps an entry while its age is <= ttl: one ms less makes it stale at exp itself.
        else if (expiresAt - now > 1) cache.set(hash, entry, { ttl: expiresAt - now - 1 })
      }
    }
    const { claims } = entry
    // Same rule as jose (exp <= now - tolerance), in ms: holds on cache hits too.
    if (claims.expiresAt <= now - toleranceMs) throw reject('ERR_TOKEN_EXPIRED', 'token has expired', fingerprint, claims)
    const current = policy()
    const code = checkTokenStillValid(claims, current, now)
    if (code !== undefined) throw reject(code, POLICY_MESSAGES[code], fingerprint, claims)
    return { ...claims, account: current.accounts.get(claims.accountId)! }
  }

  return {
    verify,
    clearCache: () => cache?.clear(),
    get cacheSize() {
      return cache?.size ?? 0
    },
    get stats() {
      return { hits: stats.hits, misses: stats.misses }
    },
  }
}

/** The codes {@link checkTokenStillValid} can answer. */
export type TokenPolicyCode = 'ERR_ACCOUNT_UNKNOWN' | 'ERR_ACCOUNT_SUSPENDED' | 'ERR_TOKEN_REVOKED'

const POLICY_MESSAGES: Record<TokenPolicyCode, string> = {
  ERR_ACCOUNT_UNKNOWN: 'token subject is not an account',
  ERR_ACCOUNT_SUSPENDED: 'account is suspended',
  ERR_TOKEN_REVOKED: 'token is no longer valid for its account',
}

/**
 * The policy part of token validity, alone, for the gateway's revocation sweep
 * over live sessions: the account exists and is not suspended; a service token
 * belongs to a service account that still lists its `jti` with a record that
 * has not expired (rotation grace); a login token belongs to a user account.
 * The token's own `exp` is not checked here (compare `expiresAt` yourself).
 *
 * @param now epoch ms
 * @returns undefined when still valid, else the error code.
 */
export function checkTokenStillValid(
  verified: Pick<VerifiedToken, 'accountId' | 'tokenId' | 'kind'>,
  policy: Pick<CompiledPolicy, 'accounts'>,
  now: number,
): TokenPolicyCode | undefined {
  const account = policy.accounts.get(verified.accountId)
  if (account === undefined) return 'ERR_ACCOUNT_UNKNOWN'
  if (account.suspended) return 'ERR_ACCOUNT_SUSPENDED'
  if (verified.kind === 'service') {
    if (account.type !== 'service') return 'ERR_TOKEN_REVOKED'
    const record = account.tokens.get(verified.tokenId)
    if (record === undefined || !(record.expiresAt > now)) return 'ERR_TOKEN_REVOKED'
    return undefined
  }
  if (account.type !== 'user') return 'ERR_TOKEN_REVOKED'
  return undefined
}

const SEGMENT = /^[A-Za-z0-9_-]+$/

/** Refuses obvious garbage before jose runs; answers the verification key. */
function precheck(token: string, keySet: KeySet, fingerprint: string): { kid: string; key: CryptoKey } {
  const parts = token.split('.')
  if (parts.length === 5) throw reject('ERR_TOKEN_MALFORMED', 'token is a JWE (encrypted), not a signed JWT', fingerprint)
  if (parts.length !== 3) throw reject('ERR_TOKEN_MALFORMED', `token has ${parts.length} segments, not 3`, fingerprint)
  const [header, payload, signature] = parts as [string, string, string]
  // An empty signature is left for after the alg check, so alg "none" is reported as such.
  if (!SEGMENT.test(header) || !SEGMENT.test(payload) || (signature !== '' && !SEGMENT.test(signature))) {
    throw reject('ERR_TOKEN_MALFORMED', 'token segments are not base64url', fingerprint)
  }
  // Non-canonical base64url (stray low bits in the last character) decodes to the same signature:
  // refused, so that one signed token has exactly one spelling (one hash, one fingerprint).
  if (!isCanonical(header) || !isCanonical(payload) || !isCanonical(signature)) {
    throw reject('ERR_TOKEN_MALFORMED', 'token segments are not canonical base64url', fingerprint)
  }
  let protectedHeader: Record<string, unknown>
  try {
    protectedHeader = decodeJsonSegment(header)
  } catch {
    throw reject('ERR_TOKEN_MALFORMED', 'token header is not a base64url JSON object', fingerprint)
  }
  const { alg, kid } = protectedHeader
  if (alg !== SIGNING_ALG) {
    throw reject('ERR_TOKEN_ALG', `token algorithm is not ${SIGNING_ALG}`, fingerprint, undefined, { alg: shorten(alg) })
  }
  if (typeof kid !== 'string') throw reject('ERR_TOKEN_KID_UNKNOWN', 'token header has no "kid"', fingerprint)
  const key = keySet.get(kid)
  if (key === undefined) throw reject('ERR_TOKEN_KID_UNKNOWN', 'token key id is not in the key set', fingerprint, undefined, { kid: shorten(kid) })
  if (signature === '') throw reject('ERR_TOKEN_MALFORMED', 'token has no signature', fingerprint)
  return { kid, key }
}

const B64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** True when the unused low bits of the last character are zero (and the length is possible). */
function isCanonical(segment: string): boolean {
  const rest = segment.length % 4
  if (rest === 0) return true
  if (rest === 1) return false
  const last = B64URL_ALPHABET.indexOf(segment[segment.length - 1]!)
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0
}

/** Maps a jose error by its stable `code` (never by message). */
function fromJose(err: unknown, fingerprint: string): KeywayError {
  const joseCode = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined
  const claim = typeof err === 'object' && err !== null ? (err as { claim?: unknown }).claim : undefined
  const reason = typeof err === 'object' && err !== null ? (err as { reason?: unknown }).reason : undefined
  const detail = { joseCode, claim }
  switch (joseCode) {
    case 'ERR_JWT_EXPIRED':
      return reject('ERR_TOKEN_EXPIRED', 'token has expired', fingerprint, undefined, detail)
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (reason === 'missing' || reason === 'invalid') {
        return reject('ERR_TOKEN_CLAIM_MISSING', `claim ${JSON.stringify(claim)} is missing or has the wrong type`, fingerprint, undefined, detail)
      }
      switch (claim) {
        case 'iss':
          return reject('ERR_TOKEN_ISSUER', 'token issuer is not the configured issuer', fingerprint, undefined, detail)
        case 'aud':
          return reject('ERR_TOKEN_AUDIENCE', 'token audience is not the configured audience', fingerprint, undefined, detail)
        case 'nbf':
        case 'iat':
          return reject('ERR_TOKEN_NOT_YET_VALID', 'token is not valid yet', fingerprint, undefined, detail)
        case 'typ':
          return reject('ERR_TOKEN_MALFORMED', 'token header "typ" is not JWT', fingerprint, undefined, detail)
        default:
          return reject('ERR_TOKEN_CLAIM_MISSING', `claim ${JSON.stringify(claim)} failed validation`, fingerprint, undefined, detail)
      }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return reject('ERR_TOKEN_SIGNATURE', 'token signature does not verify', fingerprint, undefined, detail)
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return reject('ERR_TOKEN_ALG', `token algorithm is not ${SIGNING_ALG}`, fingerprint, undefined, detail)
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return reject('ERR_TOKEN_KID_UNKNOWN', 'token key id is not in the key set', fingerprint, undefined, detail)
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return reject('ERR_TOKEN_MALFORMED', 'token is not a well-formed signed JWT', fingerprint, undefined, detail)
    default:
      // Not a jose verdict (a bug or a crypto failure): fail closed, keep the cause for operators.
      return new KeywayError('ERR_INTERNAL', 'token verification failed unexpectedly', { cause: err, detail: { fingerprint } })
  }
}

function reject(
  code: ErrorCode,
  message: string,
  fingerprint: string,
  claims?: VerifiedClaims,
  extra?: Record<string, unknown>,
): KeywayError {
  const detail: Record<string, unknown> = { fingerprint, ...extra }
  if (claims !== undefined) {
    detail.accountId = claims.accountId
    detail.tokenId = claims.tokenId
  }
  return new KeywayError(code, `token rejected: ${message}`, { detail })
}

/** Attacker-chosen header values go to logs only short and as strings. */
function shorten(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value)
  return text.length > 64 ? `${text.slice(0, 64)}…` : text
}
