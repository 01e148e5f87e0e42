import { DocumentError, isKeywayError, toKeywayError } from '../errors.js'
import { VERSION } from '../package.js'
import type { CliIo, Command } from './command.js'
import { HelpRequested, println } from './command.js'
import { redact } from './redact.js'

/** Exit codes, documented in the README. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const

/**
 * Dispatches `keyway ARGS` to one of `commands`. Errors print as
 * `keyway: CODE: message` on stderr; usage errors exit 2, others 1.
 */
export async function runCli(argv: string[], commands: readonly Command[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv
  if (name === '--version' || name === '-V' || name === 'version') {
    println(io.stdout, VERSION)
    return EXIT.ok
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    println(io.stdout, mainUsage(commands))
    return name === undefined ? EXIT.usage : EXIT.ok
  }
  const command = commands.find((c) => c.name === name)
  if (!command) {
    println(io.stderr, `keyway: ERR_USAGE: unknown command "${name}"\n\n${mainUsage(commands)}`)
    return EXIT.usage
  }
  try {
    return await command.run(rest, io)
  } catch (err) {
    if (err instanceof HelpRequested) {
      println(io.stdout, err.usage)
      return EXIT.ok
    }
    const e = toKeywayError(err)
    // Messages may echo what the user passed (a token pasted where a path belongs): never print a token.
    const say = (text: string) => println(io.stderr, redact(text, [io.env.KEYWAY_TOKEN]))
    if (e instanceof DocumentError) {
      for (const p of e.problems) say(`${p.file}:${p.line}:${p.col}: ${p.message}${p.key ? ` (${p.key})` : ''}`)
      say(`keyway: ${e.code}: ${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}`)
    } else {
      say(`keyway: ${e.code}: ${e.message}`)
    }
    return isKeywayError(e, 'ERR_USAGE') ? EXIT.usage : EXIT.failure
  }
}

function mainUsage(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length))
  return [
    'Usage: keyway COMMAND [ARGS]   (keyway COMMAND --help for details)',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options: --version, --help',
  ].join('\n')
}
