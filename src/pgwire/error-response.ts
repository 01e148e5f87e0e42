import { sqlStateOf } from './sqlstate.js'

/** The fields of a PostgreSQL ErrorResponse that Keyway sends. */
export interface ErrorFields {
  /** `FATAL` ends the connection (the only severity Keyway sends). */
  readonly severity: 'FATAL' | 'ERROR'
  /** Five-character SQLSTATE. */
  readonly sqlState: string
  readonly message: string
}

/**
 * Encodes a protocol 3 ErrorResponse ('E', int32 length, then fields S, V, C
 * and M as NUL-terminated strings, then a NUL). NUL bytes in the message are
 * dropped: they would end the field.
 */
export function encodeErrorResponse(fields: ErrorFields): Buffer {
  const parts: Array<[string, string]> = [
    ['S', fields.severity],
    ['V', fields.severity],
    ['C', fields.sqlState],
    ['M', fields.message.replaceAll('\0', '')],
  ]
  let length = 4 + 1
  const encoded = parts.map(([tag, value]) => {
    const bytes = Buffer.from(value, 'utf8')
    length += 1 + bytes.length + 1
    return [tag, bytes] as const
  })
  const out = Buffer.alloc(1 + length)
  out.write('E', 0, 'latin1')
  out.writeInt32BE(length, 1)
  let at = 5
  for (const [tag, bytes] of encoded) {
    out.write(tag, at++, 'latin1')
    bytes.copy(out, at)
    at += bytes.length
    out[at++] = 0
  }
  out[at] = 0
  return out
}

/**
 * The FATAL ErrorResponse that tells a PostgreSQL client why Keyway ended or
 * refused its connection: SQLSTATE from the one table (sqlstate.ts), message
 * `keyway: CODE: message`.
 */
export function keywayErrorResponse(code: string, message: string): Buffer {
  return encodeErrorResponse({ severity: 'FATAL', sqlState: sqlStateOf(code), message: `keyway: ${code}: ${message}` })
}
