import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from '../clock.js'

/** One signed-in admin's browser session. */
export interface AdminSession {
  readonly accountId: string
  /** Sent back in `X-CSRF-Token` (or the `_csrf` form field) on every state-changing request. */
  readonly csrfToken: string
  readonly expiresAt: number
}

/** Options of {@link SessionStore}. */
export interface SessionStoreOptions {
  readonly clock: Clock
  /** How long a session lasts from sign-in. */
  readonly ttlMs: number
  /** Sessions held at most; the oldest end first. Default 10,000. */
  readonly maxSessions?: number
}

/**
 * Admin sessions in memory, keyed by the sha256 of the cookie value (a
 * memory dump does not hand out cookies). Sessions end at their expiry, on
 * sign-out, or when the process restarts; the admin flag and the account are
 * re-checked on every request by the caller, so removing an admin takes
 * effect at once.
 */
export class SessionStore {
  readonly #clock: Clock
  readonly #ttl: number
  readonly #max: number
  readonly #sessions = new Map<string, AdminSession>()

  constructor(options: SessionStoreOptions) {
    this.#clock = options.clock
    this.#ttl = options.ttlMs
    this.#max = options.maxSessions ?? 10_000
  }

  /** Starts a session; returns the cookie value (shown to nobody else) and the session. */
  create(accountId: string): { id: string; session: AdminSession } {
    const id = randomBytes(32).toString('base64url')
    const session: AdminSession = { accountId, csrfToken: randomBytes(24).toString('base64url'), expiresAt: this.#clock.now() + this.#ttl }
    this.#sessions.set(key(id), session)
    while (this.#sessions.size > this.#max) this.#sessions.delete(this.#sessions.keys().next().value as string)
    return { id, session }
  }

  /** The live session of cookie value `id`, if any. */
  get(id: string): AdminSession | undefined {
    const k = key(id)
    const s = this.#sessions.get(k)
    if (s === undefined) return undefined
    if (!(this.#clock.now() < s.expiresAt)) {
      this.#sessions.delete(k)
      return undefined
    }
    return s
  }

  /** Ends the session of cookie value `id`. */
  end(id: string): void {
    this.#sessions.delete(key(id))
  }

  /** Live sessions held (expired ones may still count until touched). */
  get size(): number {
    return this.#sessions.size
  }
}

/** True when `given` is the session's CSRF token (constant time). */
export function csrfMatches(session: AdminSession, given: string | undefined): boolean {
  if (given === undefined) return false
  const a = Buffer.from(session.csrfToken)
  const b = Buffer.from(given)
  return a.length === b.length && timingSafeEqual(a, b)
}

function key(id: string): string {
  return createHash('sha256').update(id).digest('base64url')
}
