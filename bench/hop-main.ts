/**
 * The shared `main` of the benchmark-only one-hop scripts (plain-hop.ts,
 * node-pipe.ts): `node SCRIPT LISTEN_PORT:UPSTREAM_PORT [...]` binds one
 * listener per pair on 127.0.0.1, prints `ready`, and exits on SIGTERM.
 * It imports nothing but `node:net`, so node-pipe stays the minimal process.
 */
import type * as net from 'node:net'

/** Binds `listener(upstreamPort)` on 127.0.0.1 for every `LISTEN:UPSTREAM` argument. */
export async function runHops(listener: (upstreamPort: number) => net.Server): Promise<void> {
  const pairs = process.argv.slice(2).map((a) => a.split(':').map(Number) as [number, number])
  await Promise.all(
    pairs.map(
      ([listenPort, upstreamPort]) =>
        new Promise<void>((resolve, reject) => {
          const server = listener(upstreamPort)
          server.once('error', reject)
          server.listen({ host: '127.0.0.1', port: listenPort, backlog: 1024 }, () => resolve())
        }),
    ),
  )
  process.stdout.write('ready\n')
  process.on('SIGTERM', () => process.exit(0))
}
