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
  constructor(readonly usage: string) {
    super('help requested')
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
) {
  let parsed
  try {
    parsed = parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true })
  } catch (err) {
    if (args.includes('--help') || args.includes('-h')) throw new HelpRequested(usage)
    throw new KeywayError('ERR_USAGE', `${(err as Error).message}\n${usage}`, { cause: err })
  }
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequested(usage)
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
