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
import { runHops } from './hop-main.js'

await runHops((upstreamPort) =>
  net.createServer({ allowHalfOpen: true, noDelay: true }, (a) => {
    const b = net.connect({ host: '127.0.0.1', port: upstreamPort, allowHalfOpen: true, noDelay: true })
    a.on('error', () => b.destroy())
    b.on('error', () => a.destroy())
    a.pipe(b).pipe(a)
  }),
)
