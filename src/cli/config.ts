import { resolve } from 'node:path'
import { stringify } from 'yaml'
import { loadConfig, type KeywayConfig } from '../config/index.js'
import { KeywayError } from '../errors.js'
import { formatHostPort } from '../net/index.js'
import { parseCommandArgs, println, type CliIo, type Command } from './command.js'

const usage = `Usage: keyway config print [--config FILE] [--json]

Prints the effective daemon configuration: the file, then KEYWAY_* environment
variables, then defaults, with every path absolute and every duration in
milliseconds. Secret values (tokens, passwords, key material) are masked.

Options:
  -c, --config FILE  daemon configuration (default: KEYWAY_CONFIG, else the
                     embedded config/keyway.yaml)
      --json         print JSON instead of YAML`

/**
 * Loads the daemon configuration named by `--config` (relative to the
 * caller's folder), else KEYWAY_CONFIG, else the embedded default.
 */
export function loadCliConfig(file: string | undefined, io: CliIo): KeywayConfig {
  return loadConfig({ file: file === undefined ? undefined : resolve(io.cwd, file), env: io.env })
}

/** What replaces a secret in printed configuration. */
export const MASK = '********'

// Names of settings that would hold a secret inline; paths to files (`tokenFile`) are not secrets.
const SECRET_KEY = /^(token|password|passphrase|secret|privateKey|apiKey|clientSecret)$|(Token|Password|Secret|PrivateKey)$/
const SECRET_VALUE = /-----BEGIN [A-Z ]*PRIVATE KEY-----|^eyJ[\w-]*\.[\w-]*\.[\w-]*$|^scrypt\$/

/**
 * The configuration as plain data for printing: addresses as `host:port`,
 * secrets masked (by setting name, or by looking like a private key, a JWT
 * or a password hash, whatever the name).
 */
export function printableConfig(config: KeywayConfig): Record<string, unknown> {
  const walk = (value: unknown, key: string): unknown => {
    if (typeof value === 'string') return SECRET_KEY.test(key) || SECRET_VALUE.test(value) ? MASK : value
    if (Array.isArray(value)) return value.map((v) => walk(v, key))
    if (value !== null && typeof value === 'object') {
      if ('host' in value && 'port' in value) return formatHostPort(value as { host: string; port: number })
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]))
    }
    return value
  }
  return walk(config, '') as Record<string, unknown>
}

/** `keyway config print` */
export const command: Command = {
  name: 'config',
  summary: 'Print the effective configuration',
  usage,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean' } }, usage)
    if (positionals.length !== 1 || positionals[0] !== 'print') {
      throw new KeywayError('ERR_USAGE', `expected "keyway config print"\n${usage}`)
    }
    const config = loadCliConfig(values.config, io)
    const { file, ...rest } = printableConfig(config)
    if (values.json === true) {
      println(io.stdout, JSON.stringify({ file, ...rest }, null, 2))
    } else {
      println(io.stdout, `# Effective configuration from ${String(file)}`)
      println(io.stdout, '# (file < KEYWAY_* environment; paths absolute; durations in ms)')
      io.stdout.write(stringify(rest, { lineWidth: 0, flowCollectionPadding: false }))
    }
    return 0
  },
}
