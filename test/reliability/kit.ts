/**
 * Shared pieces of the reliability suite (test/reliability/). Not a test of
 * its own: tap runs it, finds no test and reports it skipped. Everything binds
 * 127.0.0.1 and tears itself down.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import * as net from 'node:net'
import { Duplex } from 'node:stream'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createTokenVerifier, loadKeySet, type TokenVerifier } from '../../src/auth/index.js'
import type { Clock } from '../../src/clock.js'
import { startGateway, type RunningGateway } from '../../src/daemon.js'
import type { DialFunc } from '../../src/forward/index.js'
import type { Logger } from '../../src/observe/index.js'
import type { PolicyDoc } from '../../src/policy/index.js'
import { ALPN_TUNNEL } from '../../src/protocol/index.js'
import type { Teardown } from '../helpers/net.js'
import { until } from '../helpers/until.js'
import { packPolicyHere } from '../helpers/world.js'

/** `npm run test:stress` sets KEYWAY_STRESS=1: full counts instead of CI counts. */
export const STRESS = process.env.KEYWAY_STRESS === '1'

/** The CI count, or the full one under `npm run test:stress`. */
export function scale(ci: number, full: number): number {
  return STRESS ? full : ci
}

export const MiB = 1024 * 1024

/** Open file descriptors of this process (the gateway runs in-process). */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length
}

/** Waits until the descriptor count is back to `baseline` (or below). */
export async function fdsBackTo(baseline: number, timeoutMs = 5_000): Promise<number> {
  let now = openFds()
  await until(() => (now = openFds()) <= baseline, timeoutMs, `descriptors back to ${baseline} (now ${now})`).catch(() => undefined)
  return now
}

/** Listening TCP sockets (IPv4 and IPv6) owned by this process: `address:port`. */
export function listeningSockets(pid: number | 'self' = 'self'): string[] {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1]!)
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = []
  for (const [file, v6] of [
    ['/proc/net/tcp', false],
    ['/proc/net/tcp6', true],
  ] as const) {
    let text = ''
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue
      const [hexAddr, hexPort] = f[1]!.split(':') as [string, string]
      out.push(`${v6 ? decodeV6(hexAddr) : decodeV4(hexAddr)}:${parseInt(hexPort, 16)}`)
    }
  }
  return out
}


function decodeV4(hex: string): string {
  const n = parseInt(hex, 16)
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.')
}

function decodeV6(hex: string): string {
  if (hex === '0'.repeat(32)) return '::'
  if (hex === '00000000000000000000000001000000') return '::1'
  if (hex.startsWith('0000000000000000FFFF0000')) return `::ffff:${decodeV4(hex.slice(24))}`
  return hex
}

/** Forces a full garbage collection (exposes gc() on first use). */
export function gc(): void {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}

/** Heap and Buffer memory after a full collection, in bytes. */
export function memory(): { heapUsed: number; arrayBuffers: number; rss: number } {
  gc()
  gc()
  const m = process.memoryUsage()
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, rss: m.rss }
}

/**
 * Records every exception that would escape to the process (uncaught, or an
 * unhandled rejection turned into one) from now on.
 */
export function watchEscapes(t: Teardown): { readonly errors: Error[] } {
  const errors: Error[] = []
  const onEscape = (err: Error) => errors.push(err)
  process.on('uncaughtExceptionMonitor', onEscape)
  t.teardown(() => process.off('uncaughtExceptionMonitor', onEscape))
  return { errors }
}

/** Two accounts, two resources (A granted to `svc_a` through a role). */
export function twoResourcePolicy(portA: number, portB: number, extra: Partial<PolicyDoc> = {}): PolicyDoc {
  return {
    version: 1,
    settings: { portOverrides: true, autoConnect: true },
    resources: [
      { name: 'res-a', kind: 'datasource', type: 'postgres', address: `127.0.0.1:${portA}`, portOverride: 15432 },
      { name: 'res-b', kind: 'datasource', type: 'redis', address: `127.0.0.1:${portB}`, portOverride: 16379 },
    ],
    roles: [{ name: 'role-a', grants: ['res-a'] }],
    accounts: [
      { id: 'svc_a', type: 'service', name: 'job-a', roles: ['role-a'] },
      { id: 'svc_none', type: 'service', name: 'job-none', roles: [] },
    ],
    ...extra,
  }
}

/** Starts a gateway for a world's configuration with an injected dial function and logger. */
export async function gatewayWith(
  t: Teardown,
  world: { config: import('../../src/config/index.js').KeywayConfig; logger: Logger; clock: Clock },
  options: { dial?: DialFunc; logger?: Logger } = {},
): Promise<RunningGateway> {
  const running = await startGateway(world.config, {
    logger: options.logger ?? world.logger,
    clock: world.clock,
    packPolicy: packPolicyHere,
    ...(options.dial ? { dial: options.dial } : {}),
  })
  t.teardown(() => running.close())
  return running
}

/**
 * A TLS tunnel connection over a plain TCP socket we keep hold of, so a test
 * can reset the TCP connection (`raw.resetAndDestroy()`): TLSSocket itself
 * has no reset.
 */
export async function tlsOverRaw(t: Teardown, port: number, caPem: string): Promise<{ raw: net.Socket; tls: TLSSocket }> {
  const raw = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  raw.on('error', () => {})
  t.teardown(() => raw.destroy())
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', () => resolve())
    raw.once('error', reject)
  })
  // TLS runs over a JS proxy of `raw`, not over `raw` itself: given a
  // net.Socket, TLSWrap takes over its TCP handle, and resetting that handle
  // underneath TLS then crashes the process (SIGSEGV). Through the proxy `raw`
  // keeps its handle, and raw.resetAndDestroy() is an ordinary RST.
  const proxy = new Duplex({
    read() {
      raw.resume()
    },
    write(chunk: Buffer, _enc, cb) {
      if (raw.destroyed) return cb()
      raw.write(chunk, () => cb())
    },
    final(cb) {
      raw.end()
      cb()
    },
    destroy(err, cb) {
      raw.destroy()
      cb(err)
    },
    allowHalfOpen: true,
  })
  raw.on('data', (c: Buffer) => {
    if (!proxy.push(c)) raw.pause()
  })
  raw.on('end', () => proxy.push(null))
  raw.on('close', () => proxy.destroy())
  proxy.on('error', () => {})
  const socket = await new Promise<TLSSocket>((resolve, reject) => {
    const s = tlsConnect({ socket: proxy, ca: caPem, servername: 'localhost', ALPNProtocols: [ALPN_TUNNEL], allowHalfOpen: true } as ConnectionOptions, () => {
      s.off('error', reject)
      resolve(s)
    })
    s.once('error', reject)
  })
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  return { raw, tls: socket }
}

/** Percentile (0-100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** Milliseconds since `start` (a `process.hrtime.bigint()`). */
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6
}

/** CPU time (user + system) of a process in ms, from /proc. */
export function cpuMs(pid: number | 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[11] utime, fields[12] stime (clock ticks; 100 per second on Linux)
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}

/** A token verifier configured like a test world's gateway, reading its current policy. */
export async function worldVerifier(world: { config: { keys: { jwks: string } }; clock: Clock }, running: RunningGateway): Promise<TokenVerifier> {
  return createTokenVerifier({
    keySet: await loadKeySet(world.config.keys.jwks),
    issuer: 'keyway-test',
    audience: 'keyway-test',
    clock: world.clock,
    policy: () => running.store.current(),
  })
}
