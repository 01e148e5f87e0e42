import type { Clock, TimerHandle } from '../clock.js'
import type { ErrorCode } from '../errors.js'
import type { Logger } from './log.js'

/** One refusal: what was refused, why, and who asked. Never a secret. */
export interface Refusal {
  /** The log event: `tunnel_denied`, `api_denied`, `login_failed`, ... (docs/logging.md). */
  readonly event: string
  readonly code: ErrorCode
  /** The client's address (`host:port`), the real one behind a PROXY-protocol load balancer. */
  readonly client: string
  /** The account id, when the refusal got far enough to know it. */
  readonly account?: string | undefined
  /** `sha256:…` fingerprint of the token presented, never the token. */
  readonly tokenFp?: string | undefined
  /** More fields for this event (resource, account_name, ...). */
  readonly extra?: Readonly<Record<string, unknown>>
}

/** Options of {@link RefusalAudit}. */
export interface RefusalAuditOptions {
  readonly logger: Logger
  readonly clock: Clock
  /** Refusal lines written per second on average; 0 writes none (only the summaries). */
  readonly ratePerSecond: number
  /** Lines that may be written at once after a quiet spell. Default: `ratePerSecond`, at least 1. */
  readonly burst?: number
}

/** How often the count of suppressed refusals is written while a flood lasts. */
const SUMMARY_INTERVAL_MS = 1_000

/**
 * The audit trail of refusals (tunnels, API calls, logins), rate-limited so
 * that a flood of bad requests cannot fill the disk: a token bucket lets
 * `ratePerSecond` lines through, and the ones it holds back are counted by
 * code and written as one `audit_suppressed` line a second while they last.
 */
export class RefusalAudit {
  readonly #logger: Logger
  readonly #clock: Clock
  readonly #rate: number
  readonly #burst: number
  #tokens: number
  #refilledAt: number
  #suppressed = new Map<string, number>()
  #summary: TimerHandle | undefined
  #closed = false

  constructor(options: RefusalAuditOptions) {
    this.#logger = options.logger
    this.#clock = options.clock
    this.#rate = Math.max(0, options.ratePerSecond)
    this.#burst = Math.max(1, options.burst ?? Math.ceil(this.#rate))
    this.#tokens = this.#rate > 0 ? this.#burst : 0
    this.#refilledAt = options.clock.now()
  }

  /** Writes the refusal as a warn line, or counts it when the bucket is empty. */
  refused(r: Refusal, message: string): void {
    if (this.#take()) {
      this.#logger.warn({ event: r.event, code: r.code, client: r.client, account: r.account, token_fp: r.tokenFp, ...r.extra }, message)
      return
    }
    const key = `${r.event} ${r.code}`
    this.#suppressed.set(key, (this.#suppressed.get(key) ?? 0) + 1)
    if (this.#summary === undefined && !this.#closed) this.#summary = this.#clock.setTimeout(() => this.#flush(), SUMMARY_INTERVAL_MS)
  }

  /** Writes the pending summary and stops its timer. Idempotent. */
  close(): void {
    this.#closed = true
    this.#flush()
  }

  #take(): boolean {
    const now = this.#clock.now()
    const elapsed = Math.max(0, now - this.#refilledAt)
    this.#refilledAt = now
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed * this.#rate) / 1000)
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }

  #flush(): void {
    if (this.#summary !== undefined) this.#clock.clearTimeout(this.#summary)
    this.#summary = undefined
    if (this.#suppressed.size === 0) return
    const counts: Record<string, number> = {}
    let total = 0
    for (const [key, n] of this.#suppressed) {
      counts[key] = n
      total += n
    }
    this.#suppressed = new Map()
    this.#logger.warn({ event: 'audit_suppressed', suppressed: total, counts }, `${total} refusals not logged one by one (audit rate limit)`)
  }
}
