/**
 * Policy reload under load: a running chain (`keyway listen` → TLS →
 * `keyway gateway` → redis) reloads, on SIGHUP, a policy of 100,000
 * accounts and 1,000,000 grants (bench/policy-generate.ts, plus the bench's
 * own account) while redis-benchmark sends PING through it and /healthz is
 * polled every 10 ms. Measures the time from SIGHUP to the new policy (the
 * gateway's `policy_reloaded` log line), the PING p99 of each redis-benchmark
 * run before and during the reload (median of the runs, and the worst), and
 * the longest gap between two /healthz answers, with and without a reload.
 * Then a second reload of the same size with no PING load (only the /healthz
 * poller): under PING the gateway's core is saturated, so the gaps seen there
 * are the scheduler's, not the reload's; here they are the reload's own. The
 * gateway's own event-loop delay (prom-client's
 * `nodejs_eventloop_lag_max_seconds`, reset by each scrape) is read for each
 * reload too.
 * Targets: p99 during reload <= 2x p99 without; no /healthz gap over 100 ms
 * during the quiet reload.
 *
 * Part of `npm run bench` (skip it with --no-reload; only it: --only reload).
 * Alone, with its own upstream:
 *
 *   npm run build && node dist/bench/policy-reload.js [--accounts N] [--account-grants N] [--no-pin]
 */
import { readFileSync, statSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { Agent, get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parse, stringify } from 'yaml'
import { generate } from './policy-generate.js'
import { FORWARDERS, keywayGatewayEnv, setupKeyway, type KeywaySetup, type Running } from './peers.js'
import { cpuCount, freePort, pinned, rssKiB, run, sleep, startDaemon, waitPort, which } from './tools.js'
import type { Figures } from './workloads.js'

/** Sizes of the reloaded policy. */
export interface ReloadSizes {
  /** Generated accounts (the bench's own account comes on top). */
  accounts: number
  roles: number
  resources: number
  roleGrants: number
  accountGrants: number
}

/** 99,999 generated accounts + the bench's = 100,000; 500,000 role + 499,995 account grants + the bench role's 2 = 999,997. */
export const FULL_SIZE: ReloadSizes = { accounts: 99_999, roles: 1_000, resources: 10_000, roleGrants: 500, accountGrants: 5 }

interface Window {
  start: number
  end: number
  p99: number
}

/** Polls GET /healthz back to back (10 ms apart) and remembers when each answer came. */
function pollHealthz(port: number): { stop(): Promise<number[]> } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const answers: number[] = []
  let running = true
  const loop = (async () => {
    while (running) {
      await new Promise<void>((resolve) => {
        const req = get({ host: '127.0.0.1', port, path: '/healthz', agent, timeout: 30_000 }, (res) => {
          res.resume()
          res.once('end', () => {
            if (res.statusCode === 200) answers.push(performance.now())
            resolve()
          })
        })
        req.once('error', () => resolve())
        req.once('timeout', () => req.destroy())
      })
      await sleep(10)
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      agent.destroy()
      return answers
    },
  }
}

function longestGap(answers: readonly number[], from: number, to: number): number {
  let gap = 0
  let last = from
  for (const a of answers) {
    if (a < from) continue
    if (a > to) {
      gap = Math.max(gap, a - last)
      break
    }
    gap = Math.max(gap, a - last)
    last = a
  }
  return gap
}

async function pingRun(port: number, requests: number, load: string | undefined): Promise<Window> {
  const start = performance.now()
  const [cmd, args] = pinned(load, which('redis-benchmark')!, ['-h', '127.0.0.1', '-p', String(port), '-c', '50', '-n', String(requests), '-k', '1', '-t', 'ping_mbulk', '--csv'])
  const r = await run(cmd, args, { timeoutMs: 120_000 })
  const line = r.stdout.split('\n').find((l) => l.startsWith('"PING_MBULK"'))
  if (!line || r.code !== 0) throw new Error(`redis-benchmark exit ${r.code}: ${(r.stderr || r.stdout).slice(0, 300)}`)
  return { start, end: performance.now(), p99: Number(line.split(',')[6]!.replace(/"/g, '')) }
}

/**
 * The bench's own resources, role and account, then the generated ones, as
 * YAML. Only the texts are kept: `second` differs from `text` only by a wider
 * port range, so reloading it is a real change of the same size.
 */
function largePolicy(small: string, sizes: ReloadSizes): { text: string; second: string; accounts: number; grants: number } {
  const base = parse(small) as { settings?: Record<string, unknown>; resources?: unknown[]; roles?: { grants?: unknown[] }[]; accounts?: unknown[] }
  const { doc, grants } = generate(sizes)
  const big = {
    version: 1,
    settings: { ...base.settings, portRange: [20_000, 39_999] },
    resources: [...(base.resources ?? []), ...doc.resources!],
    roles: [...(base.roles ?? []), ...doc.roles!],
    accounts: [...(base.accounts ?? []), ...doc.accounts!],
  }
  const own = (base.roles ?? []).reduce((n, r) => n + (r.grants?.length ?? 0), 0)
  const text = stringify(big)
  big.settings.portRange = [20_000, 40_000]
  return { text, second: stringify(big), accounts: big.accounts.length, grants: grants + own }
}

/** One sample of `name` from the gateway's /metrics (undefined when absent). */
async function scrapeMetric(port: number, name: string): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(60_000) })
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(await res.text())
  return m === null ? undefined : Number(m[1])
}

interface ReloadOutcome {
  event: string
  time: string | number
  code?: string
}

/** The gateway's `policy_reloaded` or `policy_reload_failed` line written after `offset`, if any yet. */
function reloadOutcome(gatewayLog: string, offset: number): ReloadOutcome | undefined {
  for (const l of readFileSync(gatewayLog, 'utf8').slice(offset).split('\n')) {
    if (!l.includes('"policy_reload')) continue
    const e = JSON.parse(l) as ReloadOutcome
    if (e.event === 'policy_reloaded' || e.event === 'policy_reload_failed') return e
  }
  return undefined
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/**
 * The reload workload. `keyway` is the run's Keyway state (its policy file
 * is overwritten with the large one); the chain is started here with its
 * metrics listener on.
 */
export async function policyReload(o: {
  dir: string
  keyway: KeywaySetup
  up: { iperf: number; redis: number }
  cores: string | undefined
  load: string | undefined
  sizes?: ReloadSizes
  /** PING requests per redis-benchmark run (each run gives one p99). */
  pingRequests?: number
  log?: (line: string) => void
}): Promise<Figures> {
  const log = o.log ?? ((line: string) => console.error(line))
  const sizes = o.sizes ?? FULL_SIZE
  const requests = o.pingRequests ?? 20_000
  const config = parse(readFileSync(o.keyway.config, 'utf8')) as { policy?: string }
  const policyFile = join(o.keyway.stateDir, config.policy ?? 'policy.yaml')
  const small = readFileSync(policyFile, 'utf8')

  const t0 = Date.now()
  const large = largePolicy(small, sizes)
  log(`  reload: generated ${large.accounts} accounts, ${large.grants} grants, ${(large.text.length / 2 ** 20).toFixed(1)} MiB of YAML in ${((Date.now() - t0) / 1000).toFixed(0)} s`)

  const metricsPort = await freePort()
  const saved = keywayGatewayEnv.KEYWAY_GATEWAY_METRICS
  keywayGatewayEnv.KEYWAY_GATEWAY_METRICS = `127.0.0.1:${metricsPort}`
  let chain: Running | undefined
  try {
    chain = await FORWARDERS.find((f) => f.name === 'keyway')!.start({ dir: o.dir, up: o.up, cores: o.cores, maxSessions: 1_000, keyway: o.keyway })
    await waitPort(metricsPort)
    const gatewayPid = chain.gatewayPids()[0]!
    const gatewayLog = join(o.dir, 'keyway-gateway.log')
    const port = o.keyway.ports.redis

    // Warm up, then the baseline: PING p99 and /healthz gaps with no reload.
    await pingRun(port, requests, o.load)
    const poller = pollHealthz(metricsPort)
    const baseline: Window[] = []
    for (let i = 0; i < 3; i++) baseline.push(await pingRun(port, requests, o.load))

    writeFileSync(policyFile, large.text)
    const fileMiB = large.text.length / 2 ** 20
    large.text = ''
    await scrapeMetric(metricsPort, 'nodejs_eventloop_lag_max_seconds')
    const logOffset = statSync(gatewayLog).size
    const rssBefore = rssKiB(gatewayPid).rss
    const sighup = performance.now()
    const sighupWall = Date.now()
    process.kill(gatewayPid, 'SIGHUP')
    const during: Window[] = []
    let outcome: ReloadOutcome | undefined
    let peakRss = rssBefore
    const deadline = Date.now() + 30 * 60_000
    while (outcome === undefined && Date.now() < deadline) {
      during.push(await pingRun(port, requests, o.load))
      peakRss = Math.max(peakRss, rssKiB(gatewayPid).rss)
      outcome = reloadOutcome(gatewayLog, logOffset)
    }
    const reloadedAt = outcome === undefined ? performance.now() : sighup + (new Date(outcome.time).getTime() - sighupWall)
    const loadedLagMaxS = await scrapeMetric(metricsPort, 'nodejs_eventloop_lag_max_seconds')
    if (outcome?.event !== 'policy_reloaded') {
      await poller.stop()
      throw new Error(`the reload did not succeed: ${outcome ? `${outcome.event} ${outcome.code}` : 'no log line in 30 minutes'}`)
    }

    // The quiet reload: the same size again, nothing but the /healthz poller running.
    await sleep(2_000)
    await scrapeMetric(metricsPort, 'nodejs_eventloop_lag_max_seconds')
    const quietOffset = statSync(gatewayLog).size
    writeFileSync(policyFile, large.second)
    large.second = ''
    const quietSighup = performance.now()
    const quietSighupWall = Date.now()
    process.kill(gatewayPid, 'SIGHUP')
    let quiet: ReloadOutcome | undefined
    while (quiet === undefined && Date.now() < deadline) {
      await sleep(100)
      peakRss = Math.max(peakRss, rssKiB(gatewayPid).rss)
      quiet = reloadOutcome(gatewayLog, quietOffset)
    }
    const quietReloadedAt = quiet === undefined ? performance.now() : quietSighup + (new Date(quiet.time).getTime() - quietSighupWall)
    const quietLagMaxS = await scrapeMetric(metricsPort, 'nodejs_eventloop_lag_max_seconds')
    const answers = await poller.stop()
    if (quiet?.event !== 'policy_reloaded') throw new Error(`the quiet reload did not succeed: ${quiet ? `${quiet.event} ${quiet.code}` : 'no log line in 30 minutes'}`)
    // Runs that overlap the reload (the last one may end a little after it).
    const overlapping = during.filter((w) => w.start < reloadedAt)
    const baseP99 = median(baseline.map((w) => w.p99))
    const reloadP99 = median(overlapping.map((w) => w.p99))
    return {
      accounts: large.accounts,
      grants: large.grants,
      fileMiB,
      reloadMs: reloadedAt - sighup,
      baselineP99Ms: baseP99,
      reloadP99Ms: reloadP99,
      reloadP99WorstMs: Math.max(...overlapping.map((w) => w.p99)),
      baselineP99WorstMs: Math.max(...baseline.map((w) => w.p99)),
      p99Ratio: reloadP99 / baseP99,
      pingRunsDuringReload: overlapping.length,
      pingRequests: requests,
      healthzBaselineMaxGapMs: longestGap(answers, baseline[0]!.start, baseline[baseline.length - 1]!.end),
      healthzReloadMaxGapMs: longestGap(answers, sighup, reloadedAt),
      healthzAnswersDuringReload: answers.filter((a) => a >= sighup && a <= reloadedAt).length,
      eventLoopLagMaxMs: (loadedLagMaxS ?? Number.NaN) * 1000,
      quietReloadMs: quietReloadedAt - quietSighup,
      healthzQuietReloadMaxGapMs: longestGap(answers, quietSighup, quietReloadedAt),
      healthzAnswersDuringQuietReload: answers.filter((a) => a >= quietSighup && a <= quietReloadedAt).length,
      quietEventLoopLagMaxMs: (quietLagMaxS ?? Number.NaN) * 1000,
      gatewayRssBeforeMiB: rssBefore / 1024,
      gatewayRssPeakMiB: peakRss / 1024,
    }
  } finally {
    if (saved === undefined) delete keywayGatewayEnv.KEYWAY_GATEWAY_METRICS
    else keywayGatewayEnv.KEYWAY_GATEWAY_METRICS = saved
    await chain?.stop()
    writeFileSync(policyFile, small)
  }
}

/** The lines of the reload figures for bench/results/latest.md. */
export function reloadMarkdown(f: Figures): string[] {
  const n = (v: number | undefined, d = 0) => (v === undefined ? '-' : v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }))
  return [
    `Policy reload (SIGHUP) to ${n(f.accounts)} accounts and ${n(f.grants)} grants (${n(f.fileMiB, 1)} MiB of YAML), under PING at 50 connections through the chain:`,
    '',
    '| figure | measured | target |',
    '|---|---:|---|',
    `| time from SIGHUP to the new policy | ${n(f.reloadMs! / 1000, 1)} s | - |`,
    `| PING p99 without a reload (median of 3 runs of ${n(f.pingRequests)} requests; worst ${n(f.baselineP99WorstMs, 2)} ms) | ${n(f.baselineP99Ms, 2)} ms | - |`,
    `| PING p99 during the reload (median of the ${n(f.pingRunsDuringReload)} runs; worst ${n(f.reloadP99WorstMs, 2)} ms) | ${n(f.reloadP99Ms, 2)} ms (${n(f.p99Ratio, 2)}x) | <= 2x |`,
    `| longest /healthz gap during the reload (${n(f.healthzAnswersDuringReload)} answers) | ${n(f.healthzReloadMaxGapMs)} ms | - |`,
    `| longest /healthz gap without a reload | ${n(f.healthzBaselineMaxGapMs)} ms | - |`,
    `| gateway event-loop delay, longest, during the reload | ${n(f.eventLoopLagMaxMs)} ms | - |`,
    `| quiet reload (no PING load): time from SIGHUP to the new policy | ${n(f.quietReloadMs! / 1000, 1)} s | - |`,
    `| quiet reload: longest /healthz gap (${n(f.healthzAnswersDuringQuietReload)} answers) | ${n(f.healthzQuietReloadMaxGapMs)} ms | <= 100 ms |`,
    `| quiet reload: gateway event-loop delay, longest | ${n(f.quietEventLoopLagMaxMs)} ms | - |`,
    `| gateway RSS before / peak during the reload | ${n(f.gatewayRssBeforeMiB)} / ${n(f.gatewayRssPeakMiB)} MiB | - |`,
  ]
}

// Alone: its own redis upstream and Keyway state.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2)
  const num = (name: string, dflt: number): number => {
    const i = argv.indexOf(`--${name}`)
    return i >= 0 ? Math.max(1, Math.floor(Number(argv[i + 1]))) : dflt
  }
  const sizes = { ...FULL_SIZE, accounts: num('accounts', FULL_SIZE.accounts), accountGrants: num('account-grants', FULL_SIZE.accountGrants) }
  const pin = cpuCount() >= 2 && !argv.includes('--no-pin')
  const dir = mkdtempSync(join(tmpdir(), 'keyway-reload-'))
  const up = { iperf: await freePort(), redis: await freePort() }
  const [rcmd, ra] = pinned(pin ? '1' : undefined, which('redis-server')!, ['--bind', '127.0.0.1', '--port', String(up.redis), '--save', '', '--appendonly', 'no', '--dir', dir])
  const redis = startDaemon('redis-server', rcmd, ra, { log: join(dir, 'redis.log') })
  try {
    await waitPort(up.redis)
    const keyway = await setupKeyway(dir, up)
    const f = await policyReload({ dir, keyway, up, cores: pin ? '0' : undefined, load: pin ? '1' : undefined, sizes })
    console.log(reloadMarkdown(f).join('\n'))
    console.log(JSON.stringify(f))
  } finally {
    await redis.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
