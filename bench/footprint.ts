/**
 * The footprint of the daemons (issue 22): time from spawn to ready and the
 * resident set 3 s after ready, with one bound resource and no traffic, for
 *
 * - `keyway listen` with one auto-connect resource (ready: its control
 *   `/readyz` answers 200, which needs the resource bound);
 * - `keyway gateway` on the file store without the admin server (ready: its
 *   metrics `/readyz`);
 * - `keyway gateway` on the file store with the admin server;
 * - `keyway gateway` on the PostgreSQL store without the admin server, when
 *   initdb and pg_ctl exist (KEYWAY_PG_BIN, default /usr/local/bin).
 *
 * Everything runs with the defaults a user runs (metrics on, the policy
 * watched, log level info to a file), set up with the real CLI (`keyway
 * init`, `keyway admin ...`). Part of `npm run bench` (`--no-footprint` skips
 * it); on its own:
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/footprint.js [--rounds 3] [--settle 3000] [--only listen,gateway-file] [--out FILE]
 *
 * Never part of `npm test`. See bench/README.md, "Footprint (issue 22)".
 */
import { execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { KEYWAY_BIN } from './peers.js'
import { freePort, rssKiB, run, sleep, startDaemon, type Daemon } from './tools.js'

const PG_BIN = process.env.KEYWAY_PG_BIN ?? '/usr/local/bin'

/** One measured process. */
export interface FootprintRow {
  readonly name: string
  readonly label: string
  /** Milliseconds from spawn to the first 200 of `/readyz`, per round. */
  readonly readyMs: number[]
  /** VmRSS `settleMs` after ready, MB (2^20 bytes), per round. */
  readonly rssMb: number[]
  /** VmHWM (peak resident set) at the same moment, MB, per round. */
  readonly hwmMb: number[]
  /**
   * The anonymous part of the resident set (smaps_rollup), MB, per round: the
   * rest is pages of the node binary and libraries, shared with every other
   * node process of the host.
   */
  readonly anonMb: number[]
  /** The target, if it sets one. */
  readonly target?: { rssMb?: number; readyMs?: number }
}

/** Options of {@link footprint}. */
export interface FootprintOptions {
  /** Rounds per process (medians are reported). */
  readonly rounds?: number
  /** How long after ready the resident set is read, ms. */
  readonly settleMs?: number
  /** Cores to pin the measured daemons to (`taskset -c`), or undefined. */
  readonly cores?: string | undefined
  /** Only these processes (names: listen, gateway-file, gateway-admin, gateway-postgres). */
  readonly only?: readonly string[] | undefined
  /** Progress lines go here. */
  readonly log?: (line: string) => void
}

/** Environment for keyway processes: nothing of the caller's KEYWAY_* or PG* variables. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEYWAY_') && !k.startsWith('PG')) env[k] = v
  return { ...env, ...extra }
}

/** Status code of GET http://127.0.0.1:port/path, or 0 when nothing answers. */
function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: 2_000 }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
    req.end()
  })
}

/** Polls `/readyz` every 5 ms; resolves to the ms since `t0` of the first 200. */
async function readyAfter(port: number, t0: number, child: Daemon, timeoutMs = 30_000): Promise<number> {
  for (;;) {
    if ((await httpStatus(port, '/readyz')) === 200) return performance.now() - t0
    if (child.child.exitCode !== null) throw new Error(`${child.name} exited ${child.child.exitCode} before ready (log: ${child.log})`)
    if (performance.now() - t0 > timeoutMs) throw new Error(`${child.name} not ready after ${timeoutMs} ms (log: ${child.log})`)
    await sleep(5)
  }
}

interface Spawned {
  readonly daemon: Daemon
  readonly readyMs: number
}

/** Spawns `keyway ARGS`, waits for `/readyz` on `readyPort`. */
async function spawnReady(name: string, args: string[], env: NodeJS.ProcessEnv, readyPort: number, dir: string, cores: string | undefined): Promise<Spawned> {
  const [cmd, argv] = cores === undefined ? [process.execPath, [KEYWAY_BIN, ...args]] : ['taskset', ['-c', cores, process.execPath, KEYWAY_BIN, ...args]]
  const t0 = performance.now()
  const daemon = startDaemon(name, cmd, argv, { env, log: join(dir, `${name}.log`) })
  try {
    return { daemon, readyMs: await readyAfter(readyPort, t0, daemon) }
  } catch (err) {
    await daemon.stop()
    throw err
  }
}

/** VmRSS, VmHWM and anonymous resident memory of the node process of `d` (taskset execs node in place), MB. */
function memoryMb(d: Daemon): { rss: number; hwm: number; anon: number } {
  const m = rssKiB(d.child.pid!)
  let anon = 0
  try {
    anon = Number(/^Anonymous:\s+(\d+) kB/m.exec(readFileSync(`/proc/${d.child.pid!}/smaps_rollup`, 'utf8'))?.[1] ?? 0)
  } catch {
    // Gone.
  }
  return { rss: m.rss / 1024, hwm: m.hwm / 1024, anon: anon / 1024 }
}

function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
}

/** A throwaway PostgreSQL cluster (trust, no fsync) on 127.0.0.1, or undefined without its binaries. */
async function startPostgres(): Promise<{ port: number; stop(): void } | undefined> {
  if (!existsSync(join(PG_BIN, 'initdb')) || !existsSync(join(PG_BIN, 'pg_ctl'))) return undefined
  // Its own folder: the postgres user cannot enter the run's 0700 one.
  const home = mkdtempSync(join(tmpdir(), 'keyway-bench-footprint-pg-'))
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
    chownSync(home, uid, gid)
  }
  const data = join(home, 'data')
  const port = await freePort()
  try {
    execFileSync(...asPostgres(join(PG_BIN, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']), { stdio: 'ignore' })
    execFileSync(
      ...asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', data, '-o', `-p ${port} -k ${home} -c listen_addresses=127.0.0.1 -c fsync=off`, '-l', join(home, 'pg.log'), '-w', 'start']),
      { stdio: 'ignore' },
    )
  } catch (err) {
    rmSync(home, { recursive: true, force: true })
    throw err
  }
  return {
    port,
    stop() {
      try {
        execFileSync(...asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']), { stdio: 'ignore' })
      } catch {
        // Already gone.
      }
      rmSync(home, { recursive: true, force: true })
    },
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/**
 * Measures the four daemons `rounds` times each (one at a time, in turn, so a
 * drift of the machine hits all of them), in a temporary folder it removes.
 */
export async function footprint(options: FootprintOptions = {}): Promise<FootprintRow[]> {
  const rounds = options.rounds ?? 3
  const settleMs = options.settleMs ?? 3_000
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'))
  const cores = options.cores
  const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-footprint-'))
  const daemons: Daemon[] = []
  let pg: Awaited<ReturnType<typeof startPostgres>>
  try {
    const stateDir = join(dir, 'keyway')
    const config = join(stateDir, 'keyway.yaml')
    const base = cleanEnv({ KEYWAY_CONFIG: config })
    const keyway = async (...args: string[]): Promise<string> => {
      const r = await run(process.execPath, [KEYWAY_BIN, ...args], { timeoutMs: 60_000, env: base })
      if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
      return r.stdout
    }
    // One resource the sidecar binds at start (auto-connect), on a port of its own.
    const localPort = await freePort()
    await keyway('init', '--dir', stateDir)
    await keyway('admin', 'resources', 'remove', 'example-postgres', '--force')
    await keyway('admin', 'roles', 'delete', 'example', '--force')
    await keyway('admin', 'settings', 'set', 'port-overrides', 'on')
    await keyway('admin', 'settings', 'set', 'auto-connect', 'on')
    await keyway('admin', 'resources', 'add', 'cache', '--kind', 'datasource', '--type', 'redis', '--address', `127.0.0.1:${await freePort()}`, '--port-override', String(localPort))
    await keyway('admin', 'roles', 'create', 'footprint')
    await keyway('admin', 'roles', 'grant', 'footprint', 'cache')
    const token = (await keyway('admin', 'services', 'create', 'footprint-job', '--role', 'footprint')).trim()

    const wanted = (name: string) => options.only === undefined || options.only.includes(name)
    pg = !wanted('gateway-postgres') ? undefined : await startPostgres().catch((err: unknown) => {
      log(`footprint: PostgreSQL did not start (${(err as Error).message}); its line is skipped`)
      return undefined
    })
    let pgEnv: Record<string, string> | undefined
    if (pg) {
      pgEnv = { KEYWAY_STORE: 'postgres', KEYWAY_POSTGRES_CONNECTION: `postgresql://postgres@127.0.0.1:${pg.port}/postgres?sslmode=disable` }
      const env = { ...base, ...pgEnv }
      for (const args of [['store', 'migrate'], ['store', 'import', join(stateDir, 'policy.yaml')]]) {
        const r = await run(process.execPath, [KEYWAY_BIN, ...args], { timeoutMs: 60_000, env })
        if (r.code !== 0) throw new Error(`keyway ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
      }
    }

    type Case = { name: string; label: string; target?: FootprintRow['target']; start(): Promise<{ measured: Spawned; others: Daemon[] }> }
    const gatewayEnv = async (extra: Record<string, string>) => {
      const listen = await freePort()
      const metrics = await freePort()
      return { listen, metrics, env: { ...base, KEYWAY_GATEWAY_LISTEN: `127.0.0.1:${listen}`, KEYWAY_GATEWAY_METRICS: `127.0.0.1:${metrics}`, ...extra } }
    }
    const gatewayCase = (name: string, label: string, extra: () => Promise<Record<string, string>>, target?: FootprintRow['target']): Case => ({
      name,
      label,
      ...(target ? { target } : {}),
      async start() {
        const g = await gatewayEnv(await extra())
        return { measured: await spawnReady(name, ['gateway'], g.env, g.metrics, dir, cores), others: [] }
      },
    })
    let cases: Case[] = [
      {
        name: 'listen',
        label: '`keyway listen`, one auto-connect resource',
        target: { rssMb: 50, readyMs: 300 },
        async start() {
          const g = await gatewayEnv({ KEYWAY_ADMIN_LISTEN: '' })
          const gateway = await spawnReady('listen-gateway', ['gateway'], g.env, g.metrics, dir, undefined)
          const control = await freePort()
          const env = { ...base, KEYWAY_GATEWAY: `127.0.0.1:${g.listen}`, KEYWAY_CONTROL: `127.0.0.1:${control}`, KEYWAY_TOKEN: token, KEYWAY_SIDECAR_RUNTIME_DIR: join(dir, 'run') }
          try {
            return { measured: await spawnReady('listen', ['listen'], env, control, dir, cores), others: [gateway.daemon] }
          } catch (err) {
            await gateway.daemon.stop()
            throw err
          }
        },
      },
      gatewayCase('gateway-file', '`keyway gateway`, file store, no admin server', async () => ({ KEYWAY_ADMIN_LISTEN: '' }), { rssMb: 70 }),
      gatewayCase('gateway-admin', '`keyway gateway`, file store, admin server on', async () => ({ KEYWAY_ADMIN_LISTEN: `127.0.0.1:${await freePort()}` })),
    ]
    if (pgEnv) {
      const extra = pgEnv
      cases.push(gatewayCase('gateway-postgres', '`keyway gateway`, PostgreSQL store, no admin server', async () => ({ ...extra, KEYWAY_ADMIN_LISTEN: '' })))
    }

    cases = cases.filter((c) => wanted(c.name))
    const rows = new Map<string, { readyMs: number[]; rssMb: number[]; hwmMb: number[]; anonMb: number[] }>()
    for (let round = 0; round < rounds; round++) {
      for (const c of cases) {
        const { measured, others } = await c.start()
        daemons.push(measured.daemon, ...others)
        await sleep(settleMs)
        const m = memoryMb(measured.daemon)
        const row = rows.get(c.name) ?? { readyMs: [], rssMb: [], hwmMb: [], anonMb: [] }
        row.readyMs.push(measured.readyMs)
        row.rssMb.push(m.rss)
        row.hwmMb.push(m.hwm)
        row.anonMb.push(m.anon)
        rows.set(c.name, row)
        log(`  footprint round ${round + 1} ${c.name}: ready ${measured.readyMs.toFixed(0)} ms, ${m.rss.toFixed(1)} MB resident (anonymous ${m.anon.toFixed(1)}, peak ${m.hwm.toFixed(1)})`)
        for (const d of [measured.daemon, ...others]) await d.stop()
        daemons.length = 0
      }
    }
    return cases.map((c) => ({ name: c.name, label: c.label, ...rows.get(c.name)!, ...(c.target ? { target: c.target } : {}) }))
  } finally {
    for (const d of daemons.reverse()) await d.stop()
    pg?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The rows as a markdown table (medians, with min-max when several rounds ran). */
export function footprintMarkdown(rows: readonly FootprintRow[]): string {
  const range = (xs: readonly number[], digits: number) =>
    xs.length > 1 ? ` (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})` : ''
  const lines = [
    `Footprint, Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; medians of ${rows[0]?.readyMs.length ?? 0} round(s) (min-max):`,
    '',
    '| process | ready after spawn, ms | resident 3 s after ready, MB | of which anonymous, MB | peak resident, MB | target |',
    '|---|---:|---:|---:|---:|---|',
  ]
  for (const r of rows) {
    const goal: string[] = []
    if (r.target?.rssMb !== undefined) goal.push(`≤ ${r.target.rssMb} MB ${median(r.rssMb) <= r.target.rssMb ? 'met' : 'not met'}`)
    if (r.target?.readyMs !== undefined) goal.push(`ready ≤ ${r.target.readyMs} ms ${median(r.readyMs) <= r.target.readyMs ? 'met' : 'not met'}`)
    lines.push(
      `| ${r.label} | ${median(r.readyMs).toFixed(0)}${range(r.readyMs, 0)} | ${median(r.rssMb).toFixed(1)}${range(r.rssMb, 1)} | ${median(r.anonMb).toFixed(1)} | ${median(r.hwmMb).toFixed(1)} | ${goal.join('; ') || '-'} |`,
    )
  }
  return lines.join('\n') + '\n'
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN
  return Number.isFinite(v) && v > 0 ? v : fallback
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1]?.split(',') : undefined
  const rows = await footprint({ rounds: arg('rounds', 3), settleMs: arg('settle', 3_000), only })
  const md = footprintMarkdown(rows)
  process.stdout.write(md)
  const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : undefined
  if (out !== undefined) writeFileSync(out, md)
}
