import { KeywayError } from '../errors.js'
import { SIGNING_ALG, type SigningKey } from './keys.js'

/** What a token is for: a service account's long-lived token, or a user's login session. */
export type TokenKind = 'service' | 'login'

/** Options of {@link issueToken}. */
export interface IssueTokenOptions {
  /** `iss`: the configured issuer. */
  issuer: string
  /** `aud`: the configured audience. */
  audience: string
  /** `sub`: the account id. */
  subject: string
  /** `jti`: the token id (see {@link newTokenId}); service tokens are listed by it in the policy. */
  tokenId: string
  /** Epoch ms of `exp` (rounded down to the second). Absent or Infinity: no `exp`. Login tokens need one. */
  expiresAt?: number
  kind: TokenKind
  /** Epoch ms of `iat` (rounded down to the second). */
  now: number
}

/**
 * Signs a JWT (EdDSA) with `kid` and `typ: "JWT"` in the protected header and
 * the claims iss, aud, sub, jti, iat, optional exp, and `kw` (the kind).
 *
 * @throws KeywayError ERR_INTERNAL when a login token has no expiry or a time is not finite.
 */
export async function issueToken(key: SigningKey, options: IssueTokenOptions): Promise<string> {
  const { issuer, audience, subject, tokenId, kind, now } = options
  const expiresAt = options.expiresAt ?? Infinity
  if (!Number.isFinite(now)) throw new KeywayError('ERR_INTERNAL', 'issueToken: now must be a finite epoch ms')
  if (Number.isNaN(expiresAt) || expiresAt === -Infinity) {
    throw new KeywayError('ERR_INTERNAL', 'issueToken: expiresAt must be epoch ms or Infinity')
  }
  if (kind === 'login' && expiresAt === Infinity) throw new KeywayError('ERR_INTERNAL', 'issueToken: login tokens need an expiry')
  // jose loads when a token is issued or verified, not with this module (issue 22).
  const { SignJWT } = await import('jose')
  const jwt = new SignJWT({ kw: kind })
    .setProtectedHeader({ alg: SIGNING_ALG, kid: key.kid, typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience(audience)
    .setSubject(subject)
    .setJti(tokenId)
    .setIssuedAt(Math.floor(now / 1000))
  if (expiresAt !== Infinity) jwt.setExpirationTime(Math.floor(expiresAt / 1000))
  return jwt.sign(key.privateKey)
}
