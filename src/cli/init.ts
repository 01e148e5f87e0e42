import { resolve } from 'node:path'
import { initSetup } from '../admin/index.js'
import { systemClock, type Clock } from '../clock.js'
import { KeywayError } from '../errors.js'
import { keywayCommand, shellWord } from './hints.js'
import { parseCommandArgs, println, type Command } from './command.js'

const usage = `Usage: keyway init [--dir DIR] [--host NAME]...

Creates a working setup in DIR (default: the current folder):
  keyway.yaml       daemon configuration (gateway on 127.0.0.1:7443, metrics on :9464)
  policy.yaml       an example policy with comments: settings, one resource, one role
  signing-key.json  Ed25519 key that signs service tokens (mode 0600)
  jwks.json         its public key, which verifies tokens
  ca.pem            a development CA that sidecars trust (ca-key.pem: its key, 0600)
  gateway.pem       the gateway's certificate, signed by that CA (gateway-key.pem, 0600)
Refuses to overwrite: if any of these files exists, nothing is written.

Options:
      --dir DIR    where to write (created if missing)
      --host NAME  a name or IP the gateway certificate is valid for; repeat
                   for several (default: localhost and 127.0.0.1)

Example:
  keyway init --dir /etc/keyway --host gateway.internal`

/** `keyway init` with an injected clock. */
export function createInitCommand(clock: Clock): Command {
  return {
    name: 'init',
    summary: 'Create a working setup (config, policy, keys, development CA) in a folder',
    usage,
    async run(args, io) {
      const { values, positionals } = parseCommandArgs(args, { dir: { type: 'string' }, host: { type: 'string', multiple: true } }, usage)
      if (positionals.length > 0) throw new KeywayError('ERR_USAGE', `unexpected argument "${positionals[0]}"; the folder goes in --dir\n${usage}`)
      const dir = resolve(io.cwd, values.dir ?? '.')
      const result = await initSetup(dir, { clock, ...(values.host === undefined ? {} : { hosts: values.host }) })
      for (const file of result.files) println(io.stdout, file)
      // Absolute: the variable must name the same file from any folder the next commands run in.
      const k = keywayCommand(io)
      println(io.stderr, `Created a Keyway setup in ${result.dir}. Next steps:`)
      println(io.stderr, `  export KEYWAY_CONFIG=${shellWord(result.configFile)}`)
      println(io.stderr, `  ${k} policy check                                  # check the example policy`)
      println(io.stderr, `  ${k} admin resources add NAME --kind datasource --type postgres --address HOST:PORT`)
      println(io.stderr, `  ${k} admin services create ci --role example > ci.token   # the token is shown once`)
      println(io.stderr, `  ${k} gateway                                       # run the gateway`)
      println(io.stderr, `  KEYWAY_TOKEN=$(cat ci.token) ${k} listen            # run a sidecar with that token`)
      return 0
    },
  }
}

/** `keyway init` */
export const command: Command = createInitCommand(systemClock)
