import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse, stringify } from 'yaml'
import { tokenFingerprint } from '../auth/index.js'
import { ENV_ALIASES, envNameOf, loadConfig, settingPaths, type KeywayConfig } from '../config/index.js'
import { DocumentError, KeywayError } from '../errors.js'
import { formatHostPort } from '../net/index.js'
import { formatTable, parseCommandArgs, println, type CliIo, type Command } from './command.js'
import { resolveTokenSource, type TokenSpec } from '../sidecar/index.js'
import { MASK, redact } from './redact.js'

const usage = `Usage: keyway config print [--config FILE] [--json] [--sources]

Prints the effective daemon configuration: defaults, then the file, then
KEYWAY_* environment variables, with every path absolute and every duration in
milliseconds. Secret values (tokens, passwords, key material) are masked;
KEYWAY_TOKEN is never printed, only its fingerprint.

Options:
  -c, --config FILE  daemon configuration (default: KEYWAY_CONFIG, else the
                     embedded config/keyway.yaml)
      --json         print JSON instead of YAML
      --sources      one line per setting: its value, where the value comes
                     from (default, file, env NAME) and its variable

Example:
  keyway config print --sources`

/**
 * Loads the daemon configuration named by `--config` (relative to the
 * caller's folder), else KEYWAY_CONFIG, else the embedded default.
 */
export function loadCliConfig(file: string | undefined, io: CliIo): KeywayConfig {
  return loadConfig({ file: file === undefined ? undefined : resolve(io.cwd, file), env: io.env })
}

// Names of settings that would hold a secret inline; paths to files (`tokenFile`) are not secrets.
const SECRET_KEY = /^(token|password|passphrase|secret|privateKey|apiKey|clientSecret)$|(Token|Password|Secret|PrivateKey)$/
const SECRET_VALUE = /-----BEGIN [A-Z ]*PRIVATE KEY-----|^eyJ[\w-]*\.[\w-]*\.[\w-]*$|^scrypt\$/

/**
 * The configuration as plain data for printing: addresses as `host:port`,
 * secrets masked (by setting name, or by looking like a private key, a JWT
 * or a password hash, whatever the name, or by containing one of `secrets`).
 */
export function printableConfig(config: KeywayConfig, secrets: readonly string[] = []): Record<string, unknown> {
  const walk = (value: unknown, key: string): unknown => {
    if (typeof value === 'string') return SECRET_KEY.test(key) || SECRET_VALUE.test(value) ? MASK : redact(value, secrets)
    if (Array.isArray(value)) return value.map((v) => walk(v, key))
    if (value !== null && typeof value === 'object') {
      if ('host' in value && 'port' in value) return formatHostPort(value as { host: string; port: number })
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]))
    }
    return value
  }
  return walk(config, '') as Record<string, unknown>
}

/** Where one setting's effective value comes from. */
export interface SettingSource {
  /** Dotted path, e.g. `gateway.listen`. */
  setting: string
  /** The printable (masked) value. */
  value: unknown
  /** `default`, `file`, or `env NAME`. */
  source: string
  /** The variable that overrides it. */
  env: string
}

function lookup(value: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[k] : undefined), value)
}

/**
 * Every setting with its source, by the precedence of loadConfig: an alias
 * (KEYWAY_GATEWAY...) over the KEYWAY_SECTION_KEY variable over the file over
 * the default.
 */
export function settingSources(config: KeywayConfig, env: CliIo['env'], secrets: readonly string[] = []): SettingSource[] {
  let raw: unknown
  try {
    raw = parse(readFileSync(config.file, 'utf8'))
  } catch {
    raw = undefined // loadConfig read it a moment ago; a vanished file only loses the "file" attribution
  }
  const printable = printableConfig(config, secrets)
  return settingPaths().map((setting) => {
    const alias = Object.entries(ENV_ALIASES).find(([name, path]) => path === setting && env[name] !== undefined && env[name] !== '')?.[0]
    const name = envNameOf(setting)
    const source = alias ? `env ${alias}` : env[name] !== undefined ? `env ${name}` : lookup(raw, setting) !== undefined ? 'file' : 'default'
    return { setting, value: lookup(printable, setting), source, env: name }
  })
}

function show(value: unknown): string {
  if (Array.isArray(value)) return value.map(show).join(',')
  if (value === '') return '""'
  return String(value)
}

/** The token `keyway listen` would use without `--token-file`, by the one precedence of {@link resolveTokenSource}. */
function tokenNote(config: KeywayConfig, env: CliIo['env'], secrets: readonly string[]): string {
  let spec: TokenSpec
  try {
    spec = resolveTokenSource({ flagGiven: false, env, tokenFile: config.sidecar.tokenFile })
  } catch {
    return 'none (give keyway listen --token-file, or set KEYWAY_TOKEN, KEYWAY_TOKEN_FILE or sidecar.tokenFile)'
  }
  if ('value' in spec) return `KEYWAY_TOKEN (${tokenFingerprint(spec.value)}); keyway listen --token-file would win over it`
  return `the file ${redact(spec.file, secrets)} (${spec.origin})`
}

/** Reloads with secrets kept out of the error: a token pasted into a setting shows up in its message. */
function loadRedacted(file: string | undefined, io: CliIo, secrets: readonly string[]): KeywayConfig {
  try {
    return loadCliConfig(file, io)
  } catch (err) {
    if (err instanceof DocumentError) {
      throw new DocumentError(
        err.code as 'ERR_POLICY_INVALID' | 'ERR_CONFIG_INVALID',
        err.problems.map((p) => ({ ...p, message: redact(p.message, secrets), key: redact(p.key, secrets) })),
      )
    }
    if (err instanceof KeywayError) throw new KeywayError(err.code, redact(err.message, secrets))
    throw err
  }
}

/** `keyway config print` */
export const command: Command = {
  name: 'config',
  summary: 'Print the effective configuration',
  usage,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean' }, sources: { type: 'boolean' } }, usage)
    if (positionals.length !== 1 || positionals[0] !== 'print') {
      throw new KeywayError('ERR_USAGE', `expected "keyway config print"\n${usage}`)
    }
    const secrets = [io.env.KEYWAY_TOKEN?.trim() ?? ''].filter(Boolean)
    const config = loadRedacted(values.config, io, secrets)
    if (values.sources === true) {
      const rows = settingSources(config, io.env, secrets)
      if (values.json === true) {
        println(io.stdout, JSON.stringify({ file: config.file, settings: rows }, null, 2))
      } else {
        println(io.stdout, `# Effective configuration from ${config.file}`)
        println(io.stdout, formatTable(['SETTING', 'VALUE', 'SOURCE', 'VARIABLE'], rows.map((r) => [r.setting, show(r.value), r.source, r.env])))
      }
      return 0
    }
    const { file, ...rest } = printableConfig(config, secrets)
    if (values.json === true) {
      println(io.stdout, JSON.stringify({ file, ...rest }, null, 2))
    } else {
      println(io.stdout, `# Effective configuration from ${String(file)}`)
      println(io.stdout, '# (defaults < file < KEYWAY_* environment; paths absolute; durations in ms)')
      println(io.stdout, `# Service token: ${tokenNote(config, io.env, secrets)}`)
      io.stdout.write(stringify(rest, { lineWidth: 0, flowCollectionPadding: false }))
    }
    return 0
  },
}
