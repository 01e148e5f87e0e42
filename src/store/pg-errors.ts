import { KeywayError } from '../errors.js'

/**
 * A KeywayError for a failure talking to PostgreSQL: `ERR_STORE_PERMISSION`
 * when the role lacks a right, `ERR_STORE_SCHEMA_MISSING` when a table is
 * missing, `ERR_STORE_UNREACHABLE` when the server cannot be reached or
 * refused the login; a KeywayError passes through unchanged.
 */
export function storeError(err: unknown, doing: string): KeywayError {
  if (err instanceof KeywayError) return err
  const e = err as { code?: string; message?: string }
  const message = e.message ?? String(err)
  if (e.code === '42501') {
    return new KeywayError('ERR_STORE_PERMISSION', `${doing}: the database role lacks a right (${message}); grant it as docs/deployment.md#high-availability-with-postgresql shows`, {
      cause: err,
    })
  }
  if (e.code === '23505') return new KeywayError('ERR_ALREADY_EXISTS', `${doing}: the database refused a duplicate (${message})`, { cause: err })
  if (e.code === '23514' && (err as { constraint?: string }).constraint === 'keyway_direct_grant_needs_no_role') {
    return new KeywayError('ERR_DIRECT_GRANT_WITH_ROLE', `${doing}: ${message}`, { cause: err })
  }
  if (e.code === '55P03') return new KeywayError('ERR_POLICY_LOCKED', `${doing}: another edit held the policy lock too long (${message}); retry`, { cause: err })
  if (e.code === '42P01' || e.code === '42883') {
    return new KeywayError('ERR_STORE_SCHEMA_MISSING', `${doing}: ${message}; run \`keyway store migrate\``, { cause: err })
  }
  return new KeywayError('ERR_STORE_UNREACHABLE', `${doing}: PostgreSQL: ${message}`, { cause: err, detail: e.code === undefined ? {} : { sqlstate: e.code } })
}
