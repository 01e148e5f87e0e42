/**
 * What both daemons (`daemon.ts`, the gateway; `daemon-sidecar.ts`, the
 * sidecar) share: the process they run in and the data path decision. Kept
 * apart so that the sidecar's wiring does not load the gateway's (issue 22).
 */
import type { Writable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Registry } from 'prom-client'
import type { KeywayConfig } from './config/index.js'
import { registerBuildInfo, type Logger } from './observe/index.js'
import { VERSION } from './package.js'
import { checkFastPath } from './read-buffer/index.js'

/**
 * What a daemon needs of its process: where to write, the environment, and the
 * stop and reload signals. The CLI's `CliIo` is one (declared here so that
 * the daemons do not import `cli/`, which imports them).
 */
export interface DaemonIo {
  readonly stderr: Writable
  /** Where the quick start's steps go when stderr is not a terminal but stdout is. */
  readonly stdout?: Writable
  readonly env: Readonly<Record<string, string | undefined>>
  readonly cwd: string
  /** Aborts when the process is asked to stop (SIGTERM/SIGINT); the daemon drains then. */
  readonly stopSignal?: AbortSignal
  /** Fires on SIGHUP; the daemon reloads then. */
  readonly onReload?: (fn: () => void) => void
}

/**
 * Decides once per daemon whether the data path uses Node's internals
 * (`forward.nodeInternals`, then the self-test on a real socket pair), logs
 * which path it takes and registers `keyway_build_info`. True: the fast path.
 */
export async function dataPath(config: KeywayConfig, logger: Logger, registry: Registry): Promise<boolean> {
  const fast = await checkFastPath(config.forward.nodeInternals === 'on')
  registerBuildInfo(registry, { version: VERSION, nodeVersion: process.version, fastPath: fast.enabled })
  const fields = { event: 'data_path', node_version: process.version, fast_path: fast.enabled, ...(fast.reason !== undefined ? { reason: fast.reason } : {}) }
  if (fast.enabled || config.forward.nodeInternals === 'off') logger.info(fields, fast.enabled ? `data path: fast (Node ${process.version} internals verified)` : 'data path: public APIs only (forward.nodeInternals: off)')
  else logger.warn(fields, `data path: public APIs only: ${fast.reason ?? 'self-test failed'}`)
  return fast.enabled
}

/** How long after a daemon is ready {@link releaseStartupMemory} runs: past the first probes and connections. */
const RELEASE_AFTER_MS = 1_000

/**
 * Schedules one full, compacting garbage collection shortly after a daemon is
 * ready. Start-up garbage (module compilation, the configuration's and the
 * policy's parse trees) is dead by then, but V8 keeps the young generation
 * it grew to while starting (~10 MB) until memory runs short; shrinking it
 * once takes ~12 MB off the resident set of an idle daemon (bench/README.md,
 * "Footprint (issue 22)"). Under traffic it grows back as the load needs.
 * `gc` comes from a new context after `--expose-gc`, as Jest's
 * `--logHeapUsage` does: a V8 flag set after start, so it sits behind the
 * same off switch as the data path's use of Node internals
 * (`forward.nodeInternals: off` skips it). Returns a cancel for a daemon that
 * stops first.
 */
export function releaseStartupMemory(enabled: boolean, afterMs = RELEASE_AFTER_MS): () => void {
  if (!enabled) return () => {}
  const timer = setTimeout(() => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
  }, afterMs)
  timer.unref()
  return () => clearTimeout(timer)
}

