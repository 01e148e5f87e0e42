import { ControlClient, resolveControlAddress } from '../sidecar/index.js'
import { expectPositionals, parseCommandArgs, println, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway connect RESOURCE [--control HOST:PORT] [--config FILE]

Binds RESOURCE in the running sidecar (its override port with port overrides,
else a free port) and prints the local address, e.g. 127.0.0.1:15432.

Options:
  --control HOST:PORT the sidecar's control endpoint (KEYWAY_CONTROL, sidecar.control; default 127.0.0.1:7070)`

const OPTIONS = { control: { type: 'string' } } as const

/** `keyway connect RESOURCE`: binds a resource in the running sidecar. */
export const command: Command = {
  name: 'connect',
  summary: 'Bind a resource in the running sidecar',
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, OPTIONS, USAGE)
    const [resource] = expectPositionals(positionals, 1, USAGE)
    const address = resolveControlAddress({ file: values.config, control: values.control, env: io.env })
    const result = await new ControlClient(address).connect(resource!)
    println(io.stdout, result.localAddress)
    return 0
  },
}
