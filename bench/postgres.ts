/**
 * PostgreSQL through the chain (sidecar → TLS → gateway → PostgreSQL 15 with
 * `scram-sha-256` required), four paths in the same run, alternating:
 *
 * - `direct`: PostgreSQL itself, the client does SCRAM-SHA-256;
 * - `bytes`: the chain with the resource's type `tcp`: bytes only, nothing
 *   read (the client does SCRAM through the tunnel);
 * - `tracked`: the chain with type `postgres` and no credential: the client
 *   does SCRAM through the tunnel, plaintext, so the gateway's message header
 *   tracker (src/pgwire/tracker.ts) reads every server message header
 *   (issue 18 item 6: at most 5 % off `bytes`);
 * - `injected`: type `postgres` with the resource's credential: the client
 *   sends no password, the gateway logs in (issue 21: within 5 % of the same
 *   chain without injection).
 *
 * Workloads: `COPY ... TO STDOUT` of ~48 MiB in rows of ~50 bytes (one
 * CopyData message per row: the tracker's worst case) and in rows of 8 KiB;
 * `pgbench -S` on persistent connections (select-only, the request rate);
 * `pgbench -C -S` (a new connection per transaction) for `direct` and
 * `injected`. Part of `npm run bench` when PostgreSQL's binaries exist
 * (`--no-postgres` skips it). Never part of `npm test`.
 *
 *   npm run build && node dist/bench/postgres.js [--seconds 5] [--clients 8] [--rounds 3] [--no-pin]
 *
 * Needs initdb and pg_ctl (KEYWAY_PG_BIN, default /usr/local/bin), psql and pgbench on PATH.
 */
import { execFileSync, spawn } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { startChain } from './chain.js'
import { cpuCount, freePort, pinned, run, startDaemon, waitPort, which, type Daemon } from './tools.js'

const PG_BIN = process.env.KEYWAY_PG_BIN ?? '/usr/local/bin'
const PASSWORD = 'bench-password-6f1e'

/** The paths measured, in the order of the tables. */
export const PG_PATHS = ['direct', 'bytes', 'tracked', 'injected'] as const
export type PgPath = (typeof PG_PATHS)[number]

/** Workloads, by key. */
export const PG_WORKLOADS = {
  copySmall: 'COPY out, rows of ~50 B, MiB/s',
  copyLarge: 'COPY out, rows of 8 KiB, MiB/s',
  select: 'pgbench -S, persistent connections, tps',
  selectLatency: 'pgbench -S, average latency, ms',
  connect: 'pgbench -C -S, a new connection each, tps',
} as const
export type PgWorkload = keyof typeof PG_WORKLOADS

/** Samples per path and workload, one per round. */
export type PgSamples = Record<PgPath, Partial<Record<PgWorkload, number[]>>>

export interface PostgresBenchOptions {
  seconds: number
  clients: number
  rounds: number
  /** Rows of the small-row table (~50 bytes each). */
  smallRows: number
  /** Cores for gateway and sidecar, and for PostgreSQL and its clients (`taskset -c`); undefined: not pinned. */
  cores?: string
  load?: string
}

export interface PostgresFigures {
  options: PostgresBenchOptions
  samples: PgSamples
  medians: Record<PgPath, Partial<Record<PgWorkload, number>>>
  bytes: { copySmall: number; copyLarge: number }
  errors: string[]
}

/** True when the binaries this benchmark needs are installed. */
export function postgresAvailable(): boolean {
  return existsSync(join(PG_BIN, 'initdb')) && existsSync(join(PG_BIN, 'pg_ctl')) && which('psql') !== undefined && which('pgbench') !== undefined
}

function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
}

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEYWAY_') && !k.startsWith('PG')) env[k] = v
  return { ...env, ...extra }
}

/** Runs `cmd` with its output thrown away (a COPY's 48 MiB must not be buffered); seconds taken. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      if (code !== 0) reject(new Error(`${cmd} exited ${code}: ${stderr.trim()}`))
      else resolve(Number(process.hrtime.bigint() - t0) / 1e9)
    })
  })
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** Starts PostgreSQL and the chain, measures every path and workload `rounds` times, tears everything down. */
export async function postgresBench(o: PostgresBenchOptions): Promise<PostgresFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-pg-'))
  const daemons: Daemon[] = []
  let pgData: string | undefined
  const errors: string[] = []
  try {
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
      chownSync(dir, uid, gid)
    }
    pgData = join(dir, 'data')
    execFileSync(...asPostgres(join(PG_BIN, 'initdb'), ['-D', pgData, '-A', 'trust', '-U', 'postgres', '--no-sync']), { stdio: 'ignore' })
    writeFileSync(join(pgData, 'pg_hba.conf'), 'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n')
    const pgPort = await freePort()
    const [pgCmd, pgArgs] = asPostgres(join(PG_BIN, 'pg_ctl'), [
      '-D', pgData, '-o', `-p ${pgPort} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c ssl=off`, '-l', join(dir, 'pg.log'), '-w', 'start',
    ])
    // The postmaster inherits the pinning of pg_ctl.
    execFileSync(...pinned(o.load, pgCmd, pgArgs), { stdio: 'ignore' })
    const psqlAdmin = (sql: string, db = 'postgres'): void => void execFileSync('psql', ['-X', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', '-d', db, '-qc', sql], { env: cleanEnv({}) })
    psqlAdmin(`CREATE ROLE app LOGIN PASSWORD '${PASSWORD}'`)
    psqlAdmin('CREATE DATABASE bench OWNER app')
    const withPassword = cleanEnv({ PGPASSWORD: PASSWORD, PGSSLMODE: 'disable' })
    const init = await run('pgbench', ['-i', '-q', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'app', 'bench'], { timeoutMs: 120_000, env: withPassword })
    if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`)
    psqlAdmin(`CREATE TABLE small AS SELECT g AS id, repeat('x', 40) AS pad FROM generate_series(1, ${o.smallRows}) g; ALTER TABLE small OWNER TO app`, 'bench')
    const largeRows = Math.max(1, Math.round((o.smallRows * 50) / 8192))
    psqlAdmin(`CREATE TABLE large AS SELECT g AS id, repeat('y', 8180) AS pad FROM generate_series(1, ${largeRows}) g; ALTER TABLE large OWNER TO app`, 'bench')
    psqlAdmin('VACUUM ANALYZE', 'bench')

    // Keyway: one resource per chain path on the same PostgreSQL, a role, a token.
    const secret = join(dir, 'warehouse-password')
    writeFileSync(secret, PASSWORD, { mode: 0o600 })
    const address = `127.0.0.1:${pgPort}`
    const chain = await startChain(
      dir,
      daemons,
      [
        { name: 'pg-bytes', flags: ['--kind', 'datasource', '--type', 'tcp', '--address', address] },
        { name: 'pg-tracked', flags: ['--kind', 'datasource', '--type', 'postgres', '--address', address] },
        { name: 'pg-injected', flags: ['--kind', 'datasource', '--type', 'postgres', '--address', address, '--username', 'app', '--password-file', secret] },
      ],
      { cores: o.cores, extraEnv: { KEYWAY_LOG_LEVEL: 'warn' } },
    )
    const local: Record<Exclude<PgPath, 'direct'>, number> = { bytes: chain['pg-bytes']!, tracked: chain['pg-tracked']!, injected: chain['pg-injected']! }

    const port: Record<PgPath, number> = { direct: pgPort, ...local }
    // The injected path's client holds no password at all.
    const clientEnv = (p: PgPath): NodeJS.ProcessEnv => (p === 'injected' ? cleanEnv({ PGPASSFILE: join(dir, 'no-pgpass'), PGSSLMODE: 'disable' }) : withPassword)
    const conn = (p: PgPath): string[] => ['-h', '127.0.0.1', '-p', String(port[p]), '-U', 'app']
    const copy = (p: PgPath, table: string) =>
      timed(...pinned(o.load, 'psql', ['-X', '-q', ...conn(p), '-d', 'bench', '-c', `COPY ${table} TO STDOUT`]), clientEnv(p), 300_000)
    const pgbench = async (p: PgPath, connect: boolean): Promise<{ tps: number; latencyMs: number; failed: number }> => {
      const args = [...(connect ? ['-C'] : []), '-S', '-n', '-T', String(o.seconds), '-c', String(o.clients), '-j', '1', ...conn(p), 'bench']
      const r = await run(...pinned(o.load, 'pgbench', args), { timeoutMs: (o.seconds + 60) * 1000, env: clientEnv(p) })
      if (r.code !== 0) throw new Error(`pgbench ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
      const num = (re: RegExp): number => Number(re.exec(r.stdout)?.[1] ?? NaN)
      return { tps: num(/tps = ([\d.]+)/), latencyMs: num(/latency average = ([\d.]+) ms/), failed: num(/number of failed transactions: (\d+)/) || 0 }
    }
    const size = (table: string) => Number(execFileSync('psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', '-d', 'bench', '-c', `COPY ${table} TO STDOUT`], { env: cleanEnv({}), maxBuffer: 1 << 30 }).length)
    const bytes = { copySmall: size('small'), copyLarge: size('large') }

    const samples = Object.fromEntries(PG_PATHS.map((p) => [p, {}])) as PgSamples
    const push = (p: PgPath, w: PgWorkload, v: number): void => {
      ;(samples[p][w] ??= []).push(v)
    }
    const attempt = async (what: string, fn: () => Promise<void>) => {
      try {
        await fn()
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`)
        console.error(`  ! ${what}: ${(err as Error).message}`)
      }
    }
    // Warm each path once (the tunnel, the gateway's SCRAM cache, PostgreSQL's buffers).
    for (const p of PG_PATHS) await attempt(`${p} warm-up`, async () => void (await copy(p, 'small')))
    for (let round = 0; round < o.rounds; round++) {
      const order = PG_PATHS.map((_, i) => PG_PATHS[(i + round) % PG_PATHS.length]!)
      for (const p of order) {
        await attempt(`${p} copy small`, async () => push(p, 'copySmall', bytes.copySmall / 2 ** 20 / (await copy(p, 'small'))))
        await attempt(`${p} copy large`, async () => push(p, 'copyLarge', bytes.copyLarge / 2 ** 20 / (await copy(p, 'large'))))
        await attempt(`${p} select`, async () => {
          const f = await pgbench(p, false)
          if (f.failed > 0) throw new Error(`${f.failed} failed transactions`)
          push(p, 'select', f.tps)
          push(p, 'selectLatency', f.latencyMs)
        })
        if (p === 'direct' || p === 'injected') {
          await attempt(`${p} connect`, async () => {
            const f = await pgbench(p, true)
            if (f.failed > 0) throw new Error(`${f.failed} failed transactions`)
            push(p, 'connect', f.tps)
          })
        }
      }
      console.error(`  postgres round ${round + 1} done`)
    }
    const medians = Object.fromEntries(
      PG_PATHS.map((p) => [p, Object.fromEntries(Object.entries(samples[p]).map(([w, xs]) => [w, median(xs)]))]),
    ) as PostgresFigures['medians']
    return { options: o, samples, medians, bytes, errors }
  } finally {
    for (const d of daemons.reverse()) await d.stop()
    if (pgData !== undefined) {
      try {
        execFileSync(...asPostgres(join(PG_BIN, 'pg_ctl'), ['-D', pgData, '-m', 'immediate', '-w', 'stop']), { stdio: 'ignore' })
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The figures as markdown: medians per path, and the ratios the issues ask for. */
export function postgresMarkdown(f: PostgresFigures): string {
  const m = f.medians
  const fmt = (v: number | undefined, d = 1) => (v === undefined || Number.isNaN(v) ? '-' : v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }))
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(3)}x`)
  const spread = (p: PgPath, w: PgWorkload) => {
    const xs = f.samples[p][w]
    if (!xs || xs.length < 2) return ''
    return ` (${Math.round(((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 100)} %)`
  }
  const lines = [
    `PostgreSQL through the chain: ${f.options.rounds} round(s), medians (spread), pgbench ${f.options.clients} clients x ${f.options.seconds} s, COPY of ${fmt(f.bytes.copySmall / 2 ** 20)} / ${fmt(f.bytes.copyLarge / 2 ** 20)} MiB${f.options.cores ? `; gateway and sidecar on core ${f.options.cores}, PostgreSQL and clients on core ${f.options.load}` : ''}`,
    '',
    '| workload | direct | bytes (`tcp`) | tracked (`postgres`) | injected | tracked / bytes | injected / bytes | injected / tracked | injected / direct |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const w of Object.keys(PG_WORKLOADS) as PgWorkload[]) {
    const digits = w === 'selectLatency' ? 3 : 1
    lines.push(
      `| ${PG_WORKLOADS[w]} | ${PG_PATHS.map((p) => fmt(m[p][w], digits) + spread(p, w)).join(' | ')} | ${ratio(m.tracked[w], m.bytes[w])} | ${ratio(m.injected[w], m.bytes[w])} | ${ratio(m.injected[w], m.tracked[w])} | ${ratio(m.injected[w], m.direct[w])} |`,
    )
  }
  if (f.errors.length > 0) lines.push('', `Errors: ${f.errors.join('; ')}`)
  return lines.join('\n') + '\n'
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN
  return Number.isFinite(v) && v > 0 ? v : fallback
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const pin = !process.argv.includes('--no-pin') && cpuCount() >= 2
  postgresBench({
    seconds: arg('seconds', 5),
    clients: arg('clients', 8),
    rounds: arg('rounds', 3),
    smallRows: arg('small-rows', 1_000_000),
    ...(pin ? { cores: '0', load: '1' } : {}),
  })
    .then((f) => console.log(postgresMarkdown(f)))
    .catch((err: unknown) => {
      console.error(err)
      process.exitCode = 1
    })
}
