import { appendFileSync } from 'node:fs'
import t from 'tap'
import { createUser } from '../../src/admin/index.js'
import { ManualClock } from '../../src/clock.js'
import { loadConfig } from '../../src/config/index.js'
import { createLogger } from '../../src/observe/index.js'
import type { CompiledPolicy } from '../../src/policy/index.js'
import { FileStore, openStore, PostgresStore } from '../../src/store/index.js'
import { writeAdminSetup } from '../helpers/cli.js'

const logger = createLogger({ level: 'silent' })

t.test('the file store serves the policy file, edits it with the admin operations, and reloads it', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  const config = loadConfig({ file: setup.configFile, env: {} })
  const clock = new ManualClock()
  const store = openStore(config, { clock, logger })
  t.ok(store instanceof FileStore, 'store: file is the default')
  t.equal(store.kind, 'file')
  const first = await store.start()
  t.equal(first.generation, 1)
  t.same(store.readyDetail(), {})
  t.equal(store.stale(), false)
  const seen: CompiledPolicy[] = []
  store.onChange((p) => seen.push(p))
  await store.admin.createRole('reviewers')
  t.match(setup.policyText(), /name: reviewers/, 'the edit went to the file, as keyway admin writes it')
  t.equal(store.current().roles.has('reviewers'), false, 'the gateway side changes only on reload')
  const r = await store.reload()
  t.ok(r.ok && r.changed)
  t.equal(seen.length, 1)
  t.ok(store.current().roles.has('reviewers'))
  await createUser(store.adminContext(), 'bob@example.com', { password: 'a long enough password' })
  const bob = (await store.admin.policy()).accountByName('bob@example.com')!
  t.match(await store.passwordHashOf(bob.id), /^scrypt\$/)
  await store.close()
  await store.close()
  t.pass('close is idempotent')
})

t.test('store: postgres opens the PostgreSQL store without connecting', async (t) => {
  const setup = await writeAdminSetup(t.testdir())
  appendFileSync(setup.configFile, 'store: postgres\npostgres:\n  connection: postgresql://keyway@127.0.0.1:1/keyway\n')
  const store = openStore(loadConfig({ file: setup.configFile, env: {} }), { clock: new ManualClock(), logger })
  t.ok(store instanceof PostgresStore)
  t.equal(store.kind, 'postgres')
  await store.close()
})
