import { isAbsolute, join, relative, sep } from 'node:path'
import { hostname } from 'node:os'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { ensureDevState } from './admin/index.js'
import type { AdminServer } from './admin-api/index.js'
import { createTokenVerifier, issueToken, type TokenVerifier, LoginLimiter, loadKeySet, loadSigningKey, newTokenId, type SigningKey } from './auth/index.js'
import { systemClock, type Clock } from './clock.js'
import { readConfiguredFile, type KeywayConfig } from './config/index.js'
import { dataPath, releaseStartupMemory, type DaemonIo } from './daemon-shared.js'
import { formatProblem, KeywayError } from './errors.js'
import { PACKAGE_ROOT } from './package.js'
import { dialTcp, type DialFunc } from './forward/index.js'
import { Gateway } from './gateway/index.js'
import { createLogger, ObservabilityServer, type Logger } from './observe/index.js'
import { formatHostPort, isLoopback } from './net/index.js'
import { packPolicyFile, packPolicyFileHere, type PolicyStoreOptions } from './policy/index.js'
import { openStore, type KeywayStore } from './store/index.js'

export type { DaemonIo } from './daemon-shared.js'

/** A running daemon, for tests and the CLI. */
export interface RunningGateway {
  readonly gateway: Gateway
  /** Where the policy comes from: the file or PostgreSQL. */
  readonly store: KeywayStore
  readonly observability: ObservabilityServer | undefined
  /** The admin API and UI listener (`admin.listen`), unless turned off. */
  readonly admin: AdminServer | undefined
  readonly registry: Registry
  readonly logger: Logger
  /** Reloads the policy and the key set (what SIGHUP does). */
  reload(): Promise<void>
  /** Drains and stops everything. Idempotent. */
  close(): Promise<void>
}

/** What {@link startGateway} may be given instead of the real world. */
export interface GatewayWorld {
  logger?: Logger
  clock?: Clock
  /** How upstreams are dialled; default {@link dialTcp}. */
  dial?: DialFunc
  /** How the policy file is read and packed; default on a worker thread (see `PolicyStoreOptions.pack`). */
  packPolicy?: PolicyStoreOptions['pack']
}


/**
 * The file store's reader: its first read (at start, before anything
 * listens, when nothing waits on the event loop) on this thread; every reload
 * on a worker thread, so that none holds the event loop while sessions run.
 * A worker at start cost ~7 MB of resident set and ~0.4 s of start-up
 * (bench/README.md, "Footprint (issue 22)").
 */
function packFirstHere(): NonNullable<PolicyStoreOptions['pack']> {
  let first = true
  return async (file, options) => {
    if (!first) return packPolicyFile(file, options)
    first = false
    return packPolicyFileHere({ file, limits: options.limits, ...(options.bitsetMaxBytes === undefined ? {} : { bitsetMaxBytes: options.bitsetMaxBytes }) })
  }
}

/** `verifier`, noting the id of every service token it accepts (the store's last-used times). */
function noteTokenUse(verifier: TokenVerifier, note: (tokenId: string) => void): TokenVerifier {
  return {
    async verify(token) {
      const verified = await verifier.verify(token)
      if (verified.kind === 'service') note(verified.tokenId)
      return verified
    },
    clearCache: () => verifier.clearCache(),
    get cacheSize() {
      return verifier.cacheSize
    },
    get stats() {
      return verifier.stats
    },
  }
}

/**
 * The composition root of the gateway: wires configuration, policy store,
 * token verifier, metrics, logger and clock into a started {@link Gateway}.
 */
export async function startGateway(config: KeywayConfig, world: GatewayWorld = {}): Promise<RunningGateway> {
  const clock = world.clock ?? systemClock
  const logger = world.logger ?? createLogger({ level: config.log.level, base: { component: 'gateway' } })
  if (config.bootstrap) {
    const created = await ensureDevState(config, { clock })
    if (created.length > 0) logger.info({ event: 'dev_state_created', files: created }, 'created development keys and certificates')
  }
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const fastPath = await dataPath(config, logger, registry)
  let gateway: Gateway | undefined
  const store = openStore(config, {
    clock,
    logger,
    registry,
    pack: world.packPolicy ?? packFirstHere(),
    onError: (err) => logger.error({ event: 'policy_watch_error', err }, 'policy watcher or observer failed'),
    onReload: (result) => {
      if (!gateway) return
      const m = gateway.metrics
      if (result.ok) {
        m.policyReloads.inc({ result: result.changed ? 'ok' : 'unchanged' })
        m.policyGeneration.set(result.policy.generation)
        m.policyLastReloadOk.set(1)
        if (result.changed) logger.info({ event: 'policy_reloaded', generation: result.policy.generation, store: store.kind }, 'policy reloaded')
      } else {
        m.policyReloads.inc({ result: 'failed' })
        m.policyLastReloadOk.set(0)
        logger.error(
          { event: 'policy_reload_failed', code: result.error.code, problems: result.problems.map(formatProblem), store: store.kind },
          'policy reload failed; keeping the last good policy',
        )
      }
    },
  })
  // Loads the policy, and (file store) the credentials file: one others may read stops the start here, before anything listens.
  let policy
  try {
    policy = await store.start()
  } catch (err) {
    await store.close()
    throw err
  }
  let keySet = await loadKeySet(config.keys.jwks)
  let signingKey: SigningKey | undefined
  try {
    signingKey = await loadSigningKey(config.keys.signing)
  } catch {
    logger.warn({ event: 'login_disabled', file: config.keys.signing }, 'no signing key: `keyway login` is disabled on this gateway')
  }
  const verifier = createTokenVerifier({
    keySet: () => keySet,
    issuer: config.tokens.issuer,
    audience: config.tokens.audience,
    clock,
    clockToleranceSec: Math.round(config.tokens.clockTolerance / 1000),
    requireExp: config.tokens.requireExpiry,
    cacheSize: config.tokens.cacheSize,
    policy: () => store.current(),
  })
  const g = config.gateway
  // One limiter for every sign-in: `keyway login` and the admin API share the failure counts.
  const loginLimiter = new LoginLimiter({ clock })
  gateway = new Gateway({
    host: g.listen.host,
    port: g.listen.port,
    tls: { cert: readConfiguredFile(g.tls.cert, 'gateway certificate'), key: readConfiguredFile(g.tls.key, 'gateway key') },
    settings: g,
    policy: () => store.current(),
    verifier: store.recordTokenUse ? noteTokenUse(verifier, (id) => store.recordTokenUse!(id)) : verifier,
    signingKey,
    tokens: { issuer: config.tokens.issuer, audience: config.tokens.audience, loginTtl: config.tokens.loginTtl },
    logger,
    registry,
    clock,
    dial: world.dial ?? dialTcp,
    tokenExpiryGraceMs: Math.round(config.tokens.clockTolerance / 1000) * 1000,
    passwordHashOf: (id) => store.passwordHashOf(id),
    nodeInternals: fastPath,
    loginLimiter,
    unavailable: () => (store.stale() ? 'ERR_STORE_STALE' : undefined),
  })
  gateway.metrics.policyGeneration.set(policy.generation)
  gateway.metrics.policyLastReloadOk.set(1)
  store.onChange(() => gateway!.policyChanged())
  if (g.watchPolicy || store.kind === 'postgres') store.watch()
  let observability: ObservabilityServer | undefined
  let admin: AdminServer | undefined
  // Admins end and list live sessions: this gateway's own, and on a shared store (PostgreSQL) every gateway's through its feed.
  const own = { instance: gateway.instance, name: hostname(), list: () => gateway!.listSessions(), get: (id: string) => gateway!.sessionInfo(id), end: (id: string) => gateway!.endSession(id) }
  const feed = store.sessionFeed?.()
  try {
    await gateway.start()
    feed?.serve(own)
    const a = config.admin
    if (a.listen !== '') {
      // fastify and the admin UI load only when the admin listener is on (issue 22).
      const { AdminServer, clusterSessions, localSessions } = await import('./admin-api/index.js')
      admin = new AdminServer({
        host: a.listen.host,
        port: a.listen.port,
        tls: a.tls.cert === '' ? undefined : { cert: readConfiguredFile(a.tls.cert, 'admin certificate'), key: readConfiguredFile(a.tls.key, 'admin key') },
        behindTlsProxy: a.behindTlsProxy,
        backend: store.admin,
        clock,
        logger: logger.child({ component: 'admin' }),
        sessionTtlMs: a.sessionTtl,
        limiter: loginLimiter,
        verifyToken: (token) => verifier.verify(token),
        ...(signingKey === undefined ? {} : { issueLoginToken: loginTokenIssuer(signingKey, config, clock) }),
        // On the file store no feed reaches other gateways: this gateway's own sessions only.
        liveSessions: feed === undefined ? localSessions(own.name, own) : clusterSessions(feed, own),
      })
      const at = await admin.start()
      logger.info({ event: 'admin_listening', address: `${at.address}:${at.port}` }, 'admin API and UI listening')
    }
    if (g.metrics !== '') {
      observability = new ObservabilityServer({
        host: g.metrics.host,
        port: g.metrics.port,
        registry,
        logger,
        ready: () => (!gateway!.accepting ? 'shutting down' : store.stale() ? 'the policy store has been unreachable longer than postgres.maxStaleness (ERR_STORE_STALE)' : undefined),
        setting: 'gateway.metrics',
        // Reachable beyond the host (probes, scrapers): file paths and error text stay off it unless asked for.
        detail: isLoopback(g.metrics.host) || g.metricsDetail,
        // Ready while accepting, even on a kept last good policy; the body says which policy is in force.
        readyDetail: (detail) => {
          const error = store.lastError
          return {
            policy: {
              generation: store.current().generation,
              lastReloadOk: error === undefined,
              ...(error ? { code: error.code, ...(detail ? { error: error.message } : {}) } : {}),
            },
            ...store.readyDetail(),
          }
        },
      })
      const at = await observability.start()
      logger.info({ event: 'metrics_listening', address: `${at.address}:${at.port}` }, 'metrics listening')
    }
  } catch (err) {
    // A half-started gateway (say, the metrics port is taken) must not keep serving after reporting failure.
    await store.close()
    await gateway.close()
    await admin?.close()
    throw err
  }

  let closed: Promise<void> | undefined
  return {
    gateway,
    store,
    observability,
    admin,
    registry,
    logger,
    async reload() {
      await store.reload()
      try {
        keySet = await loadKeySet(config.keys.jwks)
        verifier.clearCache()
      } catch (err) {
        logger.error({ event: 'keys_reload_failed', err }, 'key set reload failed; keeping the last good keys')
      }
    },
    close() {
      // The store keeps reloading while sessions drain: a revocation during the grace still ends them.
      closed ??= (async () => {
        await admin?.close()
        await gateway!.close()
        await store.close()
        await observability?.close()
      })()
      return closed
    },
  }
}

/** The banner lines about the admin listener: where it is and how to create the first admin. */
function adminBanner(admin: AdminServer | undefined, cfg: string, keyway: string): string[] {
  const at = admin?.address()
  if (at === undefined) return []
  return [
    `Admin UI on http://${formatHostPort({ host: at.address, port: at.port })}/ (the admin API under /v1/admin/; docs/admin-ui.md). Create the first admin:`,
    '',
    `  node ${keyway} admin users create you@example.com --admin --password-stdin --config ${cfg}`,
    '',
  ]
}

/** Issues `keyway login` tokens for admins who sign in asking for a bearer token. */
function loginTokenIssuer(key: SigningKey, config: KeywayConfig, clock: Clock): (accountId: string) => Promise<{ token: string; expiresAt: number }> {
  return async (accountId) => {
    const now = clock.now()
    const expiresAt = now + config.tokens.loginTtl
    const token = await issueToken(key, { issuer: config.tokens.issuer, audience: config.tokens.audience, subject: accountId, tokenId: newTokenId(), expiresAt, kind: 'login', now })
    return { token, expiresAt }
  }
}

/** Runs the gateway until SIGTERM/SIGINT, reloading on SIGHUP. Resolves to the exit code. */
export async function runGateway(config: KeywayConfig, io: DaemonIo): Promise<number> {
  const running = await startGateway(config)
  const at = running.gateway.address()!
  if (config.bootstrap) {
    const steps = quickStartSteps(config, io, [...running.store.current().accounts.values()].some((a) => a.name === DEMO_ACCOUNT))
    // Logs stay JSON; the same steps go as text only to a person at a terminal.
    if (steps.length > 0) running.logger.info({ event: 'dev_next_steps', commands: steps }, 'create the demo service token, then start a sidecar with it')
    const tty = terminalOf(io)
    if (tty) {
      const lines = ['', `Keyway gateway listening on ${at.address}:${at.port} (development setup; state in ${shownPath(config.state, quickStartDir(io))}).`]
      if (steps.length > 0) lines.push('Create a service token, then start a sidecar with it:', '', ...steps.map((s) => `  ${s}`))
      else lines.push(`The ${DEMO_ACCOUNT} account exists: start its sidecar as before, or see README.md.`)
      lines.push('', ...adminBanner(running.admin, shownPath(config.file, quickStartDir(io)), shownPath(join(PACKAGE_ROOT, 'bin', 'keyway.js'), quickStartDir(io))))
      tty.write(lines.join('\n') + '\n\n')
    }
  }
  io.onReload?.(() => void running.reload())
  const cancelRelease = releaseStartupMemory(config.forward.nodeInternals === 'on')
  const stop = io.stopSignal
  if (stop && !stop.aborted) await new Promise<void>((resolve) => stop.addEventListener('abort', () => resolve(), { once: true }))
  cancelRelease()
  await running.close()
  return 0
}

/** The service account the quick start creates. */
const DEMO_ACCOUNT = 'demo-job'

/**
 * The folder the person who ran the gateway is in: npm runs `npm start` in
 * the package root and says where it was typed in INIT_CWD.
 */
function quickStartDir(io: DaemonIo): string {
  const env = io.env
  return env.npm_lifecycle_event === 'start' && env.INIT_CWD ? env.INIT_CWD : io.cwd
}

/**
 * `path` as a person in `from` types it: relative while it stays below
 * `from`, absolute when the relative form would climb out; shell-quoted when
 * it holds anything but plain characters.
 */
export function shownPath(path: string, from: string): string {
  const rel = relative(from, path)
  const shown = rel === '' ? '.' : rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel) ? path : rel
  return /^[\w@%+=:,./-]+$/.test(shown) ? shown : `'${shown.replaceAll("'", `'\\''`)}'`
}

/**
 * The commands that create the demo account's token and start a sidecar
 * with it, runnable as printed from the folder the gateway was started from;
 * none once the account exists, so that a second run cannot be told to
 * create it again. The token goes to a new 0600 file in the state folder
 * (`--token-file` refuses to overwrite one).
 */
export function quickStartSteps(config: KeywayConfig, io: DaemonIo, demoExists: boolean): string[] {
  if (demoExists) return []
  const from = quickStartDir(io)
  const keyway = `node ${shownPath(join(PACKAGE_ROOT, 'bin', 'keyway.js'), from)}`
  const cfg = shownPath(config.file, from)
  const tokenFile = shownPath(join(config.state, `${DEMO_ACCOUNT}.token`), from)
  return [
    `${keyway} admin services create ${DEMO_ACCOUNT} --role demo --config ${cfg} --token-file ${tokenFile}`,
    `${keyway} listen --config ${cfg} --token-file ${tokenFile}`,
  ]
}

/** Where text for a person goes: stderr if it is a terminal, else stdout if that is one, else nowhere. */
function terminalOf(io: DaemonIo): { write(text: string): unknown } | undefined {
  for (const stream of [io.stderr, io.stdout]) if ((stream as { isTTY?: boolean } | undefined)?.isTTY === true) return stream
  return undefined
}

/**
 * `keyway admin serve`: the admin API on its own (`admin.listen`), for
 * deployments that keep the control plane apart from the gateways. It edits
 * the same policy the gateways watch. Runs until SIGTERM/SIGINT; SIGHUP
 * reloads the key set. Resolves to the exit code.
 */
export async function runAdminServer(config: KeywayConfig, io: DaemonIo, world: GatewayWorld = {}): Promise<number> {
  const clock = world.clock ?? systemClock
  const logger = world.logger ?? createLogger({ level: config.log.level, base: { component: 'admin' } })
  const listen = config.admin.listen
  if (listen === '') throw new KeywayError('ERR_USAGE', 'admin.listen is empty: give the admin listener an address (--admin HOST:PORT or KEYWAY_ADMIN_LISTEN)')
  const store = openStore(config, { clock, logger, onError: (err) => logger.error({ event: 'policy_watch_error', err }, 'policy watcher failed') })
  try {
    await store.start()
  } catch (err) {
    await store.close()
    throw err
  }
  store.watch()
  let keySet = await loadKeySet(config.keys.jwks)
  let signingKey: SigningKey | undefined
  try {
    signingKey = await loadSigningKey(config.keys.signing)
  } catch {
    logger.warn({ event: 'login_disabled', file: config.keys.signing }, 'no signing key: services cannot be created and sign-in answers no bearer token')
  }
  const verifier = createTokenVerifier({
    keySet: () => keySet,
    issuer: config.tokens.issuer,
    audience: config.tokens.audience,
    clock,
    clockToleranceSec: Math.round(config.tokens.clockTolerance / 1000),
    requireExp: config.tokens.requireExpiry,
    cacheSize: config.tokens.cacheSize,
    policy: () => store.current(),
  })
  const a = config.admin
  const { AdminServer, clusterSessions } = await import('./admin-api/index.js')
  let admin: AdminServer
  try {
    admin = new AdminServer({
      host: listen.host,
      port: listen.port,
      tls: a.tls.cert === '' ? undefined : { cert: readConfiguredFile(a.tls.cert, 'admin certificate'), key: readConfiguredFile(a.tls.key, 'admin key') },
      behindTlsProxy: a.behindTlsProxy,
      backend: store.admin,
      clock,
      logger,
      sessionTtlMs: a.sessionTtl,
      limiter: new LoginLimiter({ clock }),
      // The file may have changed since the watcher last looked: verify against it as it is now.
      verifyToken: async (token) => {
        await store.reload()
        return verifier.verify(token)
      },
      ...(signingKey === undefined ? {} : { issueLoginToken: loginTokenIssuer(signingKey, config, clock) }),
      // On a shared store the gateways answer through its feed; on the file store no gateway is reachable from here.
      ...(store.sessionFeed === undefined ? {} : { liveSessions: clusterSessions(store.sessionFeed()) }),
    })
    const at = await admin.start()
    logger.info({ event: 'admin_listening', address: `${at.address}:${at.port}` }, 'admin API and UI listening')
  } catch (err) {
    await store.close()
    throw err
  }
  io.onReload?.(() => {
    void loadKeySet(config.keys.jwks).then(
      (k) => {
        keySet = k
        verifier.clearCache()
      },
      (err: unknown) => logger.error({ event: 'keys_reload_failed', err }, 'key set reload failed; keeping the last good keys'),
    )
  })
  const stop = io.stopSignal
  if (stop && !stop.aborted) await new Promise<void>((resolve) => stop.addEventListener('abort', () => resolve(), { once: true }))
  await admin.close()
  await store.close()
  return 0
}
