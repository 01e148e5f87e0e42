/**
 * The forwarding benchmark: Keyway against direct connections, socat, HAProxy
 * (one TCP hop) and a HAProxy pair with TLS between them (the equivalent of
 * Keyway's chain), all in one run, against the same upstreams on 127.0.0.1.
 * Never part of `npm test`. See bench/README.md.
 *
 *   npm run bench                   # 3 rounds, ~6 minutes
 *   npm run bench -- --quick        # 1 short round, under 2 minutes
 *
 * Options: --quick, --rounds N, --only NAME[,NAME] (forwarders: direct, socat,
 * haproxy, haproxy-tls, keyway-hop, keyway), --idle N (idle sessions held in
 * the memory test), --no-idle, --no-pin, --out FILE (JSON; default
 * bench/results/latest.json; the markdown table goes next to it),
 * --gateway-env K=V (extra environment for `keyway gateway`, repeatable),
 * --no-reload (skip the policy reload workload, bench/policy-reload.ts;
 * `--only reload` runs only it), --no-postgres (skip PostgreSQL through the
 * chain, bench/postgres.ts; `--only postgres` runs only it; skipped when
 * PostgreSQL's binaries are missing), --alt-node PATH (adds `keyway-alt-node`:
 * the chain with gateway and sidecar on another Node binary, measured in the
 * same rounds; with `--only`, name it), `--only keyway-off` (the chain with
 * the internals seam off), --placement one-core|split|both (default both:
 * `one-core` puts every forwarder process on core 0 and the load on core 1;
 * `split` measures the two-process forwarders again with the client side on
 * core 0, the server side on core 1, the load generators unpinned; rows of
 * the split placement are named `NAME@split`).
 * --no-footprint (skip the daemons' start-up time and resident set,
 * bench/footprint.ts; `--only footprint` runs only it).
 * --no-redis-injection (skip Redis with and without the gateway's login,
 * bench/redis-injection.ts; `--only redis-injection` runs only it),
 * --no-store (skip the PostgreSQL store workload, bench/store-propagation.ts:
 * 100,000 accounts, 10,000 with --quick; it runs only where PostgreSQL's
 * initdb is found; `--only store` runs only it).
 */
import { execSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, release, tmpdir, totalmem } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { footprint, footprintMarkdown, type FootprintRow } from './footprint.js'
import { micro } from './micro.js'
import { policyReload, reloadMarkdown } from './policy-reload.js'
import { postgresAvailable, postgresBench, postgresMarkdown, type PostgresFigures } from './postgres.js'
import { redisInjection, redisInjectionMarkdown, type RedisInjectionFigures } from './redis-injection.js'
import { postgresAvailable as storeAvailable, storeMarkdown, storePropagation, type StoreFigures } from './store-propagation.js'
import { EXTRA_FORWARDERS, FORWARDERS, keywayChain, keywayGatewayEnv, ROOT, setupKeyway, type Forwarder, type PeerContext, type Running } from './peers.js'
import { cpuCount, cpuMicros, freePort, processTree, missingTools, pinned, pinPid, sleep, startDaemon, waitPort, which, type Daemon } from './tools.js'
import { bulk, idleMemory, newConnections, rate, thousand, warmUp, type Figures, type Sizes } from './workloads.js'

interface Args {
  quick: boolean
  rounds: number
  only: string[] | undefined
  idle: number | undefined
  noIdle: boolean
  pin: boolean
  out: string
  gatewayEnv: Record<string, string>
  reload: boolean
  postgres: boolean
  altNode: string | undefined
  placement: 'one-core' | 'split' | 'both'
  footprint: boolean
  store: boolean
  redisInjection: boolean
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, rounds: 0, only: undefined, idle: undefined, noIdle: false, pin: true, out: join(ROOT, 'bench', 'results', 'latest.json'), gatewayEnv: {}, reload: true, postgres: true, altNode: undefined, placement: 'both', footprint: true, store: true, redisInjection: true }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${arg} needs a value`)
      return v
    }
    if (arg === '--quick') a.quick = true
    else if (arg === '--rounds') a.rounds = Math.max(1, Math.min(20, Number(value()) || 1))
    else if (arg === '--only') a.only = value().split(',')
    else if (arg === '--idle') a.idle = Math.max(10, Number(value()) || 10)
    else if (arg === '--no-idle') a.noIdle = true
    else if (arg === '--no-pin') a.pin = false
    else if (arg === '--no-reload') a.reload = false
    else if (arg === '--no-postgres') a.postgres = false
    else if (arg === '--alt-node') a.altNode = value()
    else if (arg === '--placement') {
      const v = value()
      if (v !== 'one-core' && v !== 'split' && v !== 'both') throw new Error(`--placement: one-core, split or both, not ${v}`)
      a.placement = v
    }
    else if (arg === '--no-footprint') a.footprint = false
    else if (arg === '--no-store') a.store = false
    else if (arg === '--no-redis-injection') a.redisInjection = false
    else if (arg === '--out') a.out = value()
    else if (arg === '--gateway-env') {
      const [k, ...v] = value().split('=')
      a.gatewayEnv[k!] = v.join('=')
    } else throw new Error(`unknown option ${arg} (see bench/run.ts)`)
  }
  if (a.rounds === 0) a.rounds = a.quick ? 1 : 3
  return a
}

/** A metric of the table: where it comes from and which way is better. */
interface Metric {
  key: string
  label: string
  unit: string
  higherIsBetter: boolean
  digits: number
}

const METRICS: Metric[] = [
  { key: 'bulk1', label: 'bulk, 1 stream', unit: 'Gb/s', higherIsBetter: true, digits: 2 },
  { key: 'bulk4', label: 'bulk, 4 streams', unit: 'Gb/s', higherIsBetter: true, digits: 2 },
  { key: 'rate', label: 'PING at 50 conns', unit: 'req/s', higherIsBetter: true, digits: 0 },
  { key: 'rateP50', label: 'PING at 50 conns, p50', unit: 'ms', higherIsBetter: false, digits: 2 },
  { key: 'rateP99', label: 'PING at 50 conns, p99', unit: 'ms', higherIsBetter: false, digits: 2 },
  { key: 'conns', label: 'new connections', unit: 'conn/s', higherIsBetter: true, digits: 0 },
  { key: 'rateCpu', label: 'forwarder CPU per PING at 50 conns', unit: 'µs', higherIsBetter: false, digits: 1 },
  { key: 'connsCpu', label: 'forwarder CPU per new connection', unit: 'µs', higherIsBetter: false, digits: 0 },
  { key: 'c1000', label: 'PING at 1,000 conns', unit: 'req/s', higherIsBetter: true, digits: 0 },
  { key: 'c1000P99', label: 'PING at 1,000 conns, p99', unit: 'ms', higherIsBetter: false, digits: 1 },
  { key: 'idleKib', label: 'memory per idle session, all processes', unit: 'KiB', higherIsBetter: false, digits: 1 },
  { key: 'idleGatewayKib', label: 'memory per idle session, gateway side', unit: 'KiB', higherIsBetter: false, digits: 1 },
  { key: 'idlePeakMb', label: 'peak RSS holding the idle sessions', unit: 'MB', higherIsBetter: false, digits: 0 },
]

type Samples = Record<string, Record<string, number[]>>

function push(samples: Samples, fwd: string, key: string, value: number): void {
  const byKey = (samples[fwd] ??= {})
  ;(byKey[key] ??= []).push(value)
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

interface Stat {
  values: number[]
  median: number
  min: number
  max: number
  /** (max - min) / median, in percent. */
  spreadPct: number
  vsDirect?: number
  vsHaproxy?: number
}

function machine(): Record<string, string | number> {
  const sh = (cmd: string) => {
    try {
      return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    } catch {
      return '?'
    }
  }
  return {
    cpu: cpus()[0]?.model ?? '?',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    haproxy: sh('haproxy -v').split('\n')[0] ?? '?',
    socat: sh('socat -V').split('\n').find((l) => l.startsWith('socat version')) ?? '?',
    iperf3: sh('iperf3 -v').split('\n')[0] ?? '?',
    redis: sh('redis-server --version'),
    nofileHardLimit: sh('sh -c "ulimit -Hn"'),
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const tools = missingTools()
  if (tools.missing.length > 0) {
    console.error(`missing: ${tools.missing.join(', ')}. Install them with:\n\n  ${tools.install}\n`)
    process.exit(2)
  }
  Object.assign(keywayGatewayEnv, args.gatewayEnv)
  const pin = args.pin && cpuCount() >= 2
  const fwdCores = pin ? '0' : undefined
  const loadCores = pin ? '1' : undefined
  // The runner itself is a load generator (idle clients) and the micro-benchmarks' host.
  if (loadCores) pinPid(process.pid, loadCores)

  const started = Date.now()
  const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-'))
  const daemons: Daemon[] = []
  let current: Running | undefined
  const cleanup = async () => {
    await current?.stop().catch(() => {})
    for (const d of daemons.reverse()) await d.stop()
  }
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))
  try {
    const sizes: Sizes = args.quick
      ? { bulkSeconds: 2, rateRequests: 30_000, connRequests: 2_000, c1000Requests: 12_000, idleSessions: args.idle ?? 1_000 }
      : { bulkSeconds: 5, rateRequests: 150_000, connRequests: 20_000, c1000Requests: 100_000, idleSessions: args.idle ?? 10_000 }
    const alt: Forwarder[] = []
    if (args.altNode !== undefined) {
      const version = execSync(`"${args.altNode}" --version`, { encoding: 'utf8' }).trim()
      alt.push(keywayChain('keyway-alt-node', `Keyway chain on Node ${version} (${args.altNode})`, true, { node: args.altNode }))
    }
    const forwarders = [...FORWARDERS, ...alt, ...(args.only ? EXTRA_FORWARDERS : [])].filter((f) => !args.only || args.only.includes(f.name) || alt.includes(f))

    const up = { iperf: await freePort(), redis: await freePort() }
    {
      const [cmd, a] = pinned(loadCores, which('iperf3')!, ['-s', '-B', '127.0.0.1', '-p', String(up.iperf)])
      daemons.push(startDaemon('iperf3', cmd, a, { log: join(dir, 'iperf3.log') }))
      const [rcmd, ra] = pinned(loadCores, which('redis-server')!, [
        '--bind', '127.0.0.1', '--port', String(up.redis), '--save', '', '--appendonly', 'no',
        '--maxclients', String(sizes.idleSessions + 1_000), '--dir', dir,
      ])
      daemons.push(startDaemon('redis-server', rcmd, ra, { log: join(dir, 'redis.log') }))
      await Promise.all([waitPort(up.iperf), waitPort(up.redis)])
    }
    const keyway = await setupKeyway(dir, up)
    const ctx: PeerContext = { dir, up, cores: fwdCores, maxSessions: sizes.idleSessions, keyway }
    console.error(`bench: ${forwarders.map((f) => f.name).join(', ')}; ${args.rounds} round(s)${pin ? '; forwarders on core 0, load and upstreams on core 1' : '; not pinned'}; logs in ${dir}`)

    const microFigures = await micro(keyway, args.quick)
    const samples: Samples = {}
    const errors: string[] = []
    const attempt = async (fwd: Forwarder, what: string, fn: () => Promise<void>) => {
      try {
        await fn()
      } catch (err) {
        const msg = `${fwd.name} ${what}: ${(err as Error).message}`
        errors.push(msg)
        console.error(`  ! ${msg}`)
      }
    }

    // The placements: every forwarder with the whole chain on one core, and the
    // two-process forwarders again with each process on its own core.
    interface Measured {
      fwd: Forwarder
      ctx: PeerContext
      load: string | undefined
    }
    const measured: Measured[] = []
    if (args.placement !== 'split' || !pin) for (const fwd of forwarders) measured.push({ fwd, ctx, load: loadCores })
    if (args.placement !== 'one-core' && pin) {
      for (const fwd of forwarders) {
        if (fwd.equivalent !== 'haproxy-tls') continue
        measured.push({
          fwd: { ...fwd, name: `${fwd.name}@split`, label: `${fwd.label} (split: client side on core 0, server side on core 1)`, equivalent: 'haproxy-tls@split' },
          ctx: { ...ctx, cores: '0', serverCores: '1' },
          load: undefined,
        })
      }
    }
    for (let round = 0; round < args.rounds; round++) {
      // Rotate the order so slow drifts of the machine do not favour one forwarder.
      const order = measured.map((_, i) => measured[(i + round) % measured.length]!)
      for (const { fwd, ctx: fctx, load } of order) {
        const t0 = Date.now()
        if (pin) pinPid(process.pid, load ?? '0,1')
        current = await fwd.start(fctx)
        const p = current.ports
        // socat forks per connection: nothing to warm.
        if (fwd.slow !== true) await attempt(fwd, 'warm-up', () => warmUp(p.redis, sizes, load))
        await attempt(fwd, 'bulk1', async () => push(samples, fwd.name, 'bulk1', (await bulk(p.iperf, 1, sizes, load)).gbps!))
        await sleep(200)
        await attempt(fwd, 'bulk4', async () => push(samples, fwd.name, 'bulk4', (await bulk(p.iperf, 4, sizes, load)).gbps!))
        await sleep(200)
        const cpu = () => cpuMicros([...new Set(current!.pids().flatMap((pid) => processTree(pid)))])
        await attempt(fwd, 'rate', async () => {
          const c0 = cpu()
          const f = await rate(p.redis, sizes, fwd.slow === true, load)
          if (fwd.name !== 'direct' && fwd.name !== 'socat') push(samples, fwd.name, 'rateCpu', (cpu() - c0) / f.requests!)
          push(samples, fwd.name, 'rate', f.rps!)
          push(samples, fwd.name, 'rateP50', f.p50!)
          push(samples, fwd.name, 'rateP99', f.p99!)
        })
        await sleep(200)
        await attempt(fwd, 'conns', async () => {
          const c0 = cpu()
          const f = await newConnections(p.redis, sizes, fwd.slow === true, load)
          // socat's forked children are gone by then: its figure would be meaningless.
          if (fwd.name !== 'direct' && fwd.name !== 'socat') push(samples, fwd.name, 'connsCpu', (cpu() - c0) / f.requests!)
          push(samples, fwd.name, 'conns', f.cps!)
        })
        await sleep(500)
        await attempt(fwd, 'c1000', async () => {
          const f = await thousand(p.redis, sizes, fwd.slow === true, load)
          push(samples, fwd.name, 'c1000', f.rps!)
          push(samples, fwd.name, 'c1000P99', f.p99!)
        })
        await current.stop()
        current = undefined
        console.error(`  round ${round + 1} ${fwd.name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`)
      }
    }
    if (pin && loadCores) pinPid(process.pid, loadCores)
    const rows = measured.map((m) => m.fwd)

    const idle: Record<string, Figures> = {}
    if (!args.noIdle) {
      for (const fwd of forwarders) {
        if (fwd.name === 'direct') continue
        const n = Math.min(sizes.idleSessions, fwd.maxIdle ?? Infinity)
        current = await fwd.start(ctx)
        await attempt(fwd, 'idle', async () => {
          const f = await idleMemory(current!, current!.ports.redis, n)
          idle[fwd.name] = f
          push(samples, fwd.name, 'idleKib', f.kibPerSession!)
          push(samples, fwd.name, 'idleGatewayKib', f.gatewayKibPerSession!)
          push(samples, fwd.name, 'idlePeakMb', f.peakRssMb!)
        })
        await current.stop()
        current = undefined
      }
    }

    let reload: Figures | undefined
    if (args.reload && (!args.only || args.only.includes('reload'))) {
      try {
        reload = await policyReload({ dir, keyway, up, cores: fwdCores, load: loadCores, ...(args.quick ? { pingRequests: 10_000 } : {}) })
      } catch (err) {
        errors.push(`reload: ${(err as Error).message}`)
        console.error(`  ! reload: ${(err as Error).message}`)
      }
    }

    let postgres: PostgresFigures | undefined
    if (args.postgres && (!args.only || args.only.includes('postgres'))) {
      if (!postgresAvailable()) console.error('  postgres: skipped (initdb, pg_ctl, psql or pgbench missing)')
      else {
        try {
          postgres = await postgresBench({
            seconds: args.quick ? 2 : 5,
            clients: 8,
            rounds: args.rounds,
            smallRows: args.quick ? 300_000 : 1_000_000,
            ...(fwdCores !== undefined && loadCores !== undefined ? { cores: fwdCores, load: loadCores } : {}),
          })
          errors.push(...postgres.errors.map((e) => `postgres ${e}`))
        } catch (err) {
          errors.push(`postgres: ${(err as Error).message}`)
          console.error(`  ! postgres: ${(err as Error).message}`)
        }
      }
    }

    let redisInj: RedisInjectionFigures | undefined
    if (args.redisInjection && (!args.only || args.only.includes('redis-injection'))) {
      try {
        redisInj = await redisInjection({
          rounds: args.rounds,
          pingRequests: args.quick ? 30_000 : 100_000,
          getRequests: args.quick ? 5_000 : 20_000,
          ...(fwdCores !== undefined && loadCores !== undefined ? { cores: fwdCores, load: loadCores } : {}),
        })
        errors.push(...redisInj.errors.map((e) => `redis-injection ${e}`))
      } catch (err) {
        errors.push(`redis-injection: ${(err as Error).message}`)
        console.error(`  ! redis-injection: ${(err as Error).message}`)
      }
    }

    let store: StoreFigures | undefined
    if (args.store && (!args.only || args.only.includes('store'))) {
      if (!storeAvailable()) console.error('  - store: skipped (no PostgreSQL initdb/pg_ctl; set KEYWAY_PG_BIN)')
      else {
        try {
          store = await storePropagation({ accounts: args.quick ? 10_000 : 100_000, trials: args.quick ? 10 : 30, log: (line) => console.error(`  store: ${line}`) })
        } catch (err) {
          errors.push(`store: ${(err as Error).message}`)
          console.error(`  ! store: ${(err as Error).message}`)
        }
      }
    }

    let footprintRows: FootprintRow[] | undefined
    if (args.footprint && (!args.only || args.only.includes('footprint'))) {
      try {
        footprintRows = await footprint({ rounds: args.quick ? 1 : 3, cores: fwdCores })
      } catch (err) {
        errors.push(`footprint: ${(err as Error).message}`)
        console.error(`  ! footprint: ${(err as Error).message}`)
      }
    }

    const stats: Record<string, Record<string, Stat>> = {}
    for (const fwd of rows) {
      const row: Record<string, Stat> = {}
      for (const m of METRICS) {
        const values = samples[fwd.name]?.[m.key]
        if (!values || values.length === 0) continue
        const med = median(values)
        row[m.key] = {
          values,
          median: med,
          min: Math.min(...values),
          max: Math.max(...values),
          spreadPct: med === 0 ? 0 : ((Math.max(...values) - Math.min(...values)) / med) * 100,
        }
      }
      stats[fwd.name] = row
    }
    for (const fwd of rows) {
      for (const m of METRICS) {
        const s = stats[fwd.name]?.[m.key]
        if (!s) continue
        const d = stats.direct?.[m.key]?.median
        const h = stats[fwd.equivalent]?.[m.key]?.median
        if (d) s.vsDirect = s.median / d
        if (h) s.vsHaproxy = s.median / h
      }
    }

    const targets = [...checkTargets(stats, idle, reload, postgres), ...storeTargets(store)]
    for (const [what, key] of [['PING at 50 conns', 'ping'], ['GET of 16 KiB values', 'getMiBs']] as const) {
      const v = redisInj === undefined ? undefined : redisInj.medians.injected[key] / redisInj.medians.auth[key]
      targets.push({ what: `redis: injection, ${what}, injected / auth`, goal: '>= 0.95x', value: v, met: v === undefined || Number.isNaN(v) ? undefined : v >= 0.95 })
    }
    const command = `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`
    const report = {
      date: new Date().toISOString(),
      command,
      machine: machine(),
      pinning: pin ? { forwarders: 'core 0', loadAndUpstreams: 'core 1', split: args.placement === 'one-core' ? 'not measured' : 'client side core 0, server side core 1, load unpinned' } : 'none',
      rounds: args.rounds,
      sizes,
      durationSeconds: Math.round((Date.now() - started) / 1000),
      forwarders: Object.fromEntries(rows.map((f) => [f.name, { label: f.label, comparedWith: f.equivalent }])),
      results: stats,
      idle,
      micro: microFigures,
      reload,
      postgres,
      footprint: footprintRows,
      store,
      redisInjection: redisInj,
      targets,
      errors,
      gatewayEnv: args.gatewayEnv,
    }
    const md = markdown(report, rows) + (footprintRows ? '\n' + footprintMarkdown(footprintRows) : '')
    mkdirSync(dirname(args.out), { recursive: true })
    writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n')
    writeFileSync(args.out.replace(/\.json$/, '') + '.md', md)
    console.log(md)
    console.error(`bench: ${report.durationSeconds} s; JSON in ${relative(process.cwd(), args.out)}`)
    rmSync(dir, { recursive: true, force: true })
  } finally {
    await cleanup()
  }
}

/** The issue 19 targets of the PostgreSQL store (undefined when the workload did not run). */
function storeTargets(f: StoreFigures | undefined): Target[] {
  if (f === undefined) return []
  return [
    { what: `store: gateway cold start at ${f.accounts} accounts (ms)`, goal: '<= 5000', value: f.coldStartMs, met: f.coldStartMs <= 5000 },
    { what: 'store: revocation commit -> every gateway, p99 (ms)', goal: '<= 1000', value: f.propagationP99Ms, met: f.propagationP99Ms <= 1000 },
  ]
}

interface Target {
  what: string
  goal: string
  value: number | undefined
  met: boolean | undefined
}

function checkTargets(stats: Record<string, Record<string, Stat>>, idle: Record<string, Figures>, reload: Figures | undefined, pg: PostgresFigures | undefined): Target[] {
  const ratio = (fwd: string, key: string) => stats[fwd]?.[key]?.vsHaproxy
  const t = (what: string, value: number | undefined, goal: string, ok: (v: number) => boolean): Target => ({
    what,
    goal,
    value,
    met: value === undefined || Number.isNaN(value) ? undefined : ok(value),
  })
  const kw = idle.keyway
  const pgRatio = (a: 'tracked' | 'injected', b: 'bytes' | 'tracked', w: 'copySmall' | 'copyLarge' | 'select') => {
    const x = pg?.medians[a][w]
    const y = pg?.medians[b][w]
    return x === undefined || y === undefined ? undefined : x / y
  }
  return [
    ...(['', '@split'] as const).flatMap((at) => {
      const where = at === '' ? 'chain on one core' : 'split placement'
      const fwd = `keyway${at}`
      return [
        t(`${where} vs HAProxy TLS pair: bulk, 1 stream`, ratio(fwd, 'bulk1'), '>= 1.0x', (v) => v >= 1.0),
        t(`${where} vs HAProxy TLS pair: bulk, 4 streams`, ratio(fwd, 'bulk4'), '>= 1.0x', (v) => v >= 1.0),
        t(`${where} vs HAProxy TLS pair: req/s at 50 conns`, ratio(fwd, 'rate'), '>= 1.2x', (v) => v >= 1.2),
        t(`${where} vs HAProxy TLS pair: p99 at 50 conns`, ratio(fwd, 'rateP99'), '<= 1.0x', (v) => v <= 1.0),
        t(`${where} vs HAProxy TLS pair: new connections/s`, ratio(fwd, 'conns'), '>= 5.0x', (v) => v >= 5.0),
      ]
    }),
    t('hop vs HAProxy hop: bulk, 1 stream', ratio('keyway-hop', 'bulk1'), '>= 0.85x', (v) => v >= 0.85),
    t('hop vs HAProxy hop: bulk, 4 streams', ratio('keyway-hop', 'bulk4'), '>= 0.85x', (v) => v >= 0.85),
    t('hop vs HAProxy hop: req/s at 50 conns', ratio('keyway-hop', 'rate'), '>= 0.85x', (v) => v >= 0.85),
    t('gateway memory per idle session (KiB)', kw?.gatewayKibPerSession, '<= 64', (v) => v <= 64),
    t('idle sessions held without errors', kw ? kw.held! - kw.errors! : undefined, `= ${kw?.sessions ?? '?'} (goal 10,000)`, (v) => v === kw!.sessions && v >= 10_000),
    t('policy reload: PING p99 during / without', reload?.p99Ratio, '<= 2x', (v) => v <= 2),
    t('policy reload: longest /healthz gap, quiet reload (ms)', reload?.healthzQuietReloadMaxGapMs, '<= 100', (v) => v <= 100),
    t('postgres: header tracker, COPY rows of ~50 B, tracked / bytes', pgRatio('tracked', 'bytes', 'copySmall'), '>= 0.95x', (v) => v >= 0.95),
    t('postgres: header tracker, COPY rows of 8 KiB, tracked / bytes', pgRatio('tracked', 'bytes', 'copyLarge'), '>= 0.95x', (v) => v >= 0.95),
    t('postgres: header tracker, pgbench -S, tracked / bytes', pgRatio('tracked', 'bytes', 'select'), '>= 0.95x', (v) => v >= 0.95),
    t('postgres: injection, COPY rows of ~50 B, injected / tracked', pgRatio('injected', 'tracked', 'copySmall'), '>= 0.95x', (v) => v >= 0.95),
    t('postgres: injection, COPY rows of 8 KiB, injected / tracked', pgRatio('injected', 'tracked', 'copyLarge'), '>= 0.95x', (v) => v >= 0.95),
    t('postgres: injection, pgbench -S, injected / tracked', pgRatio('injected', 'tracked', 'select'), '>= 0.95x', (v) => v >= 0.95),
  ]
}

function fmt(v: number | undefined, digits: number): string {
  if (v === undefined || Number.isNaN(v)) return '-'
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function markdown(report: {
  date: string
  command: string
  machine: Record<string, string | number>
  pinning: unknown
  rounds: number
  results: Record<string, Record<string, Stat>>
  micro: Record<string, Figures>
  targets: Target[]
  errors: string[]
  idle: Record<string, Figures>
  reload: Figures | undefined
  postgres: PostgresFigures | undefined
  store?: StoreFigures | undefined
  redisInjection?: RedisInjectionFigures | undefined
}, forwarders: readonly Forwarder[]): string {
  const m = report.machine
  const lines: string[] = []
  lines.push(`Run ${report.date.slice(0, 16).replace('T', ' ')} UTC: \`${report.command}\``)
  lines.push('')
  lines.push(
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}; ${m.haproxy}; ${m.redis}; ${m.iperf3}. ` +
      (report.pinning === 'none' ? 'Not pinned.' : 'Forwarders pinned to core 0, load generators and upstreams to core 1 (taskset).') +
      ` Medians of ${report.rounds} round(s); spread = (max − min) / median.`,
  )
  lines.push('')
  lines.push('| workload | forwarder | median | spread | vs direct | vs HAProxy equivalent |')
  lines.push('|---|---|---:|---:|---:|---:|')
  for (const metric of METRICS) {
    for (const fwd of forwarders) {
      const s = report.results[fwd.name]?.[metric.key]
      if (!s) continue
      const eq = fwd.equivalent === fwd.name || fwd.equivalent === 'direct' ? '' : ` (${fwd.equivalent})`
      lines.push(
        `| ${metric.label}, ${metric.unit} | ${fwd.name} | ${fmt(s.median, metric.digits)} | ${report.rounds > 1 ? fmt(s.spreadPct, 0) + '%' : '-'} | ${fmt(s.vsDirect, 2)} | ${fwd.equivalent === fwd.name ? '1.00' : fmt(s.vsHaproxy, 2)}${s.vsHaproxy !== undefined ? eq : ''} |`,
      )
    }
  }
  lines.push('')
  const idleRows = Object.entries(report.idle)
  if (idleRows.length > 0) {
    lines.push(`Idle sessions held (each proven by a PING, then 1 s idle, then a PING on every 10th): ${idleRows.map(([k, f]) => `${k} ${f.held}/${f.sessions}${f.errors ? ` (${f.errors} errors)` : ''}`).join(', ')}.`)
    lines.push('')
  }
  lines.push('Per-tunnel checks (µs per call, median / p99 of batch means): ' +
    Object.entries(report.micro).map(([k, f]) => `${k} ${fmt(f.median, 2)} / ${fmt(f.p99, 2)}`).join('; ') + '.')
  lines.push('')
  if (report.reload) {
    lines.push(...reloadMarkdown(report.reload))
    lines.push('')
  }
  if (report.postgres) {
    lines.push(postgresMarkdown(report.postgres))
  }
  if (report.redisInjection) lines.push(redisInjectionMarkdown(report.redisInjection))
  if (report.store) {
    lines.push(...storeMarkdown(report.store))
    lines.push('')
  }
  lines.push('| target | goal | measured | met |')
  lines.push('|---|---|---:|---|')
  for (const t of report.targets) lines.push(`| ${t.what} | ${t.goal} | ${fmt(t.value, 2)} | ${t.met === undefined ? 'not measured' : t.met ? 'yes' : 'no'} |`)
  if (report.errors.length > 0) {
    lines.push('')
    lines.push('Errors: ' + report.errors.join('; '))
  }
  return lines.join('\n') + '\n'
}

await main()
