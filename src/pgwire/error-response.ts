import type { ErrorCode } from '../errors.js'
import { encodeMessage } from './messages.js'

/**
 * The SQLSTATE a PostgreSQL client is given for a Keyway error code, so that
 * psql, pg and JDBC classify it (28000: not authorized; 08xxx: connection).
 */
const SQLSTATE: Partial<Record<ErrorCode, string>> = {
  ERR_ACCOUNT_UNKNOWN: '28000',
  ERR_ACCOUNT_SUSPENDED: '28000',
  ERR_RESOURCE_UNKNOWN: '28000',
  ERR_GRANT_DENIED: '28000',
  ERR_GRANT_EXPIRED: '28000',
  ERR_TOKEN_EXPIRED: '28000',
  ERR_TOKEN_REVOKED: '28000',
  ERR_UPSTREAM_LOGIN_FAILED: '28000',
  ERR_CREDENTIAL_UNAVAILABLE: '08004',
  ERR_UPSTREAM_UNREACHABLE: '08001',
  ERR_UPSTREAM_TIMEOUT: '08001',
  ERR_HANDSHAKE_MALFORMED: '08P01',
  ERR_HANDSHAKE_TIMEOUT: '08P01',
  ERR_PROTOCOL_VIOLATION: '08P01',
  ERR_CONN_LIMIT: '53300',
  ERR_ACCOUNT_CONN_LIMIT: '53300',
  ERR_SHUTTING_DOWN: '57P01',
}

/** SQLSTATE for `code`; XX000 (internal_error) for codes without a closer one. */
export function sqlstateOf(code: ErrorCode): string {
  return SQLSTATE[code] ?? 'XX000'
}

/**
 * A FATAL ErrorResponse carrying Keyway's stable code at the start of the
 * message (`ERR_X: ...`), which every client prints.
 */
export function encodeErrorResponse(code: ErrorCode, message: string): Buffer {
  const fields = [`SFATAL`, `VFATAL`, `C${sqlstateOf(code)}`, `M${code}: ${message}`]
  return encodeMessage('E', Buffer.from(`${fields.join('\0')}\0\0`, 'utf8'))
}
