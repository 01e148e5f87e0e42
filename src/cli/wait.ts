import { setTimeout as delay } from 'node:timers/promises'
import { isKeywayError, KeywayError } from '../errors.js'
import { ControlClient, resolveControlEndpoint } from '../sidecar/index.js'
import { expectPositionals, parseCommandArgs, type CliIo, type Command } from './command.js'
import { CONTROL_OPTIONS_HELP } from './control-options.js'

const USAGE = `Usage: keyway wait [--resource NAME]... [--timeout SECONDS] [--runtime-dir DIR] [--control HOST:PORT] [--config FILE]

Waits until the running sidecar is ready (its /readyz answers 200: the gateway
answered and every auto-connect resource is bound), then exits 0. Meant for a
job's entrypoint: "keyway listen & keyway wait && ./job". A sidecar that is not
up yet is retried. Not ready in time: ERR_NOT_READY, exit 1.

With --resource, also waits until each named resource works through the
gateway (its /readyz/NAME answers 200): the gateway connects to the upstream
for real, and logs in to a database with credentials (PostgreSQL up to
ReadyForQuery, Redis AUTH and PING).

Options:
  --resource NAME     also wait for this resource's upstream (repeatable)
  --timeout SECONDS   give up after this long (default 30; decimals allowed)
${CONTROL_OPTIONS_HELP}

Example:
  keyway listen & keyway wait --resource warehouse --timeout 60 && ./run-etl`

const OPTIONS = {
  resource: { type: 'string', multiple: true },
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
    const resources = values.resource ?? []
    if (resources.some((r) => r === '')) throw new KeywayError('ERR_USAGE', `--resource takes a resource name\n${USAGE}`)
    let reason = 'no answer yet'
    for (;;) {
      try {
        const r = await client.readyz()
        if (!r.ready) {
          reason = r.reason ?? 'not ready'
        } else {
          // A resource's answer may wait on the gateway's probe of its upstream (a connect and a login), within what is left.
          const resourceClient = new ControlClient(address, { timeoutMs: Math.max(100, Math.min(15_000, deadline - Date.now())) })
          const answers = await Promise.all(resources.map(async (name) => ({ name, r: await resourceClient.readyz(name) })))
          const waiting = answers.find((a) => !a.r.ready)
          if (waiting === undefined) return 0
          reason = `resource ${waiting.name} not ready: ${waiting.r.reason ?? 'not ready'}`
        }
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
