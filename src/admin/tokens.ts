import { isMap, type YAMLMap } from 'yaml'
import { issueToken, newTokenId, tokenFingerprint } from '../auth/index.js'
import { KeywayError } from '../errors.js'
import type { TokenRecordDoc } from '../policy/index.js'
import { edit, signingKeyOf, type AdminContext } from './context.js'
import { accountEntry, dropIfEmpty, existingList, findAccount, isoInstant, listIn, newNode, plain, removeWhere, wholeSecond } from './document.js'

/** Default time an old token keeps working after a rotation: 24 hours. */
export const DEFAULT_ROTATION_GRACE_MS = 24 * 3600_000

/** A freshly issued service token. The token is shown once and never stored. */
export interface IssuedToken {
  /** The token itself: give it to the service, then forget it. */
  readonly token: string
  /** Its `jti`, listed in the policy. */
  readonly tokenId: string
  /** `sha256:<16 hex>`: how logs and the policy name it. */
  readonly fingerprint: string
  /** Epoch ms of `exp`, or Infinity when the token does not expire. */
  readonly expiresAt: number
}

/**
 * Issues a service token for `accountId` and the record the policy keeps of
 * it (id, fingerprint, created, expires): never the token.
 */
export async function mintServiceToken(
  ctx: AdminContext,
  accountId: string,
  expiresInMs?: number,
): Promise<{ issued: IssuedToken; record: TokenRecordDoc }> {
  const now = ctx.clock.now()
  const tokenId = newTokenId()
  // exp is whole seconds: the policy record must not outlive the token's own exp.
  const expiresAt = expiresInMs === undefined ? Infinity : wholeSecond(now + expiresInMs)
  const token = await issueToken(await signingKeyOf(ctx), {
    issuer: ctx.issuer,
    audience: ctx.audience,
    subject: accountId,
    tokenId,
    kind: 'service',
    now,
    ...(expiresAt === Infinity ? {} : { expiresAt }),
  })
  const fingerprint = tokenFingerprint(token)
  const record: TokenRecordDoc = { id: tokenId, fingerprint, created: isoInstant(wholeSecond(now)) }
  if (expiresAt !== Infinity) record.expires = isoInstant(expiresAt)
  return { issued: { token, tokenId, fingerprint, expiresAt }, record }
}

/** @throws KeywayError ERR_USAGE unless `ms` is a positive duration. */
export function checkPositiveDuration(what: string, ms: number | undefined): void {
  if (ms !== undefined && !(Number.isFinite(ms) && ms > 0)) {
    throw new KeywayError('ERR_USAGE', `${what} must be a positive duration such as 30m, 12h or 90d`)
  }
}

/** Options of {@link rotateToken}. */
export interface RotateTokenOptions {
  /** How long the old tokens keep working. Default 24h; 0 revokes them at once. */
  graceMs?: number
  /** Lifetime of the new token; default none (no `exp`). */
  expiresInMs?: number
}

/** What {@link rotateToken} did. */
export interface RotateTokenResult {
  readonly account: { readonly id: string; readonly name: string }
  /** The new token: print it once. */
  readonly issued: IssuedToken
  /** Old token records that now end with the grace period: id, fingerprint, ISO end. */
  readonly retiring: readonly { readonly id: string; readonly fingerprint: string; readonly expires: string }[]
  /** Ids of records removed: already expired, or revoked by a zero grace. */
  readonly removed: readonly string[]
}

/**
 * Issues a new token for a service account and retires the old ones: each
 * old record gets `expires: now + grace` (an earlier `expires` is kept), so
 * the service can switch tokens without an outage. Records already expired are
 * removed. A grace of 0 revokes the old tokens at once.
 *
 * @throws KeywayError ERR_NOT_FOUND, ERR_USAGE
 */
export async function rotateToken(ctx: AdminContext, service: string, options: RotateTokenOptions = {}): Promise<RotateTokenResult> {
  const graceMs = options.graceMs ?? DEFAULT_ROTATION_GRACE_MS
  if (!(Number.isFinite(graceMs) && graceMs >= 0)) throw new KeywayError('ERR_USAGE', '--grace must be a duration such as 0s, 1h or 24h')
  checkPositiveDuration('--expires', options.expiresInMs)
  return edit(ctx, async (doc, current) => {
    const account = findAccount(current, service, 'service')
    const now = ctx.clock.now()
    const graceEnd = wholeSecond(now + graceMs)
    const entry = accountEntry(doc, account)
    const tokens = listIn(entry, 'tokens', true)
    const retiring: { id: string; fingerprint: string; expires: string }[] = []
    const removed: string[] = []
    removeWhere(tokens, (item) => {
      const rec = account.tokens.get(plain<TokenRecordDoc>(item).id)
      if (rec === undefined || !(rec.expiresAt <= now || graceMs === 0)) return false
      removed.push(rec.id)
      return true
    })
    for (const item of tokens.items) {
      const rec = isMap(item) ? account.tokens.get(String(item.get('id'))) : undefined
      if (rec === undefined) continue
      const end = Math.min(rec.expiresAt, graceEnd)
      if (end < rec.expiresAt) (item as YAMLMap).set('expires', isoInstant(end))
      retiring.push({ id: rec.id, fingerprint: rec.fingerprint, expires: isoInstant(end) })
    }
    const { issued, record } = await mintServiceToken(ctx, account.id, options.expiresInMs)
    tokens.add(newNode(doc, record))
    return { account: { id: account.id, name: account.name }, issued, retiring, removed }
  }, { accounts: [service] })
}

/**
 * Revokes one token of a service account (by token id or fingerprint), or
 * all of them when `tokenId` is omitted. The gateway refuses a revoked token
 * as soon as it reloads the policy.
 *
 * @returns the ids of the revoked token records.
 * @throws KeywayError ERR_NOT_FOUND for an unknown service or token
 */
export async function revokeTokens(ctx: AdminContext, service: string, tokenId?: string): Promise<{ revoked: string[] }> {
  return edit(ctx, (doc, current) => {
    const account = findAccount(current, service, 'service')
    const entry = accountEntry(doc, account)
    const tokens = existingList(entry, 'tokens')
    const revoked: string[] = []
    if (tokens !== undefined) {
      removeWhere(tokens, (item) => {
        const rec = plain<TokenRecordDoc>(item)
        if (tokenId !== undefined && rec.id !== tokenId && rec.fingerprint !== tokenId) return false
        revoked.push(rec.id)
        return true
      })
    }
    if (tokenId !== undefined && revoked.length === 0) {
      throw new KeywayError('ERR_NOT_FOUND', `service "${account.name}" has no token "${tokenId}" (by id or fingerprint); see keyway admin users show ${account.name}`, {
        detail: { account: account.id, token: tokenId },
      })
    }
    dropIfEmpty(entry, 'tokens')
    return { revoked }
  }, { accounts: [service] })
}
