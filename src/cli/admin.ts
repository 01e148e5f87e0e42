import type { ParseArgsConfig } from 'node:util'
import {
  addResource,
  adminContextFromConfig,
  assignRole,
  createRole,
  createService,
  createUser,
  deleteRole,
  deleteService,
  DEFAULT_ROTATION_GRACE_MS,
  grantAccess,
  grantRole,
  listAccounts,
  listResources,
  listRoles,
  migratePasswords,
  pruneGrants,
  readCredentialsOf,
  readPolicyOf,
  removeResource,
  resumeService,
  revokeAccess,
  revokeTokens,
  rotateToken,
  setPassword,
  setResource,
  setSetting,
  showAccount,
  showSettings,
  suspendService,
  ungrantRole,
  unassignRole,
  type AccountView,
  type AdminContext,
  type ResourceCredentialOptions,
} from '../admin/index.js'
import { parseDuration, systemClock, type Clock } from '../clock.js'
import { KeywayError } from '../errors.js'
import { RESOURCE_KINDS } from '../policy/index.js'
import { formatTable, parseCommandArgs, println, type CliIo, type Command } from './command.js'
import { loadCliConfig } from './config.js'
import { isTerminal, keywayCommand } from './hints.js'
import { loadConfig } from '../config/index.js'
import { runAdminServer } from '../daemon.js'
import { createTokenFile, type TokenFile } from './token-file.js'
import { createLogger } from '../observe/index.js'
import { openStore, type KeywayStore } from '../store/index.js'

type Options = NonNullable<ParseArgsConfig['options']>
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>

/** What a subcommand runs with. */
interface Env {
  readonly io: CliIo
  readonly clock: Clock
  /** The admin context of the configuration (`--config`, KEYWAY_CONFIG or the default). */
  ctx(): AdminContext
}

/** One `keyway admin NOUN VERB`. */
interface Subcommand {
  /** `services create`, or `grant` for the verbs without a noun. */
  readonly words: string
  /** Arguments after the words, for the usage text. */
  readonly args: string
  readonly summary: string
  /** Each flag of `options` as shown in help (`--for DURATION`), with what it does. */
  readonly flags: Readonly<Record<string, string>>
  /** One command line that works, for help. */
  readonly example: string
  readonly options: Options
  /** Positional count: exact, or [min, max]. */
  readonly positionals: number | readonly [number, number]
  run(positionals: string[], values: Values, env: Env): Promise<number>
}

const JSON_FLAG = { json: { type: 'boolean' } } as const

const CREDENTIAL_ARGS = '[--username USER (--password-file PATH | --password-env VAR) [--database NAME] [--upstream-tls require|verify-full [--upstream-ca PATH]]]'
const RESOURCES_ADD_USAGE = `Usage: keyway admin resources add NAME --kind KIND --type TYPE --address HOST:PORT [--port-override PORT] ${CREDENTIAL_ARGS} [--config FILE]`
const CREDENTIAL_FLAGS = {
  username: { type: 'string' },
  'password-file': { type: 'string' },
  'password-env': { type: 'string' },
  database: { type: 'string' },
  'upstream-tls': { type: 'string' },
  'upstream-ca': { type: 'string' },
} as const
/** Help lines of {@link CREDENTIAL_FLAGS}. */
const CREDENTIAL_HELP = {
  '--username USER': 'the database user the gateway logs in as (the job never holds its password); for redis an ACL user, or none: the default user',
  '--password-file PATH': 'a file on the gateway holding that user\'s password (e.g. a mounted Kubernetes Secret)',
  '--password-env VAR': 'or: an environment variable of the gateway process holding it',
  '--database NAME': 'postgres only: always log in to this database (default: the one the client asks for)',
  '--upstream-tls MODE': 'TLS from the gateway to the database: disable, require or verify-full',
  '--upstream-ca PATH': 'the CA file for verify-full (default: the system CAs)',
} as const

/** The credential flags given, as {@link ResourceCredentialOptions}. */
function credentialOptions(values: Values): ResourceCredentialOptions {
  const out: Record<string, string> = {}
  const map = { username: 'username', 'password-file': 'passwordFile', 'password-env': 'passwordEnv', database: 'database', 'upstream-tls': 'upstreamTls', 'upstream-ca': 'upstreamCa' } as const
  for (const [flag, key] of Object.entries(map)) {
    const v = values[flag]
    if (typeof v === 'string') out[key] = v
  }
  return out
}

const SUBCOMMANDS: readonly Subcommand[] = [
  {
    words: 'services create',
    args: 'NAME [--role ROLE] [--expires DURATION] [--token-file PATH]',
    summary: 'Create a service account; prints its token once, alone on stdout (or writes it to a new 0600 file)',
    flags: { '--role ROLE': 'the role to assign (its grants apply; admin grant is then refused, use --for)', '--expires DURATION': 'the token expires after this long (default: never)', '--token-file PATH': 'write the token to this new file (mode 0600; an existing file is refused) instead of stdout' },
    example: 'keyway admin services create etl-nightly --role etl > etl-nightly.token',
    options: { role: { type: 'string' }, expires: { type: 'string' }, 'token-file': { type: 'string' } },
    positionals: 1,
    async run([name], values, env) {
      const expiresInMs = durationFlag(values, 'expires')
      const file = await tokenFileFlag(values, env)
      const created = await withTokenFile(file, () =>
        createService(env.ctx(), name!, {
          ...(typeof values.role === 'string' ? { role: values.role } : {}),
          ...(expiresInMs === undefined ? {} : { expiresInMs }),
        }),
      )
      const { account, issued } = created
      await deliverToken(file, issued.token, env)
      const roles = account.roles.length > 0 ? `role ${account.roles.join(', ')}` : 'No Role'
      println(env.io.stderr, `Created service account "${account.name}" (${account.id}, ${roles}).`)
      println(env.io.stderr, `Its token ${issued.tokenId} (${issued.fingerprint})${expiryNote(issued.expiresAt)} ${whereToken(file, env.io)}: it cannot be shown again.`)
      const k = keywayCommand(env.io)
      // A direct grant is refused for an account with a role: its access comes from the role, or is temporary.
      if (account.roles.length > 0) {
        println(env.io.stderr, `Grant access: ${k} admin roles grant ${account.roles[0]} RESOURCE (every holder inherits it), or temporary access: ${k} admin grant ${account.name} RESOURCE --for 2h`)
      } else println(env.io.stderr, `Grant access: ${k} admin grant ${account.name} RESOURCE, or ${k} admin roles assign ${account.name} ROLE`)
      println(env.io.stderr, `Use it: KEYWAY_TOKEN=<token> ${k} listen   (or a file named by sidecar.tokenFile)`)
      return 0
    },
  },
  {
    words: 'services suspend',
    args: 'NAME',
    summary: 'Suspend a service account: it keeps tokens and grants but reaches nothing',
    flags: {},
    example: 'keyway admin services suspend etl-nightly',
    options: {},
    positionals: 1,
    async run([name], _values, env) {
      const r = await suspendService(env.ctx(), name!)
      println(env.io.stdout, r.changed ? `Suspended ${name} (${r.id}).` : `${name} was already suspended.`)
      return 0
    },
  },
  {
    words: 'services resume',
    args: 'NAME',
    summary: 'Lift a suspension',
    flags: {},
    example: 'keyway admin services resume etl-nightly',
    options: {},
    positionals: 1,
    async run([name], _values, env) {
      const r = await resumeService(env.ctx(), name!)
      println(env.io.stdout, r.changed ? `Resumed ${name} (${r.id}).` : `${name} was not suspended.`)
      return 0
    },
  },
  {
    words: 'services delete',
    args: 'NAME [--yes]',
    summary: 'Delete a service account with its tokens and grants; asks on a terminal, else needs --yes',
    flags: { '--yes': 'delete without asking (scripts; required when stdin is not a terminal)' },
    example: 'keyway admin services delete etl-nightly --yes',
    options: { yes: { type: 'boolean' } },
    positionals: 1,
    async run([name], values, env) {
      if (values.yes !== true) {
        const answer = await confirm(env.io, `Delete service account "${name}" with its tokens and grants? This cannot be undone. [y/N] `)
        if (answer === undefined) throw new KeywayError('ERR_USAGE', `keyway admin services delete: no terminal to confirm on: add --yes to delete "${name}"`)
        if (!answer) {
          println(env.io.stderr, `Kept ${name}.`)
          return 1
        }
      }
      const r = await deleteService(env.ctx(), name!)
      println(env.io.stdout, `Deleted service account ${r.name} (${r.id}); its tokens stop working when the gateway reloads.`)
      return 0
    },
  },
  {
    words: 'tokens rotate',
    args: 'NAME [--grace DURATION] [--expires DURATION] [--token-file PATH]',
    summary: 'Issue a new token (printed once, alone on stdout, or written to a new 0600 file); old ones end after the grace (default 24h)',
    flags: { '--grace DURATION': 'old tokens keep working this long (default 24h; 0 revokes them now)', '--expires DURATION': 'the new token expires after this long', '--token-file PATH': 'write the token to this new file (mode 0600; an existing file is refused) instead of stdout' },
    example: 'keyway admin tokens rotate etl-nightly --grace 2m > etl-nightly.token',
    options: { grace: { type: 'string' }, expires: { type: 'string' }, 'token-file': { type: 'string' } },
    positionals: 1,
    async run([name], values, env) {
      const graceMs = durationFlag(values, 'grace', true) ?? DEFAULT_ROTATION_GRACE_MS
      const expiresInMs = durationFlag(values, 'expires')
      const file = await tokenFileFlag(values, env)
      const r = await withTokenFile(file, () => rotateToken(env.ctx(), name!, { graceMs, ...(expiresInMs === undefined ? {} : { expiresInMs }) }))
      await deliverToken(file, r.issued.token, env)
      println(env.io.stderr, `New token ${r.issued.tokenId} (${r.issued.fingerprint})${expiryNote(r.issued.expiresAt)} for ${r.account.name} ${whereToken(file, env.io)}: it cannot be shown again.`)
      for (const old of r.retiring) println(env.io.stderr, `Old token ${old.id} (${old.fingerprint}) works until ${old.expires}.`)
      for (const id of r.removed) println(env.io.stderr, `Removed token ${id}${graceMs === 0 ? ' (revoked)' : ' (expired)'}.`)
      return 0
    },
  },
  {
    words: 'tokens revoke',
    args: 'NAME [TOKEN_ID]',
    summary: 'Revoke one token (by id or fingerprint), or all tokens of the service',
    flags: {},
    example: 'keyway admin tokens revoke etl-nightly TOKEN_ID',
    options: {},
    positionals: [1, 2],
    async run([name, id], _values, env) {
      const r = await revokeTokens(env.ctx(), name!, id)
      if (r.revoked.length === 0) println(env.io.stdout, `${name} had no tokens.`)
      for (const t of r.revoked) println(env.io.stdout, `Revoked ${t}.`)
      return 0
    },
  },
  {
    words: 'serve',
    args: '[--admin HOST:PORT] [--log-level LEVEL]',
    summary: 'Serve the admin API on its own (admin.listen), apart from the gateways; runs until SIGTERM',
    flags: { '--admin HOST:PORT': 'where it listens (default admin.listen, 127.0.0.1:7444)', '--log-level LEVEL': 'fatal, error, warn, info, debug, trace or silent' },
    example: 'keyway admin serve --admin 127.0.0.1:7444 --config /etc/keyway/keyway.yaml',
    options: { admin: { type: 'string' }, 'log-level': { type: 'string' } },
    positionals: 0,
    async run(_args, values, env) {
      const config = loadConfig({
        file: values.config as string | undefined,
        env: env.io.env,
        overrides: { 'admin.listen': values.admin as string | undefined, 'log.level': values['log-level'] as string | undefined },
      })
      return runAdminServer(config, env.io)
    },
  },
  {
    words: 'users list',
    args: '[--json]',
    summary: 'List every account: No Role first; services tagged "service"',
    flags: { '--json': 'print JSON' },
    example: 'keyway admin users list --json',
    options: JSON_FLAG,
    positionals: 0,
    async run(_p, values, env) {
      const { policy } = await readPolicyOf(env.ctx())
      const rows = listAccounts(policy)
      if (values.json === true) {
        println(env.io.stdout, JSON.stringify(rows, null, 2))
        return 0
      }
      if (rows.length === 0) {
        println(env.io.stdout, 'No accounts. Create one: keyway admin services create NAME, or keyway admin users create EMAIL')
        return 0
      }
      println(
        env.io.stdout,
        formatTable(
          ['NAME', 'TAG', 'ROLES', 'STATUS', 'ID'],
          rows.map((r) => [r.name, r.tags.join(','), r.noRole ? 'No Role' : r.roles.join(', '), r.suspended ? 'suspended' : 'active', r.id]),
        ),
      )
      return 0
    },
  },
  {
    words: 'users show',
    args: 'ACCOUNT [--json]',
    summary: 'Show an account: resources by kind with where access comes from, status, tokens',
    flags: { '--json': 'print JSON' },
    example: 'keyway admin users show etl-nightly',
    options: JSON_FLAG,
    positionals: 1,
    async run([ref], values, env) {
      const ctx = env.ctx()
      const view = showAccount(await readPolicyOf(ctx, { accounts: [ref!] }), ref!, env.clock.now(), await readCredentialsOf(ctx))
      if (values.json === true) println(env.io.stdout, JSON.stringify(view, null, 2))
      else println(env.io.stdout, renderAccount(view))
      return 0
    },
  },
  {
    words: 'users create',
    args: 'EMAIL [--admin] [--password-stdin]',
    summary: 'Create a user (a person); --admin lets them use the Admin UI and API; with --password-stdin, set the password read from stdin',
    flags: { '--admin': 'the user may sign in to the Admin UI and API', '--password-stdin': 'read the password from stdin instead of a prompt' },
    example: 'printf %s "$PASSWORD" | keyway admin users create ada@example.com --admin --password-stdin',
    options: { 'password-stdin': { type: 'boolean' }, admin: { type: 'boolean' } },
    positionals: 1,
    async run([email], values, env) {
      const password = values['password-stdin'] === true ? await readPassword(env.io, true) : undefined
      const admin = values.admin === true
      const r = await createUser(env.ctx(), email!, { ...(password === undefined ? {} : { password }), ...(admin ? { admin } : {}) })
      println(
        env.io.stdout,
        `Created ${admin ? 'admin ' : ''}user ${r.email} (${r.id}), No Role${password === undefined ? '; set a password: keyway admin users set-password ' + r.email : ''}.`,
      )
      return 0
    },
  },
  {
    words: 'users set-password',
    args: 'EMAIL [--password-stdin]',
    summary: 'Set a user\'s password (read from stdin, or prompted on a terminal); only its scrypt hash is stored, in the credentials file',
    flags: { '--password-stdin': 'read the password from stdin instead of a prompt' },
    example: 'keyway admin users set-password ada@example.com',
    options: { 'password-stdin': { type: 'boolean' } },
    positionals: 1,
    async run([email], values, env) {
      const password = await readPassword(env.io, values['password-stdin'] === true)
      const r = await setPassword(env.ctx(), email!, password)
      println(env.io.stdout, `Password set for ${r.email}.`)
      return 0
    },
  },
  {
    words: 'users migrate-passwords',
    args: '',
    summary: 'Move password hashes an older policy holds into the credentials file (0600) and out of the policy',
    flags: {},
    example: 'keyway admin users migrate-passwords',
    options: {},
    positionals: 0,
    async run(_args, _values, env) {
      const moved = await migratePasswords(env.ctx())
      println(env.io.stdout, moved.length === 0 ? 'No password hashes in the policy; nothing to move.' : `Moved ${moved.length} password hash(es) to the credentials file: ${moved.join(', ')}.`)
      return 0
    },
  },
  {
    words: 'roles list',
    args: '[--json]',
    summary: 'List roles with their grants and holders',
    flags: { '--json': 'print JSON' },
    example: 'keyway admin roles list',
    options: JSON_FLAG,
    positionals: 0,
    async run(_p, values, env) {
      const rows = listRoles((await readPolicyOf(env.ctx())).policy)
      if (values.json === true) println(env.io.stdout, JSON.stringify(rows, null, 2))
      else if (rows.length === 0) println(env.io.stdout, 'No roles. Create one: keyway admin roles create ROLE')
      else println(env.io.stdout, formatTable(['ROLE', 'GRANTS', 'ACCOUNTS'], rows.map((r) => [r.name, r.grants.join(', '), r.accounts.join(', ')])))
      return 0
    },
  },
  {
    words: 'roles create',
    args: 'ROLE',
    summary: 'Create an empty role',
    flags: {},
    example: 'keyway admin roles create etl',
    options: {},
    positionals: 1,
    async run([role], _values, env) {
      await createRole(env.ctx(), role!)
      println(env.io.stdout, `Created role ${role}. Grant it resources: keyway admin roles grant ${role} RESOURCE`)
      return 0
    },
  },
  {
    words: 'roles delete',
    args: 'ROLE [--force]',
    summary: 'Delete a role; refused while accounts hold it, unless --force unassigns it from them',
    flags: {},
    example: 'keyway admin roles delete etl',
    options: { force: { type: 'boolean' } },
    positionals: 1,
    async run([role], values, env) {
      const r = await deleteRole(env.ctx(), role!, { force: values.force === true })
      println(env.io.stdout, `Deleted role ${role}${r.unassigned.length > 0 ? `; unassigned from ${r.unassigned.join(', ')}` : ''}.`)
      return 0
    },
  },
  {
    words: 'roles grant',
    args: 'ROLE RESOURCE',
    summary: 'Let a role reach a resource (its holders inherit it)',
    flags: {},
    example: 'keyway admin roles grant etl warehouse',
    options: {},
    positionals: 2,
    async run([role, resource], _values, env) {
      const r = await grantRole(env.ctx(), role!, resource!)
      println(env.io.stdout, r.changed ? `Role ${role} now grants ${resource}.` : `Role ${role} already granted ${resource}.`)
      return 0
    },
  },
  {
    words: 'roles ungrant',
    args: 'ROLE RESOURCE',
    summary: 'Remove a resource from a role',
    flags: {},
    example: 'keyway admin roles ungrant etl warehouse',
    options: {},
    positionals: 2,
    async run([role, resource], _values, env) {
      await ungrantRole(env.ctx(), role!, resource!)
      println(env.io.stdout, `Role ${role} no longer grants ${resource}.`)
      return 0
    },
  },
  {
    words: 'roles assign',
    args: 'ACCOUNT ROLE [--drop-direct-grants]',
    summary: 'Give an account a role; refused while it holds permanent direct grants, unless --drop-direct-grants',
    flags: { '--drop-direct-grants': "remove the account's permanent direct grants, which the role would override" },
    example: 'keyway admin roles assign etl-nightly etl',
    options: { 'drop-direct-grants': { type: 'boolean' } },
    positionals: 2,
    async run([account, role], values, env) {
      const r = await assignRole(env.ctx(), account!, role!, { dropDirectGrants: values['drop-direct-grants'] === true })
      if (!r.changed) println(env.io.stdout, `${account} already holds role ${role}.`)
      else println(env.io.stdout, `${account} now holds role ${role}${r.droppedGrants.length > 0 ? `; removed direct grants for ${r.droppedGrants.join(', ')}` : ''}.`)
      return 0
    },
  },
  {
    words: 'roles unassign',
    args: 'ACCOUNT ROLE',
    summary: 'Take a role from an account',
    flags: {},
    example: 'keyway admin roles unassign etl-nightly etl',
    options: {},
    positionals: 2,
    async run([account, role], _values, env) {
      const r = await unassignRole(env.ctx(), account!, role!)
      println(env.io.stdout, `${account} no longer holds role ${role}${r.noRole ? '; it now has No Role' : ''}.`)
      return 0
    },
  },
  {
    words: 'grant',
    args: 'ACCOUNT RESOURCE [--for DURATION]',
    summary: 'Grant direct access (accounts with No Role), or temporary access with --for',
    flags: { '--for DURATION': 'temporary access that ends after DURATION (any account, whatever its roles)' },
    example: 'keyway admin grant etl-nightly warehouse --for 2h',
    options: { for: { type: 'string' } },
    positionals: 2,
    async run([account, resource], values, env) {
      const forMs = durationFlag(values, 'for')
      const r = await grantAccess(env.ctx(), account!, resource!, forMs === undefined ? {} : { forMs })
      if (r.kind === 'temporary') println(env.io.stdout, `${account} may reach ${resource} until ${r.expires}.`)
      else if (forMs !== undefined && !r.changed) println(env.io.stdout, `${account} already holds permanent direct access to ${resource}; nothing changed.`)
      else println(env.io.stdout, r.changed ? `${account} may reach ${resource} (direct grant).` : `${account} already held a direct grant for ${resource}.`)
      return 0
    },
  },
  {
    words: 'grants prune',
    args: '',
    summary: 'Remove the temporary grants that have expired (they grant nothing; the gateway never needs them)',
    flags: {},
    example: 'keyway admin grants prune',
    options: {},
    positionals: 0,
    async run(_p, _values, env) {
      const { pruned } = await pruneGrants(env.ctx())
      if (pruned.length === 0) println(env.io.stdout, 'No expired temporary grants.')
      for (const g of pruned) println(env.io.stdout, `Removed ${g.account}'s temporary grant for ${g.resource} (expired ${g.expires}).`)
      return 0
    },
  },
  {
    words: 'revoke',
    args: 'ACCOUNT RESOURCE',
    summary: 'Remove an account\'s direct and temporary grants for a resource',
    flags: {},
    example: 'keyway admin revoke etl-nightly warehouse',
    options: {},
    positionals: 2,
    async run([account, resource], _values, env) {
      const r = await revokeAccess(env.ctx(), account!, resource!)
      println(env.io.stdout, `Revoked ${r.removed.join(' and ')} access to ${resource} from ${account}.`)
      return 0
    },
  },
  {
    words: 'resources add',
    args: `NAME --kind KIND --type TYPE --address HOST:PORT [--port-override PORT] ${CREDENTIAL_ARGS}`,
    summary: `Add a resource (KIND: ${RESOURCE_KINDS.join(', ')}); an assigned override port is written to the file; --username and a secret reference make the gateway log in upstream`,
    flags: {
      '--kind KIND': 'datasource, server, cluster, website or cloud',
      '--type TYPE': 'its protocol: postgres, mysql, redis, ssh, http, ...',
      '--address HOST:PORT': 'where the gateway reaches it',
      '--port-override PORT': 'the local port sidecars bind (default: assigned from the port range)',
      ...CREDENTIAL_HELP,
    },
    example: 'keyway admin resources add warehouse --kind datasource --type postgres --address 10.0.0.5:5432 --username etl --password-file /run/secrets/warehouse',
    options: { kind: { type: 'string' }, type: { type: 'string' }, address: { type: 'string' }, 'port-override': { type: 'string' }, ...CREDENTIAL_FLAGS },
    positionals: 1,
    async run([name], values, env) {
      const need = (flag: string): string => {
        const v = values[flag]
        if (typeof v !== 'string') throw new KeywayError('ERR_USAGE', `keyway admin resources add: --${flag} is required\n${RESOURCES_ADD_USAGE}`)
        return v
      }
      const portText = values['port-override']
      if (typeof portText === 'string' && !/^\d{1,5}$/.test(portText)) {
        throw new KeywayError('ERR_USAGE', `--port-override "${portText}" is not a port number\n${RESOURCES_ADD_USAGE}`)
      }
      const portOverride = typeof portText === 'string' ? Number(portText) : undefined
      const r = await addResource(env.ctx(), {
        name: name!,
        kind: need('kind'),
        type: need('type'),
        address: need('address'),
        ...(portOverride === undefined ? {} : { portOverride }),
        ...credentialOptions(values),
      })
      const port = r.portOverride === null ? '' : `, local port ${r.portOverride}${r.assigned ? ' (assigned from the range and written to the policy)' : ''}`
      println(env.io.stdout, `Added resource ${r.name}${port}.`)
      return 0
    },
  },
  {
    words: 'resources set',
    args: `NAME [--address HOST:PORT] [--username USER] [--password-file PATH | --password-env VAR] [--database NAME] [--upstream-tls disable|require|verify-full] [--upstream-ca PATH] [--clear-credentials]`,
    summary: 'Change a resource: its address, or the credentials the gateway logs in upstream with (never the secret itself)',
    flags: { '--address HOST:PORT': 'where the gateway reaches it', ...CREDENTIAL_HELP, '--clear-credentials': 'forward bytes blindly again: remove the user and the secret reference' },
    example: 'keyway admin resources set warehouse --password-file /run/secrets/warehouse-v2',
    options: { address: { type: 'string' }, 'clear-credentials': { type: 'boolean' }, ...CREDENTIAL_FLAGS },
    positionals: 1,
    async run([name], values, env) {
      const address = values.address
      const r = await setResource(env.ctx(), name!, {
        ...credentialOptions(values),
        ...(typeof address === 'string' ? { address } : {}),
        ...(values['clear-credentials'] === true ? { clearCredentials: true } : {}),
      })
      println(env.io.stdout, `Changed resource ${r.name}: ${r.changed.join(', ')}.`)
      return 0
    },
  },
  {
    words: 'resources list',
    args: '[--json]',
    summary: 'List resources: name, kind, type, address, override port',
    flags: { '--json': 'print JSON' },
    example: 'keyway admin resources list',
    options: JSON_FLAG,
    positionals: 0,
    async run(_p, values, env) {
      const rows = listResources((await readPolicyOf(env.ctx())).policy)
      if (values.json === true) println(env.io.stdout, JSON.stringify(rows, null, 2))
      else if (rows.length === 0) println(env.io.stdout, 'No resources. Add one: keyway admin resources add NAME --kind KIND --type TYPE --address HOST:PORT')
      else {
        println(
          env.io.stdout,
          formatTable(
            ['NAME', 'KIND', 'TYPE', 'ADDRESS', 'PORT', 'UPSTREAM USER'],
            rows.map((r) => [r.name, r.kind, r.type, r.address, r.portOverride === null ? '-' : String(r.portOverride), r.username ?? '-']),
          ),
        )
      }
      return 0
    },
  },
  {
    words: 'resources remove',
    args: 'NAME [--force]',
    summary: 'Remove a resource; refused while roles or accounts grant it, unless --force removes those grants',
    flags: { '--force': 'also remove the grants of the roles and accounts that name it' },
    example: 'keyway admin resources remove warehouse',
    options: { force: { type: 'boolean' } },
    positionals: 1,
    async run([name], values, env) {
      const r = await removeResource(env.ctx(), name!, { force: values.force === true })
      const from = [...r.roles.map((x) => `role ${x}`), ...r.accounts]
      println(env.io.stdout, `Removed resource ${r.name}${from.length > 0 ? `; removed its grants from ${from.join(', ')}` : ''}.`)
      return 0
    },
  },
  {
    words: 'settings set',
    args: 'port-overrides on|off | auto-connect on|off | port-range LOW-HIGH',
    summary: 'Change a setting (auto-connect depends on port overrides)',
    flags: {},
    example: 'keyway admin settings set port-overrides on',
    options: {},
    positionals: 2,
    async run([name, value], _values, env) {
      const r = await setSetting(env.ctx(), name!, value!)
      println(env.io.stdout, r.changed ? `${name} is now ${value}.` : `${name} was already ${value}.`)
      for (const p of r.pinnedPorts) println(env.io.stdout, `  ${p.resource}: local port ${p.port} (written to the policy)`)
      return 0
    },
  },
  {
    words: 'settings show',
    args: '[--json]',
    summary: 'Show the settings',
    flags: { '--json': 'print JSON' },
    example: 'keyway admin settings show --json',
    options: JSON_FLAG,
    positionals: 0,
    async run(_p, values, env) {
      const s = showSettings((await readPolicyOf(env.ctx())).policy)
      if (values.json === true) println(env.io.stdout, JSON.stringify(s, null, 2))
      else {
        println(
          env.io.stdout,
          formatTable(
            ['SETTING', 'VALUE'],
            [
              ['port-overrides', s.portOverrides ? 'on' : 'off'],
              ['auto-connect', s.autoConnect ? 'on' : 'off'],
              ['port-range', `${s.portRange[0]}-${s.portRange[1]}`],
            ],
          ),
        )
      }
      return 0
    },
  },
]

function subUsage(sub: Subcommand): string {
  return `Usage: keyway admin ${[sub.words, sub.args].filter((w) => w !== '').join(' ')} [--config FILE]`
}

/** `keyway admin NOUN VERB --help`: usage, what it does, its flags and an example. */
function subHelp(sub: Subcommand): string {
  const flags: Array<[string, string]> = [
    ...Object.entries(sub.flags),
    ['-c, --config FILE', 'daemon configuration (default: KEYWAY_CONFIG, else the embedded config/keyway.yaml)'],
    ['-h, --help', 'this text'],
  ]
  const width = Math.max(...flags.map(([f]) => f.length))
  return [subUsage(sub), '', `${sub.summary}.`, '', 'Options:', ...flags.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`), '', 'Example:', `  ${sub.example}`].join('\n')
}

const usage = `Usage: keyway admin NOUN VERB [ARGS] [--config FILE]

Manages the policy file named by the configuration (--config FILE, else
KEYWAY_CONFIG, else the embedded config/keyway.yaml). Every change is locked
against concurrent edits, validated before it is written, written atomically,
and keeps the file's comments and order. The gateway picks it up on reload.
Accounts are named by service name, user email, or id.

Commands:
${SUBCOMMANDS.map((s) => `  ${[s.words, s.args].filter((w) => w !== '').join(' ')}\n      ${s.summary}`).join('\n')}

Durations: 500ms, 30s, 15m, 12h, 7d.
Options:
  -c, --config FILE  daemon configuration
  -h, --help         this text`

/**
 * `keyway admin` with an injected clock (tests pass a ManualClock; the CLI
 * uses the system clock).
 */
export function createAdminCommand(clock: Clock): Command {
  return {
    name: 'admin',
    summary: 'Manage service accounts, users, roles, grants, resources and settings',
    usage,
    async run(args, io) {
      const [noun, verb] = args
      const sub =
        SUBCOMMANDS.find((s) => s.words === `${noun} ${verb}`) ?? SUBCOMMANDS.find((s) => s.words === noun && !s.words.includes(' '))
      if (sub === undefined && (args.includes('--help') || args.includes('-h'))) {
        println(io.stdout, usage)
        return 0
      }
      if (sub === undefined) {
        const what = noun === undefined ? 'missing command' : `unknown command "keyway admin ${[noun, verb].filter((w) => w !== undefined).join(' ')}"`
        throw new KeywayError('ERR_USAGE', `${what}\n\n${usage}`)
      }
      const rest = args.slice(sub.words.split(' ').length)
      const { values, positionals } = parseCommandArgs(rest, sub.options, subUsage(sub), subHelp(sub))
      if (values.help === true) {
        println(io.stdout, subHelp(sub))
        return 0
      }
      const [min, max] = typeof sub.positionals === 'number' ? [sub.positionals, sub.positionals] : sub.positionals
      if (positionals.length < min || positionals.length > max) {
        const expected = min === max ? `${min}` : `${min} to ${max}`
        throw new KeywayError('ERR_USAGE', `keyway admin ${sub.words}: expected ${expected} argument${max === 1 ? '' : 's'}, got ${positionals.length}\n${subUsage(sub)}`)
      }
      let ctx: AdminContext | undefined
      let store: KeywayStore | undefined
      const env: Env = {
        io,
        clock,
        ctx: () => {
          if (ctx !== undefined) return ctx
          const config = loadCliConfig(values.config as string | undefined, io)
          if (config.store === 'postgres') {
            store = openStore(config, { clock, logger: createLogger({ level: 'warn', base: { component: 'admin' }, destination: io.stderr as never }) })
            ctx = store.adminContext()
          } else ctx = adminContextFromConfig(config, clock)
          return ctx
        },
      }
      try {
        return await sub.run(positionals, values as Values, env)
      } finally {
        await store?.close()
      }
    },
  }
}

/** `keyway admin` */
export const command: Command = createAdminCommand(systemClock)

/** A duration flag in ms; ERR_USAGE when it does not parse. Zero only where `zeroOk`. */
function durationFlag(values: Values, flag: string, zeroOk = false): number | undefined {
  const text = values[flag]
  if (typeof text !== 'string') return undefined
  const ms = parseDuration(text)
  if (ms === undefined || (ms === 0 && !zeroOk)) {
    throw new KeywayError('ERR_USAGE', `--${flag} "${text}" is not a${zeroOk ? '' : ' positive'} duration: write e.g. 30m, 12h or 7d`)
  }
  return ms
}

/** Where a token printed alone on stdout went, as a person at the terminal sees it. */

function expiryNote(expiresAt: number): string {
  return expiresAt === Infinity ? '' : `, expiring ${new Date(expiresAt).toISOString()}`
}

/**
 * The password for users create / set-password: all of stdin with one
 * trailing newline removed (`--password-stdin`), or typed on a terminal
 * without echo.
 */
async function readPassword(io: CliIo, fromStdin: boolean): Promise<string> {
  const stdin = io.stdin as CliIo['stdin'] & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown }
  if (fromStdin) {
    const chunks: Buffer[] = []
    for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer))
    const text = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
    if (text === '') throw new KeywayError('ERR_USAGE', '--password-stdin: stdin was empty')
    return text
  }
  if (stdin.isTTY !== true || typeof stdin.setRawMode !== 'function') {
    throw new KeywayError('ERR_USAGE', 'no terminal to prompt for the password: pass it on stdin with --password-stdin')
  }
  const first = await promptHidden(io, stdin as never, 'Password: ')
  const again = await promptHidden(io, stdin as never, 'Repeat password: ')
  if (first !== again) throw new KeywayError('ERR_USAGE', 'the passwords differ')
  return first
}

/**
 * Asks a yes/no question on a terminal: true for y or yes, false for
 * anything else; undefined when stdin is not a terminal (nobody to ask).
 */
async function confirm(io: CliIo, question: string): Promise<boolean | undefined> {
  const stdin = io.stdin as CliIo['stdin'] & { isTTY?: boolean }
  if (stdin.isTTY !== true) return undefined
  io.stderr.write(question)
  const line = await new Promise<string>((resolve) => {
    let text = ''
    const finish = (): void => {
      stdin.off('data', onData)
      stdin.off('end', finish)
      stdin.pause()
      resolve(text)
    }
    const onData = (data: Buffer | string): void => {
      text += data.toString()
      if (text.includes('\n')) finish()
    }
    stdin.on('data', onData)
    stdin.once('end', finish)
    stdin.resume()
  })
  return /^\s*y(es)?\s*$/i.test(line.split('\n')[0]!)
}

function promptHidden(io: CliIo, stdin: NodeJS.ReadStream, prompt: string): Promise<string> {
  io.stderr.write(prompt)
  stdin.setRawMode(true)
  stdin.resume()
  return new Promise((resolve, reject) => {
    let text = ''
    const done = (err?: KeywayError): void => {
      stdin.off('data', onData)
      stdin.setRawMode(false)
      stdin.pause()
      io.stderr.write('\n')
      if (err) reject(err)
      else resolve(text)
    }
    const onData = (data: Buffer): void => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done()
        if (ch === '\u0003' || ch === '\u0004') return done(new KeywayError('ERR_USAGE', 'cancelled'))
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1)
        else text += ch
      }
    }
    stdin.on('data', onData)
  })
}

/** `keyway admin users show` as text. */
function renderAccount(v: AccountView): string {
  const out: string[] = []
  out.push(`${v.name}${v.tags.length > 0 ? `  [${v.tags.join(', ')}]` : ''}`)
  const field = (label: string, value: string): void => {
    out.push(`  ${`${label}:`.padEnd(10)}${value}`)
  }
  field('id', v.id)
  field('type', v.type)
  field('status', v.suspended ? 'suspended (reaches nothing until resumed; resources below apply once resumed)' : 'active')
  field('roles', v.noRole ? 'No Role (access is granted resource by resource)' : v.roles.join(', '))
  if (v.passwordSet !== null) field('password', v.passwordSet ? 'set' : 'not set (cannot log in)')
  out.push('')
  out.push('Resources')
  for (const kind of RESOURCE_KINDS) {
    const items = v.resources[kind]
    out.push(`  ${kind} (${items.length})`)
    if (items.length === 0) continue
    const table = formatTable(
      ['NAME', 'TYPE', 'ADDRESS', 'PORT', 'ACCESS'],
      items.map((r) => [r.name, r.type, r.address, r.portOverride === null ? '-' : String(r.portOverride), r.sources.join('; ')]),
    )
    out.push(...table.split('\n').map((l) => `    ${l}`))
  }
  if (v.expiredGrants.length > 0) {
    out.push('')
    out.push('Expired temporary grants')
    for (const g of v.expiredGrants) out.push(`  ${g.resource}: ended ${g.expired}`)
  }
  if (v.type === 'service') {
    out.push('')
    out.push(`Tokens (${v.tokens.length})`)
    if (v.tokens.length > 0) {
      const table = formatTable(
        ['ID', 'FINGERPRINT', 'CREATED', 'EXPIRES'],
        v.tokens.map((t) => [t.id, t.fingerprint, t.created ?? '-', t.expires === null ? 'never' : `${t.expires}${t.expired ? ' (expired)' : ''}`]),
      )
      out.push(...table.split('\n').map((l) => `  ${l}`))
    }
  }
  return out.join('\n')
}

/** `--token-file PATH`: the file is created (0600, exclusive) before the token is issued, so a refusal loses nothing. */
async function tokenFileFlag(values: Values, env: Env): Promise<TokenFile | undefined> {
  const path = values['token-file']
  if (path === undefined) return undefined
  if (typeof path !== 'string' || path === '') throw new KeywayError('ERR_USAGE', '--token-file needs a path')
  return createTokenFile(path, env.io.cwd)
}

/** Runs `issue`; on failure removes the still-empty token file it would have filled. */
async function withTokenFile<T>(file: TokenFile | undefined, issue: () => Promise<T>): Promise<T> {
  try {
    return await issue()
  } catch (err) {
    await file?.discard()
    throw err
  }
}

/** Writes the token to its file, or alone on stdout. */
async function deliverToken(file: TokenFile | undefined, token: string, env: Env): Promise<void> {
  if (file) await file.write(token)
  else println(env.io.stdout, token)
}

function whereToken(file: TokenFile | undefined, io: CliIo): string {
  if (file) return `is in ${file.path} (mode 0600)`
  return isTerminal(io.stdout) ? 'is printed above: copy it now' : 'went to stdout, not to this terminal: keep what received it'
}
