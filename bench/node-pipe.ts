/**
 * BENCHMARK ONLY: the minimal Node forwarder of the baseline notes
 * (/work/shared/notes/forwarding-baseline.md), `a.pipe(b).pipe(a)` with
 * noDelay and half-open allowed: what Node's streams give with no session
 * bookkeeping at all. Compared with `keyway-hop` it shows what forward()
 * itself costs. Selected with `--only node-pipe`.
 *
 *   node dist/bench/node-pipe.js LISTEN_PORT:UPSTREAM_PORT [...]
 *
 * Prints `ready` on stdout once every listener is bound.
 */
import * as net from 'node:net'

function serve(listenPort: number, upstreamPort: number): Promise<void> {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (a) => {
    const b = net.connect({ host: '127.0.0.1', port: upstreamPort, allowHalfOpen: true, noDelay: true })
    a.on('error', () => b.destroy())
    b.on('error', () => a.destroy())
    a.pipe(b).pipe(a)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: listenPort, backlog: 1024 }, () => resolve())
  })
}

const pairs = process.argv.slice(2).map((a) => a.split(':').map(Number) as [number, number])
await Promise.all(pairs.map(([l, u]) => serve(l, u)))
process.stdout.write('ready\n')
process.on('SIGTERM', () => process.exit(0))
