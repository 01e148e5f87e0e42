import { ensurePolicy } from '../admin/index.js'
import { systemClock, type Clock } from '../clock.js'
import { KeywayError } from '../errors.js'
import { explainAccess, loadPolicyFile, parseInstant } from '../policy/index.js'
import { parseCommandArgs, println, type Command } from './command.js'
import { loadCliConfig } from './config.js'
import { createLogger } from '../observe/index.js'
import { openStore } from '../store/index.js'

const usage = `Usage: keyway explain ACCOUNT RESOURCE [--at ISO-8601] [--json] [--config FILE]

Explains whether an account (service name, user email or id) may reach a
resource under the configured policy, and why: the role that grants it, a
direct grant, a temporary grant and until when, or what is missing.
Exits 0 when access is allowed, 1 when it is denied.

Options:
  -c, --config FILE  daemon configuration (default: KEYWAY_CONFIG, else the
                     embedded config/keyway.yaml)
      --at INSTANT   decide at this instant instead of now, with its zone,
                     e.g. 2026-03-01T09:00:00Z (to check when temporary access ends)
      --json         print {"allow", "code", "at", "lines"} as JSON

Example:
  keyway explain etl-nightly warehouse --at 2026-03-01T09:00:00Z`

/** `keyway explain` with an injected clock. */
export function createExplainCommand(clock: Clock): Command {
  return {
    name: 'explain',
    summary: 'Explain whether an account may reach a resource, and why',
    usage,
    async run(args, io) {
      const { values, positionals } = parseCommandArgs(args, { at: { type: 'string' }, json: { type: 'boolean' } }, usage)
      if (positionals.length !== 2) throw new KeywayError('ERR_USAGE', `expected ACCOUNT and RESOURCE, got ${positionals.length} arguments\n${usage}`)
      const [account, resource] = positionals as [string, string]
      let at = clock.now()
      if (values.at !== undefined) {
        at = parseInstant(values.at)
        if (Number.isNaN(at)) throw new KeywayError('ERR_USAGE', `--at "${values.at}" is not an ISO-8601 instant with a zone, e.g. 2026-03-01T09:00:00Z`)
      }
      const config = loadCliConfig(values.config, io)
      let policy
      if (config.store === 'postgres') {
        const store = openStore(config, { clock, logger: createLogger({ level: 'warn', destination: io.stderr as never }) })
        try {
          policy = await store.admin.policy()
        } finally {
          await store.close()
        }
      } else {
        ensurePolicy(config)
        policy = await loadPolicyFile(config.policy)
      }
      const result = explainAccess(policy, account, resource, at)
      if (values.json === true) {
        println(io.stdout, JSON.stringify({ allow: result.allow, code: result.code ?? null, at: new Date(at).toISOString(), lines: result.lines }, null, 2))
      } else {
        println(io.stdout, result.allow ? 'allow' : `deny (${result.code ?? 'ERR_GRANT_DENIED'})`)
        for (const line of result.lines) println(io.stdout, `  ${line}`)
      }
      return result.allow ? 0 : 1
    },
  }
}

/** `keyway explain` */
export const command: Command = createExplainCommand(systemClock)
