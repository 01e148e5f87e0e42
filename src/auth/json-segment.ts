/**
 * Decodes one base64url segment of a compact JWS (its header or payload) as
 * a JSON object, as jose's `decodeProtectedHeader` and `decodeJwt` do, without
 * loading jose: the sidecar reads its own token's claims but never verifies
 * one (issue 22). Throws a plain Error when the segment is not a base64url
 * JSON object; callers turn it into their own code.
 */
export function decodeJsonSegment(segment: string): Record<string, unknown> {
  if (segment === '') throw new Error('empty segment')
  const value: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(segment, 'base64url')))
  if (typeof value !== 'object' || value === null || Object.prototype.toString.call(value) !== '[object Object]') throw new Error('not a JSON object')
  return value as Record<string, unknown>
}
