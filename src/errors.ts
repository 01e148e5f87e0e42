/** The HTTP statuses an error code may answer with (see {@link httpStatusOf}). */
export type HttpErrorStatus = 400 | 401 | 403 | 404 | 408 | 409 | 412 | 413 | 415 | 429 | 500 | 502 | 503 | 504

/** One row of the error table: the HTTP status every HTTP surface answers with, and the meaning. */
export interface ErrorInfo {
  readonly status: HttpErrorStatus
  readonly meaning: string
}

/**
 * Every error Keyway reports carries one of these stable codes. Callers branch
 * on `code`, never on a message. The list is closed: adding a code means adding
 * it here, with its HTTP status (a code without one does not type-check), and
 * to docs/errors.md (a test checks both agree, status included).
 */
export const ERROR_CODES = {
  // configuration and policy
  ERR_CONFIG_INVALID: { status: 500, meaning: 'The daemon configuration file is invalid.' },
  ERR_CONFIG_IO: { status: 500, meaning: 'A file named by the configuration could not be read or written.' },
  ERR_POLICY_INVALID: { status: 400, meaning: 'The policy document has one or more problems (each with file:line:col).' },
  ERR_POLICY_IO: { status: 500, meaning: 'The policy file could not be read or written.' },
  ERR_POLICY_LOCKED: { status: 409, meaning: 'Another edit holds the policy lock and did not release it in time.' },
  ERR_CREDENTIALS_MODE: { status: 500, meaning: 'The credentials file (password hashes) is readable or writable by others than its owner and group.' },
  ERR_CREDENTIALS_INVALID: { status: 500, meaning: 'The credentials file is not in the credentials format.' },
  ERR_POLICY_TOO_LARGE: { status: 413, meaning: 'The policy file or one of its entity counts is over its configured limit (policyLimits).' },
  ERR_STORE_UNREACHABLE: { status: 503, meaning: 'The PostgreSQL policy store could not be reached or refused the login.' },
  ERR_STORE_SCHEMA_MISSING: { status: 500, meaning: 'The database has no Keyway schema, or an older one than this binary needs (run keyway store migrate).' },
  ERR_STORE_SCHEMA_NEWER: { status: 500, meaning: 'The database schema is newer than this binary knows and not readable by it; it refuses to run against it.' },
  ERR_STORE_PERMISSION: { status: 500, meaning: 'The database role lacks a right the operation needs (read, LISTEN, write or create).' },
  ERR_STORE_EMPTY: { status: 503, meaning: 'The PostgreSQL store holds no policy yet; a gateway never starts on an empty one.' },
  ERR_STORE_STALE: { status: 503, meaning: 'The policy store has been unreachable longer than postgres.maxStaleness; the gateway fails closed.' },

  // tokens
  ERR_TOKEN_MISSING: { status: 401, meaning: 'No token was presented.' },
  ERR_TOKEN_MALFORMED: { status: 401, meaning: 'The token is not a well-formed compact JWS.' },
  ERR_TOKEN_ALG: { status: 401, meaning: 'The token uses an algorithm outside the allowlist (alg none, HMAC, ...).' },
  ERR_TOKEN_KID_UNKNOWN: { status: 401, meaning: 'The token names a key id that is not in the key set.' },
  ERR_TOKEN_SIGNATURE: { status: 401, meaning: 'The token signature does not verify.' },
  ERR_TOKEN_ISSUER: { status: 401, meaning: 'The token issuer is not the configured issuer.' },
  ERR_TOKEN_AUDIENCE: { status: 401, meaning: 'The token audience is not the configured audience.' },
  ERR_TOKEN_CLAIM_MISSING: { status: 401, meaning: 'A required claim (sub, jti, iat, exp, ...) is missing or has the wrong type.' },
  ERR_TOKEN_EXPIRED: { status: 401, meaning: 'The token has expired.' },
  ERR_TOKEN_NOT_YET_VALID: { status: 401, meaning: 'The token is not valid yet (iat or nbf in the future).' },
  ERR_TOKEN_REVOKED: { status: 401, meaning: 'The token id is no longer listed for its account (revoked or rotated out).' },

  // accounts and grants
  ERR_ACCOUNT_UNKNOWN: { status: 401, meaning: 'The account does not exist.' },
  ERR_ACCOUNT_SUSPENDED: { status: 403, meaning: 'The account is suspended.' },
  ERR_RESOURCE_UNKNOWN: { status: 404, meaning: 'The resource does not exist.' },
  ERR_GRANT_DENIED: { status: 404, meaning: 'The account holds no grant for the resource.' },
  ERR_GRANT_EXPIRED: { status: 403, meaning: 'The account held temporary access to the resource, but it has expired.' },
  ERR_LOGIN_FAILED: { status: 401, meaning: 'Email or password is wrong, or the account cannot log in.' },
  ERR_LOGIN_THROTTLED: { status: 429, meaning: 'Too many failed logins for this account or from this address; retry after the delay given.' },

  // tunnel handshake and forwarding
  ERR_HANDSHAKE_MALFORMED: { status: 400, meaning: 'The tunnel handshake is not in the Keyway wire format.' },
  ERR_HANDSHAKE_VERSION: { status: 400, meaning: 'The tunnel handshake uses an unsupported protocol version.' },
  ERR_HANDSHAKE_TOO_LARGE: { status: 413, meaning: 'The tunnel handshake exceeds its size limit.' },
  ERR_HANDSHAKE_TIMEOUT: { status: 504, meaning: 'The tunnel handshake did not complete in time.' },
  ERR_PROTOCOL_VIOLATION: { status: 502, meaning: 'A multiplexed tunnel connection sent a frame that breaks the protocol rules; the connection is closed.' },
  ERR_UPSTREAM_UNREACHABLE: { status: 502, meaning: 'The upstream refused or reset the connection.' },
  ERR_UPSTREAM_TIMEOUT: { status: 504, meaning: 'The upstream did not accept the connection within the connect timeout.' },
  ERR_CONN_LIMIT: { status: 503, meaning: 'The gateway is at its connection limit.' },
  ERR_PROXY_HEADER: { status: 400, meaning: 'A connection from a configured load balancer did not start with a valid PROXY protocol v2 header in time.' },
  ERR_API_HEADERS_TIMEOUT: { status: 408, meaning: 'An API request did not send its headers within gateway.apiHeadersTimeout.' },
  ERR_API_REQUEST_TIMEOUT: { status: 408, meaning: 'An API request did not complete within gateway.apiRequestTimeout.' },
  ERR_API_ADDRESS_LIMIT: { status: 429, meaning: 'The client address holds as many API connections as gateway.apiMaxConnectionsPerAddress allows.' },
  ERR_ACCOUNT_CONN_LIMIT: { status: 429, meaning: 'The account is at its connection limit.' },
  ERR_SHUTTING_DOWN: { status: 503, meaning: 'The daemon is shutting down and accepts no new sessions.' },
  ERR_SESSION_CLOSED: { status: 502, meaning: 'The other end closed a live session: idle timeout, maximum lifetime, half-close timeout or a reset; the message says which.' },
  ERR_GATEWAY_UNAVAILABLE: { status: 503, meaning: 'No gateway could be reached.' },
  ERR_INTERNAL: { status: 500, meaning: 'An unexpected internal error; the message says more.' },

  // sidecar and command line
  ERR_PORT_IN_USE: { status: 409, meaning: 'A port that must be bound (a sidecar resource, a gateway or control listener) is already in use.' },
  ERR_NOT_CONNECTED: { status: 409, meaning: 'The resource is not connected in this sidecar.' },
  ERR_SIDECAR_UNREACHABLE: { status: 503, meaning: 'The sidecar control endpoint could not be reached.' },
  ERR_NOT_READY: { status: 503, meaning: 'The sidecar did not become ready in time.' },
  ERR_USAGE: { status: 400, meaning: 'The command line is wrong; the message says how to call it.' },
  ERR_NOT_FOUND: { status: 404, meaning: 'The named account, role or resource does not exist.' },
  ERR_ALREADY_EXISTS: { status: 409, meaning: 'The named account, role or resource already exists.' },
  ERR_DIRECT_GRANT_WITH_ROLE: { status: 409, meaning: 'A permanent direct grant needs the account to have No Role.' },
  ERR_ROLE_WITH_DIRECT_GRANTS: { status: 409, meaning: 'The account holds permanent direct grants, which a role would override.' },
  ERR_PRECONDITION: { status: 409, meaning: 'The command is valid but the policy is not in the state it needs (auto-connect needs port overrides on); the message says what to change first.' },
  ERR_FILE_EXISTS: { status: 409, meaning: 'A file that would be written already exists.' },
  ERR_CREDENTIAL_UNAVAILABLE: { status: 502, meaning: "The gateway could not read the resource's upstream secret (file or environment variable) or its upstream CA." },
  ERR_UPSTREAM_LOGIN_FAILED: { status: 502, meaning: 'The upstream refused the login the gateway made with the resource credentials, or broke its protocol while logging in.' },
  ERR_CONTROL_UNAUTHORIZED: { status: 401, meaning: 'The sidecar control API was asked over TCP without its bearer secret (or with a wrong one), or its TCP access is off.' },
  ERR_ADMIN_UNAUTHENTICATED: { status: 401, meaning: 'The admin API request carries no valid session or bearer token.' },
  ERR_ADMIN_FORBIDDEN: { status: 403, meaning: 'The caller is signed in but is not an admin (a service token, or a user without admin access).' },
  ERR_CSRF: { status: 403, meaning: 'A state-changing admin request sent with a session cookie lacks the session CSRF token or comes from another origin.' },
  ERR_PRECONDITION_FAILED: { status: 412, meaning: 'The object changed since it was read (If-Match does not match its ETag); read it again and redo the edit.' },
  ERR_BODY_TOO_LARGE: { status: 413, meaning: 'The request body exceeds the admin API size limit.' },
  ERR_CONTENT_TYPE: { status: 415, meaning: 'The request body has a content type the endpoint does not take.' },
  ERR_ADMIN_INSECURE_LISTEN: { status: 500, meaning: 'The admin listener would serve a non-loopback address without TLS.' },
  ERR_ADMIN_NO_GATEWAY: { status: 409, meaning: 'The admin server runs without a gateway (keyway admin serve on the file store): it holds no live sessions to list or end.' },
  ERR_SESSION_ENDED_BY_ADMIN: { status: 409, meaning: 'An admin ended this live session (DELETE /v1/admin/sessions/{id}).' },
  ERR_SESSION_UNANSWERED: { status: 504, meaning: 'The gateway holding this live session did not answer the request to end it in time (PostgreSQL store); nothing was ended.' },
} as const satisfies Record<`ERR_${string}`, ErrorInfo>

/** The closed union of Keyway error codes. */
export type ErrorCode = keyof typeof ERROR_CODES

/**
 * The HTTP status of an error code: the one mapping used by the gateway API,
 * the sidecar control API, the observability endpoints and the admin API.
 */
export function httpStatusOf(code: ErrorCode): HttpErrorStatus {
  return ERROR_CODES[code].status
}

/** True when `value` is one of the codes of {@link ERROR_CODES} (e.g. read from an answer). */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value)
}

/** Options carried by every Keyway error. */
export interface KeywayErrorOptions {
  cause?: unknown
  /** Extra structured detail, safe to log (never a secret). */
  detail?: Record<string, unknown>
}

/**
 * The one error class of Keyway. `code` is stable; `message` is for people.
 */
export class KeywayError extends Error {
  readonly code: ErrorCode
  readonly detail: Record<string, unknown> | undefined

  constructor(code: ErrorCode, message: string, options: KeywayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'KeywayError'
    this.code = code
    this.detail = options.detail
  }
}

/** One located problem in a YAML document (policy or daemon configuration). */
export interface Problem {
  file: string
  line: number
  col: number
  /** Dotted path of the offending key, e.g. `accounts[3].roles[0]`. */
  key: string
  message: string
}

/**
 * A document (policy or configuration) that failed validation. Carries every
 * problem found, not just the first.
 */
export class DocumentError extends KeywayError {
  readonly problems: readonly Problem[]

  constructor(code: 'ERR_POLICY_INVALID' | 'ERR_CONFIG_INVALID', problems: readonly Problem[], options: KeywayErrorOptions = {}) {
    super(code, problems.map(formatProblem).join('\n'), options)
    this.name = 'DocumentError'
    this.problems = problems
  }
}

/** Formats a problem as `file:line:col: message (key)`. */
export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}${p.key ? ` (${p.key})` : ''}`
}

/** True when `err` is a KeywayError, optionally with the given code. */
export function isKeywayError(err: unknown, code?: ErrorCode): err is KeywayError {
  return err instanceof KeywayError && (code === undefined || err.code === code)
}

/** Wraps anything thrown into a KeywayError, keeping Keyway codes as they are. */
export function toKeywayError(err: unknown, fallback: ErrorCode = 'ERR_INTERNAL'): KeywayError {
  if (err instanceof KeywayError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new KeywayError(fallback, message, { cause: err })
}
