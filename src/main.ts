import { COMMANDS } from './cli/commands.js'
import type { CliIo } from './cli/command.js'
import { runCli } from './cli/run.js'

const argv = process.argv.slice(2)
const daemon = argv[0] === 'gateway' || argv[0] === 'listen'
let stop: AbortController | undefined
let reload: (() => void) | undefined
let hupPending = false
// A daemon must not die of a SIGHUP that arrives while it starts (a config
// reloader may send one then): hold it until the daemon can reload.
if (daemon) {
  process.on('SIGHUP', () => {
    if (reload) reload()
    else hupPending = true
  })
}

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
    if (!daemon) return void process.on('SIGHUP', fn)
    reload = fn
    if (hupPending) {
      hupPending = false
      fn()
    }
  },
}

process.exitCode = await runCli(argv, COMMANDS, io)
