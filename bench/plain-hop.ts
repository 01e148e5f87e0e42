/**
 * BENCHMARK ONLY: "Keyway's gateway alone as one plaintext hop".
 *
 * A plain TCP listener whose accepted connections take the gateway's data
 * path after the handshake: `dialTcp` to a fixed upstream with the gateway's
 * connect timeout, then `forward()` with the gateway's default idle,
 * lifetime and half-close settings (from the configuration schema). The
 * accepted socket is adopted into reused read buffers (`adoptAccepted`), as
 * the sidecar's listeners do; the gateway's own accepted sockets are TLS,
 * where Node offers no such reads, so this is the forwarding core on plain
 * TCP, not the gateway's TLS side. What it leaves out is exactly what
 * HAProxy's one TCP hop does not do either: TLS, the hello, token
 * verification, the policy decision, the session registry, metrics and logs. It is not a mode of `keyway gateway` and is never used
 * outside bench/run.ts.
 *
 *   node dist/bench/plain-hop.js LISTEN_PORT:UPSTREAM_PORT [...]
 *
 * Prints `ready` on stdout once every listener is bound.
 */
import * as net from 'node:net'
import { configSchema } from '../src/config/schema.js'
import { dialTcp, forward } from '../src/forward/index.js'
import { adoptAccepted } from '../src/read-buffer/index.js'
import { runHops } from './hop-main.js'

const settings = configSchema.parse({}).gateway
// KEYWAY_FORWARD_NODE_INTERNALS=off: the hop without Node's internals, as the daemons with the switch off.
const nodeInternals = process.env.KEYWAY_FORWARD_NODE_INTERNALS !== 'off'

await runHops((upstreamPort) =>
  net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (accepted) => {
    const socket = nodeInternals ? adoptAccepted(accepted) : accepted
    socket.on('error', () => {})
    dialTcp('127.0.0.1', upstreamPort, { timeoutMs: settings.connectTimeout }).then(
      (upstream) => {
        if (socket.destroyed) return void upstream.destroy()
        forward(socket, upstream, {
          idleTimeoutMs: settings.idleTimeout,
          maxLifetimeMs: settings.maxLifetime,
          halfCloseTimeoutMs: settings.halfCloseTimeout,
        })
      },
      () => socket.destroy(),
    )
  }),
)
