import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Teardown } from './net.js'

/** The built CLI (npm test builds dist/ first). */
export const KEYWAY_BIN = join(fileURLToPath(new URL('../..', import.meta.url)), 'bin', 'keyway.js')

/** Environment for child processes: no KEYWAY_* from the developer's shell. */
export function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {}
  // KEYWAY_FORWARD_NODE_INTERNALS passes: CI runs the data-path suites with the switch off (docs/dev/node-versions.md).
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && (!k.startsWith('KEYWAY_') || k === 'KEYWAY_FORWARD_NODE_INTERNALS')) env[k] = v
  return { ...env, ...extra }
}

/** Result of a finished command. */
export interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `keyway ARGS` to completion. */
export async function keyway(args: string[], env: Record<string, string>, input?: string): Promise<Ran> {
  const child = spawn(process.execPath, [KEYWAY_BIN, ...args], { env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  child.stdin.end(input ?? '')
  const [code] = (await once(child, 'exit')) as [number | null]
  return { code, stdout, stderr }
}

/** A long-running keyway process whose JSON log lines can be awaited. */
export interface Daemon {
  readonly child: ChildProcess
  readonly lines: Record<string, unknown>[]
  /** Everything written to stderr so far, JSON or not. */
  stderr(): string
  /** Resolves with the first log line (past or future) matching. */
  waitLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
  readonly exited: Promise<number | null>
}

/**
 * Starts `keyway ARGS` in the background (or `command` instead, e.g. a shell
 * line a person would paste); killed in teardown. With `group`, the command
 * gets a process group of its own and signals go to the whole group (for
 * `npm start`, whose gateway is a grandchild).
 */
export function startDaemon(t: Teardown, args: string[], env: Record<string, string>, command?: string[], cwd?: string, group = false): Daemon {
  const [file, ...rest] = command ?? [process.execPath, KEYWAY_BIN, ...args]
  const child = spawn(file!, rest, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'], cwd, detached: group })
  const signal = (sig: NodeJS.Signals): void => {
    if (!group) return void child.kill(sig)
    try {
      process.kill(-child.pid!, sig)
    } catch {}
  }
  const lines: Record<string, unknown>[] = []
  let waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = []
  let buffered = ''
  let raw = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString()
    raw += chunk.toString()
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      if (!text.startsWith('{')) continue
      const line = JSON.parse(text) as Record<string, unknown>
      lines.push(line)
      waiters = waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true))
    }
  })
  child.stdout!.resume()
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  // A test file that ends abruptly (tap's timeout) skips its teardown: no daemon may outlive it.
  const onExit = (): void => signal('SIGKILL')
  process.once('exit', onExit)
  void exited.then(() => {
    if (!group) process.off('exit', onExit)
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      signal('SIGKILL')
      await exited
    } else if (group) signal('SIGKILL')
  })
  return {
    child,
    lines,
    exited,
    stderr: () => raw,
    waitLog(pred, timeoutMs = 60_000) {
      const seen = lines.find(pred)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; stderr:\n${raw.slice(-4000)}`)), timeoutMs)
        const done = (l: Record<string, unknown>) => {
          clearTimeout(timer)
          resolve(l)
        }
        waiters.push({ pred, resolve: done })
        void exited.then((code) => {
          clearTimeout(timer)
          reject(new Error(`process exited (${code}) before the log line; stderr:\n${raw.slice(-4000)}`))
        })
      })
    },
    async stop(sig = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
      signal(sig)
      return exited
    },
  }
}
