import { chmod, chown, unlink } from 'node:fs/promises'
import * as net from 'node:net'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { decodeTokenClaims, tokenFingerprint } from '../auth/index.js'
import { systemClock, type Clock, type TimerHandle } from '../clock.js'
import type { KeywayConfig } from '../config/index.js'
import { isErrorCode, KeywayError, toKeywayError, type ErrorCode } from '../errors.js'
import { forward, type ForwardSession } from '../forward/index.js'
import { adoptAccepted } from '../read-buffer/index.js'
import { formatHostPort, listenOn } from '../net/index.js'
import {
  API_PATHS,
  parseApiAnswer,
  ReadyResponseSchema,
  ResourcesResponseSchema,
  WhoamiResponseSchema,
  type ApiResource,
  type ResourcesResponse,
  type WhoamiResponse,
} from '../protocol/index.js'
import { refuseStartup } from '../pgwire/index.js'
import { GatewayClient, type ConnectTls, type GatewayState, type Tunnel } from './gateway-client.js'
import { LOOPBACK_HOST, assertLoopback } from './loopback.js'
import { createSidecarMetrics, type SessionResult, type SidecarMetrics, type SyncResult } from './metrics.js'
import { prepareSocketPath } from './runtime-dir.js'

/** The `sidecar` section of the configuration. */
export type SidecarConfig = KeywayConfig['sidecar']

/** What a {@link Sidecar} needs from the outside world. */
export interface SidecarDeps {
  config: SidecarConfig
  /** PEM text of the CA named by `config.ca` (the sidecar reads no files). */
  ca: string | Buffer
  /** The service token. Logged only as its fingerprint. */
  token: string
  /** Default: a {@link GatewayClient} built from `config` (closed by {@link Sidecar.close}). */
  client?: GatewayClient
  /** Dial function for the default client. */
  connectTls?: ConnectTls
  logger: Logger
  registry: Registry
  /** Default {@link systemClock}. */
  clock?: Clock
  /** Address resources are bound on. Loopback only; default 127.0.0.1. */
  bindHost?: string
  /** Where the token comes from, for status (`--token-file`, `KEYWAY_TOKEN`, ...). */
  tokenOrigin?: { origin: string; file?: string }
  /**
   * Re-reads the token source (calling {@link Sidecar.setToken} when it
   * changed); called while the gateways refuse the token.
   */
  reloadToken?: () => void
  /**
   * Called once when every gateway has refused the token for
   * `config.tokenRefusalGrace` with no new token: the sidecar cannot work and
   * should exit non-zero (a supervisor restarts it, an operator sees why).
   */
  onFatal?: (err: KeywayError) => void
  /** The private runtime directory, made by the control server; needed when `config.unixSockets` names resources. */
  runtimeDir?: string
  /** The runtime directory's group when it is shared: resource sockets get it and mode 0660 (else 0600). */
  runtimeGid?: number | undefined
  /** The data path may use Node's internals (start-up self-test passed and `forward.nodeInternals` is on). Default true. */
  nodeInternals?: boolean
}

/**
 * Why a granted resource is not bound. An open union: new reasons may appear
 * (clients show unknown ones as they are).
 * - `not_requested`: auto-connect is off (or port overrides are off): `keyway connect` binds it.
 * - `disconnected`: `keyway disconnect` unbound it; auto-connect leaves it alone until `keyway connect`.
 * - `port_in_use`: its port is taken (`ERR_PORT_IN_USE`); retried on every sync.
 * - `bind_failed`: binding failed otherwise; retried on every sync.
 * - `no_grant`: it was granted earlier in this run, and is no longer.
 * - `grant_removed`: its grant just went; the port is still bound for
 *   `sidecar.grantRemovedGrace`, refusing each new connection with the
 *   gateway's code (state `grant removed`), then it becomes `no_grant`.
 */
export type UnboundReason = 'not_requested' | 'disconnected' | 'port_in_use' | 'bind_failed' | 'no_grant' | 'grant_removed'

/** What the sidecar knows about its token, for `status --json`. */
export interface TokenStatus {
  fingerprint: string
  /** The setting it came from (`--token-file`, `KEYWAY_TOKEN`, `KEYWAY_TOKEN_FILE`, `sidecar.tokenFile`), when known. */
  origin: string | null
  /** The token file, re-read when it changes. */
  file: string | null
  /** When it stops working (ISO-8601): its `exp` or the end of its rotation grace; null when it has no end. */
  expiresAt: string | null
  /** True when the deadline is the end of a rotation grace: a newer token exists, put it in place. */
  rotatedOut: boolean
  /** Set while every gateway refuses the token. */
  refused: { code: string; message: string; since: string; exitAt: string } | null
}

/**
 * File name of a resource's Unix socket: `.s.PGSQL.<port>` for a PostgreSQL
 * resource with a port (so `psql -h DIR -p PORT` finds it), else the name.
 */
export function socketNameOf(resource: Pick<ApiResource, 'name' | 'type'>, port: number): string {
  if (resource.type === 'postgres' && port > 0) return `.s.PGSQL.${port}`
  return `${resource.name.replace(/[^A-Za-z0-9._-]/g, '_')}.sock`
}

/** One row of {@link Sidecar.status}, like a line of `sdm status`. */
export interface ResourceStatus {
  name: string
  kind: string
  type: string
  /** `127.0.0.1:15432` when bound, else ''. */
  localAddress: string
  state: 'bound' | 'not connected' | 'grant removed' | `error: ${string}`
  /** Sessions being forwarded now. */
  sessions: number
  /** Why binding failed, when `state` is an error. */
  error?: string
  /** Why it is not bound (absent while bound, except `grant_removed`). */
  reason?: UnboundReason
  /** How to get it bound, for people (absent while bound, except with `grant_removed`). */
  fix?: string
}

/** Everything `GET /v1/status` of the control API reports. */
export interface SidecarSnapshot {
  account: { id: string; name: string } | null
  tokenFingerprint: string
  token: TokenStatus
  gateway: GatewayState
  settings: ResourcesResponse['settings'] | null
  /** The last poll of the gateway: when it succeeded last, and its error if the last one failed. */
  sync: { lastOkAt: string | null; error: { code: string; message: string } | null }
  ready: boolean
  /** Why the sidecar is not ready; null when it is. */
  reason: string | null
  resources: ResourceStatus[]
}

/** How long a per-resource readiness ask may wait for the gateway (its probe runs up to its connect and login timeouts). */
const READY_ASK_TIMEOUT_MS = 30_000

/** Answer of {@link Sidecar.resourceReady}: ready, or the code and reason it is not. */
export type ResourceReady = { readonly ready: true } | { readonly ready: false; readonly code: ErrorCode; readonly reason: string }

/** Answer of {@link Sidecar.connect}. */
export interface ConnectResult {
  resource: string
  localAddress: string
}

interface Entry {
  readonly name: string
  resource: ApiResource
  server: net.Server | undefined
  /** The port asked for when binding (0: ephemeral), to notice setting changes. */
  requestedPort: number | undefined
  localAddress: string
  error: KeywayError | undefined
  readonly sessions: Set<ForwardSession>
  /** Accepted local sockets waiting for their tunnel. */
  readonly pending: Set<net.Socket>
  /** When the grant went while the port stays bound for `grantRemovedGrace`; undefined while granted. */
  removedAt: number | undefined
  /** Releases the port at the end of that grace. */
  releaseTimer: TimerHandle | undefined
}

interface LiveSession {
  readonly resource: string
  /** Bytes already added to the counter, per direction. */
  countedToGateway: number
  countedToClient: number
}

function noop(): void {}

/** A token about to stop working is reported at warn level this long before its deadline (a rotated-out one at once). */
export const TOKEN_WARN_AHEAD_MS = 3_600_000

/** Codes with which a gateway refuses the token itself: forged, expired, revoked, or of an account that is gone. */
function isTokenRefusal(code: ErrorCode): boolean {
  return code.startsWith('ERR_TOKEN_') || code === 'ERR_ACCOUNT_UNKNOWN'
}

/**
 * The sidecar (`keyway listen`): binds the resources granted to its service
 * token on 127.0.0.1 and tunnels every local connection to the gateway.
 *
 * - Grants and settings come from `GET /v1/resources`, polled every
 *   `syncInterval` with `If-None-Match`. With port overrides and auto-connect
 *   every granted resource is bound on its override port; otherwise nothing
 *   is bound until {@link Sidecar.connect}, which uses the override port or,
 *   with port overrides off, an ephemeral one.
 * - A grant that disappears is unbound and its live sessions are closed; a
 *   new one is bound (auto-connect). A port in use is reported in status and
 *   readiness and retried on every sync; the other resources stay bound.
 * - While no gateway answers, the sidecar keeps running and retrying with
 *   backoff; new local connections are closed at once.
 */
export class Sidecar {
  readonly #config: SidecarConfig
  #token: string
  readonly #client: GatewayClient
  readonly #ownsClient: boolean
  readonly #logger: Logger
  readonly #clock: Clock
  readonly #nodeInternals: boolean
  readonly #bindHost: string
  readonly #runtimeDir: string | undefined
  readonly #runtimeGid: number | undefined
  readonly #metrics: SidecarMetrics
  readonly #entries = new Map<string, Entry>()
  /** Resources bound by connect() (kept across syncs while granted). */
  readonly #connected = new Set<string>()
  /** Resources unbound by disconnect(): auto-connect leaves them alone until connect(). */
  readonly #disconnected = new Set<string>()
  /** Resources granted earlier in this run and not now (`no_grant` rows of status). */
  readonly #gone = new Map<string, ApiResource>()
  readonly #tokenOrigin: { origin: string; file?: string } | undefined
  readonly #reloadToken: (() => void) | undefined
  readonly #onFatal: ((err: KeywayError) => void) | undefined
  /** `exp` of the current token (epoch ms), read from the token itself. */
  #tokenExp: number | undefined
  /** The gateway's word on when the current token stops working (newer than `exp`: it knows the rotation grace). */
  #tokenDeadline: { at: number | undefined; rotatedOut: boolean } | undefined
  /** The deadline last logged, so each one is told once. */
  #deadlineLogged: string | undefined
  #deadlineWarned: string | undefined
  /** While every gateway refuses the token: since when, and why. */
  #refusal: { since: number; error: KeywayError } | undefined
  #fatal = false
  readonly #live = new Map<ForwardSession, LiveSession>()
  /** Per-resource readiness asks in flight, shared by concurrent callers. */
  readonly #readyAsks = new Map<string, Promise<ResourceReady>>()
  #view: ResourcesResponse | undefined
  #etag: string | undefined
  #syncError: KeywayError | undefined
  #lastSyncOkAt: number | undefined
  #account: WhoamiResponse['account'] | undefined
  /** whoami answered (even with an error): do not ask again on every sync. */
  #whoamiDone = false
  #syncing: Promise<SyncResult> | undefined
  #syncTimer: TimerHandle | undefined
  #queue: Promise<unknown> = Promise.resolve()
  #started = false
  #closed = false
  #closing: Promise<void> | undefined

  constructor(deps: SidecarDeps) {
    this.#config = deps.config
    this.#token = deps.token
    this.#logger = deps.logger
    this.#clock = deps.clock ?? systemClock
    this.#bindHost = deps.bindHost ?? LOOPBACK_HOST
    this.#nodeInternals = deps.nodeInternals ?? true
    assertLoopback(this.#bindHost, 'the sidecar bind address')
    this.#runtimeDir = deps.runtimeDir
    this.#runtimeGid = deps.runtimeGid
    if (deps.config.unixSockets.length > 0 && deps.runtimeDir === undefined) {
      throw new KeywayError('ERR_CONFIG_INVALID', 'sidecar.unixSockets needs the runtime directory (sidecar.runtimeDir)')
    }
    if (!deps.token) throw new KeywayError('ERR_TOKEN_MISSING', 'the sidecar needs a service token (KEYWAY_TOKEN or sidecar.tokenFile)')
    this.#tokenExp = decodeTokenClaims(deps.token).expiresAt
    this.#tokenOrigin = deps.tokenOrigin
    this.#reloadToken = deps.reloadToken
    this.#onFatal = deps.onFatal
    this.#ownsClient = deps.client === undefined
    this.#client =
      deps.client ??
      new GatewayClient({
        gateways: deps.config.gateways,
        ca: deps.ca,
        servername: deps.config.servername,
        connectTimeoutMs: deps.config.connectTimeout,
        multiplex: deps.config.multiplex,
        nodeInternals: deps.nodeInternals ?? true,
        clock: this.#clock,
        logger: deps.logger,
        ...(deps.connectTls ? { connectTls: deps.connectTls } : {}),
      })
    this.#metrics = createSidecarMetrics(deps.registry, {
      resourcesBound: () => [...this.#entries.values()].filter((e) => e.server !== undefined).length,
      gatewayUp: () => this.#client.state().up,
      flushBytes: () => {
        for (const [session, live] of this.#live) this.#countBytes(live, session.bytesBToA, session.bytesAToB)
      },
      tokenExpiry: () => {
        const at = this.#deadline().at
        return at === undefined ? Infinity : at / 1000
      },
    })
  }

  /**
   * Polls the gateway once (binding what is granted) and starts the sync
   * loop. Never fails because the gateway is down or a port is taken: that is
   * reported by {@link Sidecar.status} and {@link Sidecar.ready}, and retried.
   */
  async start(): Promise<void> {
    if (this.#closed) throw new KeywayError('ERR_SHUTTING_DOWN', 'the sidecar is closed')
    if (this.#started) return
    this.#started = true
    this.#logger.info(
      {
        event: 'sidecar_start',
        gateways: this.#config.gateways.map(formatHostPort),
        token_fp: tokenFingerprint(this.#token),
        ...(this.#tokenOrigin ? { token_origin: this.#tokenOrigin.origin } : {}),
      },
      'sidecar starting',
    )
    await this.sync()
    this.#scheduleSync()
  }

  /**
   * Polls `GET /v1/resources` now and applies the answer (also re-trying
   * failed binds). Joins a poll already in flight. Never rejects.
   */
  sync(): Promise<SyncResult> {
    if (this.#syncing) return this.#syncing
    const run = this.#doSync()
    this.#syncing = run
    void run.finally(() => {
      if (this.#syncing === run) this.#syncing = undefined
    })
    return run
  }

  /**
   * Replaces the token (after a rotation); the next sync and new tunnels use
   * it. `ERR_TOKEN_MALFORMED` (and the old token stays) when it cannot be parsed.
   */
  setToken(token: string): void {
    if (!token) throw new KeywayError('ERR_TOKEN_MISSING', 'the new token is empty')
    if (token === this.#token) return
    const exp = decodeTokenClaims(token).expiresAt
    this.#token = token
    this.#tokenExp = exp
    this.#tokenDeadline = undefined
    this.#refusal = undefined
    this.#etag = undefined
    this.#account = undefined
    this.#whoamiDone = false
    this.#logger.info({ event: 'token_replaced', token_fp: tokenFingerprint(token) }, 'service token replaced')
  }

  /**
   * Whether `resource` works through the gateway now (`/readyz/<resource>`,
   * `keyway wait --resource`): the gateway makes a real connection to its
   * upstream (a login for a resource with credentials) and reuses its answer
   * for a few seconds. Asks at the same time share one request. Not ready
   * with the gateway's code: the upstream's (`ERR_UPSTREAM_UNREACHABLE`,
   * `ERR_UPSTREAM_LOGIN_FAILED`, ...), `ERR_GRANT_DENIED` for a resource
   * the token is not granted (or that does not exist), or
   * `ERR_GATEWAY_UNAVAILABLE`.
   */
  resourceReady(resource: string): Promise<ResourceReady> {
    const running = this.#readyAsks.get(resource)
    if (running !== undefined) return running
    const ask = this.#askReady(resource).finally(() => this.#readyAsks.delete(resource))
    this.#readyAsks.set(resource, ask)
    return ask
  }

  async #askReady(resource: string): Promise<ResourceReady> {
    if (this.#closed) return { ready: false, code: 'ERR_SHUTTING_DOWN', reason: 'the sidecar is shutting down' }
    try {
      // The gateway's probe may take its connect and login timeouts: a slow upstream must not read as a lost gateway.
      const answer = await this.#client.api<unknown>('GET', `${API_PATHS.ready}?resource=${encodeURIComponent(resource)}`, { token: this.#token, timeoutMs: READY_ASK_TIMEOUT_MS })
      const body = parseApiAnswer(ReadyResponseSchema, (answer as { body?: unknown }).body)
      if (body === undefined) return { ready: false, code: 'ERR_INTERNAL', reason: `the gateway's answer to ${API_PATHS.ready} is malformed` }
      if (body.ready) return { ready: true }
      const code = isErrorCode(body.code) ? body.code : 'ERR_INTERNAL'
      return { ready: false, code, reason: `${code}: ${body.message ?? 'not ready'}` }
    } catch (err) {
      const e = toKeywayError(err)
      const why = e.code === 'ERR_NOT_FOUND' ? 'the gateway is older than per-resource readiness (no /v1/ready)' : e.message
      return { ready: false, code: e.code, reason: `${e.code}: ${why}` }
    }
  }

  /**
   * Binds `resource` on 127.0.0.1 (its override port, or an ephemeral one
   * with port overrides off) and keeps it bound while it is granted.
   * Rejects with `ERR_GRANT_DENIED` when the token holds no grant for it,
   * `ERR_PORT_IN_USE` when its port is taken, `ERR_GATEWAY_UNAVAILABLE` when
   * the grants could never be fetched.
   */
  async connect(resource: string): Promise<ConnectResult> {
    this.#assertOpen()
    if (!this.#granted(resource)) await this.sync()
    return this.#serial(async () => {
      this.#assertOpen()
      const view = this.#view
      const granted = this.#granted(resource)
      if (!view || !granted) {
        if (!view && this.#syncError) {
          throw new KeywayError(this.#syncError.code, `cannot connect "${resource}": ${this.#syncError.message}`, { cause: this.#syncError })
        }
        throw new KeywayError('ERR_GRANT_DENIED', `resource "${resource}" is not granted to this service account (or does not exist)`, {
          detail: { resource },
        })
      }
      this.#disconnected.delete(resource)
      this.#connected.add(resource)
      const entry = this.#entry(granted)
      if (entry.server) return { resource, localAddress: entry.localAddress }
      try {
        await this.#bind(entry, this.#desiredPort(granted))
      } catch (err) {
        this.#connected.delete(resource)
        if (!this.#wants(granted)) entry.error = undefined
        throw err
      }
      return { resource, localAddress: entry.localAddress }
    })
  }

  /**
   * Unbinds `resource` and closes its live sessions; auto-connect leaves it
   * unbound until {@link Sidecar.connect} or until auto-connect is turned off
   * and on again. Under auto-connect the sidecar is not ready meanwhile (the
   * reason says so). `ERR_NOT_CONNECTED` if not bound.
   */
  async disconnect(resource: string): Promise<{ resource: string }> {
    this.#assertOpen()
    return this.#serial(async () => {
      const entry = this.#entries.get(resource)
      if (!entry?.server) throw new KeywayError('ERR_NOT_CONNECTED', `resource "${resource}" is not connected`, { detail: { resource } })
      this.#connected.delete(resource)
      this.#disconnected.add(resource)
      this.#unbind(entry, 'disconnected', true)
      entry.error = undefined
      return { resource }
    })
  }

  /**
   * One row per granted resource, and per resource granted earlier in this
   * run but not now (`no_grant`), sorted by name. Rows not bound say why and
   * how to get them bound.
   */
  status(): ResourceStatus[] {
    const rows = [...this.#entries.values()].map((e) => {
      const row: ResourceStatus = {
        name: e.name,
        kind: e.resource.kind,
        type: e.resource.type,
        localAddress: e.server ? e.localAddress : '',
        state: e.removedAt !== undefined && e.server ? 'grant removed' : e.server ? 'bound' : e.error ? `error: ${e.error.code}` : 'not connected',
        sessions: e.sessions.size,
      }
      if (e.removedAt !== undefined && e.server) {
        const at = new Date(e.removedAt + this.#config.grantRemovedGrace).toISOString()
        row.reason = 'grant_removed'
        row.fix = `the grant was removed: new connections are refused with the gateway's code until ${at}, then the port is released; an admin can tell why with "keyway explain ACCOUNT ${e.name}"`
      }
      if (!e.server && e.error) row.error = e.error.message
      if (!e.server) Object.assign(row, this.#whyUnbound(e))
      return row
    })
    for (const [name, resource] of this.#gone) {
      if (this.#entries.has(name)) continue
      rows.push({
        name,
        kind: resource.kind,
        type: resource.type,
        localAddress: '',
        state: 'not connected',
        sessions: 0,
        reason: 'no_grant',
        fix: `the token no longer holds a grant for ${name}: an admin can tell why with "keyway explain ACCOUNT ${name}"`,
      })
    }
    return rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  #whyUnbound(e: Entry): { reason: UnboundReason; fix: string } {
    if (e.error?.code === 'ERR_PORT_IN_USE') {
      return { reason: 'port_in_use', fix: `free port ${String(e.error.detail?.port ?? '')} (ss -ltnp shows what holds it) or change the port override; retried on every sync` }
    }
    if (e.error) return { reason: 'bind_failed', fix: `${e.error.message}; retried on every sync` }
    if (this.#disconnected.has(e.name)) return { reason: 'disconnected', fix: `disconnected by hand: run "keyway connect ${e.name}"` }
    return { reason: 'not_requested', fix: `auto-connect is off: run "keyway connect ${e.name}"` }
  }

  /** When the current token stops working, as far as the sidecar knows (the gateway's word first, else the token's `exp`). */
  #deadline(): { at: number | undefined; rotatedOut: boolean } {
    return this.#tokenDeadline ?? { at: this.#tokenExp, rotatedOut: false }
  }

  #tokenStatus(): TokenStatus {
    const deadline = this.#deadline()
    const refusal = this.#refusal
    return {
      fingerprint: tokenFingerprint(this.#token),
      origin: this.#tokenOrigin?.origin ?? null,
      file: this.#tokenOrigin?.file ?? null,
      expiresAt: deadline.at === undefined ? null : new Date(deadline.at).toISOString(),
      rotatedOut: deadline.rotatedOut,
      refused: refusal
        ? {
            code: refusal.error.code,
            message: refusal.error.message,
            since: new Date(refusal.since).toISOString(),
            exitAt: new Date(refusal.since + this.#config.tokenRefusalGrace).toISOString(),
          }
        : null,
    }
  }

  /** Status, gateway state, account and readiness, for the control API. */
  snapshot(): SidecarSnapshot {
    const reason = this.ready()
    return {
      account: this.#account ? { id: this.#account.id, name: this.#account.name } : null,
      tokenFingerprint: tokenFingerprint(this.#token),
      token: this.#tokenStatus(),
      gateway: this.#client.state(),
      settings: this.#view ? { ...this.#view.settings } : null,
      sync: {
        lastOkAt: this.#lastSyncOkAt === undefined ? null : new Date(this.#lastSyncOkAt).toISOString(),
        error: this.#syncError ? { code: this.#syncError.code, message: this.#syncError.message } : null,
      },
      ready: reason === undefined,
      reason: reason ?? null,
      resources: this.status(),
    }
  }

  /**
   * Readiness for `/readyz` and `keyway wait`: undefined once the last poll
   * of the gateway succeeded and every resource that should be bound is
   * (with auto-connect: every granted resource, a hand-disconnected one
   * included); otherwise why not, and what to do.
   */
  ready(): string | undefined {
    if (this.#closed) return 'shutting down'
    const gateway = this.#client.state()
    if (this.#refusal) {
      const { error, since } = this.#refusal
      const where = this.#tokenOrigin?.file ? `write a valid token to ${this.#tokenOrigin.file} (re-read at once)` : 'restart with a valid token'
      const exitIn = Math.max(0, Math.ceil((since + this.#config.tokenRefusalGrace - this.#clock.now()) / 1000))
      return `the gateway refuses the token: ${error.code}: ${error.message}; ${where}, else the sidecar exits in ${exitIn} s`
    }
    if (this.#syncError) return syncReason(this.#syncError)
    if (!this.#view) return 'waiting for the first answer from the gateway'
    if (!gateway.up) return `gateway unreachable: ${gateway.lastError ?? 'unknown error'}`
    for (const entry of [...this.#entries.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (!entry.server && this.#wants(entry.resource)) {
        return `resource ${entry.name} not bound: ${entry.error?.message ?? 'binding'}`
      }
      if (!entry.server && this.#disconnected.has(entry.name) && this.#autoConnect()) {
        return `resource ${entry.name} not bound: disconnected by hand while auto-connect is on; run "keyway connect ${entry.name}"`
      }
    }
    return undefined
  }

  /**
   * Stops polling and listening, lets live sessions finish for up to
   * `drainGrace`, then closes the rest. Idempotent; resolves when every
   * session is closed.
   */
  close(): Promise<void> {
    this.#closing ??= this.#doClose()
    return this.#closing
  }

  async #doClose(): Promise<void> {
    this.#closed = true
    if (this.#syncTimer !== undefined) this.#clock.clearTimeout(this.#syncTimer)
    await this.#serial(async () => {
      for (const entry of this.#entries.values()) {
        this.#unbind(entry, 'shutdown', false)
        // Not yet forwarding: nothing to drain.
        for (const socket of entry.pending) socket.destroy()
        entry.pending.clear()
      }
    })
    const sessions = [...this.#live.keys()]
    if (sessions.length > 0) {
      this.#logger.info({ event: 'sidecar_drain', sessions: sessions.length, grace_ms: this.#config.drainGrace }, 'draining sessions')
      let timer: TimerHandle | undefined
      const grace = new Promise<void>((resolve) => {
        timer = this.#clock.setTimeout(resolve, this.#config.drainGrace)
      })
      await Promise.race([Promise.all(sessions.map((s) => s.done)), grace])
      if (timer !== undefined) this.#clock.clearTimeout(timer)
      for (const session of this.#live.keys()) session.close('shutdown')
      await Promise.all(sessions.map((s) => s.done))
    }
    await this.#syncing
    if (this.#ownsClient) this.#client.close()
    this.#logger.info({ event: 'sidecar_stopped' }, 'sidecar stopped')
  }

  #assertOpen(): void {
    if (this.#closed) throw new KeywayError('ERR_SHUTTING_DOWN', 'the sidecar is shutting down')
  }

  // Binds and unbinds are asynchronous; one queue keeps sync, connect and
  // disconnect from interleaving on the same listener.
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(noop)
    return run
  }

  #scheduleSync(): void {
    if (this.#closed) return
    const delay = Math.max(this.#config.syncInterval, this.#client.retryInMs())
    this.#syncTimer = this.#clock.setTimeout(() => {
      this.#syncTimer = undefined
      void this.sync().then(() => this.#scheduleSync())
    }, delay)
  }

  async #doSync(): Promise<SyncResult> {
    let result: SyncResult
    try {
      const answer = await this.#client.api<ResourcesResponse>('GET', API_PATHS.resources, {
        token: this.#token,
        ...(this.#etag === undefined ? {} : { etag: this.#etag }),
      })
      if (this.#syncError) this.#logger.info({ event: 'sync_recovered' }, 'gateway answering again')
      this.#syncError = undefined
      this.#refusal = undefined
      this.#lastSyncOkAt = this.#clock.now()
      if (answer.status === 304) {
        result = 'not_modified'
      } else {
        result = 'ok'
        this.#applyView(checkView((answer as { body: unknown }).body))
        this.#etag = answer.etag
      }
      if (!this.#whoamiDone) await this.#whoami()
    } catch (err) {
      const e = toKeywayError(err)
      const fields = { event: 'sync_failed', code: e.code, reason: e.message }
      if (this.#syncError?.message !== e.message) this.#logger.warn(fields, 'cannot fetch grants from the gateway')
      else this.#logger.debug(fields, 'cannot fetch grants from the gateway')
      this.#syncError = e
      result = 'error'
      if (isTokenRefusal(e.code)) this.#refused(e)
    }
    // Also while no gateway answers: the token's own exp is known locally.
    if (!this.#refusal) this.#noteDeadline()
    this.#metrics.syncTotal.inc({ result })
    if (!this.#closed) await this.#serial(() => this.#reconcile())
    return result
  }

  /**
   * Every reachable gateway refused the token: say so once, re-read the token
   * source, and give up (onFatal) once the refusal has lasted
   * `tokenRefusalGrace` with no new token.
   */
  #refused(e: KeywayError): void {
    const now = this.#clock.now()
    if (!this.#refusal) {
      this.#refusal = { since: now, error: e }
      this.#logger.error(
        {
          event: 'token_refused',
          code: e.code,
          reason: e.message,
          token_fp: tokenFingerprint(this.#token),
          grace_ms: this.#config.tokenRefusalGrace,
          ...(this.#tokenOrigin ? { origin: this.#tokenOrigin.origin } : {}),
        },
        `the gateway refuses the service token (${e.code}); waiting ${Math.round(this.#config.tokenRefusalGrace / 1000)} s for a new one before exiting`,
      )
    } else this.#refusal.error = e
    const before = this.#token
    this.#reloadToken?.()
    // A new token resets the refusal (setToken); the next sync tries it.
    if (this.#token !== before || !this.#refusal || this.#fatal) return
    if (now - this.#refusal.since < this.#config.tokenRefusalGrace) return
    this.#fatal = true
    const fatal = new KeywayError(
      e.code,
      `every gateway refused the service token for ${Math.round((now - this.#refusal.since) / 1000)} s (sidecar.tokenRefusalGrace) and no new token came: ${e.message}`,
      { cause: e, detail: { token_fp: tokenFingerprint(this.#token) } },
    )
    this.#logger.error({ event: 'token_refused_exit', code: e.code, reason: fatal.message, token_fp: tokenFingerprint(this.#token) }, fatal.message)
    this.#onFatal?.(fatal)
  }

  /** Logs a newly learnt token deadline, and warns ahead of it. */
  #noteDeadline(): void {
    const { at, rotatedOut } = this.#deadline()
    if (at === undefined) return
    const key = `${tokenFingerprint(this.#token)}@${at}`
    const fields = {
      token_fp: tokenFingerprint(this.#token),
      expires_at: new Date(at).toISOString(),
      rotated_out: rotatedOut,
      seconds_left: Math.max(0, Math.round((at - this.#clock.now()) / 1000)),
    }
    if (this.#deadlineLogged !== key) {
      this.#deadlineLogged = key
      this.#logger.info({ event: 'token_deadline', ...fields }, `the service token stops working at ${fields.expires_at}`)
    }
    if (this.#deadlineWarned !== key && (rotatedOut || at - this.#clock.now() <= TOKEN_WARN_AHEAD_MS)) {
      this.#deadlineWarned = key
      const where = this.#tokenOrigin?.file ? `write the new token to ${this.#tokenOrigin.file} (picked up without a restart)` : 'restart the sidecar with the new token'
      this.#logger.warn(
        { event: 'token_expiring', ...fields },
        rotatedOut
          ? `the service token was rotated out: it stops working at ${fields.expires_at} (in ${fields.seconds_left} s); ${where}`
          : `the service token expires at ${fields.expires_at} (in ${fields.seconds_left} s); ${where}`,
      )
    }
  }

  async #whoami(): Promise<void> {
    try {
      const answer = await this.#client.api<WhoamiResponse>('GET', API_PATHS.whoami, { token: this.#token })
      this.#whoamiDone = true
      if (answer.status === 304) return
      const who = parseApiAnswer(WhoamiResponseSchema, (answer as { body: unknown }).body)
      if (!who) throw new KeywayError('ERR_INTERNAL', 'the gateway answered /v1/whoami with an unexpected shape')
      this.#account = who.account
      this.#logger.info(
        {
          event: 'sidecar_authenticated',
          account: who.account.id,
          account_name: who.account.name,
          token_fp: who.token.fingerprint,
          token_expires_at: who.token.expiresAt,
        },
        'authenticated to the gateway',
      )
    } catch (err) {
      const e = toKeywayError(err)
      // Only for the logs: an answered failure is not worth asking again each sync.
      if (e.code !== 'ERR_GATEWAY_UNAVAILABLE') this.#whoamiDone = true
      this.#logger.debug({ event: 'whoami_failed', code: e.code, reason: e.message }, 'whoami failed')
    }
  }

  #applyView(view: ResourcesResponse): void {
    const before = this.#view
    const oldNames = new Set(before?.resources.map((r) => r.name) ?? [])
    const newNames = new Set(view.resources.map((r) => r.name))
    const added = [...newNames].filter((n) => !oldNames.has(n))
    const removed = [...oldNames].filter((n) => !newNames.has(n))
    const settingsChanged =
      !before || before.settings.autoConnect !== view.settings.autoConnect || before.settings.portOverrides !== view.settings.portOverrides
    if (added.length > 0 || removed.length > 0 || settingsChanged) {
      this.#logger.info(
        { event: 'grants_changed', added, removed, settings: view.settings, generation: view.generation },
        `${view.resources.length} resource${view.resources.length === 1 ? '' : 's'} granted`,
      )
    }
    // Turning auto-connect off and on again brings hand-disconnected resources back.
    if (before && !autoConnectOf(before) && autoConnectOf(view) && this.#disconnected.size > 0) {
      this.#logger.info({ event: 'disconnects_cleared', resources: [...this.#disconnected].sort() }, 'auto-connect turned on: binding hand-disconnected resources again')
      this.#disconnected.clear()
    }
    if (view.token) {
      const at = view.token.expiresAt === null ? undefined : Date.parse(view.token.expiresAt)
      this.#tokenDeadline = { at: at !== undefined && Number.isFinite(at) ? at : this.#tokenExp, rotatedOut: view.token.rotatedOut === true }
    }
    this.#view = view
  }

  #autoConnect(): boolean {
    return this.#view !== undefined && autoConnectOf(this.#view)
  }

  #granted(name: string): ApiResource | undefined {
    return this.#view?.resources.find((r) => r.name === name)
  }

  #wants(resource: ApiResource): boolean {
    if (this.#disconnected.has(resource.name)) return false
    if (this.#connected.has(resource.name)) return true
    return this.#autoConnect()
  }

  #desiredPort(resource: ApiResource): number {
    return this.#view?.settings.portOverrides && resource.portOverride ? resource.portOverride : 0
  }

  #entry(resource: ApiResource): Entry {
    let entry = this.#entries.get(resource.name)
    if (!entry) {
      entry = {
        name: resource.name,
        resource,
        server: undefined,
        requestedPort: undefined,
        localAddress: '',
        error: undefined,
        sessions: new Set(),
        pending: new Set(),
        removedAt: undefined,
        releaseTimer: undefined,
      }
      this.#entries.set(resource.name, entry)
    }
    entry.resource = resource
    return entry
  }

  async #reconcile(): Promise<void> {
    const view = this.#view
    if (this.#closed || !view) return
    const granted = new Map(view.resources.map((r) => [r.name, r]))
    for (const [name, entry] of this.#entries) {
      if (granted.has(name)) continue
      if (this.#inGrantRemovedGrace(entry)) continue
      this.#unbind(entry, 'grant_removed', true)
      this.#gone.set(name, entry.resource)
      this.#entries.delete(name)
      this.#connected.delete(name)
      this.#disconnected.delete(name)
    }
    for (const resource of view.resources) {
      this.#gone.delete(resource.name)
      const entry = this.#entry(resource)
      if (entry.removedAt !== undefined) this.#endGrantRemovedGrace(entry)
      if (!this.#wants(resource)) {
        // Live sessions keep running: only new connections need the listener.
        if (entry.server) this.#unbind(entry, 'auto_connect_off', false)
        entry.error = undefined
        continue
      }
      const port = this.#desiredPort(resource)
      if (entry.server && entry.requestedPort !== port) this.#unbind(entry, 'port_changed', false)
      if (!entry.server) await this.#bind(entry, port).catch(noop)
    }
  }

  #socketPath(resource: ApiResource, port: number): string | undefined {
    const names = this.#config.unixSockets
    if (this.#runtimeDir === undefined || !(names.includes('*') || names.includes(resource.name))) return undefined
    return join(this.#runtimeDir, socketNameOf(resource, port))
  }

  /**
   * True while a bound resource whose grant went keeps its port: each new
   * connection then learns the gateway's refusal instead of `Connection
   * refused`. Live sessions are the gateway's to end (it tells PostgreSQL
   * clients why). Starts the grace on first call.
   */
  #inGrantRemovedGrace(entry: Entry): boolean {
    const grace = this.#config.grantRemovedGrace
    if (entry.server === undefined || grace <= 0) return false
    const now = this.#clock.now()
    if (entry.removedAt === undefined) {
      entry.removedAt = now
      entry.releaseTimer = this.#clock.setTimeout(() => {
        entry.releaseTimer = undefined
        if (!this.#closed) void this.#serial(() => this.#reconcile())
      }, grace)
      this.#logger.info(
        { event: 'resource_grant_removed', resource: entry.name, address: entry.localAddress, grace_ms: grace },
        `${entry.name}: grant removed; ${entry.localAddress} refuses new connections for ${grace} ms, then is released`,
      )
    }
    return now - entry.removedAt < grace
  }

  #endGrantRemovedGrace(entry: Entry): void {
    entry.removedAt = undefined
    if (entry.releaseTimer !== undefined) this.#clock.clearTimeout(entry.releaseTimer)
    entry.releaseTimer = undefined
  }

  async #bind(entry: Entry, port: number): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.#accept(entry, socket))
    const path = this.#socketPath(entry.resource, port)
    try {
      if (path !== undefined) await prepareSocketPath(path, `resource "${entry.name}"`)
      await listenOn(server, path === undefined ? { host: this.#bindHost, port, exclusive: true } : { path, exclusive: true }, {
        inUse: (where) => `cannot bind resource "${entry.name}" on ${where}: port ${port} is already in use`,
        failed: (where, err) => `cannot bind resource "${entry.name}" on ${where}: ${err.message}`,
        failedCode: 'ERR_INTERNAL',
        detail: { resource: entry.name, port },
      })
      // The runtime directory keeps others out; group and mode let its group in when it is shared.
      if (path !== undefined && this.#runtimeGid !== undefined) await chown(path, -1, this.#runtimeGid)
      if (path !== undefined) await chmod(path, this.#runtimeGid === undefined ? 0o600 : 0o660)
    } catch (err) {
      if (server.listening) server.close()
      const e = toKeywayError(err)
      // Retried on every sync: say it once, not every second.
      const fields = { event: 'bind_failed', resource: entry.name, port, code: e.code, reason: e.message }
      if (entry.error?.message !== e.message) this.#logger.warn(fields, e.message)
      else this.#logger.debug(fields, e.message)
      entry.error = e
      throw e
    }
    server.on('error', (err) => this.#logger.error({ event: 'listener_error', resource: entry.name, err }, 'local listener failed'))
    const address = server.address() as net.AddressInfo | string
    entry.server = server
    entry.requestedPort = port
    entry.localAddress = typeof address === 'string' ? address : formatHostPort({ host: address.address, port: address.port })
    entry.error = undefined
    this.#logger.info({ event: 'resource_bound', resource: entry.name, address: entry.localAddress }, `${entry.name} bound on ${entry.localAddress}`)
  }

  #unbind(entry: Entry, reason: string, closeSessions: boolean): void {
    this.#endGrantRemovedGrace(entry)
    if (entry.server) {
      // close() stops accepting at once; its callback would wait for live connections.
      entry.server.close()
      if (entry.localAddress.startsWith('/')) void unlink(entry.localAddress).catch(noop)
      entry.server = undefined
      entry.requestedPort = undefined
      this.#logger.info(
        { event: 'resource_unbound', resource: entry.name, address: entry.localAddress, reason, sessions: closeSessions ? entry.sessions.size : 0 },
        `${entry.name} unbound (${reason})`,
      )
    }
    if (closeSessions) {
      for (const socket of entry.pending) socket.destroy()
      entry.pending.clear()
      for (const session of entry.sessions) session.close(reason)
    }
  }

  #accept(entry: Entry, accepted: net.Socket): void {
    if (this.#closed || entry.server === undefined) {
      accepted.destroy()
      return
    }
    const local = this.#nodeInternals ? adoptAccepted(accepted) : accepted
    local.on('error', noop)
    entry.pending.add(local)
    const resource = entry.name
    this.#client.openTunnel(resource, this.#token, { timeoutMs: this.#config.connectTimeout }).then(
      (tunnel) => {
        entry.pending.delete(local)
        // The client gave up, or the grant went, while the tunnel was opening.
        if (local.destroyed || this.#closed) {
          tunnel.socket.destroy()
          local.destroy()
          this.#metrics.sessionsTotal.inc({ resource, result: 'error' })
          this.#logger.debug({ event: 'session_abandoned', resource, session: tunnel.session }, 'local connection gone before the tunnel opened')
          return
        }
        this.#startSession(entry, local, tunnel)
      },
      (err: unknown) => {
        entry.pending.delete(local)
        const e = toKeywayError(err)
        // A PostgreSQL client is told why (psql shows the code); any other just sees the close.
        if (entry.resource.type === 'postgres' && !local.destroyed && !this.#closed) {
          // Still pending: a close or an unbind destroys it.
          entry.pending.add(local)
          void refuseStartup(local, e.code, e.message, { clock: this.#clock, timeoutMs: this.#config.connectTimeout }).then(() => entry.pending.delete(local))
        } else local.destroy()
        const result: SessionResult = e.detail?.refused === true ? 'refused' : e.code === 'ERR_GATEWAY_UNAVAILABLE' ? 'gateway_unavailable' : 'error'
        this.#metrics.sessionsTotal.inc({ resource, result })
        this.#logger.warn({ event: 'tunnel_failed', resource, code: e.code, result, reason: e.message }, `tunnel to ${resource} failed: ${e.code}`)
        // A refusal for want of a grant means our view is stale: fetch it now.
        if (result === 'refused' && (e.code === 'ERR_GRANT_DENIED' || e.code === 'ERR_GRANT_EXPIRED' || e.code === 'ERR_RESOURCE_UNKNOWN' || isTokenRefusal(e.code))) {
          if (!this.#closed) void this.sync()
        }
      },
    )
  }

  #startSession(entry: Entry, local: net.Socket, tunnel: Tunnel): void {
    // The tunnel is `a` so that bytes the gateway sent right after its reply
    // reach the client first and are counted, with no stream tricks.
    const session = forward(tunnel.socket, local, {
      initialAToB: tunnel.rest,
      idleTimeoutMs: this.#config.idleTimeout,
      halfCloseTimeoutMs: this.#config.halfCloseTimeout,
      clock: this.#clock,
    })
    const live: LiveSession = { resource: entry.name, countedToGateway: 0, countedToClient: 0 }
    entry.sessions.add(session)
    this.#live.set(session, live)
    this.#metrics.sessionsActive.inc()
    this.#metrics.sessionsTotal.inc({ resource: entry.name, result: 'ok' })
    this.#logger.info({ event: 'session_start', resource: entry.name, session: tunnel.session, gateway: tunnel.gateway }, `session to ${entry.name} started`)
    void session.done.then((r) => {
      entry.sessions.delete(session)
      this.#live.delete(session)
      this.#metrics.sessionsActive.dec()
      this.#countBytes(live, r.bToA, r.aToB)
      this.#logger.info(
        {
          event: 'session_end',
          resource: entry.name,
          session: tunnel.session,
          reason: r.reason,
          bytes_in: r.bToA,
          bytes_out: r.aToB,
          duration_ms: r.durationMs,
          ...(r.error ? { error: r.error } : {}),
        },
        `session to ${entry.name} ended (${r.reason})`,
      )
    })
  }

  #countBytes(live: LiveSession, toGateway: number, toClient: number): void {
    if (toGateway > live.countedToGateway) {
      this.#metrics.bytesTotal.inc({ resource: live.resource, direction: 'client_to_gateway' }, toGateway - live.countedToGateway)
      live.countedToGateway = toGateway
    }
    if (toClient > live.countedToClient) {
      this.#metrics.bytesTotal.inc({ resource: live.resource, direction: 'gateway_to_client' }, toClient - live.countedToClient)
      live.countedToClient = toClient
    }
  }
}

/** Auto-connect is in force: it needs port overrides, without which there is no port to bind at start. */
function autoConnectOf(view: ResourcesResponse): boolean {
  return view.settings.autoConnect && view.settings.portOverrides
}

function syncReason(err: KeywayError): string {
  if (err.code === 'ERR_GATEWAY_UNAVAILABLE') return `gateway unreachable: ${err.message}`
  return `gateway refused the sync: ${err.code}: ${err.message}`
}

/** Checks the shape of `GET /v1/resources` so a bad answer fails the sync, not a bind. */
function checkView(body: unknown): ResourcesResponse {
  const view = parseApiAnswer(ResourcesResponseSchema, body)
  if (!view) throw new KeywayError('ERR_INTERNAL', 'the gateway answered /v1/resources with an unexpected shape')
  return view
}
