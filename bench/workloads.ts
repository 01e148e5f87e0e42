/**
 * The workloads of bench/run.ts. Load generators run on the load core
 * (`taskset`), every one with a deadline; a workload that fails or times
 * out records an error instead of a figure.
 */
import * as net from 'node:net'
import { pinned, processTree, rssKiB, run, sleep, sumRssKiB, which } from './tools.js'
import type { Running } from './peers.js'

/** One measured figure of one workload. */
export type Figures = Record<string, number>

/** How long and how much each workload runs. */
export interface Sizes {
  bulkSeconds: number
  /** PING requests at 50 persistent connections. */
  rateRequests: number
  /** Connections (one request each) for the new-connection test. */
  connRequests: number
  /** PING requests at 1,000 connections. */
  c1000Requests: number
  /** Idle sessions held for the memory test. */
  idleSessions: number
}

/** Bulk throughput: iperf3 client → forwarder → iperf3 server, `streams` parallel streams. Gb/s received. */
export async function bulk(port: number, streams: number, sizes: Sizes, load: string | undefined): Promise<Figures> {
  const [cmd, args] = pinned(load, which('iperf3')!, [
    '-c',
    '127.0.0.1',
    '-p',
    String(port),
    '-t',
    String(sizes.bulkSeconds),
    '-P',
    String(streams),
    '-J',
    '--connect-timeout',
    '5000',
  ])
  const r = await run(cmd, args, { timeoutMs: (sizes.bulkSeconds + 20) * 1000 })
  let json: { error?: string; end?: { sum_received?: { bits_per_second?: number } } }
  try {
    json = JSON.parse(r.stdout) as typeof json
  } catch {
    throw new Error(`iperf3 gave no JSON (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.slice(0, 300)}`)
  }
  if (json.error) throw new Error(`iperf3: ${json.error}`)
  const bps = json.end?.sum_received?.bits_per_second
  if (!bps) throw new Error('iperf3: no sum_received')
  return { gbps: bps / 1e9 }
}

/** redis-benchmark PING (multi-bulk); CSV figures. */
async function redisBench(port: number, clients: number, requests: number, keepAlive: boolean, load: string | undefined): Promise<Figures> {
  const [cmd, args] = pinned(load, which('redis-benchmark')!, [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-c',
    String(clients),
    '-n',
    String(requests),
    '-k',
    keepAlive ? '1' : '0',
    '-t',
    'ping_mbulk',
    '--csv',
  ])
  const r = await run(cmd, args, { timeoutMs: 90_000 })
  const line = r.stdout.split('\n').find((l) => l.startsWith('"PING_MBULK"'))
  if (!line || r.code !== 0) throw new Error(`redis-benchmark exit ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${(r.stderr || r.stdout).slice(0, 300)}`)
  const cols = line.split(',').map((c) => Number(c.replace(/"/g, '')))
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  return { rps: cols[1]!, p50: cols[4]!, p99: cols[6]!, requests }
}

/** Request rate and latency at 50 persistent connections. */
export function rate(port: number, sizes: Sizes, slow: boolean, load: string | undefined): Promise<Figures> {
  return redisBench(port, 50, slow ? Math.ceil(sizes.rateRequests / 2) : sizes.rateRequests, true, load)
}

/**
 * Warm-up, not measured: a short burst of PING at 50 persistent connections
 * and a few new connections, so that every forwarder is measured in its
 * steady state (a JIT-compiled Node process, an open multiplexed connection,
 * HAProxy's session cache) rather than in its first second.
 */
export async function warmUp(port: number, sizes: Sizes, load: string | undefined): Promise<void> {
  await redisBench(port, 50, Math.max(2_000, Math.ceil(sizes.rateRequests / 5)), true, load)
  await redisBench(port, 50, Math.max(200, Math.ceil(sizes.connRequests / 10)), false, load)
}

/** New connections per second: one connection per request (keep-alive off), 50 at a time. */
export async function newConnections(port: number, sizes: Sizes, slow: boolean, load: string | undefined): Promise<Figures> {
  const f = await redisBench(port, 50, slow ? Math.ceil(sizes.connRequests / 6) : sizes.connRequests, false, load)
  return { cps: f.rps!, p99: f.p99!, requests: f.requests! }
}

/** Request rate at 1,000 concurrent persistent connections. */
export async function thousand(port: number, sizes: Sizes, slow: boolean, load: string | undefined): Promise<Figures> {
  const f = await redisBench(port, 1000, slow ? Math.ceil(sizes.c1000Requests / 2) : sizes.c1000Requests, true, load)
  return { rps: f.rps!, p99: f.p99! }
}

const PING = Buffer.from('*1\r\n$4\r\nPING\r\n')

/**
 * Opens `n` connections (64 at a time), proves each is proxied end to end
 * with a PING answered by redis, and holds them idle. Runs in this process,
 * which bench/run.ts pins to the load core.
 */
async function openIdle(port: number, n: number): Promise<{ sockets: net.Socket[]; errors: number; firstError?: string }> {
  const sockets: net.Socket[] = []
  let errors = 0
  let firstError: string | undefined
  let next = 0
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' })
      const timer = setTimeout(() => fail(new Error('no PONG within 20 s')), 20_000)
      function fail(err: Error): void {
        clearTimeout(timer)
        errors++
        firstError ??= err.message
        s.destroy()
        resolve()
      }
      s.once('error', fail)
      s.once('connect', () => s.write(PING))
      s.once('data', (d: Buffer) => {
        clearTimeout(timer)
        if (!d.toString().startsWith('+PONG')) return fail(new Error(`unexpected answer ${JSON.stringify(d.toString().slice(0, 40))}`))
        s.removeListener('error', fail)
        s.on('error', () => {
          errors++
        })
        sockets.push(s)
        resolve()
      })
    })
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++
      await one()
    }
  }
  await Promise.all(Array.from({ length: 64 }, worker))
  return { sockets, errors, ...(firstError ? { firstError } : {}) }
}

/**
 * Memory per idle session: RSS of the forwarder's processes before and after
 * `n` idle sessions (each proven by a PING), per 1,000 sessions and per
 * session on the gateway side; peak RSS; sessions held without error.
 */
export async function idleMemory(fwd: Running, port: number, n: number): Promise<Figures & { error?: never }> {
  const gw = () => fwd.gatewayPids().flatMap((p) => processTree(p))
  const all = () => [...new Set(fwd.pids().flatMap((p) => processTree(p)))]
  await sleep(300)
  const before = sumRssKiB(all())
  const beforeGw = sumRssKiB(gw())
  const opened = await openIdle(port, n)
  await sleep(1_000)
  // Still alive after a second of idleness: a PING on every 10th connection.
  let late = 0
  await Promise.all(
    opened.sockets
      .filter((_, i) => i % 10 === 0)
      .map(
        (s) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => {
              late++
              resolve()
            }, 10_000)
            s.once('data', () => {
              clearTimeout(t)
              resolve()
            })
            s.write(PING)
          }),
      ),
  )
  const after = sumRssKiB(all())
  const afterGw = sumRssKiB(gw())
  const peak = all().reduce((sum, p) => sum + rssKiB(p).hwm, 0)
  for (const s of opened.sockets) s.destroy()
  await sleep(500)
  const held = opened.sockets.length
  return {
    sessions: n,
    held,
    errors: opened.errors + late,
    kibPerSession: held > 0 ? (after - before) / held : NaN,
    gatewayKibPerSession: held > 0 ? (afterGw - beforeGw) / held : NaN,
    mbPer1000: held > 0 ? ((after - before) / held) * 1000 / 1024 : NaN,
    peakRssMb: peak / 1024,
  }
}
