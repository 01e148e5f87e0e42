import { accessSync, constants } from 'node:fs'
import { delimiter, isAbsolute, join, relative, sep } from 'node:path'
import type { Writable } from 'node:stream'
import type { CliIo } from './command.js'

/**
 * How a person runs keyway again, as hints should name it: `keyway` when an
 * executable of that name is on PATH; `npx keyway` when this process runs
 * from an installed package; else `node` and the script this process runs
 * (`node bin/keyway.js` in a checkout after `npm ci`).
 * Without `io.script` (a command run in-process), `keyway`.
 */
export function keywayCommand(io: Pick<CliIo, 'env' | 'cwd' | 'script'>): string {
  const script = io.script
  if (script === undefined || script === '') return 'keyway'
  for (const dir of (io.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, 'keyway'), constants.X_OK)
      return 'keyway'
    } catch {
      // Not in this folder.
    }
  }
  if (script.includes(`${sep}node_modules${sep}`)) return 'npx keyway'
  const rel = relative(io.cwd, script)
  const shown = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : script
  return `node ${shellWord(shown)}`
}

/** True when `stream` is a terminal a person reads. */
export function isTerminal(stream: Writable): boolean {
  return (stream as Writable & { isTTY?: boolean }).isTTY === true
}

/** `word` quoted for a POSIX shell when it needs to be. */
export function shellWord(word: string): string {
  return /^[\w./:@%+=,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`
}
