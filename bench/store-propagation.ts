/**
 * The PostgreSQL policy store at scale: a throwaway PostgreSQL cluster
 * (initdb and pg_ctl, as the tests start one), a policy of N accounts
 * (bench/policy-generate.ts: 100,000 accounts and about 1,000,000 grants by
 * default) imported with `PostgresStore.replace`, then:
 *
 * - cold start: a gateway's store from nothing to a compiled policy
 *   (`start()`: read every table, validate, pack, assemble);
 * - propagation: `--trials` revocations, each made through the admin
 *   operations (one serialized, validated transaction) by one store while
 *   another (the gateway's, following the change feed) waits for it; the
 *   figure is commit → the gateway's `onChange` (where sessions are closed),
 *   p50 / p99 / max; and the edit's own time.
 *
 *   npm run build && node dist/bench/store-propagation.js [--accounts N] [--account-grants N] [--trials N] [--cold-starts N]
 *
 * Needs PostgreSQL's initdb and pg_ctl (KEYWAY_PG_BIN, default /usr/local/bin).
 * `npm run bench` runs it too when they exist (`--no-store` skips it); the
 * admin edits run on a worker thread, so the event-loop delay reported is
 * the gateway's alone. Figures go to bench/README.md.
 */
import { execFile } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { parseArgs, promisify } from 'node:util'
import { systemClock } from '../src/clock.js'
import { loadConfig } from '../src/config/index.js'
import { createLogger } from '../src/observe/index.js'
import type { CompiledPolicy } from '../src/policy/index.js'
import { PostgresStore } from '../src/store/index.js'
import { generate } from './policy-generate.js'
import { freePort } from './tools.js'

const exec = promisify(execFile)
const BIN = process.env.KEYWAY_PG_BIN ?? '/usr/local/bin'
const asPostgres = (cmd: string, args: string[]): [string, string[]] => (process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args])

async function startCluster(): Promise<{ port: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-pg-'))
  if (process.getuid?.() === 0) {
    const uid = Number((await exec('id', ['-u', 'postgres'])).stdout.trim())
    const gid = Number((await exec('id', ['-g', 'postgres'])).stdout.trim())
    chownSync(dir, uid, gid)
  }
  const data = join(dir, 'data')
  await exec(...asPostgres(join(BIN, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']))
  const port = await freePort()
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off`
  await exec(...asPostgres(join(BIN, 'pg_ctl'), ['-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', '-t', '60', 'start']))
  return {
    port,
    stop: async () => {
      await exec(...asPostgres(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'])).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}

/** The figures of one run (milliseconds). */
export interface StoreFigures {
  accounts: number
  grants: number
  importMs: number
  coldStartMs: number
  trials: number
  propagationP50Ms: number
  propagationP99Ms: number
  propagationMaxMs: number
  editP50Ms: number
  editP99Ms: number
  patched: number
  loadedWhole: number
  /** The gateway's event loop while changes were applied: longest hold, p99. */
  loopMaxMs: number
  loopP99Ms: number
  /** A role changed: the gateway loads the whole policy (on its worker thread). */
  wholeReloadMs: number
  wholeLoopMaxMs: number
}

/** Options of {@link storePropagation}. */
export interface StoreOptions {
  accounts: number
  trials: number
  accountGrants?: number
  /** Cold starts to measure (the median is reported). Default 1. */
  coldStarts?: number
  log?: (line: string) => void
}

/** Whether PostgreSQL's initdb and pg_ctl are where the bench looks for them. */
export function postgresAvailable(): boolean {
  return existsSync(join(BIN, 'initdb')) && existsSync(join(BIN, 'pg_ctl'))
}

/** Time on a clock both threads share (epoch-based, sub-millisecond). */
const now = (): number => performance.timeOrigin + performance.now()

/**
 * Runs the store benchmark: the admin edits run on a worker thread with
 * their own store, so that the event-loop delay measured is the gateway's
 * alone (a gateway and `keyway admin` are separate processes in production).
 */
export async function storePropagation(o: StoreOptions): Promise<StoreFigures> {
  const log = o.log ?? ((line: string) => console.log(line))
  const { accounts, trials } = o
  const { doc, grants } = generate({ accounts, roles: 200, resources: 1000, roleGrants: 50, accountGrants: o.accountGrants ?? 10 })
  const cluster = await startCluster()
  const dir = mkdtempSync(join(tmpdir(), 'keyway-bench-store-'))
  try {
    const file = join(dir, 'keyway.yaml')
    const limits = { maxAccounts: accounts * 2 + 10, maxGrants: grants * 2 + 10, maxTokens: accounts * 2 + 10 }
    writeFileSync(
      file,
      `store: postgres\npostgres:\n  connection: postgresql://postgres@127.0.0.1:${cluster.port}/postgres\n  poolSize: 4\n  lockTimeout: 10m\npolicyLimits:\n  maxAccounts: ${limits.maxAccounts}\n  maxGrants: ${limits.maxGrants}\n  maxTokens: ${limits.maxTokens}\n`,
    )
    const config = loadConfig({ file, env: {} })
    const logger = createLogger({ level: 'warn' })
    const importer = new PostgresStore({ config, clock: systemClock, logger })
    await importer.migrate()
    let t0 = performance.now()
    await importer.replace(doc)
    const importMs = performance.now() - t0
    await importer.close()
    log(`policy: ${accounts} accounts, ${grants} grants; import ${Math.round(importMs)} ms`)

    // Extra cold starts first (each a fresh store, closed after), then the gateway's own; the median is reported.
    const starts: number[] = []
    for (let i = 1; i < (o.coldStarts ?? 1); i++) {
      const extra = new PostgresStore({ config, clock: systemClock, logger })
      t0 = performance.now()
      await extra.start()
      starts.push(performance.now() - t0)
      await extra.close()
    }
    const gateway = new PostgresStore({ config, clock: systemClock, logger })
    t0 = performance.now()
    await gateway.start()
    starts.push(performance.now() - t0)
    const coldStartMs = [...starts].sort((x, y) => x - y)[Math.floor((starts.length - 1) / 2)]!
    log(
      `cold start (load + validate + compile; packed from the ${gateway.lastWholeLoadPath ?? 'event loop'}): ${Math.round(coldStartMs)} ms` +
        (starts.length > 1 ? ` (median of ${starts.length}: ${starts.map((x) => Math.round(x)).join(', ')} ms)` : ''),
    )
    gateway.watch()
    await new Promise((r) => setTimeout(r, 500))

    const admin = new Worker(new URL(import.meta.url), { workerData: { file } })
    const replies: ((r: { ms: number; committed: number; error?: string }) => void)[] = []
    admin.on('message', (r: { ms: number; committed: number; error?: string }) => replies.shift()?.(r))
    const ask = (job: AdminJob): Promise<{ ms: number; committed: number }> =>
      new Promise((resolve, reject) => {
        replies.push((r) => (r.error === undefined ? resolve(r) : reject(new Error(r.error))))
        admin.postMessage(job)
      })
    try {
      // How long the gateway's event loop is held while changes are applied (its sessions' latency).
      const loop = monitorEventLoopDelay({ resolution: 1 })
      loop.enable()
      const loads = { full: 0, accounts: 0 }
      // Accounts with a direct or temporary grant to revoke, one per trial.
      const targets = (doc.accounts ?? []).filter((a) => (a.grants ?? []).length > 0).slice(0, trials)
      const propagation: number[] = []
      const edits: number[] = []
      for (const a of targets) {
        const resource = a.grants![0]!.resource
        const seen = new Promise<number>((resolve) => {
          const off = gateway.onChange((p: CompiledPolicy) => {
            if (p.decide(a.id, resource, Date.now()).allow === false || !p.accounts.get(a.id)) {
              off()
              resolve(now())
            }
          })
        })
        const r = await ask({ kind: 'revoke', account: a.id, resource })
        edits.push(r.ms)
        propagation.push((await seen) - r.committed)
        loads[gateway.lastLoad === 'accounts' ? 'accounts' : 'full']++
      }
      loop.disable()
      propagation.sort((x, y) => x - y)
      edits.sort((x, y) => x - y)
      const fmt = (xs: number[]) => `p50 ${Math.round(quantile(xs, 0.5))} ms, p99 ${Math.round(quantile(xs, 0.99))} ms, max ${Math.round(xs.at(-1)!)} ms`
      log(`propagation, commit -> gateway onChange (${propagation.length} revocations): ${fmt(propagation)}`)
      log(`edit (one validated transaction): ${fmt(edits)}`)
      log(`gateway: ${loads.accounts} changes patched, ${loads.full} loaded whole; event loop held at most ${Math.round(loop.max / 1e6)} ms (p99 ${Math.round(loop.percentile(99) / 1e6)} ms)`)

      // A change of a role: every gateway loads the whole policy, on its worker thread.
      const role = doc.roles![0]!
      const extra = doc.resources!.find((r) => !(role.grants ?? []).includes(r.name))!.name
      const whole = monitorEventLoopDelay({ resolution: 1 })
      const seen = new Promise<number>((resolve) => {
        const off = gateway.onChange((p: CompiledPolicy) => {
          if (p.roles.get(role.name)?.includes(extra) === true) {
            off()
            resolve(now())
          }
        })
      })
      whole.enable()
      const r = await ask({ kind: 'grant-role', role: role.name, resource: extra })
      const wholeReloadMs = (await seen) - r.committed
      whole.disable()
      log(`a role change (whole load on the worker): commit -> onChange ${Math.round(wholeReloadMs)} ms; event loop held at most ${Math.round(whole.max / 1e6)} ms`)
      return {
        accounts,
        grants,
        importMs,
        coldStartMs,
        trials: propagation.length,
        propagationP50Ms: quantile(propagation, 0.5),
        propagationP99Ms: quantile(propagation, 0.99),
        propagationMaxMs: propagation.at(-1)!,
        editP50Ms: quantile(edits, 0.5),
        editP99Ms: quantile(edits, 0.99),
        patched: loads.accounts,
        loadedWhole: loads.full,
        loopMaxMs: loop.max / 1e6,
        loopP99Ms: loop.percentile(99) / 1e6,
        wholeReloadMs,
        wholeLoopMaxMs: whole.max / 1e6,
      }
    } finally {
      await admin.terminate()
      await gateway.close()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await cluster.stop()
  }
}

/** The markdown lines of a run, for `npm run bench`'s report. */
export function storeMarkdown(f: StoreFigures): string[] {
  const n = (v: number, d = 0) => v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
  return [
    `PostgreSQL store at ${n(f.accounts)} accounts and ${n(f.grants)} grants (bench/store-propagation.ts; ${f.trials} revocations):`,
    '',
    '| figure | measured | target |',
    '|---|---:|---|',
    `| gateway cold start (read, validate, compile) | ${n(f.coldStartMs / 1000, 1)} s | <= 5 s |`,
    `| revocation: commit -> gateway onChange, p50 / p99 / max | ${n(f.propagationP50Ms)} / ${n(f.propagationP99Ms)} / ${n(f.propagationMaxMs)} ms | p99 <= 1000 ms |`,
    `| one admin edit (validated transaction), p50 / p99 | ${n(f.editP50Ms)} / ${n(f.editP99Ms)} ms | - |`,
    `| changes patched / loaded whole | ${f.patched} / ${f.loadedWhole} | - |`,
    `| gateway event loop held while applying, max / p99 | ${n(f.loopMaxMs)} / ${n(f.loopP99Ms)} ms | a few ms |`,
    `| a role change (whole load on the worker): commit -> onChange; loop held at most | ${n(f.wholeReloadMs / 1000, 1)} s; ${n(f.wholeLoopMaxMs)} ms | - |`,
    `| import (keyway store import) | ${n(f.importMs / 1000, 1)} s | - |`,
  ]
}

type AdminJob = { kind: 'revoke'; account: string; resource: string } | { kind: 'grant-role'; role: string; resource: string }

/** The admin side, on a worker thread: one store, one edit per message. */
async function adminThread(): Promise<void> {
  const { file } = workerData as { file: string }
  const admin = new PostgresStore({ config: loadConfig({ file, env: {} }), clock: systemClock, logger: createLogger({ level: 'warn' }) })
  parentPort!.on('message', (job: AdminJob) => {
    const start = now()
    const edit = job.kind === 'revoke' ? admin.admin.revoke(job.account, job.resource) : admin.admin.grantRole(job.role, job.resource)
    edit.then(
      () => {
        const committed = now()
        parentPort!.postMessage({ ms: committed - start, committed })
      },
      (err: unknown) => parentPort!.postMessage({ ms: 0, committed: 0, error: (err as Error).message }),
    )
  })
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { accounts: { type: 'string' }, 'account-grants': { type: 'string' }, trials: { type: 'string' }, 'cold-starts': { type: 'string' } } })
  await storePropagation({
    accounts: Number(values.accounts ?? 100_000),
    trials: Number(values.trials ?? 30),
    coldStarts: Number(values['cold-starts'] ?? 1),
    ...(values['account-grants'] === undefined ? {} : { accountGrants: Number(values['account-grants']) }),
  })
}

if (!isMainThread) await adminThread()
else if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main()
