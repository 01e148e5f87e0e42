import { COMMANDS } from './cli/commands.js'
import type { CliIo } from './cli/command.js'
import { runCli } from './cli/run.js'

let stop: AbortController | undefined
const io: CliIo = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
  // Signal handlers are installed only by the long-running commands that ask
  // for them, so a short command still dies on SIGTERM as usual.
  get stopSignal() {
    if (!stop) {
      const controller = new AbortController()
      for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => controller.abort(sig))
      stop = controller
    }
    return stop.signal
  },
  onReload: (fn) => {
    process.on('SIGHUP', fn)
  },
}

process.exitCode = await runCli(process.argv.slice(2), COMMANDS, io)
