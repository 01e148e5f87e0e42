import t from 'tap'
import { launchBrowser, newPage, signIn } from '../helpers/admin-ui.js'
import { pgClient, startStack } from '../helpers/stack.js'

const PASSWORD = 'correct horse battery'

t.test('a click in the Admin UI grants a resource, the running sidecar binds it, and removing it ends the live session', async (t) => {
  const stack = await startStack(t)
  const created = await stack.run(['admin', 'users', 'create', 'admin@example.com', '--admin', '--password-stdin'], {}, `${PASSWORD}\n`)
  t.equal(created.code, 0, created.stderr)
  const admin = String((await stack.gateway.waitLog((l) => l.event === 'admin_listening')).address)
  const base = `http://${admin}`
  const browser = await launchBrowser(t)
  const { page, problems } = await newPage(t, browser)
  await signIn(page, base, 'admin@example.com', PASSWORD)

  // The admin adds a service with No Role and hands its token to a job's sidecar.
  await page.getByText('add service').click()
  await page.getByLabel('Name').fill('ui-job')
  await page.getByRole('button', { name: 'create' }).click()
  const token = await page.getByLabel('Token of ui-job').inputValue()
  const sidecar = await stack.sidecar(token)
  t.equal(sidecar.daemon.lines.filter((l) => l.event === 'resource_bound').length, 0, 'nothing granted yet, nothing bound')

  // A click grants the resource; the sidecar binds it.
  await page.reload()
  await page.getByRole('heading', { level: 1, name: /ui-job/ }).waitFor()
  t.equal(await page.getByRole('link', { name: /Datasources/ }).getAttribute('aria-current'), 'page')
  const clicked = Date.now()
  await page.getByRole('button', { name: 'Grant warehouse' }).click()
  t.match(await page.getByRole('row', { name: /warehouse/ }).textContent(), /Direct grant/)
  // Bounded generously for a loaded machine; the 2 s figure (1 s sync interval) is what the message prints.
  const bound = await sidecar.daemon.waitLog((l) => l.event === 'resource_bound' && l.resource === 'warehouse', 20_000)
  t.pass(`the sidecar bound ${String(bound.address)} ${Date.now() - clicked} ms after the click (bound: 20 s)`)

  const job = await pgClient(t, stack.overridePort)
  t.same((await job.query('SELECT 42 AS answer')).rows, [{ answer: 42 }], 'the job reaches PostgreSQL through the chain')

  // A click removes it; the live session ends.
  const ended = new Promise((resolve) => job.once('end', resolve))
  await page.getByRole('button', { name: 'Remove access to warehouse' }).click()
  const removed = Date.now()
  await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error('the session did not end within 10 s of the removal')), 10_000).unref())])
  t.pass(`the live session ended ${Date.now() - removed} ms after the removal landed (bound: 10 s)`)
  t.match(await stack.gateway.waitLog((l) => l.event === 'session_revoked'), { resource: 'warehouse', code: 'ERR_GRANT_DENIED' })
  t.ok(stack.gateway.lines.some((l) => l.event === 'admin_change' && l.action === 'grant' && l.via === 'session'), 'the grant is audited as an admin_change')
  t.notOk(stack.gateway.stderr().includes(token), 'the token is never logged')
  t.same(problems, [])
})
