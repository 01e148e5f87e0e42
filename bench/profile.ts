/**
 * One workload against one forwarder, with the forwarder's CPU per operation:
 * the quick A/B loop and the profiling driver of bench/README.md. Never part
 * of `npm test`.
 *
 *   npm run build && node dist/bench/profile.js --workload conns --requests 4000 --repeat 3
 *   KEYWAY_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" node dist/bench/profile.js --workload rate
 *   node dist/bench/cpuprofile-summary.js /tmp/prof/*.cpuprofile
 *
 * Options: --forwarder NAME (default keyway; any of bench/peers.ts),
 * --workload conns|rate|bulk (default conns), --requests N, --repeat N
 * (runs of the workload on one started forwarder; each printed, then the
 * median), --streams N (bulk: iperf3 -P N, default 1), --no-pin, --split (sidecar on core 0, gateway on core 1,
 * the load unpinned), --gateway-env K=V. A chain's CPU per new connection is also split into the gateway's and the
 * sidecar's. The forwarder is stopped with SIGTERM
 * at the end, so `--cpu-prof` profiles are written.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { EXTRA_FORWARDERS, FORWARDERS, keywayGatewayEnv, setupKeyway, type PeerContext } from './peers.js'
import { cpuCount, cpuMicros, freePort, pinned, pinPid, processTree, sleep, startDaemon, waitPort, which } from './tools.js'
import { bulk, newConnections, rate, type Sizes } from './workloads.js'

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  let forwarder = 'keyway'
  let workload = 'conns'
  let requests = 0
  let repeat = 1
  let pin = true
  let streams = 1
  let split = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const v = (): string => argv[++i] ?? ''
    if (a === '--forwarder') forwarder = v()
    else if (a === '--workload') workload = v()
    else if (a === '--requests') requests = Number(v())
    else if (a === '--repeat') repeat = Math.max(1, Number(v()))
    else if (a === '--no-pin') pin = false
    else if (a === '--split') split = true
    else if (a === '--streams') streams = Math.max(1, Number(v()))
    else if (a === '--gateway-env') {
      const [k, ...rest] = v().split('=')
      keywayGatewayEnv[k!] = rest.join('=')
    } else throw new Error(`unknown option ${a}`)
  }
  const fwd = [...FORWARDERS, ...EXTRA_FORWARDERS].find((f) => f.name === forwarder)
  if (!fwd) throw new Error(`unknown forwarder ${forwarder}`)
  pin = pin && cpuCount() >= 2
  const fwdCores = pin ? '0' : undefined
  // --split: the client side (sidecar) on core 0, the server side (gateway) on core 1, the load unpinned, as run.ts's split placement.
  const serverCores = pin && split ? '1' : undefined
  const loadCores = pin && !split ? '1' : undefined
  if (loadCores) pinPid(process.pid, loadCores)
  const dir = mkdtempSync(join(tmpdir(), 'keyway-prof-'))
  const up = { iperf: await freePort(), redis: await freePort() }
  const [icmd, ia] = pinned(loadCores, which('iperf3')!, ['-s', '-B', '127.0.0.1', '-p', String(up.iperf)])
  const iperf = startDaemon('iperf3', icmd, ia, { log: join(dir, 'iperf3.log') })
  const [rcmd, ra] = pinned(loadCores, which('redis-server')!, ['--bind', '127.0.0.1', '--port', String(up.redis), '--save', '', '--appendonly', 'no', '--dir', dir])
  const redis = startDaemon('redis-server', rcmd, ra, { log: join(dir, 'redis.log') })
  await Promise.all([waitPort(up.iperf), waitPort(up.redis)])
  const keyway = await setupKeyway(dir, up)
  const ctx: PeerContext = { dir, up, cores: fwdCores, serverCores, maxSessions: 2_000, keyway }
  const sizes: Sizes = {
    bulkSeconds: 3,
    rateRequests: requests || 60_000,
    connRequests: requests || 4_000,
    c1000Requests: 0,
    idleSessions: 0,
  }
  const running = await fwd.start(ctx)
  const cpu = () => cpuMicros([...new Set(running.pids().flatMap((pid) => processTree(pid)))])
  // The gateway's share; the rest of a chain's CPU is the sidecar's.
  const gatewayCpu = () => cpuMicros([...new Set(running.gatewayPids().flatMap((pid) => processTree(pid)))])
  const perOp: number[] = []
  const rates: number[] = []
  try {
    for (let i = 0; i < repeat; i++) {
      await sleep(300)
      const c0 = cpu()
      const g0 = gatewayCpu()
      if (workload === 'conns') {
        const f = await newConnections(running.ports.redis, sizes, false, loadCores)
        perOp.push((cpu() - c0) / f.requests!)
        rates.push(f.cps!)
        const gw = (gatewayCpu() - g0) / f.requests!
        const shares = forwarder.startsWith('keyway') && forwarder !== 'keyway-hop' ? ` (gateway ${gw.toFixed(0)}, sidecar ${(perOp.at(-1)! - gw).toFixed(0)})` : ''
        console.log(`conns: ${f.cps} conn/s, p99 ${f.p99} ms, CPU ${perOp.at(-1)!.toFixed(0)} µs/conn${shares}`)
      } else if (workload === 'rate') {
        const f = await rate(running.ports.redis, sizes, false, loadCores)
        perOp.push((cpu() - c0) / f.requests!)
        rates.push(f.rps!)
        console.log(`rate: ${f.rps} req/s, p50 ${f.p50} ms, p99 ${f.p99} ms, CPU ${perOp.at(-1)!.toFixed(1)} µs/req`)
      } else if (workload === 'bulk') {
        const f = await bulk(running.ports.iperf, streams, sizes, loadCores)
        const s = (cpu() - c0) / 1e6
        perOp.push(s)
        rates.push(f.gbps!)
        console.log(`bulk: ${f.gbps!.toFixed(2)} Gb/s, CPU ${s.toFixed(2)} s`)
      } else throw new Error(`unknown workload ${workload}`)
    }
  } finally {
    await running.stop()
    await redis.stop()
    await iperf.stop()
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  console.log(`${forwarder} ${workload}: median rate ${med(rates).toFixed(workload === 'bulk' ? 2 : 0)}, median CPU/op ${med(perOp).toFixed(1)} (runs: ${perOp.map((x) => x.toFixed(1)).join(', ')}); logs in ${dir}`)
}

await main()
