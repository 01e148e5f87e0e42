import { loadConfig } from '../config/index.js'
import { runSidecar } from '../daemon-sidecar.js'
import { parseCommandArgs, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway listen [--config FILE] [--gateway HOST:PORT[,HOST:PORT...]] [--ca FILE] [--token-file FILE] [--runtime-dir DIR] [--control HOST:PORT] [--log-level LEVEL]

Runs the sidecar: fetches the resources granted to the service token, binds
them on 127.0.0.1 (their override ports with port overrides; all of them at
start with auto-connect) and tunnels every local connection over TLS to the
gateway. Runs until SIGTERM or SIGINT, then lets live sessions drain.

The service token comes from, first found wins: --token-file, KEYWAY_TOKEN,
KEYWAY_TOKEN_FILE, sidecar.tokenFile in the configuration file. A token file is
re-read when it changes (a Kubernetes Secret's ..data swap included) and on
SIGHUP. A token that cannot be parsed stops the sidecar at once; a token every
gateway refuses (forged, expired, revoked) stops it after
sidecar.tokenRefusalGrace (60 s) unless a new one arrives. Both exit 1.

Options:
  --config FILE       configuration file (default: KEYWAY_CONFIG, else the embedded default)
  --gateway LIST      gateways to try in order (sidecar.gateways, KEYWAY_GATEWAY)
  --ca FILE           CA certificate of the gateways (sidecar.ca, KEYWAY_CA)
  --token-file FILE   file holding the service token; wins over KEYWAY_TOKEN, KEYWAY_TOKEN_FILE and sidecar.tokenFile
  --runtime-dir DIR   private directory of the control socket (sidecar.runtimeDir,
                      KEYWAY_SIDECAR_RUNTIME_DIR; default $XDG_RUNTIME_DIR/keyway,
                      else /run/keyway, else $TMPDIR/keyway-<uid>); made mode 0700
  --control HOST:PORT /healthz, /readyz and /metrics, loopback only (sidecar.control,
                      KEYWAY_CONTROL; default 127.0.0.1:7070)
  --log-level LEVEL   fatal, error, warn, info, debug, trace, silent (log.level, KEYWAY_LOG_LEVEL)

Example:
  keyway listen --gateway gw1.internal:7443,gw2.internal:7443 --ca ca.pem --token-file /var/run/secrets/keyway/token`

const OPTIONS = {
  gateway: { type: 'string' },
  ca: { type: 'string' },
  'token-file': { type: 'string' },
  control: { type: 'string' },
  'runtime-dir': { type: 'string' },
  'log-level': { type: 'string' },
} as const

/** `keyway listen`: the sidecar. */
export const command: Command = {
  name: 'listen',
  summary: 'Run the sidecar: bind granted resources on 127.0.0.1 and tunnel to the gateway',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values } = parseCommandArgs(args, OPTIONS, USAGE)
    const config = loadConfig({
      file: values.config,
      env: io.env,
      overrides: {
        'sidecar.gateways': values.gateway,
        'sidecar.ca': values.ca,
        'sidecar.tokenFile': values['token-file'],
        'sidecar.control': values.control,
        'sidecar.runtimeDir': values['runtime-dir'],
        'log.level': values['log-level'],
      },
    })
    return runSidecar(config, io, { tokenFileFlag: values['token-file'] !== undefined && values['token-file'] !== '' })
  },
}
