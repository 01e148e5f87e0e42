import { ControlClient, resolveControlEndpoint, type SidecarSnapshot } from '../sidecar/index.js'
import { expectPositionals, formatTable, parseCommandArgs, println, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway status [--json] [--runtime-dir DIR] [--control HOST:PORT] [--config FILE]

Shows the running sidecar's resources: NAME KIND TYPE ADDRESS STATE, where
STATE is "bound", "not connected" or "error: CODE"; when a resource is not
bound, a WHY column says why and how to get it back (disconnected by hand:
"keyway connect NAME"; auto-connect off; port in use; no grant any more).
Below the table: the gateway when it is down, when the token stops working,
and why the sidecar is not ready. --json prints the whole status (gateway,
account, token, readiness, resources with reason and fix) as JSON.

Options:
  --json              print JSON
  --runtime-dir DIR   the sidecar's runtime directory, where its control socket is
                      (sidecar.runtimeDir, KEYWAY_SIDECAR_RUNTIME_DIR; default
                      $XDG_RUNTIME_DIR/keyway, else /run/keyway, else $TMPDIR/keyway-<uid>)
  --control HOST:PORT use this loopback TCP endpoint instead of the socket; the
                      control API there needs sidecar.controlTcp and the secret in
                      DIR/control.token, read automatically`

const OPTIONS = {
  json: { type: 'boolean' },
  control: { type: 'string' },
  'runtime-dir': { type: 'string' },
} as const

/** `keyway status`: the running sidecar's resources, like `sdm status`. */
export const command: Command = {
  name: 'status',
  summary: "Show the running sidecar's resources and their state",
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, OPTIONS, USAGE)
    expectPositionals(positionals, 0, USAGE)
    const address = resolveControlEndpoint({ file: values.config, control: values.control, runtimeDir: values['runtime-dir'], env: io.env })
    const snapshot = await new ControlClient(address).status()
    if (values.json) {
      println(io.stdout, JSON.stringify(snapshot, null, 2))
      return 0
    }
    const why = snapshot.resources.some((r) => r.fix !== undefined)
    const rows = snapshot.resources.map((r) => [r.name, r.kind, r.type, r.localAddress || '-', r.state, ...(why ? [r.fix ?? ''] : [])])
    println(io.stdout, formatTable(['NAME', 'KIND', 'TYPE', 'ADDRESS', 'STATE', ...(why ? ['WHY'] : [])], rows))
    if (snapshot.settings === null) println(io.stdout, 'no resources yet: the gateway has not answered (so no grants are known)')
    if (!snapshot.gateway.up && snapshot.gateway.lastError) {
      println(io.stdout, `gateway down: ${snapshot.gateway.lastError} (bound resources close new connections until it answers)`)
    }
    // Older sidecars have no token block.
    const token = snapshot.token as SidecarSnapshot['token'] | undefined
    if (token?.refused) println(io.stdout, `token refused: ${token.refused.code}: ${token.refused.message} (the sidecar exits at ${token.refused.exitAt} without a new token)`)
    else if (token?.expiresAt) println(io.stdout, `token ${token.rotatedOut ? 'rotated out; it stops working' : 'expires'} at ${token.expiresAt}`)
    if (snapshot.reason) println(io.stderr, `not ready: ${snapshot.reason}`)
    return 0
  },
}
