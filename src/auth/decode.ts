import { KeywayError } from '../errors.js'
import { decodeJsonSegment } from './json-segment.js'
import { MAX_TOKEN_LENGTH } from './verify.js'

/** What a holder can read from its own token without the gateway's keys. */
export interface UnverifiedClaims {
  /** `exp` in epoch ms, or undefined when the token has none. */
  readonly expiresAt: number | undefined
  /** `jti`, when present. */
  readonly tokenId: string | undefined
}

const SEGMENT = /^[A-Za-z0-9_-]+$/

/**
 * Reads a compact JWS's header and claims WITHOUT verifying it: for the holder
 * of a token (the sidecar) to learn its `exp` and to tell a token that can
 * never work (not a JWS at all) from one the gateway must judge. Throws
 * `ERR_TOKEN_MALFORMED` (never quoting the token) when the text is not three
 * base64url segments with a JSON object header and payload, or when `exp` is
 * not a number.
 */
export function decodeTokenClaims(token: string): UnverifiedClaims {
  const malformed = (why: string): KeywayError => new KeywayError('ERR_TOKEN_MALFORMED', `the token cannot be parsed: ${why}`)
  if (token.length > MAX_TOKEN_LENGTH) throw malformed(`longer than ${MAX_TOKEN_LENGTH} characters`)
  const parts = token.split('.')
  if (parts.length !== 3) throw malformed(`a token is three base64url segments separated by dots, this text has ${parts.length}`)
  if (!parts.every((p) => SEGMENT.test(p))) throw malformed('its segments are not base64url (a stray character, quote or space inside?)')
  let payload: Record<string, unknown>
  try {
    decodeJsonSegment(parts[0]!)
    payload = decodeJsonSegment(parts[1]!)
  } catch {
    throw malformed('its header or payload is not a base64url JSON object')
  }
  const { exp, jti } = payload
  if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp))) throw malformed('claim "exp" is not a number')
  return { expiresAt: exp === undefined ? undefined : exp * 1000, tokenId: typeof jti === 'string' ? jti : undefined }
}
