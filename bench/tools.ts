/**
 * Process, port and memory helpers of the forwarding benchmark (bench/run.ts).
 * Everything stays on 127.0.0.1; every child has a deadline.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs'
import * as net from 'node:net'
import { delimiter, join } from 'node:path'

/** Debian packages the benchmark needs, by binary. */
export const REQUIRED_BINARIES: Readonly<Record<string, string>> = {
  haproxy: 'haproxy',
  socat: 'socat',
  iperf3: 'iperf3',
  'redis-server': 'redis-server',
  'redis-benchmark': 'redis-tools',
  taskset: 'util-linux',
}

/** Full path of `name` on PATH (plus the sbin folders), or undefined. */
export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin']
  for (const dir of dirs) {
    const p = join(dir, name)
    if (dir && existsSync(p)) return p
  }
  return undefined
}

/** Binaries that are missing, and the exact line that installs them. */
export function missingTools(): { missing: string[]; install: string } {
  const missing = Object.keys(REQUIRED_BINARIES).filter((b) => which(b) === undefined)
  const pkgs = [...new Set(missing.map((b) => REQUIRED_BINARIES[b]!))]
  const preseed = pkgs.includes('iperf3') ? 'echo "iperf3 iperf3/start_daemon boolean false" | sudo debconf-set-selections && ' : ''
  return { missing, install: `${preseed}sudo apt-get install -y ${pkgs.join(' ')}` }
}

/** CPU cores this process may run on. */
export function cpuCount(): number {
  const r = spawnSync('nproc', [], { encoding: 'utf8' })
  return Number(r.stdout.trim()) || 1
}

/** Pinning plan: forwarders on one core, load generators and upstreams on the other. */
export interface Pinning {
  readonly enabled: boolean
  readonly forwarder: string
  readonly load: string
}

/** Prefixes `cmd args` with `taskset -c CORES` when pinning is on. */
export function pinned(cores: string | undefined, cmd: string, args: string[]): [string, string[]] {
  if (cores === undefined) return [cmd, args]
  return ['taskset', ['-c', cores, cmd, ...args]]
}

/** Pins an already running process (and its threads). */
export function pinPid(pid: number, cores: string): void {
  spawnSync('taskset', ['-a', '-p', '-c', cores, String(pid)], { stdio: 'ignore' })
}

const handedOut = new Set<number>()

/**
 * A TCP port on 127.0.0.1 for a daemon of the bench to listen on, named before
 * it listens. Taken below the kernel's ephemeral range
 * (`net.ipv4.ip_local_port_range`): the bench's own connection churn (tens of
 * thousands of outgoing connections) cycles through the whole ephemeral range,
 * and a port picked there by binding and releasing it was once handed to an
 * outgoing connection before the sidecar could bind it (`ERR_PORT_IN_USE`).
 * Skips ports something already listens on, the project's default ports and
 * the default override range, and every port handed out before.
 */
export async function freePort(): Promise<number> {
  let low = 32768
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low
  } catch {
    // not Linux: keep the usual default
  }
  const from = 20000
  const to = Math.max(from + 1000, low)
  for (let i = 0; i < 1000; i++) {
    const port = from + Math.floor(Math.random() * (to - from))
    if (handedOut.has(port) || listening(port)) continue
    handedOut.add(port)
    return port
  }
  throw new Error(`no free port found in ${from}-${to}`)
}

function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  try {
    // Columns: sl local_address rem_address st ...; st 0A is LISTEN.
    return readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .some((line) => {
        const cols = line.trim().split(/\s+/)
        return cols[1]?.endsWith(`:${hex}`) === true && cols[3] === '0A'
      })
  } catch {
    return false
  }
}

/**
 * Resolves once something listens on 127.0.0.1:port; rejects after
 * `timeoutMs`. Reads /proc/net/tcp instead of connecting: a probe connection
 * through a forwarder would reach iperf3, which then fails its next test.
 */
export async function waitPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (listening(port)) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`)
    await sleep(50)
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** A background process whose output goes to a log file. */
export interface Daemon {
  readonly name: string
  readonly child: ChildProcess
  readonly log: string
  stop(): Promise<void>
}

/** Starts a long-running process with stdout and stderr appended to `log`. */
export function startDaemon(name: string, cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; log: string; cwd?: string }): Daemon {
  const fd = openSync(options.log, 'a')
  const child = spawn(cmd, args, { env: options.env ?? process.env, stdio: ['ignore', fd, fd], cwd: options.cwd })
  child.on('error', () => {})
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    name,
    child,
    log: options.log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 3_000)
      await exited
      clearTimeout(t)
    },
  }
}

/** Result of a bounded command. */
export interface Ran {
  code: number | null
  stdout: string
  stderr: string
  timedOut: boolean
}

/** Runs a command to completion, killing it after `timeoutMs`. */
export function run(cmd: string, args: string[], options: { timeoutMs: number; env?: NodeJS.ProcessEnv; input?: string }): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('error', (err) => {
      stderr += String(err)
    })
    child.stdin.end(options.input ?? '')
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, options.timeoutMs)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, timedOut })
    })
  })
}

/** `pid` and all its descendants (socat forks one process per connection). */
export function processTree(pid: number): number[] {
  const out = [pid]
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!
    let tasks: string[] = []
    try {
      tasks = readdirSync(`/proc/${p}/task`)
    } catch {
      continue
    }
    for (const t of tasks) {
      try {
        const kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim()
        if (kids) for (const k of kids.split(/\s+/)) out.push(Number(k))
      } catch {
        // The task ended meanwhile.
      }
    }
  }
  return out
}

/** Resident and peak resident set size of one process, in KiB (0 when gone). */
export function rssKiB(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0)
    return { rss: field('VmRSS'), hwm: field('VmHWM') }
  } catch {
    return { rss: 0, hwm: 0 }
  }
}

/** Sum of VmRSS over processes, KiB. */
export function sumRssKiB(pids: readonly number[]): number {
  return pids.reduce((sum, p) => sum + rssKiB(p).rss, 0)
}

/** CPU time (user + system) of processes, in µs; /proc ticks are 10 ms, so measure over seconds. */
export function cpuMicros(pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // Gone.
    }
  }
  return (ticks * 1e6) / 100
}
