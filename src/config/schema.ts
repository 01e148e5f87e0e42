import { z } from 'zod'
import { parseDuration } from '../clock.js'
import { parseAddressList, parseHostPort, type HostPort } from '../net/index.js'
import { DEFAULT_POLICY_LIMITS } from '../policy/index.js'
import { connectionProblem } from './connection.js'

const duration = z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx): number => {
  if (typeof v === 'number') return v
  const ms = parseDuration(v)
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration: write e.g. 500ms, 30s, 5m, 1h` })
    return z.NEVER
  }
  return ms
})

const hostPort = (allowZero: boolean) =>
  z.string().transform((v, ctx): HostPort => {
    const r = parseHostPort(v, allowZero)
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r })
      return z.NEVER
    }
    return r
  })

const addressList = z.array(z.string()).superRefine((v, ctx) => {
  const r = parseAddressList(v)
  if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r })
})

const listenAddress = hostPort(true)
const dialAddress = hostPort(false)

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])

/** The daemon configuration schema (keyway.yaml). Defaults are the safe production values. */
export const configSchema = z.strictObject({
  /** Path of the policy file. */
  policy: z.string().min(1).default('policy.yaml'),
  /** Path of the credentials file (user password hashes); mode 0600, or 0640 with the process's group. */
  credentials: z.string().min(1).default('credentials.yaml'),
  /** Folder for generated state (development keys and certificates). */
  state: z.string().min(1).default('state'),
  /** Create missing development keys and certificates in `state` at start. */
  bootstrap: z.boolean().default(false),
  /** With bootstrap: the policy copied to `policy` when that file is missing (the development policy lives in `state`). */
  bootstrapPolicy: z.string().default(''),
  /** Where the policy lives: `file` (the `policy` file, the default) or `postgres` (shared by several gateways; `postgres:` below). */
  store: z.enum(['file', 'postgres']).default('file'),
  /** The PostgreSQL store (`store: postgres`). Never a password here: a password file, PGPASSFILE or PGPASSWORD. */
  postgres: z
    .strictObject({
      /** `postgresql://USER@HOST:PORT/DATABASE?sslmode=…` without a password; empty: the PG* environment variables. */
      connection: z.string().default('').superRefine((v, ctx) => {
        const problem = connectionProblem(v)
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `the connection string ${problem}` })
      }),
      /** File holding the database password (a mounted Secret); empty: PGPASSFILE (~/.pgpass) or PGPASSWORD. */
      passwordFile: z.string().default(''),
      /** Connections in each process's pool. */
      poolSize: z.number().int().positive().default(10),
      connectTimeout: duration.default(5_000),
      /** How often a gateway compares its generation with the store's (bounds a missed notification). */
      checkInterval: duration.default(5_000),
      /** Fail closed (refuse every session) after the store has been unreachable this long; 0 (default): keep the last good policy. */
      maxStaleness: duration.default(0),
      /** How long an edit waits for another edit's lock. */
      lockTimeout: duration.default(10_000),
    })
    .prefault({}),
  /** A policy over any of these is refused (ERR_POLICY_TOO_LARGE); the gateway keeps its last good one. */
  policyLimits: z
    .strictObject({
      /** Size of the policy file, bytes. */
      maxBytes: z.number().int().positive().default(DEFAULT_POLICY_LIMITS.maxBytes),
      maxAccounts: z.number().int().positive().default(DEFAULT_POLICY_LIMITS.maxAccounts),
      maxRoles: z.number().int().positive().default(DEFAULT_POLICY_LIMITS.maxRoles),
      maxResources: z.number().int().positive().default(DEFAULT_POLICY_LIMITS.maxResources),
      /** Role grants plus account grants. */
      maxGrants: z.number().int().positive().default(DEFAULT_POLICY_LIMITS.maxGrants),
      /** Token records of all accounts. */
      maxTokens: z.number().int().positive().default(DEFAULT_POLICY_LIMITS.maxTokens),
    })
    .prefault({}),
  keys: z
    .strictObject({
      /** Private Ed25519 JWK that signs tokens (admin CLI, login). */
      signing: z.string().min(1).default('signing-key.json'),
      /** Public JWKS that verifies tokens; several keys during rotation. */
      jwks: z.string().min(1).default('jwks.json'),
    })
    .prefault({}),
  tokens: z
    .strictObject({
      issuer: z.string().min(1).default('keyway'),
      audience: z.string().min(1).default('keyway'),
      clockTolerance: duration.default(30_000),
      /** Lifetime of a token issued by `keyway login`. */
      loginTtl: duration.default(3_600_000),
      /** Refuse service tokens without `exp`. */
      requireExpiry: z.boolean().default(false),
      cacheSize: z.number().int().positive().default(10_000),
    })
    .prefault({}),
  gateway: z
    .strictObject({
      /** Tunnel and API listener (TLS; ALPN tells them apart). */
      listen: listenAddress.default({ host: '127.0.0.1', port: 7443 }),
      /** Plain HTTP listener for /metrics, /healthz and /readyz; empty to disable. */
      metrics: z.union([listenAddress, z.literal('')]).default({ host: '127.0.0.1', port: 9464 }),
      /** Serve /readyz's reasons and error text (file paths, policy problems) on a non-loopback `metrics` address too; on loopback they always are. */
      metricsDetail: z.boolean().default(false),
      tls: z
        .strictObject({
          cert: z.string().min(1).default('gateway.pem'),
          key: z.string().min(1).default('gateway-key.pem'),
        })
        .prefault({}),
      handshakeTimeout: duration.default(5_000),
      handshakeMaxBytes: z.number().int().min(256).max(65_536).default(8_192),
      connectTimeout: duration.default(5_000),
      /** Close a session with no bytes either way for this long; 0 disables. */
      idleTimeout: duration.default(3_600_000),
      /** Close any session after this long; 0 disables. */
      maxLifetime: duration.default(0),
      /** Once one direction has ended, the other must end within this. */
      halfCloseTimeout: duration.default(60_000),
      /** On SIGTERM, let sessions run this long before closing them. */
      drainGrace: duration.default(30_000),
      maxConnections: z.number().int().positive().default(10_000),
      maxConnectionsPerAccount: z.number().int().positive().default(1_000),
      /** Watch the policy file and reload it on change (SIGHUP always reloads). */
      watchPolicy: z.boolean().default(true),
      /** An API request's headers must arrive within this (from the connection or the previous response). */
      apiHeadersTimeout: duration.default(10_000),
      /** A whole API request must be answered within this. */
      apiRequestTimeout: duration.default(30_000),
      /** API connections open at once from one client address. */
      apiMaxConnectionsPerAddress: z.number().int().positive().default(64),
      /** Load balancers (addresses, CIDR blocks) that must send a PROXY protocol v2 header; nobody else may. */
      proxyProtocolFrom: addressList.default([]),
      /** Refusals written to the log per second (tunnels, API, logins); the rest are counted in a summary line. */
      auditRefusalRate: z.number().int().nonnegative().default(50),
    })
    .prefault({}),
  admin: z
    .strictObject({
      /** The admin API and web Admin UI listener; empty to disable. */
      listen: z.union([listenAddress, z.literal('')]).default({ host: '127.0.0.1', port: 7444 }),
      tls: z
        .strictObject({
          /** Certificate (PEM) of the admin listener; empty: plain HTTP (loopback only, unless behindTlsProxy). */
          cert: z.string().default(''),
          key: z.string().default(''),
        })
        .prefault({}),
      /** A TLS-terminating proxy sits in front: a non-loopback plain listener is allowed and cookies are Secure. */
      behindTlsProxy: z.boolean().default(false),
      /** How long an admin's browser session lasts. */
      sessionTtl: duration.default(8 * 3_600_000),
    })
    .superRefine((v, ctx) => {
      if ((v.tls.cert === '') !== (v.tls.key === '')) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'set both admin.tls.cert and admin.tls.key, or neither' })
    })
    .prefault({}),
  sidecar: z
    .strictObject({
      /** Gateways to try in order (failover). */
      gateways: z.array(dialAddress).min(1).default([{ host: '127.0.0.1', port: 7443 }]),
      /** CA certificate that signs the gateway's certificate. */
      ca: z.string().min(1).default('ca.pem'),
      /** TLS server name to verify on the gateway's certificate; defaults to the gateway host. */
      servername: z.string().default(''),
      /** File holding the service token; `--token-file` and KEYWAY_TOKEN win over it (docs/configuration.md). */
      tokenFile: z.string().default(''),
      /** How long every gateway may refuse the token (forged, expired, revoked) with no new token before the sidecar exits. */
      tokenRefusalGrace: duration.default(60_000),
      /** Loopback TCP endpoint of /healthz, /readyz and /metrics (and of the control API with `controlTcp`). Loopback only. */
      control: listenAddress.default({ host: '127.0.0.1', port: 7070 }),
      /** Private directory of the control socket (and resource sockets); '' resolves $XDG_RUNTIME_DIR/keyway, /run/keyway, $TMPDIR/keyway-<uid>. */
      runtimeDir: z.string().default(''),
      /** Share the runtime directory with this group (name or gid): mode 0750, sockets 0660. '' keeps it private (0700). */
      runtimeGroup: z.string().default(''),
      /** Also answer the control API (/v1/*) on `control`, behind the bearer secret in <runtimeDir>/control.token. */
      controlTcp: z.boolean().default(false),
      /** Resources bound as Unix sockets in the runtime directory instead of 127.0.0.1 ports: names, or "*" for all. */
      unixSockets: z.array(z.string().min(1)).default([]),
      /** How often to poll the gateway for grant changes. */
      syncInterval: duration.default(1_000),
      connectTimeout: duration.default(5_000),
      idleTimeout: duration.default(3_600_000),
      halfCloseTimeout: duration.default(60_000),
      drainGrace: duration.default(10_000),
      /** After a grant goes, keep its port bound this long, refusing each new connection with the gateway's code (a PostgreSQL ErrorResponse for postgres resources); 0 releases it at once. */
      grantRemovedGrace: duration.default(60_000),
      /** Carry tunnels as streams of one TLS connection per gateway (ALPN keyway/2). */
      multiplex: z.boolean().default(true),
    })
    .prefault({}),
  forward: z
    .strictObject({
      /**
       * `on`: the data path uses Node's internals where the start-up
       * self-test finds they work (read-buffer/node-internals.ts); `off`:
       * public APIs only, the way out after a Node upgrade that breaks them.
       */
      nodeInternals: z.enum(['on', 'off']).default('on'),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: logLevel.default('info'),
    })
    .prefault({}),
})

/** The validated configuration before paths are resolved. */
export type ConfigShape = z.output<typeof configSchema>
