import { setTimeout as delay } from 'node:timers/promises'
import { isKeywayError, KeywayError } from '../errors.js'
import { ControlClient, resolveControlEndpoint } from '../sidecar/index.js'
import { expectPositionals, parseCommandArgs, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway wait [--timeout SECONDS] [--runtime-dir DIR] [--control HOST:PORT] [--config FILE]

Waits until the running sidecar is ready (its /readyz answers 200: the gateway
answered and every auto-connect resource is bound), then exits 0. Meant for a
job's entrypoint: "keyway listen & keyway wait && ./job". A sidecar that is not
up yet is retried. Not ready in time: ERR_NOT_READY, exit 1.

Options:
  --timeout SECONDS   give up after this long (default 30; decimals allowed)
  --runtime-dir DIR   the sidecar's runtime directory, where its control socket is
                      (sidecar.runtimeDir, KEYWAY_SIDECAR_RUNTIME_DIR; default
                      $XDG_RUNTIME_DIR/keyway, else /run/keyway, else $TMPDIR/keyway-<uid>)
  --control HOST:PORT use this loopback TCP endpoint instead of the socket; the
                      control API there needs sidecar.controlTcp and the secret in
                      DIR/control.token, read automatically`

const OPTIONS = {
  timeout: { type: 'string' },
  control: { type: 'string' },
  'runtime-dir': { type: 'string' },
} as const

const POLL_MS = 200

/** `keyway wait`: blocks until the sidecar is ready. */
export const command: Command = {
  name: 'wait',
  summary: "Wait until the running sidecar is ready (for a job's entrypoint)",
  usage: USAGE,
  async run(args: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs(args, OPTIONS, USAGE)
    expectPositionals(positionals, 0, USAGE)
    const seconds = values.timeout === undefined ? 30 : Number(values.timeout)
    if (values.timeout !== undefined && (!/^\d+(\.\d+)?$/.test(values.timeout.trim()) || !Number.isFinite(seconds))) {
      throw new KeywayError('ERR_USAGE', `--timeout takes a number of seconds, not "${values.timeout}"\n${USAGE}`)
    }
    const address = resolveControlEndpoint({ file: values.config, control: values.control, runtimeDir: values['runtime-dir'], env: io.env })
    const timeoutMs = seconds * 1000
    const deadline = Date.now() + timeoutMs
    const client = new ControlClient(address, { timeoutMs: Math.max(100, Math.min(2_000, timeoutMs)) })
    let reason = 'no answer yet'
    for (;;) {
      try {
        const r = await client.readyz()
        if (r.ready) return 0
        reason = r.reason ?? 'not ready'
      } catch (err) {
        if (!isKeywayError(err, 'ERR_SIDECAR_UNREACHABLE')) throw err
        reason = err.message
      }
      const left = deadline - Date.now()
      if (left <= 0) break
      await delay(Math.min(POLL_MS, left))
    }
    throw new KeywayError('ERR_NOT_READY', `the sidecar was not ready within ${seconds} s: ${reason}`)
  },
}
