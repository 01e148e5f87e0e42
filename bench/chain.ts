/**
 * A Keyway chain for one benchmark: `keyway init` in `dir`, the given
 * resources (each on an override port of its own) granted to one role, a
 * service account holding it, then `keyway gateway` (metrics on, the policy
 * watched, as users run it) and `keyway listen`, waited for until every
 * resource is bound. Shared by bench/postgres.ts and bench/redis-injection.ts.
 */
import { join } from 'node:path'
import { KEYWAY_BIN } from './peers.js'
import { freePort, pinned, run, startDaemon, waitPort, type Daemon } from './tools.js'

/** A resource of the chain: its name and the `keyway admin resources add NAME` flags, without `--port-override`. */
export interface ChainResource {
  readonly name: string
  readonly flags: readonly string[]
}

/**
 * Starts the chain. The daemons go into `daemons` as they start, so the
 * caller's teardown stops them even when a later step fails.
 *
 * @returns the local port of each resource, by name
 */
export async function startChain(
  dir: string,
  daemons: Daemon[],
  resources: readonly ChainResource[],
  options: { cores?: string | undefined; extraEnv?: Record<string, string> } = {},
): Promise<Record<string, number>> {
  const gatewayPort = await freePort()
  const ports: Record<string, number> = {}
  for (const r of resources) ports[r.name] = await freePort()
  const control = `127.0.0.1:${await freePort()}`
  // Nothing of the caller's KEYWAY_* (but the internals switch) or PG* reaches the daemons.
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if ((!k.startsWith('KEYWAY_') || k === 'KEYWAY_FORWARD_NODE_INTERNALS') && !k.startsWith('PG')) env[k] = v
  }
  Object.assign(env, {
    KEYWAY_CONFIG: join(dir, 'keyway', 'keyway.yaml'),
    KEYWAY_GATEWAY_LISTEN: `127.0.0.1:${gatewayPort}`,
    KEYWAY_GATEWAY_METRICS: `127.0.0.1:${await freePort()}`,
    KEYWAY_ADMIN_LISTEN: '',
    KEYWAY_GATEWAY: `127.0.0.1:${gatewayPort}`,
    KEYWAY_CONTROL: control,
    ...options.extraEnv,
  })
  const keyway = async (...args: string[]): Promise<string> => {
    const r = await run(process.execPath, [KEYWAY_BIN, ...args], { timeoutMs: 60_000, env })
    if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r.stdout
  }
  await keyway('init', '--dir', join(dir, 'keyway'))
  await keyway('admin', 'resources', 'remove', 'example-postgres', '--force')
  await keyway('admin', 'roles', 'delete', 'example', '--force')
  for (const r of resources) await keyway('admin', 'resources', 'add', r.name, ...r.flags, '--port-override', String(ports[r.name]))
  await keyway('admin', 'roles', 'create', 'bench')
  for (const r of resources) await keyway('admin', 'roles', 'grant', 'bench', r.name)
  const token = (await keyway('admin', 'services', 'create', 'bench-job', '--role', 'bench')).trim()
  daemons.push(startDaemon('keyway-gateway', ...pinned(options.cores, process.execPath, [KEYWAY_BIN, 'gateway']), { env, log: join(dir, 'gateway.log') }))
  await waitPort(gatewayPort)
  daemons.push(startDaemon('keyway-listen', ...pinned(options.cores, process.execPath, [KEYWAY_BIN, 'listen']), { env: { ...env, KEYWAY_TOKEN: token }, log: join(dir, 'listen.log') }))
  for (const r of resources) await keyway('wait', '--resource', r.name, '--timeout', '30', '--control', control)
  return ports
}
