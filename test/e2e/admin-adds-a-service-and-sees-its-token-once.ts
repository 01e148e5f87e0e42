import t from 'tap'
import { createUser, readPolicy } from '../../src/admin/index.js'
import { ADMIN_PASSWORD, launchBrowser, newPage, seriousViolations, signIn, startAdminUi } from '../helpers/admin-ui.js'

const JWT = /^[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}$/

t.test('an admin signs in, sees No Role first, adds a service with only a name and reads its token once; a reload never shows it again', async (t) => {
  const ui = await startAdminUi(t)
  await createUser(ui.ctx, '<script>alert(1)</script>@evil.example', { password: ADMIN_PASSWORD })
  const browser = await launchBrowser(t)
  const { page, problems } = await newPage(t, browser)
  let dialogs = 0
  page.on('dialog', (d) => {
    dialogs++
    void d.dismiss()
  })

  // Sign in: a wrong password is said on the form.
  await page.goto(`${ui.base}/users`)
  t.match(page.url(), /\/signin\?next=%2Fusers$/, 'signed out: the sign-in page')
  t.same(await seriousViolations(page), [], 'sign-in page: no serious or critical accessibility violation')
  await page.getByLabel('Email').fill('root@example.com')
  await page.getByLabel('Password').fill('not the password')
  await page.getByRole('button', { name: 'Sign in' }).click()
  t.match(await page.getByRole('alert').textContent(), /email or password is wrong/)
  t.equal(await page.getByLabel('Email').inputValue(), 'root@example.com', 'the email stays in the form')
  await signIn(page, ui.base)

  // The Users page: No Role first, services tagged, names as text.
  const headings = await page.getByRole('heading', { level: 2 }).allTextContents()
  t.match(headings[0], /^No Role/, 'the No Role section comes first')
  t.match(headings[1], /^With a role/)
  const noRole = page.getByRole('table').first()
  t.ok(await noRole.getByRole('link', { name: 'alice@example.com' }).isVisible(), 'alice (No Role) is in the No Role section')
  t.equal(await noRole.getByRole('link', { name: 'etl' }).count(), 0)
  const etlRow = page.getByRole('row', { name: /etl/ })
  t.match(await etlRow.textContent(), /etl\s*service/, 'services carry the service tag')
  t.ok(await page.getByText('<script>alert(1)</script>@evil.example').isVisible(), 'a name holding <script> renders as text')
  t.same(await seriousViolations(page), [], 'Users page: no serious or critical accessibility violation')

  // add service: only a name, then create; by keyboard.
  await page.getByText('add service').focus()
  await page.keyboard.press('Enter')
  await page.getByLabel('Name').fill('nightly-etl')
  await page.getByLabel('Name').press('Enter')
  await page.getByText('Copy this token now').waitFor()
  const token = await page.getByLabel('Token of nightly-etl').inputValue()
  t.match(token, JWT, 'the token is shown')
  t.match(await page.getByRole('alert').textContent(), /shown only once[^]*won't be able to see it again/, 'with a warning')
  await page.getByRole('button', { name: 'Copy' }).click()
  await page.getByRole('button', { name: 'Copied' }).waitFor()
  t.pass('the copy button copies')
  t.same(await seriousViolations(page), [], 'token page: no serious or critical accessibility violation')
  const id = (await readPolicy(ui.setup.policyFile)).policy.accountByName('nightly-etl')!.id
  t.match(page.url(), new RegExp(`/accounts/${id}$`), 'the address bar names the account page')

  // Never again: not after a reload, not on the account page, not on the Users page.
  await page.reload()
  await page.getByRole('heading', { level: 1, name: /nightly-etl/ }).waitFor()
  t.notOk((await page.content()).includes(token), 'a reload does not show the token')
  t.equal(await page.getByText('Copy this token now').count(), 0)
  t.same(await seriousViolations(page), [], 'service account page: no serious or critical accessibility violation')
  await page.goBack().catch(() => undefined)
  t.notOk((await page.content()).includes(token), 'going back does not show it either')
  await page.goto(`${ui.base}/users`)
  t.notOk((await page.content()).includes(token))
  t.ok(await page.getByRole('table').first().getByRole('link', { name: 'nightly-etl' }).isVisible(), 'the new service has No Role')

  // A bad name: the error on the form, the name as text.
  await page.getByText('add service').click()
  await page.getByLabel('Name').fill('<script>alert(2)</script>')
  await page.getByRole('button', { name: 'create' }).click()
  t.match(await page.getByRole('alert').textContent(), /"<script>alert\(2\)<\/script>" is not a valid service name/)
  t.equal(await page.getByLabel('Name').inputValue(), '<script>alert(2)</script>', 'what was typed stays in the form')
  t.equal(dialogs, 0, 'no script from data ever ran')
  t.same(problems, [], 'no Content-Security-Policy violation or page error')
})
