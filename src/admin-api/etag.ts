import { createHash } from 'node:crypto'
import { KeywayError } from '../errors.js'

/** A strong ETag of an object's JSON view: equal views, equal tags. */
export function etagOf(view: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(view)).digest('base64url').slice(0, 22)}"`
}

/**
 * Refuses an edit whose `If-Match` names another version than `current`.
 * Without `If-Match` the edit goes ahead (scripts that do not care);
 * the Admin UI always sends it.
 *
 * @throws KeywayError ERR_PRECONDITION_FAILED
 */
export function checkIfMatch(ifMatch: string | undefined, current: string, what: string): void {
  if (ifMatch === undefined || ifMatch.trim() === '*') return
  const tags = ifMatch.split(',').map((t) => t.trim().replace(/^W\//, ''))
  if (!tags.includes(current)) {
    throw new KeywayError('ERR_PRECONDITION_FAILED', `${what} changed since you read it (another admin edited it); reload it and redo your edit`, {
      detail: { etag: current },
    })
  }
}
