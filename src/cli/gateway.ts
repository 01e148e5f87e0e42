import { loadConfig } from '../config/index.js'
import { runGateway } from '../daemon.js'
import { parseCommandArgs, type Command } from './command.js'

const usage = `Usage: keyway gateway [--config FILE] [--listen HOST:PORT] [--metrics HOST:PORT] [--admin HOST:PORT]

Runs the gateway: accepts tunnels from sidecars over TLS, verifies their
tokens, checks grants against the policy and forwards bytes to resources.

Options:
  -c, --config FILE       daemon configuration (default: KEYWAY_CONFIG, else the
                          embedded config/keyway.yaml)
      --listen HOST:PORT  tunnel and API listener (gateway.listen)
      --metrics HOST:PORT /metrics, /healthz, /readyz listener (gateway.metrics)
      --admin HOST:PORT   admin API and web Admin UI listener (admin.listen)
      --log-level LEVEL   fatal, error, warn, info, debug, trace, silent

Signals: SIGHUP reloads the policy and keys; SIGTERM drains sessions for
gateway.drainGrace, then exits 0.

Example:
  keyway gateway --config /etc/keyway/keyway.yaml --listen 0.0.0.0:7443 --metrics 0.0.0.0:9464`

/** `keyway gateway` */
export const command: Command = {
  name: 'gateway',
  summary: 'Run the gateway',
  usage,
  async run(args, io) {
    const { values } = parseCommandArgs(args, { listen: { type: 'string' }, metrics: { type: 'string' }, admin: { type: 'string' }, 'log-level': { type: 'string' } }, usage)
    const config = loadConfig({
      file: values.config,
      env: io.env,
      overrides: { 'gateway.listen': values.listen, 'gateway.metrics': values.metrics, 'admin.listen': values.admin, 'log.level': values['log-level'] },
    })
    return runGateway(config, io)
  },
}
