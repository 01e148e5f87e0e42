import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { loadConfig, readConfiguredFile } from '../config/index.js'
import { KeywayError } from '../errors.js'
import { API_PATHS, LoginResponseSchema, parseApiAnswer } from '../protocol/index.js'
import { GatewayClient } from '../sidecar/index.js'
import { parseCommandArgs, println, type CliIo, type Command } from './command.js'

const usage = `Usage: keyway login --email EMAIL [--password-stdin] [--gateway HOST:PORT[,...]] [--ca FILE] [--config FILE]

Logs a user account in with email and password and prints a short-lived token
(tokens.loginTtl, default 1 h) on stdout, for KEYWAY_TOKEN:

  export KEYWAY_TOKEN=$(keyway login --email ada@example.com)

The password is read from a prompt, or from stdin with --password-stdin (or
when stdin is not a terminal). The gateway and CA come from the flags,
KEYWAY_GATEWAY / KEYWAY_CA, or the configuration's sidecar section.

Options:
  --email EMAIL       the user's email
  --password-stdin    read the password from stdin
  --gateway LIST      gateways to try in order (KEYWAY_GATEWAY, sidecar.gateways)
  --ca FILE           CA certificate of the gateways (KEYWAY_CA, sidecar.ca)
  -c, --config FILE   daemon configuration

Example:
  printf %s "$PASSWORD" | keyway login --email ada@example.com --password-stdin`

async function readPassword(io: CliIo, fromStdin: boolean): Promise<string> {
  const stdin = io.stdin as NodeJS.ReadStream
  if (fromStdin || !stdin.isTTY) {
    const chunks: Buffer[] = []
    for await (const chunk of io.stdin) chunks.push(Buffer.from(chunk as Buffer))
    return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
  }
  io.stderr.write('Password: ')
  // Echo nothing while the password is typed.
  const muted = new Writable({ write: (_chunk, _enc, cb) => cb() })
  const rl = createInterface({ input: stdin, output: muted, terminal: true })
  try {
    return await new Promise<string>((resolve) => rl.question('', resolve))
  } finally {
    rl.close()
    io.stderr.write('\n')
  }
}

/** `keyway login` */
export const command: Command = {
  name: 'login',
  summary: 'Log in as a user',
  usage,
  async run(args, io) {
    const { values } = parseCommandArgs(
      args,
      { email: { type: 'string' }, 'password-stdin': { type: 'boolean' }, gateway: { type: 'string' }, ca: { type: 'string' } },
      usage,
    )
    if (!values.email) throw new KeywayError('ERR_USAGE', `--email is required\n${usage}`)
    const config = loadConfig({ file: values.config, env: io.env, overrides: { 'sidecar.gateways': values.gateway, 'sidecar.ca': values.ca } })
    const ca = readConfiguredFile(config.sidecar.ca, 'gateway CA certificate (sidecar.ca, --ca)')
    const password = await readPassword(io, values['password-stdin'] === true)
    const client = new GatewayClient({
      gateways: config.sidecar.gateways,
      ca,
      servername: config.sidecar.servername,
      connectTimeoutMs: config.sidecar.connectTimeout,
    })
    try {
      const answer = await client.api<unknown>('POST', API_PATHS.login, { token: '', body: { email: values.email, password } })
      if (!('body' in answer)) throw new KeywayError('ERR_INTERNAL', 'unexpected 304 from the gateway')
      const login = parseApiAnswer(LoginResponseSchema, answer.body)
      if (!login) throw new KeywayError('ERR_INTERNAL', 'the gateway answered /v1/login with an unexpected shape')
      println(io.stdout, login.token)
      println(io.stderr, `logged in as ${values.email}; the token expires at ${login.expiresAt}`)
      return 0
    } finally {
      client.close()
    }
  },
}
