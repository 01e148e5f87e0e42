/**
 * Documentation tooling, not a benchmark: takes the screenshots of the web
 * Admin UI that docs/admin-ui.md shows (docs/admin-ui/*.png), from a
 * throwaway setup with example data, in headless Debian chromium.
 *
 *   npm run docs:screenshots
 *
 * Never part of the test run; run it again after changing a page.
 */
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { chromium } from 'playwright-core'
import {
  addResource,
  adminContextFromConfig,
  createRole,
  createService,
  createUser,
  deleteRole,
  grantAccess,
  grantRole,
  initSetup,
  removeResource,
} from '../src/admin/index.js'
import { AdminServer, FileAdminBackend, type ListedSession } from '../src/admin-api/index.js'
import { LoginLimiter } from '../src/auth/index.js'
import { systemClock } from '../src/clock.js'
import { loadConfig } from '../src/config/index.js'
import { KeywayError } from '../src/errors.js'
import { PACKAGE_ROOT } from '../src/package.js'

const OUT = join(PACKAGE_ROOT, 'docs', 'admin-ui')
const PASSWORD = 'screenshots only'

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-screens-'))
  try {
    await initSetup(dir, { clock: systemClock })
    const ctx = adminContextFromConfig(loadConfig({ file: join(dir, 'keyway.yaml'), env: {} }), systemClock)
    await removeResource(ctx, 'example-postgres', { force: true })
    await deleteRole(ctx, 'example', { force: true })
    const resources: [string, string, string, string][] = [
      ['warehouse', 'datasource', 'postgres', 'warehouse.internal:5432'],
      ['orders-db', 'datasource', 'mysql', 'orders.internal:3306'],
      ['cache', 'datasource', 'redis', 'cache.internal:6379'],
      ['bastion', 'server', 'ssh', '10.0.4.2:22'],
      ['k8s-prod', 'cluster', 'k8s', 'k8s.internal:6443'],
      ['grafana', 'website', 'http', 'grafana.internal:3000'],
      ['aws-prod', 'cloud', 'aws', 'aws-proxy.internal:443'],
    ]
    for (const [name, kind, type, address] of resources) await addResource(ctx, { name, kind, type, address })
    await createRole(ctx, 'etl')
    await grantRole(ctx, 'etl', 'warehouse')
    await grantRole(ctx, 'etl', 'orders-db')
    await createRole(ctx, 'ops')
    await grantRole(ctx, 'ops', 'bastion')
    await grantRole(ctx, 'ops', 'k8s-prod')
    const nightly = await createService(ctx, 'nightly-etl', { role: 'etl' })
    const bi = await createService(ctx, 'bi-dashboards')
    await createService(ctx, 'notebooks')
    await grantAccess(ctx, 'bi-dashboards', 'warehouse')
    await grantAccess(ctx, 'bi-dashboards', 'cache', { forMs: 8 * 3_600_000 })
    await createUser(ctx, 'admin@example.com', { password: PASSWORD, admin: true })
    const dana = await createUser(ctx, 'dana@example.com', { password: PASSWORD })
    // The Sessions page needs live sessions: as a PostgreSQL store's feed would answer them, from two gateways.
    const started = Date.now()
    const live: ListedSession[] = [
      { id: '3f9a1c0e7b2d.kQ2v8Zr1xW4m', account: { id: nightly.account.id, name: 'nightly-etl', type: 'service' }, resource: 'warehouse', startedAt: started - 47 * 60_000, bytesIn: 184_320, bytesOut: 96_468_992, gateway: 'keyway-gateway-7d9c-a' },
      { id: '3f9a1c0e7b2d.Tn5pYc0aLs9e', account: { id: nightly.account.id, name: 'nightly-etl', type: 'service' }, resource: 'orders-db', startedAt: started - 12 * 60_000, bytesIn: 20_480, bytesOut: 5_347_737, gateway: 'keyway-gateway-7d9c-a' },
      { id: 'b81e44d20c5a.Hd3uQw7eRt1y', account: { id: bi.account.id, name: 'bi-dashboards', type: 'service' }, resource: 'warehouse', startedAt: started - 3 * 60_000, bytesIn: 4_096, bytesOut: 1_258_291, gateway: 'keyway-gateway-7d9c-b' },
      { id: 'b81e44d20c5a.Zx8cVb2nMa6q', account: { id: dana.id, name: 'dana@example.com', type: 'user' }, resource: 'cache', startedAt: started - 40_000, bytesIn: 812, bytesOut: 2_960, gateway: 'keyway-gateway-7d9c-b' },
    ]
    const server = new AdminServer({
      host: '127.0.0.1',
      port: 0,
      backend: new FileAdminBackend(ctx),
      clock: systemClock,
      logger: pino({ level: 'silent' }),
      sessionTtlMs: 3_600_000,
      limiter: new LoginLimiter({ clock: systemClock }),
      verifyToken: async () => {
        throw new KeywayError('ERR_TOKEN_MISSING', 'not used here')
      },
      liveSessions: {
        list: async () => ({ sessions: live, unanswered: [] }),
        end: async () => ({ ended: false, reason: 'not_found' }),
      },
    })
    const at = await server.start()
    const base = `http://127.0.0.1:${at.port}`
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] })
    try {
      mkdirSync(OUT, { recursive: true })
      const page = await (await browser.newContext({ viewport: { width: 1200, height: 760 } })).newPage()
      const shot = async (name: string): Promise<void> => {
        await page.screenshot({ path: join(OUT, `${name}.png`) })
        process.stdout.write(`docs/admin-ui/${name}.png\n`)
      }
      await page.goto(`${base}/signin`)
      await shot('sign-in')
      await page.getByLabel('Email').fill('admin@example.com')
      await page.getByLabel('Password').fill(PASSWORD)
      await page.getByRole('button', { name: 'Sign in' }).click()
      await page.waitForURL(/\/users$/)
      await page.getByText('add service').click()
      await page.getByLabel('Name').fill('ci-pipeline')
      await shot('users')
      await page.getByRole('button', { name: 'create' }).click()
      await page.getByText('Copy this token now').waitFor()
      await shot('service-token-once')
      await page.goto(`${base}/accounts/bi-dashboards?kind=datasource`)
      await shot('account')
      await page.goto(`${base}/roles`)
      await shot('roles')
      await page.goto(`${base}/roles/etl`)
      await shot('role')
      await page.goto(`${base}/resources`)
      await shot('resources')
      await page.goto(`${base}/settings/port-overrides`)
      await page.getByLabel(/^Port overrides/).uncheck()
      await shot('settings-port-overrides')
      await page.goto(`${base}/sessions`)
      await shot('sessions')
    } finally {
      await browser.close()
      await server.close()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
