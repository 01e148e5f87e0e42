import { ControlClient, resolveControlEndpoint } from '../sidecar/index.js'
import { expectPositionals, parseCommandArgs, println, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway disconnect RESOURCE [--runtime-dir DIR] [--control HOST:PORT] [--config FILE]

Unbinds RESOURCE in the running sidecar and closes its live connections. With
auto-connect it stays unbound until "keyway connect RESOURCE" (or until
auto-connect is turned off and on again), and the sidecar is not ready
meanwhile: "keyway status" shows it as disconnected by hand.

Options:
  --runtime-dir DIR   the sidecar's runtime directory, where its control socket is
                      (sidecar.runtimeDir, KEYWAY_SIDECAR_RUNTIME_DIR; default
                      $XDG_RUNTIME_DIR/keyway, else /run/keyway, else $TMPDIR/keyway-<uid>)
  --control HOST:PORT use this loopback TCP endpoint instead of the socket; the
                      control API there needs sidecar.controlTcp and the secret in
                      DIR/control.token, read automatically`

const OPTIONS = { control: { type: 'string' }, 'runtime-dir': { type: 'string' } } as const

/** `keyway disconnect RESOURCE`: unbinds a resource in the running sidecar. */
export const command: Command = {
  name: 'disconnect',
  summary: 'Unbind a resource in the running sidecar',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, OPTIONS, USAGE)
    const [resource] = expectPositionals(positionals, 1, USAGE)
    const address = resolveControlEndpoint({ file: values.config, control: values.control, runtimeDir: values['runtime-dir'], env: io.env })
    await new ControlClient(address).disconnect(resource!)
    println(io.stdout, `disconnected ${resource}`)
    println(io.stderr, `bind it again with: keyway connect ${resource}`)
    return 0
  },
}
