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
 *   npm run build && node dist/bench/store-propagation.js [--accounts N] [--account-grants N] [--trials N]
 *
 * Needs PostgreSQL's initdb and pg_ctl (KEYWAY_PG_BIN, default /usr/local/bin).
 * Not part of `npm run bench` yet; figures go to bench/README.md.
 */
import { execFile } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs, promisify } from 'node:util'
import pg from 'pg'
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

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { accounts: { type: 'string' }, 'account-grants': { type: 'string' }, trials: { type: 'string' } } })
  const accounts = Number(values.accounts ?? 100_000)
  const trials = Number(values.trials ?? 30)
  const { doc, grants } = generate({ accounts, roles: 200, resources: 1000, roleGrants: 50, accountGrants: Number(values['account-grants'] ?? 10) })
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
    const admin = new PostgresStore({ config, clock: systemClock, logger })
    await admin.migrate()
    let t0 = performance.now()
    await admin.replace(doc)
    const importMs = performance.now() - t0
    console.log(`policy: ${accounts} accounts, ${grants} grants; import ${Math.round(importMs)} ms`)

    const gateway = new PostgresStore({ config, clock: systemClock, logger })
    t0 = performance.now()
    await gateway.start()
    const coldMs = performance.now() - t0
    console.log(`cold start (load + validate + compile): ${Math.round(coldMs)} ms`)
    gateway.watch()
    await new Promise((r) => setTimeout(r, 500))
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
            resolve(performance.now())
          }
        })
      })
      const start = performance.now()
      await admin.admin.revoke(a.id, resource)
      const committed = performance.now()
      edits.push(committed - start)
      propagation.push((await seen) - committed)
      loads[gateway.lastLoad ?? 'full']++
    }
    loop.disable()
    propagation.sort((x, y) => x - y)
    edits.sort((x, y) => x - y)
    const fmt = (xs: number[]) => `p50 ${Math.round(quantile(xs, 0.5))} ms, p99 ${Math.round(quantile(xs, 0.99))} ms, max ${Math.round(xs.at(-1)!)} ms`
    console.log(`propagation, commit -> gateway onChange (${propagation.length} revocations): ${fmt(propagation)}`)
    console.log(`edit (one validated transaction): ${fmt(edits)}`)
    console.log(`gateway: ${loads.accounts} changes patched, ${loads.full} loaded whole; event loop held at most ${Math.round(loop.max / 1e6)} ms (p99 ${Math.round(loop.percentile(99) / 1e6)} ms)`)
    await gateway.close()
    await admin.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await cluster.stop()
  }
}

void pg
await main()
