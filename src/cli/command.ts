import type { Readable, Writable } from 'node:stream'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { KeywayError } from '../errors.js'

/** What a command may touch of the outside world; tests pass their own. */
export interface CliIo {
  readonly stdout: Writable
  readonly stderr: Writable
  readonly stdin: Readable
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd: string
  /** The script this process runs (`process.argv[1]`), for hints that name the command; absent: `keyway`. */
  readonly script?: string
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT); long-running commands drain then. */
  readonly stopSignal?: AbortSignal
  /** Fires on SIGHUP; long-running commands reload then. */
  readonly onReload?: (fn: () => void) => void
}

/** One `keyway` command or command group. */
export interface Command {
  /** The words that select it, e.g. `admin` or `status`. */
  readonly name: string
  /** One line for `keyway --help`. */
  readonly summary: string
  /** Full usage text for `keyway NAME --help`. */
  readonly usage: string
  /** Runs with the arguments after the name; resolves to the exit code. */
  run(args: string[], io: CliIo): Promise<number>
}

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  config: { type: 'string', short: 'c' },
} as const satisfies ParseArgsConfig['options']

/** Thrown by {@link parseCommandArgs} when `--help` was given: the CLI prints `usage` and exits 0. */
export class HelpRequested extends Error {
  readonly usage: string

  constructor(usage: string) {
    super('help requested')
    this.usage = usage
    this.name = 'HelpRequested'
  }
}

/**
 * node:util parseArgs with Keyway's usage errors: an unknown flag or a missing
 * value is ERR_USAGE with the command's usage line.
 */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: O,
  usage: string,
  /** Printed for `--help` instead of `usage` (a longer text). */
  help: string = usage,
) {
  let parsed
  try {
    parsed = parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true })
  } catch (err) {
    if (args.includes('--help') || args.includes('-h')) throw new HelpRequested(help)
    throw new KeywayError('ERR_USAGE', `${describeParseError(err as Error & { code?: string }, { ...COMMON_OPTIONS, ...options })}\n${usage}`, { cause: err })
  }
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequested(help)
  return parsed
}

/** Throws ERR_USAGE unless exactly `count` positionals were given. */
export function expectPositionals(positionals: string[], count: number, usage: string): string[] {
  if (positionals.length !== count) {
    throw new KeywayError('ERR_USAGE', `expected ${count} argument${count === 1 ? '' : 's'}, got ${positionals.length}\n${usage}`)
  }
  return positionals
}

/** Writes a line to a stream. */
export function println(stream: Writable, text = ''): void {
  stream.write(text + '\n')
}

/** Renders rows as an aligned plain-text table (like the seed product's status table). */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

/**
 * node:util's parse errors in Keyway's words (its own text quotes unevenly
 * and suggests `--` even for a mistyped flag): `unknown option --four (did
 * you mean --for?)`, `option --for needs a value`, `option --json takes no
 * value`.
 */
export function describeParseError(err: Error & { code?: string }, options: NonNullable<ParseArgsConfig['options']>): string {
  const quoted = /'(-[^' ]+)/.exec(err.message)?.[1]
  const flag = quoted?.split('=')[0]
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag !== undefined) {
    const near = nearestOption(flag, options)
    return `unknown option ${flag}${near === undefined ? '' : ` (did you mean ${near}?)`}`
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag !== undefined) {
    return /does not take an argument/.test(err.message) ? `option ${flag} takes no value` : `option ${flag} needs a value`
  }
  return err.message
}

/** The known long option closest to `flag` (at most a third of its letters off), as `--name`. */
function nearestOption(flag: string, options: NonNullable<ParseArgsConfig['options']>): string | undefined {
  const word = flag.replace(/^-+/, '')
  let best: string | undefined
  let bestDistance = Infinity
  for (const name of Object.keys(options)) {
    const d = editDistance(word, name)
    if (d < bestDistance) {
      best = name
      bestDistance = d
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? `--${best}` : undefined
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]!
}
