import { ControlClient, resolveControlEndpoint } from '../sidecar/index.js'
import { expectPositionals, parseCommandArgs, println, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway connect RESOURCE [--runtime-dir DIR] [--control HOST:PORT] [--config FILE]

Binds RESOURCE in the running sidecar (its override port with port overrides,
else a free port) and prints the local address, e.g. 127.0.0.1:15432.

Options:
  --runtime-dir DIR   the sidecar's runtime directory, where its control socket is
                      (sidecar.runtimeDir, KEYWAY_SIDECAR_RUNTIME_DIR; default
                      $XDG_RUNTIME_DIR/keyway, else /run/keyway, else $TMPDIR/keyway-<uid>)
  --control HOST:PORT use this loopback TCP endpoint instead of the socket; the
                      control API there needs sidecar.controlTcp and the secret in
                      DIR/control.token, read automatically`

const OPTIONS = { control: { type: 'string' }, 'runtime-dir': { type: 'string' } } as const

/** `keyway connect RESOURCE`: binds a resource in the running sidecar. */
export const command: Command = {
  name: 'connect',
  summary: 'Bind a resource in the running sidecar',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, OPTIONS, USAGE)
    const [resource] = expectPositionals(positionals, 1, USAGE)
    const address = resolveControlEndpoint({ file: values.config, control: values.control, runtimeDir: values['runtime-dir'], env: io.env })
    const result = await new ControlClient(address).connect(resource!)
    println(io.stdout, result.localAddress)
    return 0
  },
}
