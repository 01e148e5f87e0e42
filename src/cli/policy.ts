import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { ensurePolicy } from '../admin/index.js'
import { KeywayError } from '../errors.js'
import { compilePolicyText } from '../policy/index.js'
import { parseCommandArgs, println, type Command } from './command.js'
import { loadCliConfig } from './config.js'

const usage = `Usage: keyway policy check [FILE] [--config FILE]

Checks a policy file: YAML syntax, every key, names, addresses, references
between resources, roles and accounts, the No Role rule and port overrides.
Prints "ok" and exits 0 when it is valid; otherwise prints one
"file:line:col: message (key)" line per problem on stderr and exits 1.
Without FILE, checks the policy named by the configuration.

Options:
  -c, --config FILE  daemon configuration (default: KEYWAY_CONFIG, else the
                     embedded config/keyway.yaml)

Example:
  keyway policy check config/policy.yaml`

/** `keyway policy check` */
export const command: Command = {
  name: 'policy',
  summary: 'Check a policy file',
  usage,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {}, usage)
    if (positionals[0] !== 'check' || positionals.length > 2) throw new KeywayError('ERR_USAGE', `expected "keyway policy check [FILE]"\n${usage}`)
    // Problems name the file as it was typed, so editors and people find it.
    let shown = positionals[1]
    if (shown === undefined) {
      const config = loadCliConfig(values.config, io)
      ensurePolicy(config)
      shown = config.policy
    }
    const path = resolve(io.cwd, shown)
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      throw new KeywayError('ERR_POLICY_IO', `cannot read policy ${shown}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
    }
    const policy = compilePolicyText(text, shown)
    println(io.stdout, 'ok')
    println(io.stderr, `${shown}: ${policy.resources.size} resources, ${policy.roles.size} roles, ${policy.accounts.size} accounts`)
    return 0
  },
}
