/**
 * Every error Keyway reports carries one of these stable codes. Callers branch
 * on `code`, never on a message. The list is closed: adding a code means adding
 * it here and to docs/errors.md (a test checks both agree).
 */
export const ERROR_CODES = {
  // configuration and policy
  ERR_CONFIG_INVALID: 'The daemon configuration file is invalid.',
  ERR_CONFIG_IO: 'A file named by the configuration could not be read or written.',
  ERR_POLICY_INVALID: 'The policy document has one or more problems (each with file:line:col).',
  ERR_POLICY_IO: 'The policy file could not be read or written.',
  ERR_POLICY_LOCKED: 'Another edit holds the policy lock and did not release it in time.',
  ERR_CREDENTIALS_MODE: 'The credentials file (password hashes) is readable or writable by others than its owner and group.',
  ERR_CREDENTIALS_INVALID: 'The credentials file is not in the credentials format.',
  ERR_POLICY_TOO_LARGE: 'The policy file or one of its entity counts is over its configured limit (policyLimits).',

  // tokens
  ERR_TOKEN_MISSING: 'No token was presented.',
  ERR_TOKEN_MALFORMED: 'The token is not a well-formed compact JWS.',
  ERR_TOKEN_ALG: 'The token uses an algorithm outside the allowlist (alg none, HMAC, ...).',
  ERR_TOKEN_KID_UNKNOWN: 'The token names a key id that is not in the key set.',
  ERR_TOKEN_SIGNATURE: 'The token signature does not verify.',
  ERR_TOKEN_ISSUER: 'The token issuer is not the configured issuer.',
  ERR_TOKEN_AUDIENCE: 'The token audience is not the configured audience.',
  ERR_TOKEN_CLAIM_MISSING: 'A required claim (sub, jti, iat, exp, ...) is missing or has the wrong type.',
  ERR_TOKEN_EXPIRED: 'The token has expired.',
  ERR_TOKEN_NOT_YET_VALID: 'The token is not valid yet (iat or nbf in the future).',
  ERR_TOKEN_REVOKED: 'The token id is no longer listed for its account (revoked or rotated out).',

  // accounts and grants
  ERR_ACCOUNT_UNKNOWN: 'The account does not exist.',
  ERR_ACCOUNT_SUSPENDED: 'The account is suspended.',
  ERR_RESOURCE_UNKNOWN: 'The resource does not exist.',
  ERR_GRANT_DENIED: 'The account holds no grant for the resource.',
  ERR_GRANT_EXPIRED: 'The account held temporary access to the resource, but it has expired.',
  ERR_LOGIN_FAILED: 'Email or password is wrong, or the account cannot log in.',
  ERR_LOGIN_THROTTLED: 'Too many failed logins for this account or from this address; retry after the delay given.',

  // tunnel handshake and forwarding
  ERR_HANDSHAKE_MALFORMED: 'The tunnel handshake is not in the Keyway wire format.',
  ERR_HANDSHAKE_VERSION: 'The tunnel handshake uses an unsupported protocol version.',
  ERR_HANDSHAKE_TOO_LARGE: 'The tunnel handshake exceeds its size limit.',
  ERR_HANDSHAKE_TIMEOUT: 'The tunnel handshake did not complete in time.',
  ERR_PROTOCOL_VIOLATION: 'A multiplexed tunnel connection sent a frame that breaks the protocol rules; the connection is closed.',
  ERR_UPSTREAM_UNREACHABLE: 'The upstream refused or reset the connection.',
  ERR_UPSTREAM_TIMEOUT: 'The upstream did not accept the connection within the connect timeout.',
  ERR_CONN_LIMIT: 'The gateway is at its connection limit.',
  ERR_PROXY_HEADER: 'A connection from a configured load balancer did not start with a valid PROXY protocol v2 header in time.',
  ERR_API_HEADERS_TIMEOUT: 'An API request did not send its headers within gateway.apiHeadersTimeout.',
  ERR_API_REQUEST_TIMEOUT: 'An API request did not complete within gateway.apiRequestTimeout.',
  ERR_API_ADDRESS_LIMIT: 'The client address holds as many API connections as gateway.apiMaxConnectionsPerAddress allows.',
  ERR_ACCOUNT_CONN_LIMIT: 'The account is at its connection limit.',
  ERR_SHUTTING_DOWN: 'The daemon is shutting down and accepts no new sessions.',
  ERR_SESSION_CLOSED: 'The other end closed a live session: idle timeout, maximum lifetime, half-close timeout or a reset; the message says which.',
  ERR_GATEWAY_UNAVAILABLE: 'No gateway could be reached.',
  ERR_INTERNAL: 'An unexpected internal error; the message says more.',

  // sidecar and command line
  ERR_PORT_IN_USE: 'A port that must be bound (a sidecar resource, a gateway or control listener) is already in use.',
  ERR_NOT_CONNECTED: 'The resource is not connected in this sidecar.',
  ERR_SIDECAR_UNREACHABLE: 'The sidecar control endpoint could not be reached.',
  ERR_CONTROL_UNAUTHORIZED: 'The sidecar control API was asked over TCP without its bearer secret (or with a wrong one), or its TCP access is off.',
  ERR_NOT_READY: 'The sidecar did not become ready in time.',
  ERR_USAGE: 'The command line is wrong; the message says how to call it.',
  ERR_NOT_FOUND: 'The named account, role or resource does not exist.',
  ERR_ALREADY_EXISTS: 'The named account, role or resource already exists.',
  ERR_DIRECT_GRANT_WITH_ROLE: 'A permanent direct grant needs the account to have No Role.',
  ERR_ROLE_WITH_DIRECT_GRANTS: 'The account holds permanent direct grants, which a role would override.',
  ERR_FILE_EXISTS: 'A file that would be written already exists.',
} as const

/** The closed union of Keyway error codes. */
export type ErrorCode = keyof typeof ERROR_CODES

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
