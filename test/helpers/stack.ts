import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { addResource, adminContextFromConfig, createRole, deleteRole, grantRole, initSetup, removeResource } from '../../src/admin/index.js'
import { systemClock } from '../../src/clock.js'
import { loadConfig } from '../../src/config/index.js'
import type { Teardown } from './net.js'
import { idlePort, isPortInUse, PortInUseError, type Comments } from './ports.js'
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
  /** The gateway's tunnel port (it listened on port 0). */
  readonly gatewayPort: number
  readonly gatewayMetricsPort: number
  /** Runs `keyway admin ARGS`; fails the call on a non-zero exit. */
  admin(...args: string[]): Promise<Ran>
  /** Runs `keyway ARGS` with the stack's environment (and `input` on stdin). */
  run(args: string[], extraEnv?: Record<string, string>, input?: string): Promise<Ran>
  /** Creates a service account (with a role, or none) and returns its token. */
  service(name: string, role?: string): Promise<string>
  /**
   * Starts `keyway listen` with `token` (and `extraEnv`; control endpoint on
   * port 0, control socket in a runtime folder of its own); resolves once
   * `keyway wait` says it is ready. When the resource's override port turns
   * out taken, moves the resource to the next port of the test file's block
   * and starts the sidecar again (see `overridePort`).
   */
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
 * `warehouse` (role `etl` grants it) on an override port from the test file's
 * block, and the gateway (its listeners on port 0). Everything stops in teardown.
 */
export async function startStack(t: Teardown & Comments, options: StackOptions = {}): Promise<Stack & { readonly overridePort: number }> {
  const resource = options.resource ?? 'warehouse'
  const pgServer = await startPostgres(t, options.postgres)
  t.teardown(() => pgServer.stop())
  const dir = mkdtempSync(join(tmpdir(), 'keyway-e2e-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  let overridePort = await idlePort()
  const env: Record<string, string> = {
    KEYWAY_CONFIG: join(dir, 'keyway.yaml'),
    KEYWAY_GATEWAY_LISTEN: '127.0.0.1:0',
    KEYWAY_GATEWAY_METRICS: '127.0.0.1:0',
    KEYWAY_ADMIN_LISTEN: '127.0.0.1:0',
    KEYWAY_LOG_LEVEL: 'debug',
  }
  const run = async (args: string[], extraEnv: Record<string, string> = {}, input?: string) => keyway(args, { ...env, ...extraEnv }, input)
  const must = async (args: string[]) => {
    const r = await run(args)
    if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r
  }
  // The setup a person makes with `keyway init` and `keyway admin` (whose CLI has its own
  // tests), done in this process: six fewer node start-ups per stack on a busy machine.
  await initSetup(dir, { clock: systemClock })
  const ctx = adminContextFromConfig(loadConfig({ file: env.KEYWAY_CONFIG!, env: {} }), systemClock)
  await removeResource(ctx, 'example-postgres', { force: true })
  await deleteRole(ctx, 'example', { force: true })
  await addResource(ctx, { name: resource, kind: 'datasource', type: 'postgres', address: `127.0.0.1:${pgServer.port}`, portOverride: overridePort })
  await createRole(ctx, 'etl')
  await grantRole(ctx, 'etl', resource)
  const gateway = startDaemon(t, ['gateway'], { ...env, ...options.gatewayEnv })
  const gatewayPort = portOf((await gateway.waitLog((l) => l.event === 'gateway_listening')).address)
  const metricsPort = portOf((await gateway.waitLog((l) => l.event === 'metrics_listening')).address)
  env.KEYWAY_GATEWAY = `127.0.0.1:${gatewayPort}`
  // The override port was only probed: if another process took it, the sidecar says so.
  const moveResource = async (): Promise<void> => {
    const policyFile = join(dir, 'policy.yaml')
    const next = await idlePort()
    const reloads = gateway.lines.filter((l) => l.event === 'policy_reloaded').length
    writeFileSync(policyFile, readFileSync(policyFile, 'utf8').replace(`portOverride: ${overridePort}`, `portOverride: ${next}`))
    gateway.child.kill('SIGHUP')
    await gateway.waitLog(() => gateway.lines.filter((l) => l.event === 'policy_reloaded').length > reloads)
    overridePort = next
  }
  return {
    dir,
    pg: pgServer,
    env,
    gateway,
    gatewayPort,
    gatewayMetricsPort: metricsPort,
    get overridePort() {
      return overridePort
    },
    admin: (...args) => must(['admin', ...args]),
    run,
    async service(name, role) {
      const r = await must(['admin', 'services', 'create', name, ...(role ? ['--role', role] : [])])
      return r.stdout.trim()
    },
    async sidecar(token, extraEnv = {}) {
      for (let attempt = 1; ; attempt++) {
        // Each sidecar its own runtime directory (its control socket): the commands find it through the variable.
        const rt = { KEYWAY_SIDECAR_RUNTIME_DIR: tempRuntimeDir(t) }
        const daemon = startDaemon(t, ['listen'], { ...env, ...rt, ...extraEnv, KEYWAY_TOKEN: token, KEYWAY_CONTROL: '127.0.0.1:0' })
        const control = String((await daemon.waitLog((l) => l.event === 'control_listening')).address)
        const runSidecar = (args: string[]) => run(args, rt)
        const isTaken = (l: Record<string, unknown>) => l.event === 'bind_failed' && l.code === 'ERR_PORT_IN_USE' && l.resource === resource
        // A taken override port keeps the sidecar from being ready: no need to wait for `wait` to give up.
        const ready = await Promise.race([runSidecar(['wait', '--timeout', '60']), daemon.waitLog(isTaken, 61_000).then(() => undefined, () => undefined)])
        try {
          if (daemon.lines.some(isTaken)) throw new PortInUseError(overridePort, `override port of ${resource}`)
          if (ready?.code !== 0) throw new Error(`sidecar not ready: ${ready?.stderr ?? 'no answer'}`)
        } catch (err) {
          await daemon.stop('SIGKILL')
          if (!isPortInUse(err) || attempt >= 8) throw err
          t.comment(`sidecar: ${(err as Error).message}; moving ${resource} to the next port and starting again (attempt ${attempt + 1})`)
          await moveResource()
          continue
        }
        return { daemon, control, runtimeDir: rt.KEYWAY_SIDECAR_RUNTIME_DIR, run: runSidecar }
      }
    },
  }
}

function portOf(address: unknown): number {
  const text = String(address)
  return Number(text.slice(text.lastIndexOf(':') + 1))
}

/** Connects the `pg` client to 127.0.0.1:`port`, as a job would with psql. */
export async function pgClient(t: Teardown, port: number): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5_000 })
  client.on('error', () => {})
  await client.connect()
  t.teardown(() => client.end().catch(() => undefined))
  return client
}
