/** The `keyway` command line: its commands and the runner `main.ts` calls. */
export { COMMANDS } from './commands.js'
export { runCli, EXIT } from './run.js'
export type { CliIo, Command } from './command.js'
