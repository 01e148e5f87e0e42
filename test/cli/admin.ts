import t from 'tap'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { listAccounts, readPolicy } from '../../src/admin/index.js'
import { tokenFingerprint } from '../../src/auth/index.js'
import { ManualClock, systemClock } from '../../src/clock.js'
import { createAdminCommand } from '../../src/cli/admin.js'
import { FIXTURE_POLICY, policyVerifier, runKeyway, writeAdminSetup } from '../helpers/cli.js'

const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/

t.test('services create prints the token alone on stdout, once; the file keeps only its fingerprint', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const r = await runKeyway(['admin', 'services', 'create', 'ci', '--role', 'ops', '--config', setup.configFile])
  t.equal(r.code, 0, r.stderr)
  const token = r.stdout.trimEnd()
  t.equal(r.stdout, `${token}\n`, 'nothing but the token on stdout')
  t.match(token, JWT)
  t.match(r.stderr, /Created service account "ci" \(svc_[0-9a-f]{16}, role ops\)/)
  t.match(r.stderr, tokenFingerprint(token))
  t.match(r.stderr, /cannot be shown again/)
  t.notOk(r.stderr.includes(token), 'the token is not repeated on stderr')
  const text = setup.policyText()
  t.notOk(text.includes(token), 'the token is not in the policy file')
  t.ok(text.includes(tokenFingerprint(token)), 'its fingerprint is')
  const verified = await (await policyVerifier(setup, systemClock)).verify(token)
  t.equal(verified.account.name, 'ci')

  const again = await runKeyway(['admin', 'services', 'create', 'ci', '--config', setup.configFile])
  t.equal(again.code, 1)
  t.equal(again.stdout, '')
  t.match(again.stderr, /^keyway: ERR_ALREADY_EXISTS: /)
})

t.test('--token-file writes the token to a new 0600 file; an existing file is refused before anything is created or rotated', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const dir = dirname(setup.configFile)
  const r = await runKeyway(['admin', 'services', 'create', 'ci', '--role', 'ops', '--config', setup.configFile, '--token-file', 'ci.token'], { cwd: dir })
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout, '', 'nothing on stdout')
  const file = join(dir, 'ci.token')
  const token = readFileSync(file, 'utf8')
  t.match(token, /^[\w-]+\.[\w-]+\.[\w-]+\n$/)
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.match(r.stderr, `is in ${file} (mode 0600)`)
  t.notOk(r.stderr.includes(token.trim()), 'the token is not on stderr')

  // Run twice (a pasted command, shell history): refused, nothing created, the token still there.
  const again = await runKeyway(['admin', 'services', 'create', 'ci2', '--config', setup.configFile, '--token-file', file])
  t.equal(again.code, 1)
  t.match(again.stderr, /^keyway: ERR_FILE_EXISTS: refusing to overwrite/)
  t.equal(readFileSync(file, 'utf8'), token, 'the file is untouched')
  t.notOk(setup.policyText().includes('name: ci2'), 'no account was created')

  const rotated = await runKeyway(['admin', 'tokens', 'rotate', 'ci', '--config', setup.configFile, '--token-file', file])
  t.equal(rotated.code, 1)
  t.match(rotated.stderr, /ERR_FILE_EXISTS/)
  t.equal(readFileSync(file, 'utf8'), token, 'still untouched')
  const before = setup.policyText()
  const rotatedNew = await runKeyway(['admin', 'tokens', 'rotate', 'ci', '--config', setup.configFile, '--token-file', join(dir, 'ci.token.new')])
  t.equal(rotatedNew.code, 0, rotatedNew.stderr)
  t.not(readFileSync(join(dir, 'ci.token.new'), 'utf8'), token, 'a new token in the new file')
  t.not(setup.policyText(), before, 'the rotation landed')

  // A failed creation leaves no empty file behind.
  const clash = await runKeyway(['admin', 'services', 'create', 'ci', '--config', setup.configFile, '--token-file', join(dir, 'clash.token')])
  t.match(clash.stderr, /ERR_ALREADY_EXISTS/)
  t.notOk(existsSync(join(dir, 'clash.token')), 'the empty file is removed')
})

t.test('the configuration comes from --config (relative to the working folder) or KEYWAY_CONFIG', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const byEnv = await runKeyway(['admin', 'roles', 'create', 'from-env'], { env: { KEYWAY_CONFIG: setup.configFile } })
  t.equal(byEnv.code, 0, byEnv.stderr)
  const byFlag = await runKeyway(['admin', 'roles', 'create', 'from-flag', '-c', basename(setup.configFile)], { cwd: dirname(setup.configFile) })
  t.equal(byFlag.code, 0, byFlag.stderr)
  t.match(setup.policyText(), /name: from-env[\s\S]*name: from-flag/)
})

t.test('users list: No Role first, services tagged; --json is the stable array', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  await runKeyway(['admin', 'services', 'create', 'zz-bot', ...c])
  await runKeyway(['admin', 'users', 'create', 'bob@example.com', ...c])
  const r = await runKeyway(['admin', 'users', 'list', ...c])
  t.equal(r.code, 0, r.stderr)
  const lines = r.stdout.trimEnd().split('\n')
  t.match(lines[0], /^NAME\s+TAG\s+ROLES\s+STATUS\s+ID$/)
  t.same(lines.slice(1).map((l) => l.split(/\s{2,}/).slice(0, 3)), [
    ['alice@example.com', 'No Role', 'active'],
    ['bob@example.com', 'No Role', 'active'],
    ['zz-bot', 'service', 'No Role'],
    ['etl', 'service', 'analysts'],
  ])
  const json = await runKeyway(['admin', 'users', 'list', '--json', ...c])
  t.same(JSON.parse(json.stdout), listAccounts((await readPolicy(setup.policyFile)).policy))
  t.same(JSON.parse(json.stdout).map((a: { name: string }) => a.name), ['alice@example.com', 'bob@example.com', 'zz-bot', 'etl'])
})

t.test('users show: resources by kind with their sources, suspension, tokens (never a token)', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const token = (await runKeyway(['admin', 'services', 'create', 'reporter', '--role', 'analysts', ...c])).stdout.trim()
  t.equal((await runKeyway(['admin', 'grant', 'reporter', 'ssh-box', '--for', '2h', ...c])).code, 0)
  await runKeyway(['admin', 'services', 'suspend', 'reporter', ...c])
  const r = await runKeyway(['admin', 'users', 'show', 'reporter', ...c])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^reporter {2}\[service\]\n/)
  t.match(r.stdout, /status: +suspended/)
  t.match(r.stdout, /roles: +analysts/)
  t.match(r.stdout, /datasource \(1\)\n\s+NAME\s+TYPE\s+ADDRESS\s+PORT\s+ACCESS\n\s+pg\s+postgres\s+127\.0\.0\.1:5432\s+16000\s+role analysts\n/)
  t.match(r.stdout, /server \(1\)\n[^\n]+\n\s+ssh-box\s+ssh\s+10\.0\.0\.7:22\s+16050\s+temporary until \d{4}-\d\d-\d\dT[\d:.]+Z\n/)
  t.match(r.stdout, /cluster \(0\)\n/)
  t.match(r.stdout, /website \(1\)\n[^\n]+\n\s+web\s+http\s+127\.0\.0\.1:8080\s+16001\s+role analysts\n/)
  t.match(r.stdout, /cloud \(0\)/)
  t.match(r.stdout, new RegExp(`Tokens \\(1\\)\\n\\s+ID\\s+FINGERPRINT\\s+CREATED\\s+EXPIRES\\n\\s+tok_\\S+\\s+${tokenFingerprint(token)}\\s+\\S+Z\\s+never`))
  t.notOk(r.stdout.includes(token))
  const json = JSON.parse((await runKeyway(['admin', 'users', 'show', 'reporter', '--json', ...c])).stdout)
  t.match(json, { name: 'reporter', suspended: true, resources: { server: [{ name: 'ssh-box', sources: [/^temporary until /] }] } })
  const alice = await runKeyway(['admin', 'users', 'show', 'alice@example.com', ...c])
  t.match(alice.stdout, /roles: +No Role/)
  t.match(alice.stdout, /password: not set/)
  t.match(alice.stdout, /ssh-box\s+ssh\s+10\.0\.0\.7:22\s+16050\s+direct\n/)
  t.notMatch(alice.stdout, /Tokens/)
  const ghost = await runKeyway(['admin', 'users', 'show', 'ghost', ...c])
  t.equal(ghost.code, 1)
  t.match(ghost.stderr, /ERR_NOT_FOUND/)
})

t.test('the No Role rule on the command line, both ways', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const direct = await runKeyway(['admin', 'grant', 'etl', 'ssh-box', ...c])
  t.equal(direct.code, 1)
  t.match(direct.stderr, /^keyway: ERR_DIRECT_GRANT_WITH_ROLE: .*Use --for DURATION for temporary access, remove the role/)
  const temporary = await runKeyway(['admin', 'grant', 'etl', 'ssh-box', '--for', '30m', ...c])
  t.equal(temporary.code, 0, temporary.stderr)
  t.match(temporary.stdout, /etl may reach ssh-box until \d{4}-/)

  const assign = await runKeyway(['admin', 'roles', 'assign', 'alice@example.com', 'analysts', ...c])
  t.equal(assign.code, 1)
  t.match(assign.stderr, /^keyway: ERR_ROLE_WITH_DIRECT_GRANTS: alice@example\.com holds permanent direct grants for ssh-box; .*--drop-direct-grants/)
  const dropped = await runKeyway(['admin', 'roles', 'assign', 'alice@example.com', 'analysts', '--drop-direct-grants', ...c])
  t.equal(dropped.code, 0, dropped.stderr)
  t.match(dropped.stdout, /now holds role analysts; removed direct grants for ssh-box/)
  const { policy } = await readPolicy(setup.policyFile)
  t.same(policy.accountByName('alice@example.com')!.roles, ['analysts'])
  const revoke = await runKeyway(['admin', 'revoke', 'etl', 'ssh-box', ...c])
  t.match(revoke.stdout, /Revoked temporary access to ssh-box from etl/)
  const unassign = await runKeyway(['admin', 'roles', 'unassign', 'alice@example.com', 'analysts', ...c])
  t.match(unassign.stdout, /it now has No Role/)
  t.equal((await runKeyway(['admin', 'grant', 'alice@example.com', 'pg', ...c])).code, 0, 'No Role again: direct grants are fine')
})

t.test('tokens rotate and revoke', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const first = (await runKeyway(['admin', 'services', 'create', 'ci', ...c])).stdout.trim()
  const rotated = await runKeyway(['admin', 'tokens', 'rotate', 'ci', '--grace', '1h', ...c])
  t.equal(rotated.code, 0, rotated.stderr)
  const second = rotated.stdout.trimEnd()
  t.equal(rotated.stdout, `${second}\n`)
  t.match(second, JWT)
  t.match(rotated.stderr, new RegExp(`Old token tok_\\S+ \\(${tokenFingerprint(first)}\\) works until `))
  const verifier = await policyVerifier(setup, systemClock)
  t.ok(await verifier.verify(first))
  const firstId = (await verifier.verify(first)).tokenId
  const revoke = await runKeyway(['admin', 'tokens', 'revoke', 'ci', firstId, ...c])
  t.equal(revoke.stdout, `Revoked ${firstId}.\n`)
  await t.rejects(verifier.verify(first), { code: 'ERR_TOKEN_REVOKED' })
  t.ok(await verifier.verify(second))
  const all = await runKeyway(['admin', 'tokens', 'revoke', 'ci', ...c])
  t.equal(all.code, 0)
  await t.rejects(verifier.verify(second), { code: 'ERR_TOKEN_REVOKED' })
  const badGrace = await runKeyway(['admin', 'tokens', 'rotate', 'ci', '--grace', 'soon', ...c])
  t.equal(badGrace.code, 2)
  t.match(badGrace.stderr, /ERR_USAGE: --grace "soon" is not a duration/)
})

t.test('services suspend, resume, delete', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  t.match((await runKeyway(['admin', 'services', 'suspend', 'etl', ...c])).stdout, /^Suspended etl \(svc_etl\)\.\n$/)
  t.match((await runKeyway(['admin', 'users', 'list', ...c])).stdout, /etl\s+service\s+analysts\s+suspended/)
  t.match((await runKeyway(['admin', 'services', 'resume', 'etl', ...c])).stdout, /^Resumed etl/)
  t.match((await runKeyway(['admin', 'services', 'delete', 'etl', '--yes', ...c])).stdout, /^Deleted service account etl/)
  t.notOk((await readPolicy(setup.policyFile)).policy.accountByName('etl'))
})

t.test('services delete asks on a terminal; without one it needs --yes', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const script = await runKeyway(['admin', 'services', 'delete', 'etl', ...c])
  t.equal(script.code, 2)
  t.match(script.stderr, /^keyway: ERR_USAGE: keyway admin services delete: no terminal to confirm on: add --yes/)
  const no = await runKeyway(['admin', 'services', 'delete', 'etl', ...c], { tty: true, stdin: 'n\n' })
  t.equal(no.code, 1)
  t.match(no.stderr, /Delete service account "etl" with its tokens and grants\? This cannot be undone\. \[y\/N\] Kept etl\./)
  t.ok((await readPolicy(setup.policyFile)).policy.accountByName('etl'), 'kept after no, and without a terminal')
  const yes = await runKeyway(['admin', 'services', 'delete', 'etl', ...c], { tty: true, stdin: 'y\n' })
  t.equal(yes.code, 0)
  t.match(yes.stdout, /^Deleted service account etl/)
  t.notOk((await readPolicy(setup.policyFile)).policy.accountByName('etl'))
})

t.test('grants prune removes only the temporary grants that have expired', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'))
  const commands = [createAdminCommand(clock)]
  t.equal((await runKeyway(['admin', 'grant', 'alice@example.com', 'pg', '--for', '1h', ...c], { commands })).code, 0)
  t.equal((await runKeyway(['admin', 'grant', 'etl', 'pg', '--for', '3h', ...c], { commands })).code, 0)
  t.match((await runKeyway(['admin', 'grants', 'prune', ...c], { commands })).stdout, /^No expired temporary grants\.\n$/)
  clock.advance(2 * 3_600_000)
  const pruned = await runKeyway(['admin', 'grants', 'prune', ...c], { commands })
  t.equal(pruned.code, 0)
  t.equal(pruned.stdout, "Removed alice@example.com's temporary grant for pg (expired 2026-01-01T01:00:00Z).\n")
  const text = readFileSync(setup.policyFile, 'utf8')
  t.notMatch(text, /2026-01-01T01:00:00Z/, 'the expired grant is gone from the file')
  t.match(text, /2026-01-01T03:00:00Z/, 'the running one stays')
})

t.test('users create and set-password read the password from stdin', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const created = await runKeyway(['admin', 'users', 'create', 'bob@example.com', '--password-stdin', ...c], { stdin: 'a long password\n' })
  t.equal(created.code, 0, created.stderr)
  const { verifyPassword } = await import('../../src/auth/index.js')
  const { readCredentials } = await import('../../src/credentials/index.js')
  const bobId = (await readPolicy(setup.policyFile)).policy.accountByName('bob@example.com')!.id
  const hashOf = async () => (await readCredentials(join(dirname(setup.policyFile), 'credentials.yaml'))).credentials.get(bobId)!.passwordHash!
  let hash = await hashOf()
  t.ok(await verifyPassword('a long password', hash), 'one trailing newline is not part of the password')
  const set = await runKeyway(['admin', 'users', 'set-password', 'bob@example.com', '--password-stdin', ...c], { stdin: 'another password' })
  t.equal(set.code, 0, set.stderr)
  hash = await hashOf()
  t.ok(await verifyPassword('another password', hash))
  t.notOk(setup.policyText().includes('another password'))
  const noTty = await runKeyway(['admin', 'users', 'set-password', 'bob@example.com', ...c])
  t.equal(noTty.code, 2)
  t.match(noTty.stderr, /--password-stdin/)
  const empty = await runKeyway(['admin', 'users', 'set-password', 'bob@example.com', '--password-stdin', ...c], { stdin: '' })
  t.equal(empty.code, 2)
})

t.test('users create --admin --password-stdin bootstraps an admin: the flag and the hash go to the credentials file, 0600', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const r = await runKeyway(['admin', 'users', 'create', 'root@example.com', '--admin', '--password-stdin', ...c], { stdin: 'a long password\n' })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^Created admin user root@example\.com \(usr_/)
  const { readCredentials } = await import('../../src/credentials/index.js')
  const { statSync } = await import('node:fs')
  const file = join(dirname(setup.policyFile), 'credentials.yaml')
  const id = (await readPolicy(setup.policyFile)).policy.accountByName('root@example.com')!.id
  const creds = (await readCredentials(file)).credentials.get(id)
  t.equal(creds?.admin, true)
  t.match(creds?.passwordHash, /^scrypt\$/)
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.notOk(setup.policyText().includes('admin: true'), 'the admin flag is not in the policy')
  const plain = await runKeyway(['admin', 'users', 'create', 'bob@example.com', '--password-stdin', ...c], { stdin: 'a long password\n' })
  t.equal(plain.code, 0, plain.stderr)
  const bobId = (await readPolicy(setup.policyFile)).policy.accountByName('bob@example.com')!.id
  t.equal((await readCredentials(file)).credentials.get(bobId)?.admin, undefined, 'without --admin, no admin flag')
})

t.test('resources add writes the assigned port; list; remove', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const add = await runKeyway(['admin', 'resources', 'add', 'mysql', '--kind', 'datasource', '--type', 'mysql', '--address', 'db.internal:3306', ...c])
  t.equal(add.code, 0, add.stderr)
  t.match(add.stdout, /Added resource mysql, local port 16002 \(assigned from the range and written to the policy\)/)
  t.match(setup.policyText(), /name: mysql\n[\s\S]*?portOverride: 16002/)
  const missing = await runKeyway(['admin', 'resources', 'add', 'x', '--kind', 'server', ...c])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /--type is required/)
  const badPort = await runKeyway(['admin', 'resources', 'add', 'x', '--kind', 'server', '--type', 'ssh', '--address', 'h:22', '--port-override', 'abc', ...c])
  t.equal(badPort.code, 2)
  t.match(badPort.stderr, /--port-override "abc" is not a port number/)
  const list = await runKeyway(['admin', 'resources', 'list', ...c])
  t.match(list.stdout, /^NAME\s+KIND\s+TYPE\s+ADDRESS\s+PORT\s+UPSTREAM USER\nmysql\s+datasource\s+mysql\s+db\.internal:3306\s+16002\s+-\n/)
  const json = JSON.parse((await runKeyway(['admin', 'resources', 'list', '--json', ...c])).stdout)
  t.same(json[0], { name: 'mysql', kind: 'datasource', type: 'mysql', address: 'db.internal:3306', portOverride: 16002, username: null })
  const refused = await runKeyway(['admin', 'resources', 'remove', 'pg', ...c])
  t.equal(refused.code, 2)
  t.match(refused.stderr, /still granted by role analysts/)
  const forced = await runKeyway(['admin', 'resources', 'remove', 'pg', '--force', ...c])
  t.match(forced.stdout, /Removed resource pg; removed its grants from role analysts\./)
})

t.test('resources add and set: credentials are references in the policy, checked like every field', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const add = await runKeyway(
    ['admin', 'resources', 'add', 'orders', '--kind', 'datasource', '--type', 'postgres', '--address', 'db.internal:5432', '--port-override', '16100', '--username', 'app', '--password-file', 'secrets/orders', '--database', 'orders', ...c],
  )
  t.equal(add.code, 0, add.stderr)
  const text = setup.policyText()
  t.match(text, new RegExp(`username: app\\n\\s+passwordFile: ${process.cwd()}/secrets/orders\\n\\s+database: orders`), 'the path is written absolute')
  const json = JSON.parse((await runKeyway(['admin', 'resources', 'list', '--json', ...c])).stdout) as { name: string; username: string | null }[]
  t.match(json.find((r) => r.name === 'orders'), { username: 'app' })

  const env = await runKeyway(['admin', 'resources', 'set', 'orders', '--password-env', 'ORDERS_PASSWORD', '--upstream-tls', 'verify-full', '--upstream-ca', '/etc/keyway/db-ca.pem', ...c])
  t.equal(env.code, 0, env.stderr)
  t.match(env.stdout, /Changed resource orders: passwordEnv, upstreamTls, upstreamCa\./)
  t.notMatch(setup.policyText(), /passwordFile/, 'a new reference replaces the other kind')
  t.match(setup.policyText(), /passwordEnv: ORDERS_PASSWORD\n\s+upstreamTls: verify-full\n\s+upstreamCa: \/etc\/keyway\/db-ca.pem/)

  const badTls = await runKeyway(['admin', 'resources', 'set', 'orders', '--upstream-tls', 'prefer', ...c])
  t.equal(badTls.code, 1)
  t.match(badTls.stderr, /upstreamTls "prefer" is not a TLS mode; use one of disable, require, verify-full \(resources\[\d+\]\.upstreamTls\)/)
  t.match(badTls.stderr, /ERR_POLICY_INVALID/)
  const both = await runKeyway(['admin', 'resources', 'set', 'orders', '--password-env', 'A', '--password-file', '/b', ...c])
  t.equal(both.code, 2)
  const notPostgres = await runKeyway(['admin', 'resources', 'add', 'box', '--kind', 'server', '--type', 'ssh', '--address', 'h:22', '--port-override', '16101', '--username', 'root', '--password-env', 'X', ...c])
  t.equal(notPostgres.code, 1)
  t.match(notPostgres.stderr, /only for type postgres/)
  const redis = await runKeyway(['admin', 'resources', 'add', 'cache', '--kind', 'datasource', '--type', 'redis', '--address', 'h:6379', '--port-override', '16102', '--password-file', '/run/secrets/cache', ...c])
  t.equal(redis.code, 0, `redis: a password alone logs in the default user (${redis.stderr})`)
  const redisDb = await runKeyway(['admin', 'resources', 'set', 'cache', '--database', 'zero', ...c])
  t.equal(redisDb.code, 1)
  t.match(redisDb.stderr, /database pins a PostgreSQL database; this resource is type "redis"/)

  const cleared = await runKeyway(['admin', 'resources', 'set', 'orders', '--clear-credentials', ...c])
  t.equal(cleared.code, 0, cleared.stderr)
  t.notMatch(setup.policyText(), /username|passwordEnv|upstreamTls|upstreamCa|database: orders/)
  const nothing = await runKeyway(['admin', 'resources', 'set', 'orders', ...c])
  t.equal(nothing.code, 2)
  t.match(nothing.stderr, /nothing to change/)
  const unknown = await runKeyway(['admin', 'resources', 'set', 'nope', '--username', 'x', ...c])
  t.match(unknown.stderr, /ERR_NOT_FOUND/)
})

t.test('settings: the auto-connect dependency, show', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  t.equal((await runKeyway(['admin', 'settings', 'set', 'auto-connect', 'on', ...c])).code, 0)
  const off = await runKeyway(['admin', 'settings', 'set', 'port-overrides', 'off', ...c])
  t.equal(off.code, 1, 'a failed precondition, not a usage error')
  t.match(off.stderr, /^keyway: ERR_PRECONDITION: auto-connect depends on port overrides and is on/)
  await runKeyway(['admin', 'settings', 'set', 'auto-connect', 'off', ...c])
  await runKeyway(['admin', 'settings', 'set', 'port-overrides', 'off', ...c])
  const on = await runKeyway(['admin', 'settings', 'set', 'auto-connect', 'on', ...c])
  t.equal(on.code, 1)
  t.match(on.stderr, /^keyway: ERR_PRECONDITION: auto-connect depends on port overrides, which are off: run "keyway admin settings set port-overrides on" first/)
  const show = await runKeyway(['admin', 'settings', 'show', ...c])
  t.equal(show.stdout, 'SETTING         VALUE\nport-overrides  off\nauto-connect    off\nport-range      16000-16099\n')
  t.same(JSON.parse((await runKeyway(['admin', 'settings', 'show', '--json', ...c])).stdout), { portOverrides: false, autoConnect: false, portRange: [16000, 16099] })
})

t.test('roles on the command line', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  t.equal((await runKeyway(['admin', 'roles', 'create', 'auditors', ...c])).code, 0)
  t.match((await runKeyway(['admin', 'roles', 'grant', 'auditors', 'pg', ...c])).stdout, /Role auditors now grants pg/)
  t.match((await runKeyway(['admin', 'roles', 'list', ...c])).stdout, /auditors\s+pg\s*\n/)
  t.match((await runKeyway(['admin', 'roles', 'ungrant', 'auditors', 'pg', ...c])).stdout, /no longer grants pg/)
  const held = await runKeyway(['admin', 'roles', 'delete', 'analysts', ...c])
  t.equal(held.code, 2)
  t.match(held.stderr, /held by etl/)
  t.match((await runKeyway(['admin', 'roles', 'delete', 'analysts', '--force', ...c])).stdout, /unassigned from etl/)
})

t.test('usage: help, unknown commands, wrong arguments', async (t) => {
  const help = await runKeyway(['admin', '--help'])
  t.equal(help.code, 0)
  for (const words of ['services create', 'tokens rotate', 'users list', 'roles assign', 'grant ACCOUNT', 'resources add', 'settings set']) {
    t.match(help.stdout, words)
  }
  const unknown = await runKeyway(['admin', 'services', 'explode'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /ERR_USAGE: unknown command "keyway admin services explode"/)
  const none = await runKeyway(['admin'])
  t.equal(none.code, 2)
  const extra = await runKeyway(['admin', 'services', 'create', 'a', 'b'])
  t.equal(extra.code, 2)
  t.match(extra.stderr, /expected 1 argument, got 2\nUsage: keyway admin services create NAME/)
  const flag = await runKeyway(['admin', 'grant', 'a', 'b', '--forever'])
  t.equal(flag.code, 2)
  const dur = await runKeyway(['admin', 'grant', 'a', 'b', '--for', '0s'])
  t.equal(dur.code, 2)
  t.match(dur.stderr, /--for "0s" is not a positive duration/)
})

t.test('a policy the command cannot read reports ERR_POLICY_IO', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const { unlinkSync } = await import('node:fs')
  unlinkSync(setup.policyFile)
  const r = await runKeyway(['admin', 'users', 'list', '--config', setup.configFile])
  t.equal(r.code, 1)
  t.match(r.stderr, /ERR_POLICY_IO/)
  t.ok(readFileSync(setup.configFile))
})

t.test('every comment of the file survives a run of edits all over it', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const runs = [
    ['admin', 'settings', 'set', 'auto-connect', 'on'],
    ['admin', 'resources', 'add', 'cache', '--kind', 'datasource', '--type', 'redis', '--address', '127.0.0.1:6379'],
    ['admin', 'roles', 'grant', 'analysts', 'cache'],
    ['admin', 'roles', 'create', 'auditors'],
    ['admin', 'services', 'suspend', 'etl'],
    ['admin', 'grant', 'alice@example.com', 'pg', '--for', '1h'],
    ['admin', 'services', 'create', 'bot'],
    ['admin', 'revoke', 'alice@example.com', 'pg'],
  ]
  for (const argv of runs) t.equal((await runKeyway([...argv, ...c])).code, 0, argv.join(' '))
  const text = setup.policyText()
  for (const line of FIXTURE_POLICY.split('\n').filter((l) => l.includes('#'))) {
    t.ok(text.includes(line.replace('autoConnect: false', 'autoConnect: true')), `kept: ${line.trim()}`)
  }
  t.match(text, /# Analysts read the warehouse\.\n {2}- name: analysts\n {4}grants: \[pg, web, cache\]\n/, 'a comment stays with its entry')
  t.match(text, /# The nightly ETL job\.\n {2}- id: svc_etl\n/)
})
