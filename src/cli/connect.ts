import { ControlClient, resolveControlEndpoint } from '../sidecar/index.js'
import { expectPositionals, parseCommandArgs, println, type CliIo, type Command } from './command.js'
import { CONTROL_OPTIONS_HELP } from './control-options.js'

const USAGE = `Usage: keyway connect RESOURCE [--runtime-dir DIR] [--control HOST:PORT] [--config FILE]

Binds RESOURCE in the running sidecar (its override port with port overrides,
else a free port) and prints the local address, e.g. 127.0.0.1:15432.

Options:
${CONTROL_OPTIONS_HELP}

Example:
  keyway connect warehouse`

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
