import type pg from 'pg'
import type { Clock, TimerHandle } from '../clock.js'
import type { LiveSessionInfo } from '../gateway/index.js'
import type { KeywayError } from '../errors.js'
import type { Logger } from '../observe/index.js'
import { storeError } from './pg-errors.js'

/** The NOTIFY channel of session requests and their answers (a hint only: readers read the tables). */
export const SESSIONS_CHANNEL = 'keyway_sessions'

/** A live session and the name of the gateway holding it. */
export type HeldSession = LiveSessionInfo & { readonly gateway: string }

/** What a gateway lets the session requests of other gateways' admin APIs reach. */
export interface SessionHolder {
  /** The instance id its session ids start with (`INSTANCE.`). */
  readonly instance: string
  /** Its name as admins see it (the host name). */
  readonly name: string
  list(): readonly LiveSessionInfo[]
  get(id: string): LiveSessionInfo | undefined
  /** Ends session `id` exactly as a local request does (`ERR_SESSION_ENDED_BY_ADMIN`, `session_revoked`). */
  end(id: string): LiveSessionInfo | undefined
}

/** The answer of {@link SessionFeed.end}. */
export type EndAnswer =
  | { readonly ended: true; readonly session: HeldSession }
  /** The holding gateway answered that the session is not live there, or no live gateway has its instance id. */
  | { readonly ended: false; readonly reason: 'not_found' }
  /** The holding gateway is registered but did not answer within the bound: the request was withdrawn, nothing ended. */
  | { readonly ended: false; readonly reason: 'unanswered'; readonly gateway: string }

/** The answer of {@link SessionFeed.list}. */
export interface ListAnswer {
  readonly sessions: readonly HeldSession[]
  /** Names of the registered gateways that did not answer within the bound. */
  readonly unanswered: readonly string[]
}

/**
 * Live sessions across the gateways that share a store: an admin API asks
 * (`list`, `end`), the gateway holding a session answers (`serve`).
 */
export interface SessionFeed {
  /** Answers other gateways' requests about `holder`'s sessions until {@link close}; registers it as a live gateway. */
  serve(holder: SessionHolder): void
  /** The live sessions of every registered gateway but `except` (the asking gateway's own instance, listed locally). */
  list(except?: string): Promise<ListAnswer>
  /** Asks the gateway whose instance id starts `sessionId` to end it; `by` (the admin's account id) is kept with the request row. */
  end(sessionId: string, by: string): Promise<EndAnswer>
  /** Stops answering, unregisters, releases its connection. Idempotent. */
  close(): Promise<void>
}

/** What {@link PostgresSessionFeed} needs of the pool. */
export interface SessionFeedPool {
  query<R extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>
}

/** Options of {@link PostgresSessionFeed}. */
export interface SessionFeedOptions {
  readonly pool: SessionFeedPool
  /** A new client for the dedicated LISTEN connection (outside the pool). */
  readonly listenClient: () => pg.Client
  readonly clock: Clock
  readonly logger: Logger
  /** `postgres.checkInterval`: how often a gateway looks for requests a lost notification hid, and renews its registration. */
  readonly checkInterval: number
  /** How long an admin request waits for the gateways' answers. Default {@link sessionRequestTimeout}. */
  readonly requestTimeout?: number
}

/** How long a request waits for answers: 2 × `postgres.checkInterval` (a missed notification is found by then), at least 10 s. */
export function sessionRequestTimeout(checkInterval: number): number {
  return Math.max(10_000, 2 * checkInterval)
}

/** A waiting request looks at its answers at least this often, notifications or not (ms). */
const ANSWER_POLL_MS = 200

interface RequestRow {
  id: string
  kind: 'list' | 'end'
  session: string | null
}

/**
 * The {@link SessionFeed} of the PostgreSQL store, on two tables of the
 * schema (migration 2): `keyway_gateways` (each serving gateway's instance
 * id and name, renewed every `postgres.checkInterval`; no write per
 * connection) and `keyway_session_requests` with `keyway_session_lists`.
 *
 * An admin API writes a request row (`end` of one session id, or `list`)
 * with an expiry and NOTIFYs `keyway_sessions`. Gateways LISTEN; a
 * notification, like the periodic check, only makes them read the requests
 * they have not answered yet (the payload is never trusted). For `end`,
 * the gateway whose instance id starts the session id claims the row in one
 * conditional UPDATE (still unanswered, not expired) with its answer, and
 * ends the session only when the claim succeeded; the asker, at its
 * deadline, withdraws an unclaimed row the same way, so a late gateway never
 * ends a session after the admin was told it was not. For `list`, every
 * gateway writes one answer row with its sessions; the asker waits for every
 * registered gateway (or its deadline) and deletes the request.
 */
export class PostgresSessionFeed implements SessionFeed {
  readonly #o: SessionFeedOptions
  readonly #timeout: number
  #holder: SessionHolder | undefined
  #listener: pg.Client | undefined
  #listening: Promise<void> | undefined
  #timer: TimerHandle | undefined
  #reconnectTimer: TimerHandle | undefined
  #processing: Promise<void> | undefined
  #again = false
  readonly #waiters = new Set<() => void>()
  readonly #failing = new Set<'register' | 'answer'>()
  #closed = false

  constructor(options: SessionFeedOptions) {
    this.#o = options
    this.#timeout = options.requestTimeout ?? sessionRequestTimeout(options.checkInterval)
  }

  serve(holder: SessionHolder): void {
    if (this.#holder !== undefined || this.#closed) return
    this.#holder = holder
    void this.#listen()
    const tick = (): void => {
      if (this.#closed) return
      void this.#register().then(() => this.#process())
      this.#timer = this.#o.clock.setTimeout(tick, this.#o.checkInterval)
      this.#timer.unref?.()
    }
    tick()
  }

  /** Registers (or renews) the served gateway; a failure is logged, the next check retries. */
  async #register(): Promise<void> {
    const h = this.#holder!
    try {
      await this.#o.pool.query(
        `INSERT INTO keyway_gateways (instance, name) VALUES ($1, $2)
         ON CONFLICT (instance) DO UPDATE SET name = EXCLUDED.name, seen_at = now()`,
        [h.instance, h.name],
      )
      // Gateways that stopped without unregistering (killed) leave a row; a new instance id is drawn at each start.
      await this.#o.pool.query("DELETE FROM keyway_gateways WHERE seen_at < now() - interval '1 day'")
    } catch (err) {
      return this.#failed('register', storeError(err, 'registering the gateway for session requests'))
    }
    this.#failing.delete('register')
  }

  /** Logs a failure once until the next success (an outage is logged by the store already; the checks retry). */
  #failed(what: 'register' | 'answer', err: KeywayError): void {
    if (this.#failing.has(what)) return
    this.#failing.add(what)
    this.#o.logger.warn({ event: 'session_requests_failed', code: err.code, err: err.message }, `${err.message}; retrying every postgres.checkInterval`)
  }

  /** Reads and answers the requests this gateway has not answered yet (one run at a time; a kick during a run runs it again). */
  #process(): Promise<void> {
    if (this.#holder === undefined || this.#closed) return Promise.resolve()
    if (this.#processing !== undefined) {
      this.#again = true
      return this.#processing
    }
    this.#processing = (async () => {
      do {
        this.#again = false
        try {
          await this.#processOnce()
          this.#failing.delete('answer')
        } catch (err) {
          this.#failed('answer', storeError(err, 'answering session requests'))
        }
      } while (this.#again && !this.#closed)
    })().finally(() => {
      this.#processing = undefined
    })
    return this.#processing
  }

  async #processOnce(): Promise<void> {
    const h = this.#holder!
    const { pool } = this.#o
    // No cursor: ids are drawn before commit, so a request committed late can carry a lower id than one already
    // read. Each read asks for what this gateway has not answered yet; a new instance id has no old requests.
    const r = await pool.query<RequestRow>(
      `SELECT r.id::text AS id, r.kind, r.session FROM keyway_session_requests r
       WHERE r.expires_at > now() AND (
         (r.kind = 'end' AND r.instance = $1 AND r.answered_at IS NULL)
         OR (r.kind = 'list' AND NOT EXISTS (SELECT 1 FROM keyway_session_lists l WHERE l.request = r.id AND l.instance = $1)))
       ORDER BY r.id`,
      [h.instance],
    )
    let answered = false
    for (const row of r.rows) {
      if (row.kind === 'list') {
        await pool.query(
          `INSERT INTO keyway_session_lists (request, instance, gateway, sessions) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING`,
          [row.id, h.instance, h.name, JSON.stringify(h.list())],
        )
        answered = true
      } else if (row.session !== null) {
        const info = h.get(row.session)
        const claimed = await pool.query(
          `UPDATE keyway_session_requests SET answered_at = now(), answered_by = $2, result = $3
           WHERE id = $1 AND answered_at IS NULL AND expires_at > now()`,
          [row.id, h.instance, JSON.stringify(info === undefined ? { ended: false } : { ended: true, gateway: h.name, session: info })],
        )
        // Only a claimed request may end the session: an unclaimed one was withdrawn, and the admin told so.
        if (claimed.rowCount === 1 && info !== undefined) h.end(row.session)
        answered = true
      }
    }
    if (answered) await pool.query('SELECT pg_notify($1, $2)', [SESSIONS_CHANNEL, 'answered'])
  }

  async list(except?: string): Promise<ListAnswer> {
    const { pool } = this.#o
    try {
      const gateways = await this.#liveGateways()
      const expected = new Map(gateways.filter((g) => g.instance !== except).map((g) => [g.instance, g.name]))
      if (expected.size === 0) return { sessions: [], unanswered: [] }
      const id = await this.#request('list', null, null)
      try {
        type Answer = { instance: string; gateway: string; sessions: unknown }
        let answers: Answer[] = []
        await this.#waitFor(async () => {
          answers = (await pool.query<Answer>('SELECT instance, gateway, sessions FROM keyway_session_lists WHERE request = $1', [id])).rows
          return [...expected.keys()].every((i) => answers.some((a) => a.instance === i))
        })
        const sessions: HeldSession[] = []
        for (const a of answers) {
          if (a.instance === except || !Array.isArray(a.sessions)) continue
          for (const s of a.sessions as unknown[]) {
            const info = sessionInfoOf(s)
            if (info !== undefined && info.id.startsWith(`${a.instance}.`)) sessions.push({ ...info, gateway: a.gateway })
          }
        }
        const unanswered = [...expected].filter(([i]) => !answers.some((a) => a.instance === i)).map(([, name]) => name)
        if (unanswered.length > 0) this.#o.logger.warn({ event: 'session_list_partial', unanswered }, 'some gateways did not answer the list of live sessions in time')
        return { sessions, unanswered }
      } finally {
        await pool.query('DELETE FROM keyway_session_requests WHERE id = $1', [id]).catch(() => undefined)
      }
    } catch (err) {
      throw storeError(err, 'listing live sessions')
    }
  }

  async end(sessionId: string, by: string): Promise<EndAnswer> {
    const { pool } = this.#o
    const instance = instanceOf(sessionId)
    if (instance === undefined) return { ended: false, reason: 'not_found' }
    try {
      const holder = (await this.#liveGateways()).find((g) => g.instance === instance)
      if (holder === undefined) return { ended: false, reason: 'not_found' }
      const id = await this.#request('end', sessionId, instance, by)
      type Row = { result: unknown }
      let row: Row | undefined
      const answer = async (): Promise<boolean> => {
        row = (await pool.query<Row>('SELECT result FROM keyway_session_requests WHERE id = $1 AND answered_at IS NOT NULL', [id])).rows[0]
        return row !== undefined
      }
      await this.#waitFor(answer)
      if (row === undefined) {
        // Withdraw it, unless the holder claimed it meanwhile: then its answer stands.
        const withdrawn = await pool.query(`UPDATE keyway_session_requests SET answered_at = now(), result = '{"withdrawn": true}' WHERE id = $1 AND answered_at IS NULL`, [id])
        if (withdrawn.rowCount === 1) return { ended: false, reason: 'unanswered', gateway: holder.name }
        await answer()
      }
      const result = row?.result as { ended?: unknown; gateway?: unknown; session?: unknown } | undefined
      const info = sessionInfoOf(result?.session)
      if (result?.ended !== true || info === undefined || info.id !== sessionId) return { ended: false, reason: 'not_found' }
      return { ended: true, session: { ...info, gateway: typeof result.gateway === 'string' ? result.gateway : holder.name } }
    } catch (err) {
      throw storeError(err, 'ending a live session')
    }
  }

  async #liveGateways(): Promise<{ instance: string; name: string }[]> {
    // A gateway renews its row every checkInterval: three missed renewals and it counts as gone.
    const seconds = Math.max(15, (3 * this.#o.checkInterval) / 1000)
    const r = await this.#o.pool.query<{ instance: string; name: string }>('SELECT instance, name FROM keyway_gateways WHERE seen_at > now() - make_interval(secs => $1)', [seconds])
    return r.rows
  }

  /** Writes a request that expires at the deadline, and notifies; returns its id. */
  async #request(kind: 'list' | 'end', session: string | null, instance: string | null, by?: string): Promise<string> {
    const { pool } = this.#o
    // Requests are short-lived: each new one sweeps the long-expired (an asker that died mid-wait leaves its row).
    await pool.query("DELETE FROM keyway_session_requests WHERE expires_at < now() - interval '1 minute'")
    const r = await pool.query<{ id: string }>(
      `INSERT INTO keyway_session_requests (kind, session, instance, requested_by, expires_at)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING id::text AS id`,
      [kind, session, instance, by ?? null, this.#timeout / 1000],
    )
    const id = r.rows[0]!.id
    await pool.query('SELECT pg_notify($1, $2)', [SESSIONS_CHANNEL, 'request'])
    return id
  }

  /** Runs `done` on every notification and every {@link ANSWER_POLL_MS} until it is true or the request's deadline passes. */
  async #waitFor(done: () => Promise<boolean>): Promise<void> {
    void this.#listen()
    const { clock } = this.#o
    const deadline = clock.now() + this.#timeout
    while (!this.#closed) {
      if (await done()) return
      const left = deadline - clock.now()
      if (left <= 0) return
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clock.clearTimeout(timer)
          this.#waiters.delete(wake)
          resolve()
        }
        const timer = clock.setTimeout(wake, Math.min(ANSWER_POLL_MS, left))
        this.#waiters.add(wake)
      })
    }
  }

  /** LISTENs on a dedicated connection (reconnected with backoff); a notification wakes the waiters and the serving side. */
  #listen(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    return (this.#listening ??= (async () => {
      const client = this.#o.listenClient()
      let lost = false
      const onLost = (): void => {
        if (lost) return
        lost = true
        client.removeAllListeners('notification')
        void client.end().catch(() => undefined)
        if (this.#listener === client) this.#listener = undefined
        this.#listening = undefined
        if (this.#closed || this.#holder === undefined) return
        // Requests sent while nobody listened are found by the next check; reconnect to be fast again.
        this.#reconnectTimer = this.#o.clock.setTimeout(() => void this.#listen().then(() => this.#process()), Math.min(this.#o.checkInterval, 1_000))
        this.#reconnectTimer.unref?.()
      }
      client.on('error', onLost)
      client.on('end', onLost)
      client.on('notification', () => {
        for (const wake of [...this.#waiters]) wake()
        void this.#process()
      })
      this.#listener = client
      try {
        await client.connect()
        await client.query(`LISTEN ${SESSIONS_CHANNEL}`)
      } catch {
        onLost()
        return
      }
      if (this.#closed) void client.end().catch(() => undefined)
    })())
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer)
    if (this.#reconnectTimer !== undefined) this.#o.clock.clearTimeout(this.#reconnectTimer)
    for (const wake of [...this.#waiters]) wake()
    await this.#processing?.catch(() => undefined)
    await this.#listening?.catch(() => undefined)
    await this.#listener?.end().catch(() => undefined)
    if (this.#holder !== undefined) await this.#o.pool.query('DELETE FROM keyway_gateways WHERE instance = $1', [this.#holder.instance]).catch(() => undefined)
  }
}

/** The instance id a session id starts with (`INSTANCE.RANDOM`), or undefined. */
function instanceOf(sessionId: string): string | undefined {
  const dot = sessionId.indexOf('.')
  return dot > 0 ? sessionId.slice(0, dot) : undefined
}

/** A session as a gateway wrote it, checked field by field (rows are written by another process), or undefined. */
function sessionInfoOf(x: unknown): LiveSessionInfo | undefined {
  if (typeof x !== 'object' || x === null) return undefined
  const s = x as Record<string, unknown>
  const a = s.account as Record<string, unknown> | undefined
  if (typeof s.id !== 'string' || typeof s.resource !== 'string' || typeof a !== 'object' || a === null) return undefined
  if (typeof a.id !== 'string' || typeof a.name !== 'string' || typeof a.type !== 'string') return undefined
  if (typeof s.startedAt !== 'number' || typeof s.bytesIn !== 'number' || typeof s.bytesOut !== 'number') return undefined
  return { id: s.id, account: { id: a.id, name: a.name, type: a.type }, resource: s.resource, startedAt: s.startedAt, bytesIn: s.bytesIn, bytesOut: s.bytesOut }
}
