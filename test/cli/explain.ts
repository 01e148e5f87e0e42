import t from 'tap'
import { ManualClock } from '../../src/clock.js'
import { createExplainCommand } from '../../src/cli/explain.js'
import { COMMANDS } from '../../src/cli/commands.js'
import { runKeyway, writeAdminSetup } from '../helpers/cli.js'

t.test('allow exits 0 and says where access comes from; deny exits 1 and says what is missing', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const allow = await runKeyway(['explain', 'etl', 'pg', ...c])
  t.equal(allow.code, 0, allow.stderr)
  t.match(allow.stdout, /^allow\n {2}service account "etl" \(svc_etl\) may reach pg .*\n {2}role "analysts" grants pg\n$/)
  const byId = await runKeyway(['explain', 'usr_alice', 'ssh-box', ...c])
  t.equal(byId.code, 0)
  t.match(byId.stdout, /direct grant/)
  const deny = await runKeyway(['explain', 'etl', 'ssh-box', ...c])
  t.equal(deny.code, 1)
  t.match(deny.stdout, /^deny \(ERR_GRANT_DENIED\)\n/)
  const unknown = await runKeyway(['explain', 'ghost', 'pg', ...c])
  t.equal(unknown.code, 1)
  t.match(unknown.stdout, /^deny \(ERR_ACCOUNT_UNKNOWN\)/)
  const json = JSON.parse((await runKeyway(['explain', 'etl', 'pg', '--json', ...c])).stdout)
  t.match(json, { allow: true, code: null, lines: [/may reach pg/, /role "analysts"/] })
})

t.test('temporary access: allowed before its end, expired after, checked with --at', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const grant = await runKeyway(['admin', 'grant', 'etl', 'ssh-box', '--for', '1h', ...c])
  t.equal(grant.code, 0, grant.stderr)
  const end = /until (\S+)\.$/.exec(grant.stdout.trim())![1]!
  const endMs = Date.parse(end)
  const during = await runKeyway(['explain', 'etl', 'ssh-box', '--at', new Date(endMs - 60_000).toISOString(), ...c])
  t.equal(during.code, 0)
  t.match(during.stdout, `a temporary grant gives ssh-box until ${new Date(endMs).toISOString()}`)
  const after = await runKeyway(['explain', 'etl', 'ssh-box', '--at', end, ...c])
  t.equal(after.code, 1)
  t.match(after.stdout, /^deny \(ERR_GRANT_EXPIRED\)\n[\s\S]*expired at /)
})

t.test('without --at the injected clock decides', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  await runKeyway(['admin', 'grant', 'etl', 'ssh-box', '--for', '1h', ...c])
  const clock = new ManualClock(Date.now())
  const commands = COMMANDS.map((cmd) => (cmd.name === 'explain' ? createExplainCommand(clock) : cmd))
  t.equal((await runKeyway(['explain', 'etl', 'ssh-box', ...c], { commands })).code, 0)
  clock.advance(3600_000 + 1000)
  t.equal((await runKeyway(['explain', 'etl', 'ssh-box', ...c], { commands })).code, 1)
})

t.test('usage errors exit 2', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const c = ['--config', setup.configFile]
  const badAt = await runKeyway(['explain', 'etl', 'pg', '--at', 'tomorrow', ...c])
  t.equal(badAt.code, 2)
  t.match(badAt.stderr, /--at "tomorrow" is not an ISO-8601 instant/)
  t.equal((await runKeyway(['explain', 'etl', ...c])).code, 2)
  const help = await runKeyway(['explain', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /Exits 0 when access is allowed, 1 when it is denied/)
})
