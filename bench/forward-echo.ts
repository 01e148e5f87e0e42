/**
 * Ad-hoc loopback benchmark of the forwarding core, not part of the test run.
 *
 * This process is only the forwarder; load generator, sink and echo server run
 * in a child process, so on two cores each side has its own. Compares
 * direct connections, a minimal `a.pipe(b).pipe(a)` forwarder and forward().
 *
 *   node --expose-gc --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs \
 *     bench/forward-echo.ts [GiB=1] [pingpong seconds=3] [idle sessions=2000]
 *
 * Figures are noisy (compare within one run only).
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync, mkdtempSync } from 'node:fs'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dialTcp, forward } from '../src/forward/index.js'

const LOAD = String.raw`
const net = require('node:net')
const { performance } = require('node:perf_hooks')
let sinkPort, echoPort, bulk
const idle = []
const sink = net.createServer({ allowHalfOpen: true }, (s) => {
  let got = 0
  s.on('data', (c) => { got += c.length })
  s.on('end', () => { s.end(); if (bulk) bulk(got) })
})
const echo = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => { s.on('error', () => {}); s.pipe(s) })
sink.listen(0, '127.0.0.1', () => echo.listen(0, '127.0.0.1', () => {
  process.send({ sinkPort: sink.address().port, echoPort: echo.address().port })
}))
process.on('message', async (m) => {
  if (m.cmd === 'bulk') {
    const chunk = Buffer.alloc(256 * 1024, 7)
    const t0 = performance.now()
    const done = new Promise((r) => { bulk = r })
    const c = net.connect({ port: m.port, host: '127.0.0.1', allowHalfOpen: true })
    let left = m.bytes
    const pump = () => { while (left > 0) { left -= chunk.length; if (!c.write(chunk)) return } c.end() }
    c.on('connect', pump); c.on('drain', pump); c.resume()
    const got = await done
    process.send({ ms: performance.now() - t0, got })
    c.destroy()
  } else if (m.cmd === 'pingpong') {
    const req = Buffer.alloc(m.size, 1)
    const lat = []
    let reqs = 0, stop = false
    const conns = await Promise.all(Array.from({ length: m.conns }, () => new Promise((r) => {
      const c = net.connect({ port: m.port, host: '127.0.0.1', noDelay: true }, () => r(c))
    })))
    const t0 = performance.now()
    for (const c of conns) {
      let sent = 0, got = 0
      const go = () => { sent = performance.now(); got = 0; c.write(req) }
      c.on('data', (d) => { got += d.length; if (got >= m.size) { reqs++; lat.push(performance.now() - sent); if (!stop) go() } })
      go()
    }
    await new Promise((r) => setTimeout(r, m.ms))
    stop = true
    const ms = performance.now() - t0
    lat.sort((a, b) => a - b)
    for (const c of conns) c.destroy()
    process.send({ rps: reqs / (ms / 1000), p99: lat[Math.floor(lat.length * 0.99)] })
  } else if (m.cmd === 'idle') {
    for (let i = 0; i < m.n; i++) {
      const c = net.connect({ port: m.port, host: '127.0.0.1' })
      await new Promise((r) => c.once('connect', r))
      c.write('x')
      await new Promise((r) => c.once('data', r))
      idle.push(c)
    }
    process.send({ ok: true })
  } else if (m.cmd === 'closeIdle') {
    for (const c of idle.splice(0)) c.destroy()
    process.send({ ok: true })
  } else if (m.cmd === 'exit') process.exit(0)
})
`

type Mode = 'direct' | 'pipe' | 'forward' | 'forward-nagle'

const gib = Number(process.argv[2] ?? 1)
const pingSeconds = Number(process.argv[3] ?? 3)
const idleSessions = Number(process.argv[4] ?? 2000)

const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-'))
const loadFile = join(dir, 'load.cjs')
writeFileSync(loadFile, LOAD)
const child = fork(loadFile, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
const [ports] = (await once(child, 'message')) as [{ sinkPort: number; echoPort: number }]

async function ask<T>(msg: object): Promise<T> {
  child.send(msg)
  const [reply] = (await once(child, 'message')) as [T]
  return reply
}

/** A front server forwarding to `upstreamPort` the way `mode` says. */
async function front(mode: Exclude<Mode, 'direct'>, upstreamPort: number): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true, noDelay: mode !== 'forward-nagle' }, (a) => {
    if (mode === 'pipe') {
      const b = net.connect({ port: upstreamPort, host: '127.0.0.1', allowHalfOpen: true, noDelay: true })
      a.on('error', () => b.destroy())
      b.on('error', () => a.destroy())
      a.pipe(b).pipe(a)
      return
    }
    dialTcp('127.0.0.1', upstreamPort, { timeoutMs: 5_000 }).then(
      (b) => forward(a, b, { noDelay: mode === 'forward' }),
      () => a.destroy(),
    )
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server
}

const port = (s: net.Server): number => (s.address() as net.AddressInfo).port
const modes: Mode[] = ['direct', 'pipe', 'forward', 'forward-nagle']
const bytes = Math.round(gib * 2 ** 30)

for (const mode of modes) {
  if (mode === 'forward-nagle') continue
  const rounds: number[] = []
  const cpuMs: number[] = []
  for (let i = 0; i < 3; i++) {
    const server = mode === 'direct' ? undefined : await front(mode, ports.sinkPort)
    const cpu0 = process.cpuUsage()
    const { ms, got } = await ask<{ ms: number; got: number }>({ cmd: 'bulk', port: server ? port(server) : ports.sinkPort, bytes })
    const cpu = process.cpuUsage(cpu0)
    if (got < bytes) throw new Error(`${mode}: sink got ${got} of ${bytes}`)
    rounds.push((got * 8) / (ms / 1000) / 1e9)
    cpuMs.push((cpu.user + cpu.system) / 1000 / (got / 2 ** 30))
    server?.close()
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!
  console.log(
    `bulk ${gib} GiB  ${mode.padEnd(13)} ${median(rounds).toFixed(2)} Gb/s (rounds ${rounds.map((r) => r.toFixed(2)).join(', ')})` +
      (mode === 'direct' ? '' : `, forwarder CPU ${median(cpuMs).toFixed(0)} ms/GiB`),
  )
}

for (const mode of modes) {
  const server = mode === 'direct' ? undefined : await front(mode, ports.echoPort)
  const cpu0 = process.cpuUsage()
  const { rps, p99 } = await ask<{ rps: number; p99: number }>({
    cmd: 'pingpong',
    port: server ? port(server) : ports.echoPort,
    conns: 50,
    ms: pingSeconds * 1000,
    size: 64,
  })
  const cpu = process.cpuUsage(cpu0)
  const perReq = mode === 'direct' ? '' : `, forwarder CPU ${((cpu.user + cpu.system) / (rps * pingSeconds)).toFixed(1)} µs/req`
  console.log(`pingpong 50 conns 64 B  ${mode.padEnd(13)} ${Math.round(rps)} req/s  p99 ${p99.toFixed(2)} ms${perReq}`)
  server?.close()
}

const gc = (globalThis as { gc?: () => void }).gc
// Run forward first: the pipe run's leftovers would otherwise flatter it.
for (const mode of ['forward', 'pipe'] as const) {
  const server = await front(mode, ports.echoPort)
  // Warm up code and allocator pools so that they do not count per session.
  await ask({ cmd: 'idle', port: port(server), n: 200 })
  await ask({ cmd: 'closeIdle' })
  await new Promise((resolve) => setTimeout(resolve, 200))
  gc?.()
  gc?.()
  const before = process.memoryUsage()
  await ask({ cmd: 'idle', port: port(server), n: idleSessions })
  gc?.()
  gc?.()
  const after = process.memoryUsage()
  const per = (k: 'rss' | 'heapUsed' | 'external') => ((after[k] - before[k]) / idleSessions / 1024).toFixed(1)
  console.log(`idle ${idleSessions} sessions ${mode.padEnd(8)} per session: rss ${per('rss')} KiB, heap ${per('heapUsed')} KiB, external ${per('external')} KiB`)
  await ask({ cmd: 'closeIdle' })
  server.close()
}

child.send({ cmd: 'exit' })
