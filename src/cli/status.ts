import { ControlClient, resolveControlAddress } from '../sidecar/index.js'
import { expectPositionals, formatTable, parseCommandArgs, println, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway status [--json] [--control HOST:PORT] [--config FILE]

Shows the running sidecar's resources: NAME KIND TYPE ADDRESS STATE, where
STATE is "bound", "not connected" or "error: CODE". --json prints the whole
status (gateway, account, readiness, resources) as JSON.

Options:
  --json              print JSON
  --control HOST:PORT the sidecar's control endpoint (KEYWAY_CONTROL, sidecar.control; default 127.0.0.1:7070)`

const OPTIONS = {
  json: { type: 'boolean' },
  control: { type: 'string' },
} as const

/** `keyway status`: the running sidecar's resources, like `sdm status`. */
export const command: Command = {
  name: 'status',
  summary: "Show the running sidecar's resources and their state",
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, OPTIONS, USAGE)
    expectPositionals(positionals, 0, USAGE)
    const address = resolveControlAddress({ file: values.config, control: values.control, env: io.env })
    const snapshot = await new ControlClient(address).status()
    if (values.json) {
      println(io.stdout, JSON.stringify(snapshot, null, 2))
      return 0
    }
    const rows = snapshot.resources.map((r) => [r.name, r.kind, r.type, r.localAddress || '-', r.state])
    println(io.stdout, formatTable(['NAME', 'KIND', 'TYPE', 'ADDRESS', 'STATE'], rows))
    if (snapshot.reason) println(io.stderr, `not ready: ${snapshot.reason}`)
    return 0
  },
}
