import { createRequire } from 'node:module'
import type pg from 'pg'
import { Gauge, type Registry } from 'prom-client'
import { Document } from 'yaml'
import { adminContextFromConfig, type AdminContext, type AdminStorage, type EditScope, type ReadPolicy } from '../admin/index.js'
import type { Clock, TimerHandle } from '../clock.js'
import type { KeywayConfig } from '../config/index.js'
import type { Credentials, UserCredentials } from '../credentials/index.js'
import { DocumentError, KeywayError, toKeywayError } from '../errors.js'
import type { Logger } from '../observe/index.js'
import {
  ReloadQueue,
  assemblePolicy,
  compilePolicy,
  patchDepth,
  patchDocument,
  patchPolicy,
  policyFrame,
  packPolicyDocument,
  policyDigest,
  policyTooLarge,
  type AccountDoc,
  type CompiledPolicy,
  type PolicyDoc,
  type PolicyFrame,
  type PolicyLimits,
  type ReloadResult,
} from '../policy/index.js'
import { ContextAdminOperations, type AdminOperations } from './admin-operations.js'
import { canonicalPolicy } from './canonical.js'
import { poolConfig, clientConfig, type PostgresSettings } from './pg-connection.js'
import { storeError } from './pg-errors.js'
import { currentGeneration, loadAccountDocs, loadCredentials, loadPolicyDoc, rowsOf, writeChanges, writeCredentials, type ChangeSummary, type TouchedRows } from './pg-rows.js'
import { loadPackedPolicy } from './pg-load.js'
import { loadScopedDoc } from './pg-scope.js'
import { checkSchema, EDIT_LOCK, migrate } from './pg-schema.js'
import { readTokenLastUsed, TokenUsageWriter } from './pg-usage.js'
import { PostgresSessionFeed, type SessionFeed } from './pg-sessions.js'

/** pg, loaded when a PostgreSQL store is made: a gateway on the file store never loads it (issue 22). */
const loadPg = (): typeof pg => createRequire(import.meta.url)('pg') as typeof pg
import type { KeywayStore } from './store.js'

/** The NOTIFY channel of committed changes (a hint only: listeners read the change log). */
export const CHANNEL = 'keyway_policy'

/** What names the database in problems (`postgresql store (edited, not written):3:5: …`). */
const LABEL = 'postgresql store'

/** A change-log row names the accounts it changed up to this many; a larger change is reloaded whole. */
const MAX_LOGGED_ACCOUNTS = 10_000
/** A gateway patches changed accounts into its policy until it carries this many patches… */
const MAX_PATCHES = 500
/** …or patched accounts; then the next change is loaded whole (one full compile flattens them). */
const MAX_PATCHED_ACCOUNTS = 5_000

/** What a gateway's load found (see `PostgresStore.#load`). */
type Loaded =
  | { readonly kind: 'whole' }
  | { readonly kind: 'doc'; readonly doc: PolicyDoc; readonly generation: number }
  | { readonly kind: 'accounts'; readonly ids: string[]; readonly accounts: AccountDoc[]; readonly generation: number }

/** Options of {@link PostgresStore}. */
export interface PostgresStoreOptions {
  readonly config: KeywayConfig
  readonly clock: Clock
  readonly logger: Logger
  /** Where `keyway_store_*` metrics are registered (gateways); none for the CLI. */
  readonly registry?: Registry
  /** Observes every load (metrics, log lines), as a file reload is observed. */
  readonly onReload?: (result: ReloadResult) => void
  readonly onError?: (err: unknown) => void
  /**
   * A whole load of a policy with at least this many accounts runs on a
   * worker thread; a smaller one is read and compiled here, in a few
   * milliseconds, sparing a thread's start. Default 200; tests pass 0 to
   * take the worker's path with a small policy.
   */
  readonly workerMinAccounts?: number
}

/** The `postgres:` settings of a configuration. */
export function postgresSettings(config: KeywayConfig): PostgresSettings & { readonly checkInterval: number; readonly maxStaleness: number; readonly lockTimeout: number } {
  return config.postgres
}

interface StoreMetrics {
  up: Gauge
  generation: Gauge
  lastContact: Gauge
  stale: Gauge
}

/**
 * The {@link KeywayStore} of PostgreSQL (`store: postgres`): several gateways
 * share one policy.
 *
 * Writes (every admin operation, the admin API, `keyway store import`) run
 * in one transaction each, serialized by a transaction-scoped advisory lock:
 * load the part of the policy the operation's `EditScope` names (settings,
 * resources, roles and the accounts it touches; the whole policy for an
 * operation without one), apply the same `admin/` transform the file store
 * applies to its YAML, validate that edited part with the same validator,
 * write only the rows that changed plus a change-log row with the next
 * generation, and NOTIFY; the database's constraints check the rules that
 * span accounts in the same transaction.
 *
 * Gateways follow with `watch()`: a dedicated connection (outside the pool)
 * LISTENs; a notification is only a hint to compare generations, and so is
 * a periodic check (`postgres.checkInterval`) that bounds a missed one; a
 * reconnect resyncs. A newer generation whose change-log rows all name the
 * accounts they changed is applied as a patch: only those accounts are read
 * and compiled (with the settings, resources and roles of the last full
 * load) and patched into the served policy (`patchPolicy`), in a few
 * milliseconds whatever the policy's size; anything else (a change of
 * settings, resources or roles, a gap in the generations, many patches
 * already) is loaded whole. Either way the new policy is handed to the
 * `onChange` observers, as a file reload is. While PostgreSQL is unreachable
 * the last good policy stays; with `postgres.maxStaleness` set, a gateway
 * that has not reached it for that long fails closed (an empty policy) until
 * it does.
 */
export class PostgresStore implements KeywayStore {
  readonly kind = 'postgres' as const
  readonly #options: PostgresStoreOptions
  readonly #settings: ReturnType<typeof postgresSettings>
  readonly #pool: pg.Pool
  readonly #metrics: StoreMetrics | undefined
  readonly #listeners = new Set<(policy: CompiledPolicy) => void>()
  #current: CompiledPolicy | undefined
  /** The policy served while the store could not be reached for too long. */
  #closedPolicy: CompiledPolicy | undefined
  #storeGeneration = 0
  #localGeneration = 0
  /** The settings, resources and roles of the last full load: what an account patch compiles with. */
  #frame: PolicyFrame | undefined
  #lastLoad: 'full' | 'accounts' | undefined
  #wholePath: 'rows' | 'document' | undefined
  #lastError: KeywayError | undefined
  #reachable = true
  #lastContact: number
  readonly #reloads = new ReloadQueue<ReloadResult>(() => this.#reloadOnce())
  #listener: pg.Client | undefined
  #listening = false
  #pollTimer: TimerHandle | undefined
  #reconnectTimer: TimerHandle | undefined
  #reconnectDelay = 250
  #watching = false
  #closed = false
  #ctx: AdminContext | undefined
  #admin: AdminOperations | undefined
  readonly #usage: TokenUsageWriter
  #sessionFeed: PostgresSessionFeed | undefined

  constructor(options: PostgresStoreOptions) {
    this.#options = options
    this.#settings = postgresSettings(options.config)
    this.#pool = new (loadPg().Pool)(poolConfig(this.#settings))
    // An idle pooled connection that PostgreSQL drops (a restart) must not crash the process.
    this.#pool.on('error', (err) => this.#markDown(storeError(err, 'an idle connection failed')))
    this.#lastContact = options.clock.now()
    this.#usage = new TokenUsageWriter({ pool: this.#pool, clock: options.clock, logger: options.logger })
    const r = options.registry
    if (r !== undefined) {
      this.#metrics = {
        up: new Gauge({ name: 'keyway_store_up', help: '1 while the policy store (PostgreSQL) answers, 0 while it cannot be reached', registers: [r] }),
        generation: new Gauge({ name: 'keyway_store_generation', help: 'Generation of the change log the served policy was loaded at', registers: [r] }),
        lastContact: new Gauge({ name: 'keyway_store_last_contact_seconds', help: 'Unix time of the last successful query of the policy store', registers: [r] }),
        stale: new Gauge({ name: 'keyway_store_stale', help: '1 while the gateway fails closed: the store was unreachable longer than postgres.maxStaleness', registers: [r] }),
      }
      this.#metrics.up.set(1)
    }
  }

  /**
   * How the last load that found a newer generation applied it: `full` (the
   * whole policy read and compiled) or `accounts` (only the changed
   * accounts, patched in). For tests and the bench.
   */
  get lastLoad(): 'full' | 'accounts' | undefined {
    return this.#lastLoad
  }

  /**
   * How the last whole load on the worker thread packed the policy: from
   * the account rows (the fast path) or from the whole document (rows the
   * packer could not vouch for, such as an invalid policy). For tests and
   * the bench.
   */
  get lastWholeLoadPath(): 'rows' | 'document' | undefined {
    return this.#wholePath
  }

  /** The pool (for `keyway store` and tests). */
  get pool(): pg.Pool {
    return this.#pool
  }

  // -------------------------------------------------------------------------
  // The snapshot a gateway serves
  // -------------------------------------------------------------------------

  /**
   * Loads the policy at the latest generation.
   *
   * @throws KeywayError ERR_STORE_UNREACHABLE, ERR_STORE_SCHEMA_MISSING, ERR_STORE_SCHEMA_NEWER, ERR_STORE_PERMISSION, ERR_STORE_EMPTY
   */
  async start(): Promise<CompiledPolicy> {
    const result = await this.reload()
    if (!result.ok) throw result.error
    return result.policy
  }

  current(): CompiledPolicy {
    const policy = this.#closedPolicy ?? this.#current
    if (policy === undefined) throw new KeywayError('ERR_POLICY_IO', 'the policy is not loaded')
    return policy
  }

  get lastError(): KeywayError | undefined {
    return this.#lastError
  }

  onChange(fn: (policy: CompiledPolicy) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** Compares generations and loads a newer one; queued like a file reload (one runs, one waits). */
  reload(): Promise<ReloadResult> {
    return this.#reloads.reload()
  }

  async #reloadOnce(): Promise<ReloadResult> {
    let result: ReloadResult
    try {
      const loaded = await this.#load()
      // A large policy is read, validated and packed on a worker thread: a whole load never holds the event loop.
      const whole = loaded?.kind === 'whole' ? await loadPackedPolicy({ settings: this.#settings, limits: this.#limits(), label: LABEL }) : undefined
      if (whole !== undefined) this.#wholePath = whole.path
      this.#markUp()
      const wasClosed = this.#closedPolicy !== undefined
      this.#closedPolicy = undefined
      this.#metrics?.stale.set(0)
      if (loaded === undefined) {
        result = { ok: true, changed: wasClosed, policy: this.#current! }
      } else if (loaded.kind === 'accounts') {
        // Only these accounts changed: compile them alone (with the roles and resources they name) and patch them in.
        const patch = compilePolicy(patchDocument(this.#frame!, loaded.accounts), { file: LABEL })
        this.#current = patchPolicy(this.#current!, patch, loaded.ids, ++this.#localGeneration, `generation:${loaded.generation}`)
        this.#storeGeneration = loaded.generation
        this.#metrics?.generation.set(loaded.generation)
        this.#lastLoad = 'accounts'
        result = { ok: true, changed: true, policy: this.#current }
      } else {
        const { packed, frame, generation } =
          loaded.kind === 'doc' ? { packed: packPolicyDocument(loaded.doc, { file: LABEL, limits: this.#limits() }), frame: loaded.doc, generation: loaded.generation } : whole!
        const changed = wasClosed || packed.digest !== this.#current?.digest
        if (changed) this.#current = await assemblePolicy(packed, ++this.#localGeneration)
        this.#frame = policyFrame(frame)
        this.#storeGeneration = generation
        this.#metrics?.generation.set(generation)
        this.#lastLoad = 'full'
        result = { ok: true, changed, policy: this.#current! }
      }
      this.#lastError = undefined
    } catch (err) {
      const error = toKeywayError(err, 'ERR_STORE_UNREACHABLE')
      this.#lastError = error
      if (error.code === 'ERR_STORE_UNREACHABLE') this.#markDown(error)
      result = { ok: false, error, problems: error instanceof DocumentError ? error.problems : [] }
    }
    try {
      this.#options.onReload?.(result)
    } catch (err) {
      this.#options.onError?.(err)
    }
    if (result.ok && result.changed) this.#notify(result.policy)
    return result
  }

  #notify(policy: CompiledPolicy): void {
    for (const fn of this.#listeners) {
      try {
        fn(policy)
      } catch (err) {
        this.#options.onError?.(err)
      }
    }
  }

  #limits(): PolicyLimits {
    const l = this.#options.config.policyLimits
    // maxBytes measures a file; the store's size is bounded by its entity counts.
    return { ...l, maxBytes: Number.MAX_SAFE_INTEGER }
  }

  /**
   * What changed since the generation served: nothing (undefined), some
   * accounts only (their rows, to patch in), or more: load the whole policy
   * (`loadPackedPolicy`, at the then latest generation).
   */
  async #load(): Promise<Loaded | undefined> {
    const client = await this.#connect()
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      await checkSchema(client)
      const generation = await currentGeneration(client)
      if (generation === 0) {
        throw new KeywayError('ERR_STORE_EMPTY', 'the PostgreSQL store holds no policy yet: run `keyway store import FILE`, or make a first change with `keyway admin`', {
          detail: { generation },
        })
      }
      let loaded: Loaded | undefined
      if (this.#current !== undefined && this.#closedPolicy === undefined && generation === this.#storeGeneration) loaded = undefined
      else {
        const ids = await this.#changedAccounts(client, generation)
        loaded =
          ids !== undefined
            ? // In canonical order, as a full load reads them: an account's first role is the one a decision names.
              { kind: 'accounts', ids, accounts: canonicalPolicy({ accounts: await loadAccountDocs(client, ids) }).accounts ?? [], generation }
            : await this.#wholeLoad(client, generation)
      }
      await client.query('COMMIT')
      client.release()
      return loaded
    } catch (err) {
      const ok = await client.query('ROLLBACK').then(() => true, () => false)
      client.release(!ok)
      throw storeError(err, 'loading the policy')
    }
  }

  /** A small policy is read here and now, in this snapshot; a large one is left to the worker. */
  async #wholeLoad(client: pg.PoolClient, generation: number): Promise<Loaded> {
    const min = this.#options.workerMinAccounts ?? 200
    const r = await client.query<{ n: string }>('SELECT count(*) AS n FROM keyway_accounts')
    if (Number(r.rows[0]!.n) >= min) return { kind: 'whole' }
    return { kind: 'doc', doc: await loadPolicyDoc(client), generation }
  }

  /**
   * The accounts changed between the generation served and `generation`,
   * from the change log, when a patch can apply them: the log must hold
   * every generation in between (a gap, after a restore or a pruned log,
   * means a full resync) and each row must name its accounts (a change of
   * settings, resources or roles, or an import, names none). Undefined: load
   * the whole policy. Also whole once the served policy carries many patches,
   * so that a full compile flattens them now and then.
   */
  async #changedAccounts(client: pg.PoolClient, generation: number): Promise<string[] | undefined> {
    const from = this.#storeGeneration
    const current = this.#current
    if (current === undefined || this.#closedPolicy !== undefined || this.#frame === undefined || generation <= from) return undefined
    const depth = patchDepth(current)
    if (depth.patches >= MAX_PATCHES || generation - from > MAX_PATCHES) return undefined
    const r = await client.query<{ accounts: unknown }>("SELECT summary->'accounts' AS accounts FROM keyway_changes WHERE generation > $1 AND generation <= $2", [from, generation])
    if (r.rows.length !== generation - from) return undefined
    const ids = new Set<string>()
    for (const row of r.rows) {
      if (!Array.isArray(row.accounts)) return undefined
      for (const id of row.accounts) ids.add(String(id))
    }
    if (depth.accounts + ids.size > MAX_PATCHED_ACCOUNTS) return undefined
    return [...ids]
  }

  /**
   * A pooled connection whose errors between queries (PostgreSQL stopped
   * mid-transaction) are reported, not thrown from an event; released
   * destroyed when anything failed, so the pool never lends a dead one again.
   */
  async #connect(): Promise<pg.PoolClient> {
    let client: pg.PoolClient
    try {
      client = await this.#pool.connect()
    } catch (err) {
      throw storeError(err, 'connecting')
    }
    let failed = false
    const onError = (err: Error): void => {
      failed = true
      this.#markDown(storeError(err, 'a query failed'))
    }
    client.on('error', onError)
    const release = client.release.bind(client)
    client.release = (err?: Error | boolean) => {
      client.off('error', onError)
      release(err ?? failed)
    }
    return client
  }

  #markUp(): void {
    this.#lastContact = this.#options.clock.now()
    this.#metrics?.lastContact.set(this.#lastContact / 1000)
    if (this.#reachable) return
    this.#reachable = true
    this.#metrics?.up.set(1)
    this.#options.logger.info({ event: 'store_reachable', store: 'postgres' }, 'the policy store is reachable again')
  }

  #markDown(error: KeywayError): void {
    if (!this.#reachable || this.#closed) return
    this.#reachable = false
    this.#metrics?.up.set(0)
    this.#options.logger.error(
      { event: 'store_unreachable', store: 'postgres', code: error.code, err: error.message },
      'the policy store cannot be reached; serving the last good policy',
    )
  }

  /** Fails closed once the store has been out of reach longer than postgres.maxStaleness (0: never). */
  #checkStaleness(): void {
    const max = this.#settings.maxStaleness
    if (max <= 0 || this.#reachable || this.#closedPolicy !== undefined || this.#current === undefined) return
    const since = this.#options.clock.now() - this.#lastContact
    if (since < max) return
    this.#closedPolicy = compilePolicy({}, { file: LABEL, generation: ++this.#localGeneration })
    this.#metrics?.stale.set(1)
    this.#options.logger.error(
      { event: 'store_stale', store: 'postgres', code: 'ERR_STORE_STALE', unreachableMs: since, maxStalenessMs: max },
      'the policy store has been unreachable longer than postgres.maxStaleness: failing closed (every session refused) until it answers',
    )
    this.#notify(this.#closedPolicy)
  }

  stale(): boolean {
    return this.#closedPolicy !== undefined
  }

  readyDetail(): Record<string, unknown> {
    return {
      store: {
        kind: 'postgres',
        reachable: this.#reachable,
        listening: this.#listening,
        generation: this.#storeGeneration,
        lastContact: new Date(this.#lastContact).toISOString(),
        ...(this.#closedPolicy !== undefined ? { code: 'ERR_STORE_STALE' } : {}),
      },
    }
  }

  /**
   * Follows the change feed: LISTEN on a dedicated connection (reconnected
   * with backoff, resyncing each time) and a periodic generation check every
   * `postgres.checkInterval` on the injected clock.
   */
  watch(): void {
    if (this.#watching || this.#closed) return
    this.#watching = true
    this.#schedulePoll()
    void this.#listen()
  }

  #schedulePoll(): void {
    if (this.#closed) return
    this.#pollTimer = this.#options.clock.setTimeout(() => {
      void this.reload().finally(() => {
        this.#checkStaleness()
        this.#schedulePoll()
      })
    }, this.#settings.checkInterval)
    this.#pollTimer.unref?.()
  }

  async #listen(): Promise<void> {
    if (this.#closed) return
    const client = new (loadPg().Client)(clientConfig(this.#settings))
    this.#listener = client
    let lost = false
    const onLost = (err?: unknown): void => {
      if (lost) return
      lost = true
      this.#listening = false
      client.removeAllListeners('notification')
      void client.end().catch(() => undefined)
      if (this.#closed) return
      if (err !== undefined) this.#markDown(storeError(err, 'listening for changes'))
      this.#reconnectTimer = this.#options.clock.setTimeout(() => void this.#listen(), this.#reconnectDelay)
      this.#reconnectTimer.unref?.()
      this.#reconnectDelay = Math.min(this.#reconnectDelay * 2, Math.max(1000, this.#settings.checkInterval))
    }
    client.on('error', (err) => onLost(err))
    client.on('end', () => onLost())
    // The payload is never trusted (any role may NOTIFY): it only says "compare generations".
    client.on('notification', () => void this.reload())
    try {
      await client.connect()
      await client.query(`LISTEN ${CHANNEL}`)
    } catch (err) {
      onLost(err)
      return
    }
    if (this.#closed) {
      void client.end().catch(() => undefined)
      return
    }
    this.#listening = true
    this.#reconnectDelay = 250
    // Notifications sent while no one listened are gone: resync from the generation held.
    void this.reload()
  }

  async passwordHashOf(accountId: string): Promise<string | undefined> {
    try {
      const r = await this.#pool.query<{ password_hash: string | null }>('SELECT password_hash FROM keyway_user_credentials WHERE account = $1', [accountId])
      return r.rows[0]?.password_hash ?? undefined
    } catch (err) {
      const e = storeError(err, 'reading a password hash')
      this.#options.logger.error({ event: 'credentials_reload_failed', code: e.code }, e.message)
      return undefined
    }
  }

  // -------------------------------------------------------------------------
  // Writes: the admin operations' primitives
  // -------------------------------------------------------------------------

  /** Runs `fn` in one transaction holding the edit lock. */
  async #locked<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#connect()
    try {
      await client.query('BEGIN')
      await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(this.#settings.lockTimeout))}`)
      await client.query('SELECT pg_advisory_xact_lock($1)', [EDIT_LOCK])
      await checkSchema(client)
      const result = await fn(client)
      await client.query('COMMIT')
      client.release()
      return result
    } catch (err) {
      const ok = await client.query('ROLLBACK').then(() => true, () => false)
      client.release(!ok)
      if (err instanceof KeywayError) throw err
      throw storeError(err, 'editing the policy')
    }
  }

  /**
   * One validated edit, as `editPolicyFile` makes on the file: `fn` edits
   * the YAML document of the policy; the edited policy must validate; only
   * the rows that changed are written, with the next generation.
   *
   * With a `scope` (every hot admin operation gives one) the document holds
   * the settings, resources and roles and only the accounts the scope names
   * ({@link loadScopedDoc}), so an edit costs the same at 100 accounts or
   * 100,000: what it validates is what it can break, and the rules that span
   * accounts (unique names and override ports, the No-Role rule) are checked
   * by the database's constraints in the same transaction.
   */
  edit<T>(fn: (doc: Document, current: CompiledPolicy) => T | Promise<T>, scope?: EditScope): Promise<T> {
    return this.#locked(async (client) => {
      const before = scope === undefined ? await loadPolicyDoc(client) : await loadScopedDoc(client, scope)
      // The document is built from the rows, not from YAML text: parsing and printing
      // the whole policy twice per edit is what makes a large file slow to edit.
      const document = new Document(before)
      const current = compilePolicy(before, { file: LABEL })
      const result = await fn(document, current)
      const after = (document.toJS() ?? {}) as PolicyDoc
      compilePolicy(after, { file: `${LABEL} (edited, not written)` })
      await this.#commitChange(client, before, after, scope !== undefined)
      return result
    })
  }

  /**
   * Replaces the whole policy with `doc` (validated first): `keyway store import`.
   *
   * @returns the generation written, or undefined when nothing changed
   */
  replace(doc: PolicyDoc): Promise<{ generation: number | undefined; summary: ChangeSummary }> {
    compilePolicy(doc, { file: LABEL })
    return this.#locked(async (client) => this.#commitChange(client, await loadPolicyDoc(client), doc, false))
  }

  /**
   * Writes the rows that differ and the change-log row. The change log's
   * `summary` also says which accounts changed (`accounts`, when only
   * accounts did and not too many), so that gateways apply the change to
   * those accounts alone (see {@link PostgresStore}); `digest` is the whole
   * policy's, or for a scoped edit the digest of the part it loaded.
   */
  async #commitChange(client: pg.PoolClient, before: PolicyDoc, after: PolicyDoc, scoped: boolean): Promise<{ generation: number | undefined; summary: ChangeSummary }> {
    const touched: TouchedRows = { accounts: new Set(), other: false }
    const summary = await writeChanges(client, rowsOf(before), rowsOf(after), touched)
    if (Object.keys(summary).length === 0) return { generation: undefined, summary }
    // Constraints are deferred: check them now, so that a violation is this edit's error, not COMMIT's.
    await client.query('SET CONSTRAINTS ALL IMMEDIATE')
    if (scoped) await this.#checkLimits(client, summary)
    const generation = (await currentGeneration(client)) + 1
    const digest = (scoped ? 'scope:' : '') + policyDigest(canonicalPolicy(after))
    const logged = !touched.other && touched.accounts.size <= MAX_LOGGED_ACCOUNTS ? { ...summary, accounts: [...touched.accounts].sort() } : summary
    await client.query('INSERT INTO keyway_changes (generation, digest, summary) VALUES ($1, $2, $3)', [generation, digest, JSON.stringify(logged)])
    await client.query('SELECT pg_notify($1, $2)', [CHANNEL, String(generation)])
    return { generation, summary }
  }

  /**
   * The policy limits a scoped edit can pass (it never loads the whole
   * policy to count it): counted in the tables it wrote to, after its writes.
   *
   * @throws KeywayError ERR_POLICY_TOO_LARGE
   */
  async #checkLimits(client: pg.PoolClient, summary: ChangeSummary): Promise<void> {
    const l = this.#options.config.policyLimits
    const grew = (table: string): boolean => (summary[table]?.upserted ?? 0) > 0
    const checks: [string, keyof PolicyLimits, string, string][] = [
      ['keyway_accounts', 'maxAccounts', 'accounts', 'SELECT count(*) AS n FROM keyway_accounts'],
      ['keyway_roles', 'maxRoles', 'roles', 'SELECT count(*) AS n FROM keyway_roles'],
      ['keyway_resources', 'maxResources', 'resources', 'SELECT count(*) AS n FROM keyway_resources'],
      ['keyway_tokens', 'maxTokens', 'token records', 'SELECT count(*) AS n FROM keyway_tokens'],
    ]
    for (const [table, limit, what, sql] of checks) {
      if (!grew(table)) continue
      const n = Number((await client.query<{ n: string }>(sql)).rows[0]!.n)
      if (n > l[limit]) throw policyTooLarge(LABEL, limit, n, l[limit], what)
    }
    if (grew('keyway_role_grants') || grew('keyway_account_grants')) {
      const n = Number((await client.query<{ n: string }>('SELECT (SELECT count(*) FROM keyway_role_grants) + (SELECT count(*) FROM keyway_account_grants) AS n')).rows[0]!.n)
      if (n > l.maxGrants) throw policyTooLarge(LABEL, 'maxGrants', n, l.maxGrants, 'grants (role grants plus account grants)')
    }
  }

  /**
   * The policy as it is now, for display and `keyway store export`: whole,
   * or with a `scope` only the accounts it names beside the settings,
   * resources and roles ({@link loadScopedDoc}), so that showing one account
   * costs the same at 100 accounts or 100,000.
   */
  async read(scope?: EditScope): Promise<ReadPolicy> {
    const client = await this.#connect()
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      await checkSchema(client)
      const doc = scope === undefined ? await loadPolicyDoc(client) : await loadScopedDoc(client, scope)
      await client.query('COMMIT')
      client.release()
      return { policy: compilePolicy(doc, { file: LABEL }), doc }
    } catch (err) {
      const ok = await client.query('ROLLBACK').then(() => true, () => false)
      client.release(!ok)
      throw storeError(err, 'reading the policy')
    }
  }

  async readCredentials(): Promise<Credentials> {
    try {
      return await loadCredentials(this.#pool)
    } catch (err) {
      throw storeError(err, 'reading credentials')
    }
  }

  editCredentials<T>(fn: (users: Map<string, UserCredentials>) => T): Promise<T> {
    return this.#locked(async (client) => {
      const before = await loadCredentials(client)
      const users = new Map(before)
      const result = fn(users)
      await writeCredentials(client, before, users)
      return result
    })
  }

  /** Brings the schema up to date (`keyway store migrate`). */
  async migrate(): Promise<{ from: number; to: number }> {
    const client = await this.#connect()
    try {
      return await migrate(client)
    } finally {
      client.release()
    }
  }

  /** The generation of the last committed change. */
  async generation(): Promise<number> {
    try {
      return await currentGeneration(this.#pool)
    } catch (err) {
      throw storeError(err, 'reading the generation')
    }
  }

  adminContext(): AdminContext {
    const storage: AdminStorage = {
      edit: (fn, scope) => this.edit(fn, scope),
      read: (scope) => this.read(scope),
      readCredentials: () => this.readCredentials(),
      editCredentials: (fn) => this.editCredentials(fn),
    }
    return (this.#ctx ??= adminContextFromConfig(this.#options.config, this.#options.clock, storage))
  }

  get admin(): AdminOperations {
    return (this.#admin ??= new PostgresAdminOperations(this.adminContext(), this.#pool))
  }

  /** Notes a use of service token `tokenId`: batched into `keyway_token_last_used` ({@link TokenUsageWriter}). */
  recordTokenUse(tokenId: string): void {
    this.#usage.record(tokenId)
  }

  /** Writes the token uses noted so far now (tests, shutdown). */
  flushTokenUse(): Promise<void> {
    return this.#usage.flush()
  }

  /** Live sessions across the gateways of this store: requests and answers through `keyway_session_requests` ({@link PostgresSessionFeed}). */
  sessionFeed(): SessionFeed {
    return (this.#sessionFeed ??= new PostgresSessionFeed({
      pool: this.#pool,
      listenClient: () => new (loadPg().Client)(clientConfig(this.#settings)),
      clock: this.#options.clock,
      logger: this.#options.logger,
      checkInterval: this.#settings.checkInterval,
    }))
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#sessionFeed?.close()
    this.#listeners.clear()
    if (this.#pollTimer !== undefined) this.#options.clock.clearTimeout(this.#pollTimer)
    if (this.#reconnectTimer !== undefined) this.#options.clock.clearTimeout(this.#reconnectTimer)
    await this.#usage.close()
    await this.#listener?.end().catch(() => undefined)
    await this.#reloads.running?.catch(() => undefined)
    await this.#pool.end().catch(() => undefined)
  }
}

/** The admin operations on PostgreSQL: those of `keyway admin`, and the token last-used times gateways wrote. */
class PostgresAdminOperations extends ContextAdminOperations {
  readonly #pool: pg.Pool

  constructor(ctx: AdminContext, pool: pg.Pool) {
    super(ctx)
    this.#pool = pool
  }

  async tokensLastUsed(tokenIds: readonly string[]): Promise<ReadonlyMap<string, number>> {
    try {
      return await readTokenLastUsed(this.#pool, tokenIds)
    } catch (err) {
      throw storeError(err, 'reading token last-used times')
    }
  }
}
