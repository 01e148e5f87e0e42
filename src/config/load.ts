import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { DocumentError, KeywayError, type Problem } from '../errors.js'
import { PACKAGE_ROOT } from '../package.js'
import { formatPath, parseLocated } from '../yaml/index.js'
import { configSchema, type ConfigShape } from './schema.js'

/** The effective daemon configuration: validated, paths absolute, frozen. */
export type KeywayConfig = ConfigShape & {
  /** The configuration file that was read. */
  readonly file: string
}

/** The embedded default configuration (`config/keyway.yaml` in the package). */
export const DEFAULT_CONFIG_FILE = resolve(PACKAGE_ROOT, 'config/keyway.yaml')

/** Environment variables that name a setting directly, besides the `KEYWAY_SECTION_KEY` form. */
export const ENV_ALIASES: Readonly<Record<string, string>> = {
  KEYWAY_GATEWAY: 'sidecar.gateways',
  KEYWAY_CA: 'sidecar.ca',
  KEYWAY_CONTROL: 'sidecar.control',
  KEYWAY_TOKEN_FILE: 'sidecar.tokenFile',
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Configuration file; else KEYWAY_CONFIG; else the embedded default. */
  file?: string | undefined
  /** The environment (process.env in the CLI). */
  env?: Readonly<Record<string, string | undefined>>
  /** Settings from flags, by dotted path (`gateway.listen`); they win over the environment. */
  overrides?: Readonly<Record<string, string | undefined>>
}

const PATH_KEYS = ['policy', 'credentials', 'state', 'bootstrapPolicy', 'keys.signing', 'keys.jwks', 'gateway.tls.cert', 'gateway.tls.key', 'admin.tls.cert', 'admin.tls.key', 'sidecar.ca', 'sidecar.tokenFile', 'sidecar.runtimeDir', 'postgres.passwordFile']

/** The env variable that overrides a dotted setting path: `gateway.connectTimeout` → `KEYWAY_GATEWAY_CONNECT_TIMEOUT`. */
export function envNameOf(path: string): string {
  return 'KEYWAY_' + path.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

/** Every leaf setting path with its default, for env mapping and `keyway config print`. */
export function settingPaths(): string[] {
  const out: string[] = []
  const walk = (value: unknown, prefix: string): void => {
    if (value && typeof value === 'object' && !Array.isArray(value) && !('host' in value && 'port' in value)) {
      for (const [k, v] of Object.entries(value)) walk(v, prefix ? `${prefix}.${k}` : k)
    } else out.push(prefix)
  }
  walk(configSchema.parse({}), '')
  return out
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.')
  let node = target
  for (const part of parts.slice(0, -1)) {
    const next = node[part]
    if (!next || typeof next !== 'object' || Array.isArray(next)) node[part] = {}
    node = node[part] as Record<string, unknown>
  }
  node[parts[parts.length - 1]!] = value
}

function coerce(path: string, text: string, defaults: Record<string, unknown>): unknown {
  const def = path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], defaults)
  if (Array.isArray(def)) return text.split(',').map((s) => s.trim()).filter(Boolean)
  if (typeof def === 'boolean') return /^(1|true|on|yes)$/i.test(text) ? true : /^(0|false|off|no)$/i.test(text) ? false : text
  if (typeof def === 'number' && /^\d+$/.test(text)) return Number(text)
  return text
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/**
 * Reads, validates and freezes the daemon configuration. Precedence, highest
 * first: flags (`overrides`), environment (`KEYWAY_*`), the file, defaults.
 * Every problem is reported at once with file:line:col, the key and the fix.
 */
export function loadConfig(options: LoadConfigOptions = {}): KeywayConfig {
  const env = options.env ?? {}
  const file = resolve(options.file ?? env.KEYWAY_CONFIG ?? DEFAULT_CONFIG_FILE)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new KeywayError('ERR_CONFIG_IO', `cannot read configuration ${file}: ${(err as Error).message}`, { cause: err })
  }
  const located = parseLocated(text, file)
  if (located.problems.length > 0) throw new DocumentError('ERR_CONFIG_INVALID', located.problems)
  const raw = located.value ?? {}
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DocumentError('ERR_CONFIG_INVALID', [{ file, line: 1, col: 1, key: '', message: 'the configuration must be a mapping of settings' }])
  }
  const input = structuredClone(raw) as Record<string, unknown>
  const defaults = configSchema.parse({}) as unknown as Record<string, unknown>
  const origin = new Map<string, string>()
  const paths = settingPaths()
  const fromEnv: [string, string, string][] = []
  for (const path of paths) {
    const name = envNameOf(path)
    if (env[name] !== undefined) fromEnv.push([path, env[name]!, `environment ${name}`])
  }
  for (const [name, path] of Object.entries(ENV_ALIASES)) {
    if (env[name] !== undefined && env[name] !== '') fromEnv.push([path, env[name]!, `environment ${name}`])
  }
  for (const [path, value] of Object.entries(options.overrides ?? {})) {
    if (value !== undefined) fromEnv.push([path, value, `flag for ${path}`])
  }
  for (const [path, value, source] of fromEnv) {
    setPath(input, path, coerce(path, value, defaults))
    origin.set(path, source)
  }

  const parsed = configSchema.safeParse(input)
  if (!parsed.success) {
    const problems: Problem[] = parsed.error.issues.map((issue) => {
      const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol')
      const keys = issue.code === 'unrecognized_keys' ? issue.keys : []
      const dotted = path.filter((p) => typeof p === 'string').join('.')
      const source = origin.get(dotted)
      if (source) return { file: source, line: 0, col: 0, key: formatPath(path), message: issue.message }
      const at = located.locate(keys.length > 0 ? [...path, keys[0]!] : path)
      const message =
        issue.code === 'unrecognized_keys'
          ? `unknown setting ${keys.map((k) => `"${k}"`).join(', ')}: check the spelling (see docs/configuration.md)`
          : issue.message
      return { file, line: at.line, col: at.col, key: formatPath(keys.length > 0 ? [...path, keys[0]!] : path), message }
    })
    throw new DocumentError('ERR_CONFIG_INVALID', problems)
  }
  const config = parsed.data as ConfigShape
  const base = dirname(file)
  for (const path of PATH_KEYS) {
    const value = path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], config)
    if (typeof value === 'string' && value !== '') {
      const fromEnvOrFlag = origin.has(path)
      setPath(config as unknown as Record<string, unknown>, path, resolve(fromEnvOrFlag ? process.cwd() : base, value))
    }
  }
  return deepFreeze({ ...config, file })
}
