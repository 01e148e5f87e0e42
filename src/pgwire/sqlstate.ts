import type { ErrorCode } from '../errors.js'

/**
 * The one SQLSTATE table: what a PostgreSQL client is told, for each Keyway
 * code that can end or refuse its connection. Codes a client cannot cause
 * fall back to {@link DEFAULT_SQLSTATE}.
 *
 * - 28000 invalid_authorization_specification: the token, the account or
 *   its grant no longer opens the resource (retrying will not help), and an
 *   upstream that refused the login the gateway made with the resource's
 *   credentials: what PostgreSQL itself answers a refused login.
 * - 08004 sqlserver_rejected_establishment_of_sqlconnection: the gateway
 *   could not read the resource's credential.
 * - 08P01 protocol_violation: the client's startup broke the protocol.
 * - 53300 too_many_connections: a connection limit.
 * - 08006 connection_failure: the resource or gateway cannot be reached.
 * - 57P01 admin_shutdown: the gateway is shutting down, or another end.
 */
export const SQLSTATE_BY_CODE: Readonly<Partial<Record<ErrorCode, string>>> = Object.freeze({
  ERR_TOKEN_MISSING: '28000',
  ERR_TOKEN_MALFORMED: '28000',
  ERR_TOKEN_ALG: '28000',
  ERR_TOKEN_KID_UNKNOWN: '28000',
  ERR_TOKEN_SIGNATURE: '28000',
  ERR_TOKEN_ISSUER: '28000',
  ERR_TOKEN_AUDIENCE: '28000',
  ERR_TOKEN_CLAIM_MISSING: '28000',
  ERR_TOKEN_EXPIRED: '28000',
  ERR_TOKEN_NOT_YET_VALID: '28000',
  ERR_TOKEN_REVOKED: '28000',
  ERR_ACCOUNT_UNKNOWN: '28000',
  ERR_ACCOUNT_SUSPENDED: '28000',
  ERR_RESOURCE_UNKNOWN: '28000',
  ERR_GRANT_DENIED: '28000',
  ERR_GRANT_EXPIRED: '28000',
  ERR_UPSTREAM_LOGIN_FAILED: '28000',
  ERR_CREDENTIAL_UNAVAILABLE: '08004',
  ERR_HANDSHAKE_MALFORMED: '08P01',
  ERR_HANDSHAKE_TIMEOUT: '08P01',
  ERR_PROTOCOL_VIOLATION: '08P01',
  ERR_CONN_LIMIT: '53300',
  ERR_ACCOUNT_CONN_LIMIT: '53300',
  ERR_UPSTREAM_UNREACHABLE: '08006',
  ERR_UPSTREAM_TIMEOUT: '08006',
  ERR_GATEWAY_UNAVAILABLE: '08006',
  ERR_SHUTTING_DOWN: '57P01',
  ERR_SESSION_CLOSED: '57P01',
})

/** SQLSTATE for a code the table does not name: 57P01 admin_shutdown. */
export const DEFAULT_SQLSTATE = '57P01'

/** The SQLSTATE a PostgreSQL client is told for `code`. */
export function sqlStateOf(code: string): string {
  return (SQLSTATE_BY_CODE as Record<string, string | undefined>)[code] ?? DEFAULT_SQLSTATE
}
