import { COMMANDS, runCli, type CliIo } from './cli/index.js'

const argv = process.argv.slice(2)
const daemon = argv[0] === 'gateway' || argv[0] === 'listen'
let stop: AbortController | undefined
let reload: (() => void) | undefined
let hupPending = false
function stopController(): AbortController {
  if (!stop) {
    const controller = new AbortController()
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => controller.abort(sig))
    stop = controller
  }
  return stop
}

// A daemon must not die of a signal that arrives while it starts (as PID 1 in
// a container, or from a config reloader): SIGTERM is remembered and honoured
// once started, SIGHUP is held until the daemon can reload.
if (daemon) {
  stopController()
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
  ...(process.argv[1] === undefined ? {} : { script: process.argv[1] }),
  // Signal handlers are installed only by the long-running commands that ask
  // for them, so a short command still dies on SIGTERM as usual.
  get stopSignal() {
    return stopController().signal
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
