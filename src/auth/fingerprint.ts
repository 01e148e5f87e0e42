import { createHash, randomBytes } from 'node:crypto'

/**
 * Full lower-case hex sha256 of a token. Used as the verification cache key so
 * the cache never holds a token itself.
 */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

/**
 * The loggable name of a token: `sha256:` + the first 16 hex of its sha256.
 * Safe to log and to store in the policy; never log the token itself.
 */
export function tokenFingerprint(token: string): string {
  return fingerprintFromHash(tokenHash(token))
}

/** The fingerprint for a token whose {@link tokenHash} is already known. */
export function fingerprintFromHash(hash: string): string {
  return `sha256:${hash.slice(0, 16)}`
}

/**
 * A fresh random token id (the `jti`): `tok_` + 20 base64url characters
 * (120 random bits).
 */
export function newTokenId(): string {
  return `tok_${randomBytes(15).toString('base64url')}`
}
