/**
 * Redis through the chain with and without the gateway's login (issue 21):
 * redis-server with `requirepass`, one `keyway listen` and one `keyway
 * gateway` (metrics on, the policy watched), two resources on the same
 * server, alternating in every round:
 *
 * - `auth`: type `redis` with no credential: the client sends AUTH itself
 *   (`redis-benchmark -a`), the gateway only forwards;
 * - `injected`: type `redis` with the resource's credential: the client sends
 *   no password, the gateway logs in upstream first.
 *
 * Workloads: PING at 50 persistent connections (req/s, p99) and GET of 16 KiB
 * values at 10 connections (MiB/s: the bulk line). Part of `npm run bench`
 * (`--no-redis-injection` skips it, `--only redis-injection` runs it).
 * Never part of `npm test`.
 *
 *   npm run build && node dist/bench/redis-injection.js [--rounds 3] [--no-pin]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { startChain } from './chain.js'
import { cpuCount, freePort, pinned, run, startDaemon, waitPort, which, type Daemon } from './tools.js'

const PASSWORD = 'bench-redis-password-2c81'

/** The two paths, in table order. */
export const REDIS_PATHS = ['auth', 'injected'] as const
export type RedisPath = (typeof REDIS_PATHS)[number]

export interface RedisInjectionOptions {
  rounds: number
  pingRequests: number
  getRequests: number
  /** Cores for gateway and sidecar, and for redis-server and redis-benchmark; undefined: not pinned. */
  cores?: string
  load?: string
}

export interface RedisInjectionFigures {
  options: RedisInjectionOptions
  samples: Record<RedisPath, { ping: number[]; pingP99: number[]; getMiBs: number[] }>
  medians: Record<RedisPath, { ping: number; pingP99: number; getMiBs: number }>
  errors: string[]
}

const median = (xs: number[]): number => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!)

/** Starts redis-server and the chain, measures both paths `rounds` times, tears everything down. */
export async function redisInjection(o: RedisInjectionOptions): Promise<RedisInjectionFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-redis-'))
  const daemons: Daemon[] = []
  const errors: string[] = []
  try {
    const redisPort = await freePort()
    daemons.push(
      startDaemon('redis-server', ...pinned(o.load, which('redis-server')!, ['--bind', '127.0.0.1', '--port', String(redisPort), '--save', '', '--appendonly', 'no', '--requirepass', PASSWORD, '--dir', dir]), {
        log: join(dir, 'redis.log'),
      }),
    )
    await waitPort(redisPort)
    const secret = join(dir, 'redis-password')
    writeFileSync(secret, PASSWORD, { mode: 0o600 })
    const address = `127.0.0.1:${redisPort}`
    const chain = await startChain(
      dir,
      daemons,
      [
        { name: 'redis-auth', flags: ['--kind', 'datasource', '--type', 'redis', '--address', address] },
        { name: 'redis-injected', flags: ['--kind', 'datasource', '--type', 'redis', '--address', address, '--username', 'default', '--password-file', secret] },
      ],
      { cores: o.cores },
    )
    const local: Record<RedisPath, number> = { auth: chain['redis-auth']!, injected: chain['redis-injected']! }

    const bench = async (p: RedisPath, args: string[], test: string): Promise<number[]> => {
      const auth = p === 'auth' ? ['-a', PASSWORD] : []
      const r = await run(...pinned(o.load, which('redis-benchmark')!, ['-h', '127.0.0.1', '-p', String(local[p]), ...auth, ...args, '--csv']), { timeoutMs: 180_000 })
      const line = r.stdout.split('\n').find((l) => l.startsWith(`"${test}"`))
      if (!line || r.code !== 0) throw new Error(`redis-benchmark ${test} exit ${r.code}: ${(r.stderr || r.stdout).slice(0, 300)}`)
      // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
      return line.split(',').map((c) => Number(c.replace(/"/g, '')))
    }
    const samples = { auth: { ping: [], pingP99: [], getMiBs: [] }, injected: { ping: [], pingP99: [], getMiBs: [] } } as RedisInjectionFigures['samples']
    const attempt = async (what: string, fn: () => Promise<void>) => {
      try {
        await fn()
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`)
        console.error(`  ! redis-injection ${what}: ${(err as Error).message}`)
      }
    }
    // Warm both paths (the tunnel, JIT) and write the keys GET reads.
    for (const p of REDIS_PATHS) await attempt(`${p} warm-up`, async () => void (await bench(p, ['-c', '10', '-n', '5000', '-d', '16384', '-t', 'set'], 'SET')))
    for (let round = 0; round < o.rounds; round++) {
      for (const p of round % 2 === 0 ? REDIS_PATHS : [...REDIS_PATHS].reverse()) {
        await attempt(`${p} ping`, async () => {
          const c = await bench(p, ['-c', '50', '-n', String(o.pingRequests), '-k', '1', '-t', 'ping_mbulk'], 'PING_MBULK')
          samples[p].ping.push(c[1]!)
          samples[p].pingP99.push(c[6]!)
        })
        await attempt(`${p} get`, async () => {
          const c = await bench(p, ['-c', '10', '-n', String(o.getRequests), '-k', '1', '-d', '16384', '-t', 'get'], 'GET')
          samples[p].getMiBs.push((c[1]! * 16384) / 2 ** 20)
        })
      }
      console.error(`  redis-injection round ${round + 1} done`)
    }
    const medians = Object.fromEntries(REDIS_PATHS.map((p) => [p, { ping: median(samples[p].ping), pingP99: median(samples[p].pingP99), getMiBs: median(samples[p].getMiBs) }])) as RedisInjectionFigures['medians']
    return { options: o, samples, medians, errors }
  } finally {
    for (const d of daemons.reverse()) await d.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The figures as markdown: medians per path and the ratio the issue asks for. */
export function redisInjectionMarkdown(f: RedisInjectionFigures): string {
  const m = f.medians
  const fmt = (v: number, d = 1) => (Number.isNaN(v) ? '-' : v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }))
  const row = (label: string, key: 'ping' | 'pingP99' | 'getMiBs', d: number) =>
    `| ${label} | ${fmt(m.auth[key], d)} | ${fmt(m.injected[key], d)} | ${(m.injected[key] / m.auth[key]).toFixed(3)}x |`
  return [
    `Redis through the chain: ${f.options.rounds} round(s), medians; the client sends AUTH (\`auth\`) or the gateway logs in (\`injected\`)${f.options.cores ? `; gateway and sidecar on core ${f.options.cores}, redis and redis-benchmark on core ${f.options.load}` : ''}`,
    '',
    '| workload | auth | injected | injected / auth |',
    '|---|---:|---:|---:|',
    row('PING at 50 connections, req/s', 'ping', 0),
    row('PING at 50 connections, p99 ms', 'pingP99', 3),
    row('GET of 16 KiB values at 10 connections, MiB/s', 'getMiBs', 1),
    ...(f.errors.length > 0 ? ['', `Errors: ${f.errors.join('; ')}`] : []),
  ].join('\n') + '\n'
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--rounds')
  const rounds = i >= 0 ? Math.max(1, Number(process.argv[i + 1]) || 3) : 3
  const pin = !process.argv.includes('--no-pin') && cpuCount() >= 2
  redisInjection({ rounds, pingRequests: 100_000, getRequests: 20_000, ...(pin ? { cores: '0', load: '1' } : {}) })
    .then((f) => console.log(redisInjectionMarkdown(f)))
    .catch((err: unknown) => {
      console.error(err)
      process.exitCode = 1
    })
}
