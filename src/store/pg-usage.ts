import type { Logger } from '../observe/index.js'
import type { Clock, TimerHandle } from '../clock.js'

/** What the usage writer needs of a pool. */
export interface Queryable {
  query<R extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[] }>
}

/** A token's last use is written at most this often (ms). */
export const TOKEN_USE_MIN_INTERVAL_MS = 60_000
/** Recorded uses are written this often (ms), in one statement. */
export const TOKEN_USE_FLUSH_MS = 5_000

/**
 * Token last-used times, batched into `keyway_token_last_used`, the one table a
 * gateway writes: a use is noted in memory at most once per token per
 * {@link TOKEN_USE_MIN_INTERVAL_MS}, and the notes are written every
 * {@link TOKEN_USE_FLUSH_MS} in one upsert. A failed write is dropped (logged):
 * last-used is a hint for people, never worth a retry queue while the store is
 * down. `close()` writes what is pending; idempotent.
 */
export class TokenUsageWriter {
  readonly #pool: Queryable
  readonly #clock: Clock
  readonly #logger: Logger
  /** When each token's use was last noted (noted, not necessarily written yet). */
  readonly #noted = new Map<string, number>()
  #pending = new Map<string, number>()
  #timer: TimerHandle | undefined
  #flushing: Promise<void> | undefined
  #closed: Promise<void> | undefined

  constructor(options: { pool: Queryable; clock: Clock; logger: Logger }) {
    this.#pool = options.pool
    this.#clock = options.clock
    this.#logger = options.logger
  }

  /** Notes a use of token `tokenId` now. */
  record(tokenId: string): void {
    if (this.#closed) return
    const now = this.#clock.now()
    const last = this.#noted.get(tokenId)
    if (last !== undefined && now - last < TOKEN_USE_MIN_INTERVAL_MS) return
    this.#noted.set(tokenId, now)
    this.#pending.set(tokenId, now)
    this.#timer ??= this.#clock.setTimeout(() => {
      this.#timer = undefined
      void this.flush()
    }, TOKEN_USE_FLUSH_MS)
  }

  /** Writes the pending uses now. */
  flush(): Promise<void> {
    const previous = this.#flushing ?? Promise.resolve()
    const batch = this.#pending
    this.#pending = new Map()
    if (batch.size === 0) return previous
    const ids = [...batch.keys()]
    const at = ids.map((id) => new Date(batch.get(id)!).toISOString())
    const run = previous.then(() =>
      this.#pool
        .query(
          `INSERT INTO keyway_token_last_used (token_id, last_used)
           SELECT * FROM unnest($1::text[], $2::timestamptz[])
           ON CONFLICT (token_id) DO UPDATE SET last_used = GREATEST(keyway_token_last_used.last_used, EXCLUDED.last_used)`,
          [ids, at],
        )
        .then(
          () => undefined,
          (err: unknown) => {
            this.#logger.warn({ event: 'token_usage_write_failed', tokens: ids.length, err: (err as Error).message }, 'token last-used times not written')
          },
        ),
    )
    this.#flushing = run
    return run
  }

  /** Writes what is pending and stops. Idempotent. */
  close(): Promise<void> {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#closed ??= this.flush()
    return this.#closed
  }
}

/** The last-used times of `tokenIds` (epoch ms), for those the table has. */
export async function readTokenLastUsed(pool: Queryable, tokenIds: readonly string[]): Promise<Map<string, number>> {
  if (tokenIds.length === 0) return new Map()
  const r = await pool.query<{ token_id: string; last_used: Date }>('SELECT token_id, last_used FROM keyway_token_last_used WHERE token_id = ANY($1::text[])', [tokenIds])
  return new Map(r.rows.map((row) => [row.token_id, row.last_used.getTime()]))
}
