/**
 * Tokens and passwords: Ed25519 signing keys and key sets, token issue and
 * verification (with a policy check on every call), fingerprints, scrypt.
 */
export { tokenFingerprint, tokenHash, newTokenId } from './fingerprint.js'
export {
  SIGNING_ALG,
  generateSigningKey,
  loadSigningKey,
  importSigningKey,
  loadKeySet,
  createKeySet,
  publicJwkOf,
} from './keys.js'
export type { GeneratedSigningKey, SigningKey, KeySet, Jwks } from './keys.js'
export { issueToken } from './issue.js'
export type { IssueTokenOptions, TokenKind } from './issue.js'
export { createTokenVerifier, checkTokenStillValid, MAX_TOKEN_LENGTH } from './verify.js'
export type { TokenVerifier, TokenVerifierOptions, TokenVerifierStats, VerifiedToken, TokenPolicyCode } from './verify.js'
export { hashPassword, verifyPassword } from './password.js'
export { decodeTokenClaims, type UnverifiedClaims } from './decode.js'
export { LoginLimiter, type SignInLimiter, type LoginLimiterOptions } from './login-limiter.js'
