import t from 'tap'
import { localSessions, type LiveSessionInfo } from '../../src/admin-api/index.js'
import { launchBrowser, newPage, seriousViolations, signIn, startAdminUi } from '../helpers/admin-ui.js'

t.test('Sessions page in a real browser: live sessions listed, "End" ends one through the API; without a gateway it says why', async (t) => {
  const live: LiveSessionInfo[] = [
    { id: 's1', account: { id: 'svc_etl', name: 'etl', type: 'service' }, resource: 'pg', startedAt: Date.UTC(2026, 0, 1, 8, 0, 0), bytesIn: 2048, bytesOut: 3 * 1024 * 1024 },
    { id: 's2', account: { id: 'usr_alice', name: '<script>alert(1)</script>', type: 'user' }, resource: 'web', startedAt: Date.UTC(2026, 0, 1, 9, 0, 0), bytesIn: 10, bytesOut: 20 },
  ]
  const ended: string[] = []
  const ui = await startAdminUi(t, {
    liveSessions: localSessions('gw-test', {
      list: () => live,
      end: (id) => {
        const i = live.findIndex((s) => s.id === id)
        if (i < 0) return undefined
        ended.push(id)
        return live.splice(i, 1)[0]
      },
    }),
  })
  const browser = await launchBrowser(t)
  const { page, problems } = await newPage(t, browser)
  await signIn(page, ui.base)

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sessions' }).click()
  await page.getByRole('heading', { level: 1, name: 'Sessions' }).waitFor()
  const rows = page.getByRole('table', { name: 'Live sessions' }).locator('tbody tr')
  t.equal(await rows.count(), 2)
  t.match(await rows.nth(0).textContent(), /etl\s*service\s*pg\s*2026-01-01 08:00:00 UTC\s*2\.0 KiB \/ 3\.0 MiB\s*gw-test/)
  t.match(await rows.nth(1).textContent(), /<script>alert\(1\)<\/script>/, 'a name with markup renders as text')
  t.same(await seriousViolations(page), [], 'sessions page: no serious or critical accessibility violation')

  await page.getByRole('button', { name: 'End session of etl to pg' }).click()
  t.match(await page.getByRole('status').textContent(), /Session ended/)
  t.same(ended, ['s1'], 'the API ended it')
  t.equal(await rows.count(), 1)
  t.ok(ui.logs.some((l) => /"event":"admin_change"/.test(l) && /"action":"end_session"/.test(l) && /"via":"session"/.test(l)), 'audited')

  // Ended meanwhile (say, by another admin): the error shows on the page, nothing else changes.
  const stale = page.getByRole('button', { name: /^End session of <script>/ })
  live.splice(0, 1)
  await stale.click()
  t.match(await page.getByRole('alert').textContent(), /ERR_NOT_FOUND/)
  t.same(ended, ['s1'])

  // A forged form (no CSRF token) ends nothing.
  live.push({ id: 's3', account: { id: 'svc_etl', name: 'etl', type: 'service' }, resource: 'pg', startedAt: Date.now(), bytesIn: 0, bytesOut: 0 })
  const forged = await page.request.post(`${ui.base}/sessions/s3/end`, { form: { _csrf: 'wrong' } })
  t.equal(forged.status(), 403)
  t.same(ended, ['s1'], 'no CSRF token, no end')

  const alone = await startAdminUi(t)
  const other = await newPage(t, browser)
  await signIn(other.page, alone.base)
  await other.page.goto(`${alone.base}/sessions`)
  t.match(await other.page.getByRole('main').textContent(), /runs without a gateway.*ERR_ADMIN_NO_GATEWAY/s, 'an admin server without a gateway says why there is nothing to list')
  t.same(await seriousViolations(other.page), [], 'no accessibility violation there either')
  t.same(other.problems, [])
  t.same(problems, [], 'no Content-Security-Policy violation or page error')
})
