/**
 * The forwarders compared by bench/run.ts, each started against the same two
 * upstreams (iperf3 and redis-server on 127.0.0.1), with their
 * configuration written to a temporary folder:
 *
 * - direct: no proxy;
 * - socat: one `socat TCP-LISTEN,fork` per upstream;
 * - haproxy: HAProxy in TCP mode, one hop, one thread;
 * - haproxy-tls: two HAProxy processes (one thread each): TCP in, TLS across
 *   (the Keyway development certificate, verified against its CA), TCP out;
 *   the architecture equivalent of Keyway's chain;
 * - keyway-hop: the gateway's data path as one plaintext hop (bench/plain-hop.ts,
 *   benchmark only);
 * - keyway: `keyway listen` → TLS → `keyway gateway`, set up with the real CLI,
 *   a real service token and a policy granting both resources.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, pinned, processTree, run, startDaemon, waitPort, which, type Daemon } from './tools.js'

/** Repository root (this file runs from dist/bench/). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const KEYWAY_BIN = join(ROOT, 'bin', 'keyway.js')

/** Where the upstreams listen. */
export interface Upstreams {
  iperf: number
  redis: number
}

/** A started forwarder. */
export interface Running {
  /** Where clients connect for each upstream. */
  readonly ports: Upstreams
  /** Processes whose memory counts as the forwarder's (all of them). */
  pids(): number[]
  /** The gateway-side processes (the hop next to the upstream), for per-session memory "on the gateway". */
  gatewayPids(): number[]
  stop(): Promise<void>
}

/** A forwarder of the comparison. */
export interface Forwarder {
  readonly name: string
  readonly label: string
  /** The HAProxy line this one is compared with. */
  readonly equivalent: string
  /** Very slow at new connections (fork per connection): fewer requests so a round stays short. */
  readonly slow?: boolean
  /**
   * Most idle sessions it is asked to hold: socat forks a process per
   * connection; a process with two descriptors per session stops at 9,000
   * under this machine's hard limit of 20,000 descriptors (bench/README.md).
   */
  readonly maxIdle?: number
  start(ctx: PeerContext): Promise<Running>
}

/** Shared by every forwarder of one run. */
export interface PeerContext {
  readonly dir: string
  readonly up: Upstreams
  /** Cores for forwarders (taskset -c), or undefined when not pinning. */
  readonly cores: string | undefined
  /**
   * Cores for the server side of a two-process forwarder (the gateway, the
   * HAProxy pair's TLS-terminating process); `cores` when undefined (the
   * whole chain on one core).
   */
  readonly serverCores?: string | undefined
  /** Sessions the idle test will hold (limits are raised to allow them). */
  readonly maxSessions: number
  readonly keyway: KeywaySetup
}

function daemonPids(...ds: Daemon[]): number[] {
  return ds.map((d) => d.child.pid).filter((p): p is number => p !== undefined)
}

const direct: Forwarder = {
  name: 'direct',
  label: 'direct (no proxy)',
  equivalent: 'direct',
  async start(ctx) {
    return { ports: { ...ctx.up }, pids: () => [], gatewayPids: () => [], stop: async () => {} }
  },
}

const socat: Forwarder = {
  name: 'socat',
  label: 'socat (fork per connection)',
  equivalent: 'haproxy',
  slow: true,
  maxIdle: 1_000,
  async start(ctx) {
    const ports = { iperf: await freePort(), redis: await freePort() }
    const ds = (['iperf', 'redis'] as const).map((k) => {
      const [cmd, args] = pinned(ctx.cores, 'socat', [
        `TCP-LISTEN:${ports[k]},bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay`,
        `TCP:127.0.0.1:${ctx.up[k]},nodelay`,
      ])
      return startDaemon(`socat-${k}`, cmd, args, { log: join(ctx.dir, `socat-${k}.log`) })
    })
    await Promise.all([waitPort(ports.iperf), waitPort(ports.redis)])
    return {
      ports,
      pids: () => daemonPids(...ds),
      gatewayPids: () => daemonPids(...ds),
      stop: async () => {
        await Promise.all(ds.map((d) => d.stop()))
      },
    }
  },
}

function haproxyGlobal(ctx: PeerContext): string {
  // Two file descriptors per proxied connection must fit under the hard RLIMIT_NOFILE
  // (HAProxy refuses to start otherwise): it is asked to hold at most TWO_FDS_PER_SESSION.
  return `global
  nbthread 1
  maxconn ${Math.min(ctx.maxSessions, TWO_FDS_PER_SESSION) + 500}
  ssl-server-verify required
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout client-fin 60s
  timeout server-fin 60s
`
}

async function startHaproxy(name: string, ctx: PeerContext, config: string, waitFor: number[], cores = ctx.cores): Promise<Daemon> {
  const file = join(ctx.dir, `${name}.cfg`)
  writeFileSync(file, config)
  const check = await run(which('haproxy')!, ['-c', '-q', '-f', file], { timeoutMs: 10_000 })
  if (check.code !== 0) throw new Error(`haproxy -c ${file}: ${check.stderr || check.stdout}`)
  const [cmd, args] = pinned(cores, which('haproxy')!, ['-db', '-f', file])
  const d = startDaemon(name, cmd, args, { log: join(ctx.dir, `${name}.log`) })
  await Promise.all(waitFor.map((p) => waitPort(p)))
  return d
}

/** Two descriptors per session in one process. */
const TWO_FDS_PER_SESSION = 9_000

const haproxy: Forwarder = {
  name: 'haproxy',
  maxIdle: TWO_FDS_PER_SESSION,
  label: 'HAProxy, one TCP hop',
  equivalent: 'haproxy',
  async start(ctx) {
    const ports = { iperf: await freePort(), redis: await freePort() }
    let cfg = haproxyGlobal(ctx)
    for (const k of ['iperf', 'redis'] as const) {
      cfg += `frontend f_${k}\n  bind 127.0.0.1:${ports[k]}\n  default_backend b_${k}\nbackend b_${k}\n  server s 127.0.0.1:${ctx.up[k]}\n`
    }
    const d = await startHaproxy('haproxy', ctx, cfg, [ports.iperf, ports.redis])
    return { ports, pids: () => daemonPids(d), gatewayPids: () => daemonPids(d), stop: () => d.stop() }
  },
}

const haproxyTls: Forwarder = {
  name: 'haproxy-tls',
  maxIdle: TWO_FDS_PER_SESSION,
  label: 'HAProxy pair, TCP → TLS → TCP',
  equivalent: 'haproxy-tls',
  async start(ctx) {
    const ports = { iperf: await freePort(), redis: await freePort() }
    const tlsPorts = { iperf: await freePort(), redis: await freePort() }
    const { stateDir } = ctx.keyway
    const pem = join(ctx.dir, 'haproxy-gateway.pem')
    writeFileSync(pem, readFileSync(join(stateDir, 'gateway.pem'), 'utf8').trimEnd() + '\n' + readFileSync(join(stateDir, 'gateway-key.pem'), 'utf8'))
    let client = haproxyGlobal(ctx)
    let server = haproxyGlobal(ctx)
    for (const k of ['iperf', 'redis'] as const) {
      client +=
        `frontend f_${k}\n  bind 127.0.0.1:${ports[k]}\n  default_backend b_${k}\n` +
        `backend b_${k}\n  server s 127.0.0.1:${tlsPorts[k]} ssl verify required ca-file ${join(stateDir, 'ca.pem')} sni str(localhost) verifyhost localhost\n`
      server +=
        `frontend f_${k}\n  bind 127.0.0.1:${tlsPorts[k]} ssl crt ${pem}\n  default_backend b_${k}\n` + `backend b_${k}\n  server s 127.0.0.1:${ctx.up[k]}\n`
    }
    const s = await startHaproxy('haproxy-tls-server', ctx, server, [tlsPorts.iperf, tlsPorts.redis], ctx.serverCores ?? ctx.cores)
    const c = await startHaproxy('haproxy-tls-client', ctx, client, [ports.iperf, ports.redis])
    return {
      ports,
      pids: () => daemonPids(c, s),
      gatewayPids: () => daemonPids(s),
      stop: async () => {
        await c.stop()
        await s.stop()
      },
    }
  },
}

/** A one-hop Node script from dist/bench/ (`LISTEN:UPSTREAM` pairs). */
function nodeHop(name: string, label: string, script: string): Forwarder {
  return {
    name,
    maxIdle: TWO_FDS_PER_SESSION,
    label,
    equivalent: 'haproxy',
    async start(ctx) {
      const ports = { iperf: await freePort(), redis: await freePort() }
      const [cmd, args] = pinned(ctx.cores, process.execPath, [
        ...benchNodeArgs,
        join(ROOT, 'dist', 'bench', script),
        `${ports.iperf}:${ctx.up.iperf}`,
        `${ports.redis}:${ctx.up.redis}`,
      ])
      const d = startDaemon(name, cmd, args, { log: join(ctx.dir, `${name}.log`) })
      await Promise.all([waitPort(ports.iperf), waitPort(ports.redis)])
      return { ports, pids: () => daemonPids(d), gatewayPids: () => daemonPids(d), stop: () => d.stop() }
    },
  }
}

const keywayHop = nodeHop('keyway-hop', 'Keyway gateway data path, one plaintext hop (bench only)', 'plain-hop.js')
const nodePipe = nodeHop('node-pipe', 'minimal Node forwarder, a.pipe(b).pipe(a) (bench only)', 'node-pipe.js')

/** The Keyway state created with the CLI once per run. */
export interface KeywaySetup {
  readonly stateDir: string
  readonly config: string
  readonly token: string
  readonly ports: Upstreams
  readonly env: NodeJS.ProcessEnv
}

/** Environment for keyway processes: nothing from the caller's KEYWAY_* variables but KEYWAY_FORWARD_NODE_INTERNALS (the seam on or off). */
function keywayEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEYWAY_') || k === 'KEYWAY_FORWARD_NODE_INTERNALS') env[k] = v
  return { ...env, ...extra }
}

/**
 * `keyway init`, two resources (iperf, redis) with override ports, a role
 * granting both and a service account holding it: its token is the one the
 * sidecar uses.
 */
export async function setupKeyway(dir: string, up: Upstreams): Promise<KeywaySetup> {
  const stateDir = join(dir, 'keyway')
  const config = join(stateDir, 'keyway.yaml')
  const ports = { iperf: await freePort(), redis: await freePort() }
  const env = keywayEnv({ KEYWAY_CONFIG: config })
  const must = async (...args: string[]): Promise<string> => {
    const r = await run(process.execPath, [KEYWAY_BIN, ...args], { timeoutMs: 30_000, env })
    if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r.stdout
  }
  await must('init', '--dir', stateDir)
  await must('admin', 'resources', 'remove', 'example-postgres', '--force')
  await must('admin', 'roles', 'delete', 'example', '--force')
  await must('admin', 'resources', 'add', 'iperf', '--kind', 'server', '--type', 'iperf', '--address', `127.0.0.1:${up.iperf}`, '--port-override', String(ports.iperf))
  await must('admin', 'resources', 'add', 'redis', '--kind', 'datasource', '--type', 'redis', '--address', `127.0.0.1:${up.redis}`, '--port-override', String(ports.redis))
  await must('admin', 'roles', 'create', 'bench')
  await must('admin', 'roles', 'grant', 'bench', 'iperf')
  await must('admin', 'roles', 'grant', 'bench', 'redis')
  const token = (await must('admin', 'services', 'create', 'bench-job', '--role', 'bench')).trim()
  return { stateDir, config, token, ports, env }
}

/**
 * Extra node flags for the keyway processes (gateway and listen) and the
 * plaintext hop, from KEYWAY_BENCH_NODE_ARGS (space-separated), e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` (NODE_OPTIONS refuses --cpu-prof).
 */
export const benchNodeArgs: string[] = (process.env.KEYWAY_BENCH_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== '')

/** Extra gateway settings for the keyway chain, e.g. `KEYWAY_GATEWAY_WORKERS`. */
export const keywayGatewayEnv: Record<string, string> = {}

/**
 * The chain; `multiplex` false is the sidecar's `keyway/1` mode (a TLS
 * connection per tunnel). `node` runs gateway and sidecar on another Node
 * binary, `extraEnv` adds to their environment (an A/B in the same run).
 */
export function keywayChain(name: string, label: string, multiplex: boolean, variant: { node?: string; extraEnv?: Record<string, string> } = {}): Forwarder {
  const node = variant.node ?? process.execPath
  return {
  name,
  // Multiplexed, each process holds one descriptor per session (plus the one TLS connection).
  ...(multiplex ? {} : { maxIdle: TWO_FDS_PER_SESSION }),
  label,
  equivalent: 'haproxy-tls',
  async start(ctx) {
    const k = ctx.keyway
    const gatewayPort = await freePort()
    const control = `127.0.0.1:${await freePort()}`
    // The defaults (10,000 connections, 1,000 per account) are production
    // limits; the idle test holds maxSessions sessions of one account.
    const limit = String(ctx.maxSessions + 500)
    const env = {
      ...k.env,
      KEYWAY_GATEWAY_LISTEN: `127.0.0.1:${gatewayPort}`,
      // As users run it: metrics served (on a port of its own, not the default
      // 9464 a quick start may hold) and the policy file watched.
      KEYWAY_GATEWAY_METRICS: `127.0.0.1:${await freePort()}`,
      KEYWAY_GATEWAY_MAX_CONNECTIONS: limit,
      KEYWAY_GATEWAY_MAX_CONNECTIONS_PER_ACCOUNT: limit,
      KEYWAY_GATEWAY: `127.0.0.1:${gatewayPort}`,
      KEYWAY_CONTROL: control,
      KEYWAY_TOKEN: k.token,
      KEYWAY_SIDECAR_MULTIPLEX: String(multiplex),
      ...keywayGatewayEnv,
      ...variant.extraEnv,
    }
    const [gcmd, gargs] = pinned(ctx.serverCores ?? ctx.cores, node, [...benchNodeArgs, KEYWAY_BIN, 'gateway'])
    const g = startDaemon('keyway-gateway', gcmd, gargs, { env, log: join(ctx.dir, 'keyway-gateway.log') })
    await waitPort(gatewayPort)
    const [scmd, sargs] = pinned(ctx.cores, node, [...benchNodeArgs, KEYWAY_BIN, 'listen'])
    const s = startDaemon('keyway-listen', scmd, sargs, { env, log: join(ctx.dir, 'keyway-listen.log') })
    const ready = await run(process.execPath, [KEYWAY_BIN, 'wait', '--timeout', '20', '--control', control], { timeoutMs: 30_000, env })
    if (ready.code !== 0) {
      await s.stop()
      await g.stop()
      throw new Error(`keyway listen not ready: ${ready.stderr}`)
    }
    return {
      ports: { ...k.ports },
      pids: () => [...processTreeOf(g), ...daemonPids(s)],
      gatewayPids: () => processTreeOf(g),
      stop: async () => {
        await s.stop()
        await g.stop()
      },
    }
  },
  }
}

const keyway = keywayChain('keyway', 'Keyway: listen → TLS (multiplexed, keyway/2) → gateway', true)
const keywayV1 = keywayChain('keyway-v1', 'Keyway: listen → TLS per tunnel (keyway/1) → gateway', false)
const keywayOff = keywayChain('keyway-off', 'Keyway chain with KEYWAY_FORWARD_NODE_INTERNALS=off', true, { extraEnv: { KEYWAY_FORWARD_NODE_INTERNALS: 'off' } })

function processTreeOf(d: Daemon): number[] {
  return d.child.pid === undefined ? [] : processTree(d.child.pid)
}

/** Every forwarder, in table order. */
export const FORWARDERS: readonly Forwarder[] = [direct, socat, haproxy, haproxyTls, keywayHop, keyway]

/** Forwarders measured only when named with `--only` (A/B of a mode). */
export const EXTRA_FORWARDERS: readonly Forwarder[] = [keywayV1, keywayOff, nodePipe]
