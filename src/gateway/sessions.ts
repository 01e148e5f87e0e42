import { checkTokenStillValid, type VerifiedToken } from '../auth/index.js'
import type { Clock, TimerHandle } from '../clock.js'
import type { ErrorCode } from '../errors.js'
import type { ClosingWords, ForwardSession } from '../forward/index.js'
import type { CompiledPolicy } from '../policy/index.js'

/** A live tunnel: who, to what, and the forwarding session carrying it. */
export interface LiveSession {
  readonly id: string
  readonly token: VerifiedToken
  readonly resource: string
  /** When the session started (the gateway clock, ms). */
  readonly startedAt: number
  readonly forward: ForwardSession
  /**
   * How a session the gateway ends tells its client why, when the resource's
   * protocol allows (pgwire's tracker for a plaintext PostgreSQL session):
   * the words to end with, or undefined to just close.
   */
  readonly farewell?: { closingWords(code: string, message: string, waitMs: number): ClosingWords | undefined }
}

/**
 * The gateway's live sessions, indexed by account, with the sweep that ends
 * those whose access has ended: after every policy change and at every
 * instant a temporary grant, token record or token expires.
 */
export class SessionRegistry {
  readonly #clock: Clock
  readonly #policy: () => CompiledPolicy
  readonly #onRevoke: (session: LiveSession, code: ErrorCode) => void
  readonly #onError: ((err: unknown) => void) | undefined
  readonly #unavailable: (() => ErrorCode | undefined) | undefined
  /** A token stays valid this long past its `exp` (`tokens.clockTolerance`), as when it was verified. */
  readonly expiryGraceMs: number
  readonly #sessions = new Map<string, LiveSession>()
  readonly #byAccount = new Map<string, Set<LiveSession>>()
  #timer: TimerHandle | undefined
  #timerAt = Infinity

  constructor(options: {
    clock: Clock
    policy: () => CompiledPolicy
    onRevoke: (session: LiveSession, code: ErrorCode) => void
    expiryGraceMs?: number
    onError?: (err: unknown) => void
    /** The code every session is refused with while the policy store fails closed (`ERR_STORE_STALE`); undefined while it serves. */
    unavailable?: () => ErrorCode | undefined
  }) {
    this.#clock = options.clock
    this.#policy = options.policy
    this.#onRevoke = options.onRevoke
    this.#onError = options.onError
    this.#unavailable = options.unavailable
    this.expiryGraceMs = options.expiryGraceMs ?? 0
  }

  get size(): number {
    return this.#sessions.size
  }

  /** Live sessions of one account. */
  countFor(accountId: string): number {
    return this.#byAccount.get(accountId)?.size ?? 0
  }

  add(session: LiveSession): void {
    this.#sessions.set(session.id, session)
    let set = this.#byAccount.get(session.token.accountId)
    if (!set) this.#byAccount.set(session.token.accountId, (set = new Set()))
    set.add(session)
    const now = this.#clock.now()
    const at = Math.min(session.token.expiresAt + this.expiryGraceMs, this.#policy().nextExpiry(now))
    if (at < this.#timerAt) this.#setTimer(at, now)
  }

  delete(session: LiveSession): void {
    if (!this.#sessions.delete(session.id)) return
    const set = this.#byAccount.get(session.token.accountId)
    set?.delete(session)
    if (set?.size === 0) this.#byAccount.delete(session.token.accountId)
  }

  /** The live session `id`, if any. */
  get(id: string): LiveSession | undefined {
    return this.#sessions.get(id)
  }

  /** Every live session. */
  values(): IterableIterator<LiveSession> {
    return this.#sessions.values()
  }

  /**
   * Why `session` may no longer run under `policy` at `now`, or undefined.
   * `expiryGraceMs`: the clock tolerance the token was verified with.
   */
  static revocationOf(session: LiveSession, policy: CompiledPolicy, now: number, expiryGraceMs = 0): ErrorCode | undefined {
    if (!(session.token.expiresAt + expiryGraceMs > now)) return 'ERR_TOKEN_EXPIRED'
    const tokenCode = checkTokenStillValid(session.token, policy, now)
    if (tokenCode) return tokenCode
    const decision = policy.decide(session.token.accountId, session.resource, now)
    return decision.allow ? undefined : decision.code
  }

  /**
   * The code every session is refused with while the policy store fails
   * closed, else undefined: the closed policy is empty, and its own verdict
   * (`ERR_ACCOUNT_UNKNOWN`) would tell the client and the audit log the wrong
   * story.
   */
  refusal(): ErrorCode | undefined {
    return this.#unavailable?.()
  }

  /** Ends every session whose access has ended; then schedules the next sweep. */
  sweep(): number {
    const policy = this.#policy()
    const now = this.#clock.now()
    const down = this.refusal()
    let closed = 0
    for (const session of [...this.#sessions.values()]) {
      const code = down ?? SessionRegistry.revocationOf(session, policy, now, this.expiryGraceMs)
      if (code) {
        closed++
        this.delete(session)
        this.#onRevoke(session, code)
      }
    }
    this.#schedule()
    return closed
  }

  #schedule(): void {
    if (this.#sessions.size === 0) return this.#setTimer(Infinity, 0)
    const now = this.#clock.now()
    let at = this.#policy().nextExpiry(now)
    for (const s of this.#sessions.values()) if (s.token.expiresAt + this.expiryGraceMs < at) at = s.token.expiresAt + this.expiryGraceMs
    this.#setTimer(at, now)
  }

  #setTimer(at: number, now: number): void {
    if (this.#timer) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = at
    if (at === Infinity) return
    // +1 ms: expiry is exclusive (valid while now < expiresAt).
    // Capped: wall-clock steps (NTP) must not push an expiry sweep far past its instant; an early wake-up just re-arms.
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      this.#timerAt = Infinity
      try {
        this.sweep()
      } catch (err) {
        this.#onError?.(err)
      }
    }, Math.min(Math.max(0, at - now) + 1, 60_000))
  }

  /** Stops the sweep timer. */
  close(): void {
    if (this.#timer) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#timerAt = Infinity
  }
}
