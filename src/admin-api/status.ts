import type { ErrorCode } from '../errors.js'

const STATUS: Partial<Record<ErrorCode, number>> = {
  ERR_USAGE: 400,
  ERR_DIRECT_GRANT_WITH_ROLE: 409,
  ERR_ROLE_WITH_DIRECT_GRANTS: 409,
  ERR_ALREADY_EXISTS: 409,
  ERR_NOT_FOUND: 404,
  ERR_RESOURCE_UNKNOWN: 404,
  ERR_ACCOUNT_UNKNOWN: 404,
  ERR_ADMIN_UNAUTHENTICATED: 401,
  ERR_LOGIN_FAILED: 401,
  ERR_ADMIN_FORBIDDEN: 403,
  ERR_CSRF: 403,
  ERR_PRECONDITION_FAILED: 412,
  ERR_BODY_TOO_LARGE: 413,
  ERR_CONTENT_TYPE: 415,
  ERR_LOGIN_THROTTLED: 429,
  ERR_POLICY_LOCKED: 503,
  ERR_POLICY_INVALID: 422,
}

/**
 * The HTTP status of an admin API answer carrying `code`. One small function
 * so that a project-wide table in src/errors.ts can replace it.
 */
export function adminStatusOf(code: ErrorCode): number {
  return STATUS[code] ?? (code.startsWith('ERR_TOKEN') || code.startsWith('ERR_ACCOUNT') ? 401 : 500)
}
