import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { systemClock, type Clock } from '../clock.js'
import { readCredentials } from '../credentials/index.js'
import { KeywayError } from '../errors.js'
import { createLogger } from '../observe/index.js'
import { compilePolicyText, parsePolicyText, type PolicyDoc } from '../policy/index.js'
import { formatPolicy, PostgresStore } from '../store/index.js'
import { parseCommandArgs, println, type Command } from './command.js'
import { loadCliConfig } from './config.js'

const usage = `Usage: keyway store migrate|status|import FILE [--credentials FILE]|export [--config FILE]

The PostgreSQL policy store (store: postgres in the configuration; see
docs/deployment.md#high-availability-with-postgresql).

  migrate       create or upgrade the schema to the version this binary
                knows (refuses a newer one it cannot read: ERR_STORE_SCHEMA_NEWER)
  status        schema version and the generation of the last change
  import FILE   replace the stored policy with a policy file, validated
                first; only the rows that differ are written, as one change.
                --credentials FILE also imports a credentials file
                (user password hashes and admin flags)
  export        print the stored policy as YAML in canonical order (export,
                import, export gives the same bytes and the same digest)

Options:
  -c, --config FILE      daemon configuration (default: KEYWAY_CONFIG, else
                         the embedded config/keyway.yaml)
      --credentials FILE with import: the credentials file to import too

Example:
  keyway store migrate --config keyway.yaml && keyway store import policy.yaml --config keyway.yaml`

/** `keyway store` with an injected clock. */
export function createStoreCommand(clock: Clock): Command {
  return {
    name: 'store',
    summary: 'Migrate, import into and export from the PostgreSQL policy store',
    usage,
    async run(args, io) {
      const { values, positionals } = parseCommandArgs(args, { credentials: { type: 'string' } }, usage)
      const [verb, file] = positionals
      const arity: Record<string, number> = { migrate: 1, status: 1, import: 2, export: 1 }
      if (verb === undefined || arity[verb] !== positionals.length) throw new KeywayError('ERR_USAGE', `expected "keyway store migrate|status|import FILE|export"\n${usage}`)
      if (values.credentials !== undefined && verb !== 'import') throw new KeywayError('ERR_USAGE', `--credentials goes with import only\n${usage}`)
      const config = loadCliConfig(values.config, io)
      if (config.store !== 'postgres') {
        throw new KeywayError('ERR_USAGE', `the configuration ${config.file} has store: file; keyway store works on store: postgres (docs/configuration.md)`)
      }
      const store = new PostgresStore({ config, clock, logger: createLogger({ level: 'warn', base: { component: 'store' }, destination: io.stderr as never }) })
      try {
        if (verb === 'migrate') {
          const r = await store.migrate()
          println(io.stdout, r.from === r.to ? `schema version ${r.to}: up to date` : `schema version ${r.to} (was ${r.from})`)
        } else if (verb === 'status') {
          const policy = await store.admin.policy()
          println(io.stdout, `generation ${await store.generation()}: ${policy.resources.size} resources, ${policy.roles.size} roles, ${policy.accounts.size} accounts`)
        } else if (verb === 'export') {
          io.stdout.write(formatPolicy((await store.read()).doc))
        } else {
          const path = resolve(io.cwd, file!)
          let text: string
          try {
            text = await readFile(path, 'utf8')
          } catch (err) {
            throw new KeywayError('ERR_POLICY_IO', `cannot read policy ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
          }
          // Located problems (file:line:col) before anything is written.
          compilePolicyText(text, file!)
          const doc = (parsePolicyText(text, file!).value ?? {}) as PolicyDoc
          const credentials = values.credentials === undefined ? undefined : (await readCredentials(resolve(io.cwd, values.credentials))).credentials
          const r = await store.replace(doc)
          println(io.stdout, r.generation === undefined ? 'unchanged: the store already holds this policy' : `imported: generation ${r.generation}`)
          if (credentials !== undefined) {
            await store.editCredentials((users) => {
              users.clear()
              for (const [id, c] of credentials) users.set(id, c)
            })
            println(io.stdout, `credentials: ${credentials.size} users`)
          }
        }
        return 0
      } finally {
        await store.close()
      }
    },
  }
}

/** `keyway store` */
export const command: Command = createStoreCommand(systemClock)
