import type { Clock } from '../clock.js'

/**
 * What a sign-in endpoint (`/v1/login`, later the admin UI's) asks before and
 * tells after checking a password. Keys are the account name as typed
 * (lower-cased) and the client's address without port.
 */
export interface SignInLimiter {
  /** Milliseconds until this account may be tried again from this address; 0 means now. */
  retryAfter(account: string, address: string): number
  /** Records a wrong password (or an unknown account): the delay grows. */
  failed(account: string, address: string): void
  /** Records a success: the account's count starts over (the address's does not). */
  succeeded(account: string, address: string): void
}

/** Options of {@link LoginLimiter}; every field has a default. */
export interface LoginLimiterOptions {
  readonly clock: Clock
  /** Failures per account before a delay applies. Default 5. */
  readonly accountFreeFailures?: number
  /** Failures per client address before a delay applies (many accounts from one place). Default 20. */
  readonly addressFreeFailures?: number
  /** The first delay; each further failure doubles it. Default 1 s. */
  readonly baseDelayMs?: number
  /** The longest delay. Default 15 min. */
  readonly maxDelayMs?: number
  /** A key without a failure for this long is forgotten. Default 1 h. */
  readonly forgetAfterMs?: number
  /** Keys remembered at most (oldest forgotten first): bounded memory under a spray of names. Default 100,000. */
  readonly maxKeys?: number
}

interface Entry {
  failures: number
  lastFailure: number
  blockedUntil: number
}

/**
 * The one limiter of failed sign-ins: per account and per client address,
 * each failure beyond a free allowance doubles the wait before the next
 * attempt (1 s, 2 s, 4 s, ... up to 15 min). Unknown accounts count like
 * known ones, so the answer never tells which exist. Time is the injected
 * clock's; memory is bounded by `maxKeys`.
 */
export class LoginLimiter implements SignInLimiter {
  readonly #clock: Clock
  readonly #accountFree: number
  readonly #addressFree: number
  readonly #base: number
  readonly #max: number
  readonly #forget: number
  readonly #maxKeys: number
  readonly #entries = new Map<string, Entry>()

  constructor(options: LoginLimiterOptions) {
    this.#clock = options.clock
    this.#accountFree = options.accountFreeFailures ?? 5
    this.#addressFree = options.addressFreeFailures ?? 20
    this.#base = options.baseDelayMs ?? 1_000
    this.#max = options.maxDelayMs ?? 15 * 60_000
    this.#forget = options.forgetAfterMs ?? 60 * 60_000
    this.#maxKeys = options.maxKeys ?? 100_000
  }

  retryAfter(account: string, address: string): number {
    const now = this.#clock.now()
    const wait = (key: string): number => {
      const e = this.#live(key, now)
      return e === undefined ? 0 : Math.max(0, e.blockedUntil - now)
    }
    return Math.max(wait(accountKey(account)), wait(addressKey(address)))
  }

  failed(account: string, address: string): void {
    const now = this.#clock.now()
    this.#fail(accountKey(account), this.#accountFree, now)
    this.#fail(addressKey(address), this.#addressFree, now)
  }

  succeeded(account: string, _address: string): void {
    // The address keeps its count: one good account must not clear a spray from the same place.
    this.#entries.delete(accountKey(account))
  }

  /** Keys remembered now (for tests and metrics). */
  get size(): number {
    return this.#entries.size
  }

  #live(key: string, now: number): Entry | undefined {
    const e = this.#entries.get(key)
    if (e !== undefined && now - e.lastFailure >= this.#forget) {
      this.#entries.delete(key)
      return undefined
    }
    return e
  }

  #fail(key: string, free: number, now: number): void {
    const e = this.#live(key, now) ?? { failures: 0, lastFailure: now, blockedUntil: 0 }
    e.failures += 1
    e.lastFailure = now
    const over = e.failures - free
    if (over > 0) e.blockedUntil = now + Math.min(this.#max, this.#base * 2 ** Math.min(over - 1, 30))
    // Re-inserting keeps the Map in order of last failure, so the oldest go first.
    this.#entries.delete(key)
    this.#entries.set(key, e)
    while (this.#entries.size > this.#maxKeys) {
      const oldest = this.#entries.keys().next().value as string
      this.#entries.delete(oldest)
    }
  }
}

function accountKey(account: string): string {
  return `a:${account.trim().toLowerCase()}`
}

function addressKey(address: string): string {
  return `h:${address}`
}
