import { readFileSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { loadConfig } from '../config/index.js'
import { KeywayError } from '../errors.js'
import { createLogger } from '../observe/index.js'
import { Sidecar, startControlServer } from '../sidecar/index.js'
import { parseCommandArgs, type CliIo, type Command } from './command.js'

const USAGE = `Usage: keyway listen [--config FILE] [--gateway HOST:PORT[,HOST:PORT...]] [--ca FILE] [--token-file FILE] [--control HOST:PORT]

Runs the sidecar: fetches the resources granted to the service token, binds
them on 127.0.0.1 (their override ports with port overrides; all of them at
start with auto-connect) and tunnels every local connection over TLS to the
gateway. Runs until SIGTERM or SIGINT, then lets live sessions drain.

The token is KEYWAY_TOKEN, else the contents of --token-file (sidecar.tokenFile,
KEYWAY_TOKEN_FILE).

Options:
  --config FILE       configuration file (default: KEYWAY_CONFIG, else the embedded default)
  --gateway LIST      gateways to try in order (sidecar.gateways, KEYWAY_GATEWAY)
  --ca FILE           CA certificate of the gateways (sidecar.ca, KEYWAY_CA)
  --token-file FILE   file holding the service token (sidecar.tokenFile, KEYWAY_TOKEN_FILE)
  --control HOST:PORT control endpoint, loopback only (sidecar.control, KEYWAY_CONTROL; default 127.0.0.1:7070)`

const OPTIONS = {
  gateway: { type: 'string' },
  ca: { type: 'string' },
  'token-file': { type: 'string' },
  control: { type: 'string' },
} as const

function readToken(env: CliIo['env'], tokenFile: string): string {
  const fromEnv = env.KEYWAY_TOKEN?.trim()
  if (fromEnv) return fromEnv
  if (!tokenFile) throw new KeywayError('ERR_TOKEN_MISSING', 'no service token: set KEYWAY_TOKEN, or --token-file / KEYWAY_TOKEN_FILE / sidecar.tokenFile')
  let text: string
  try {
    text = readFileSync(tokenFile, 'utf8')
  } catch (err) {
    throw new KeywayError('ERR_CONFIG_IO', `cannot read the token file ${tokenFile}: ${(err as Error).message}`, { cause: err })
  }
  const token = text.trim()
  if (!token) throw new KeywayError('ERR_TOKEN_MISSING', `the token file ${tokenFile} is empty`)
  return token
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new KeywayError('ERR_CONFIG_IO', `cannot read the gateway CA certificate ${file} (sidecar.ca, --ca): ${(err as Error).message}`, { cause: err })
  }
}

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
      },
    })
    const token = readToken(io.env, config.sidecar.tokenFile)
    const ca = readCa(config.sidecar.ca)
    const logger = createLogger({
      level: config.log.level,
      base: { component: 'sidecar' },
      destination: io.stderr as Writable & { write(msg: string): void },
    })
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const sidecar = new Sidecar({ config: config.sidecar, ca, token, logger, registry })
    const control = await startControlServer({ address: config.sidecar.control, target: sidecar, registry, logger })
    const stop = io.stopSignal
    try {
      io.onReload?.(() => {
        // A rotated token file is picked up without a restart.
        try {
          sidecar.setToken(readToken(io.env, config.sidecar.tokenFile))
        } catch (err) {
          logger.warn({ event: 'token_reload_failed', reason: (err as Error).message }, 'cannot reload the token')
        }
      })
      if (!stop?.aborted) await sidecar.start()
      if (stop && !stop.aborted) await new Promise<void>((resolve) => stop.addEventListener('abort', () => resolve(), { once: true }))
      else if (!stop) await new Promise<never>(() => {})
      logger.info({ event: 'sidecar_stopping', signal: String(stop?.reason ?? '') }, 'stopping')
    } finally {
      await sidecar.close()
      await control.close()
    }
    return 0
  },
}
