import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Writable } from 'node:stream'
import { chromium, type Browser, type Page } from 'playwright-core'
import { createUser, type AdminContext } from '../../src/admin/index.js'
import { AdminServer, FileAdminBackend, type AdminServerOptions } from '../../src/admin-api/index.js'
import { LoginLimiter } from '../../src/auth/index.js'
import { ManualClock, systemClock } from '../../src/clock.js'
import { createLogger } from '../../src/observe/index.js'
import { policyVerifier, writeAdminSetup, type AdminSetup } from './cli.js'
import type { Teardown } from './net.js'

/** The password of every admin {@link startAdminUi} creates. */
export const ADMIN_PASSWORD = 'correct horse battery'

/** Debian's chromium (`.ci/run` installs the package); browser downloads are not possible here. */
export const CHROMIUM = '/usr/bin/chromium'

/** An admin listener on 127.0.0.1:0 serving the API and the UI, on the admin test policy. */
export interface AdminUi {
  readonly base: string
  readonly setup: AdminSetup
  readonly ctx: AdminContext
  readonly server: AdminServer
  /** Every log line the server wrote (JSON text). */
  readonly logs: string[]
}

/**
 * Starts an {@link AdminServer} on the fixture policy with two admins,
 * `root@example.com` and `second@example.com`, and `bob@example.com`, who
 * is no admin. `extra` overrides server options (say, `liveSessions`). Closed in teardown.
 */
export async function startAdminUi(t: Teardown & { testdir(): string }, extra: Partial<AdminServerOptions> = {}): Promise<AdminUi> {
  const setup = await writeAdminSetup(t.testdir())
  const ctx = setup.ctx(systemClock)
  await createUser(ctx, 'root@example.com', { password: ADMIN_PASSWORD, admin: true })
  await createUser(ctx, 'second@example.com', { password: ADMIN_PASSWORD, admin: true })
  await createUser(ctx, 'bob@example.com', { password: ADMIN_PASSWORD })
  const logs: string[] = []
  const logger = createLogger({ level: 'info', destination: new Writable({ write(c, _e, cb) { logs.push(String(c)); cb() } }) as never })
  const verifier = await policyVerifier(setup, systemClock)
  const server = new AdminServer({
    host: '127.0.0.1',
    port: 0,
    backend: new FileAdminBackend(ctx),
    clock: systemClock,
    logger,
    sessionTtlMs: 3_600_000,
    limiter: new LoginLimiter({ clock: new ManualClock(0) }),
    verifyToken: (tok) => verifier.verify(tok),
    ...extra,
  })
  t.teardown(() => server.close())
  const at = await server.start()
  return { base: `http://127.0.0.1:${at.port}`, setup, ctx, server, logs }
}

/**
 * Launches headless Debian chromium, closed in teardown. Fails (never skips)
 * when the executable is missing: the browser tests are part of the suite.
 */
export async function launchBrowser(t: Teardown): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the Admin UI browser tests need Debian's chromium package (apt-get install chromium; .ci/run installs it)`)
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
  t.teardown(() => browser.close())
  return browser
}

/**
 * A fresh page in its own browser context (its own cookies), collecting
 * console errors (Content-Security-Policy violations among them), page
 * errors and failed subresources (stylesheet, script, icon) in `problems`.
 */
export async function newPage(t: Teardown, browser: Browser): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  t.teardown(() => context.close().catch(() => undefined))
  const page = await context.newPage()
  // Generous: a loaded 2-core machine; these bound a broken page, they do not measure speed.
  page.setDefaultTimeout(60_000)
  const problems: string[] = []
  page.on('console', (m) => {
    // A page answered with 4xx (a refused form) is logged as a failed load: that is the test's business.
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(m.text())
  })
  page.on('response', (r) => {
    if (r.request().resourceType() !== 'document' && r.status() >= 400) problems.push(`${r.status()} for ${r.url()}`)
  })
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  return { page, problems }
}

/** Signs in through the sign-in page and lands on the Users page. */
export async function signIn(page: Page, base: string, email = 'root@example.com', password = ADMIN_PASSWORD): Promise<void> {
  await page.goto(`${base}/signin`)
  await page.getByLabel('Email').fill(email)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(/\/users$/)
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** One axe-core violation, as the accessibility check reports it. */
export interface AxeViolation {
  id: string
  impact: string | null
  help: string
  nodes: { target: unknown[] }[]
}

/**
 * Runs axe-core inside the page (evaluated through the DevTools protocol, so
 * the page's CSP stays as strict as it is) and answers the serious and
 * critical violations.
 */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(AXE_SOURCE)
  const result = (await page.evaluate(() => (globalThis as unknown as { axe: { run(): Promise<unknown> } }).axe.run())) as { violations: AxeViolation[] }
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
}
