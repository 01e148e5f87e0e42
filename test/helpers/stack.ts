import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { freePort, type Teardown } from './net.js'
import { tempRuntimeDir } from './runtime-dir.js'
import { startPostgres, type Postgres, type PostgresOptions } from './postgres.js'
import { keyway, startDaemon, type Daemon, type Ran } from './processes.js'

/** A real deployment on loopback: PostgreSQL, `keyway gateway`, and sidecars, as separate processes. */
export interface Stack {
  readonly dir: string
  readonly pg: Postgres
  /** Environment every keyway command of this stack runs with. */
  readonly env: Record<string, string>
  readonly gateway: Daemon
  readonly gatewayMetricsPort: number
  /** Runs `keyway admin ARGS`; fails the call on a non-zero exit. */
  admin(...args: string[]): Promise<Ran>
  /** Runs `keyway ARGS` with the stack's environment (and `input` on stdin). */
  run(args: string[], extraEnv?: Record<string, string>, input?: string): Promise<Ran>
  /** Creates a service account (with a role, or none) and returns its token. */
  service(name: string, role?: string): Promise<string>
  /** Starts `keyway listen` with `token` (and `extraEnv`); resolves once `keyway wait` says it is ready. */
  sidecar(token: string, extraEnv?: Record<string, string>): Promise<Sidecar>
}

/** A running `keyway listen`. */
export interface Sidecar {
  readonly daemon: Daemon
  readonly control: string
  /** Its runtime directory: the control socket, and resource sockets with sidecar.unixSockets. */
  readonly runtimeDir: string
  run(args: string[]): Promise<Ran>
}

/** Options of {@link startStack}. */
export interface StackOptions {
  /** The resource name of the PostgreSQL cluster. */
  resource?: string
  /** Environment for the gateway (e.g. KEYWAY_GATEWAY_DRAIN_GRACE). */
  gatewayEnv?: Record<string, string>
  /** How the cluster authenticates (default trust). */
  postgres?: PostgresOptions
}

/**
 * Starts PostgreSQL, a `keyway init` setup with the cluster as resource
 * `warehouse` (role `etl` grants it) on a free override port, and the gateway.
 * Everything stops in teardown.
 */
export async function startStack(t: Teardown, options: StackOptions = {}): Promise<Stack & { overridePort: number }> {
  const resource = options.resource ?? 'warehouse'
  const pgServer = await startPostgres(options.postgres)
  t.teardown(() => pgServer.stop())
  const dir = mkdtempSync(join(tmpdir(), 'keyway-e2e-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const [gatewayPort, metricsPort, overridePort] = [await freePort(), await freePort(), await freePort()]
  const env = {
    KEYWAY_CONFIG: join(dir, 'keyway.yaml'),
    KEYWAY_GATEWAY_LISTEN: `127.0.0.1:${gatewayPort}`,
    KEYWAY_GATEWAY_METRICS: `127.0.0.1:${metricsPort}`,
    KEYWAY_ADMIN_LISTEN: '127.0.0.1:0',
    KEYWAY_GATEWAY: `127.0.0.1:${gatewayPort}`,
    KEYWAY_LOG_LEVEL: 'debug',
  }
  const run = async (args: string[], extraEnv: Record<string, string> = {}, input?: string) => keyway(args, { ...env, ...extraEnv }, input)
  const must = async (args: string[]) => {
    const r = await run(args)
    if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r
  }
  await must(['init', '--dir', dir])
  await must(['admin', 'resources', 'remove', 'example-postgres', '--force'])
  await must(['admin', 'roles', 'delete', 'example', '--force'])
  await must(['admin', 'resources', 'add', resource, '--kind', 'datasource', '--type', 'postgres', '--address', `127.0.0.1:${pgServer.port}`, '--port-override', String(overridePort)])
  await must(['admin', 'roles', 'create', 'etl'])
  await must(['admin', 'roles', 'grant', 'etl', resource])
  const gateway = startDaemon(t, ['gateway'], { ...env, ...options.gatewayEnv })
  await gateway.waitLog((l) => l.event === 'metrics_listening')
  return {
    dir,
    pg: pgServer,
    env,
    gateway,
    gatewayMetricsPort: metricsPort,
    overridePort,
    admin: (...args) => must(['admin', ...args]),
    run,
    async service(name, role) {
      const r = await must(['admin', 'services', 'create', name, ...(role ? ['--role', role] : [])])
      return r.stdout.trim()
    },
    async sidecar(token, extraEnv = {}) {
      const control = `127.0.0.1:${await freePort()}`
      // Each sidecar its own runtime directory (its control socket): the commands find it through the variable.
      const rt = { KEYWAY_SIDECAR_RUNTIME_DIR: tempRuntimeDir(t) }
      const daemon = startDaemon(t, ['listen'], { ...env, ...rt, ...extraEnv, KEYWAY_TOKEN: token, KEYWAY_CONTROL: control })
      const runSidecar = (args: string[]) => run(args, rt)
      await daemon.waitLog((l) => l.event === 'control_listening')
      const ready = await runSidecar(['wait', '--timeout', '20'])
      if (ready.code !== 0) throw new Error(`sidecar not ready: ${ready.stderr}`)
      return { daemon, control, runtimeDir: rt.KEYWAY_SIDECAR_RUNTIME_DIR, run: runSidecar }
    },
  }
}

/** Connects the `pg` client to 127.0.0.1:`port`, as a job would with psql. */
export async function pgClient(t: Teardown, port: number): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5_000 })
  client.on('error', () => {})
  await client.connect()
  t.teardown(() => client.end().catch(() => undefined))
  return client
}
