/**
 * Ports a test must name before anything listens on them: a resource's port
 * override, PostgreSQL's port (it cannot listen on port 0), the quick start's
 * fixed ports, a port where nothing listens. Everything else listens on port
 * 0 and reports the port it got.
 *
 * Each test file owns a block of {@link BLOCK_SIZE} ports below the kernel's
 * ephemeral range (`net.ipv4.ip_local_port_range`, read at run time), so no
 * outgoing connection and no other test file of this checkout is handed one
 * of them. The block is a stable hash of the file's path inside the checkout
 * (the next free block when an earlier file has that one): the same file run
 * at the same time in another checkout on this machine has the same block,
 * and a checkout with other files may give a block to another file. Hence
 * every use retries: {@link withPort} runs the step that binds (or spawns the process
 * that binds) again with the block's next port when it fails with
 * EADDRINUSE or ERR_PORT_IN_USE, and says so with `t.comment`.
 *
 * Never 5432, 7070, 7443, 7444, 9464 (Keyway's and PostgreSQL's defaults, which
 * a developer's own gateway or database may hold) nor 15000-15999 (the default
 * port-override range). Nothing is bound and released to pick a port.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import * as net from 'node:net'
import { relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Ports in one test file's block. */
export const BLOCK_SIZE = 64

/** The lowest port handed out: clear of the well-known and registered low ports most services use. */
const FLOOR = 2_000

/** Ports no test may use. */
const AVOID = new Set([5432, 7070, 7443, 7444, 9464])
const AVOID_RANGE: readonly [number, number] = [15_000, 15_999]

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Anything with tap's `comment` (a tap `Test`). */
export interface Comments {
  comment(...message: unknown[]): void
}

/** The first port of the kernel's ephemeral range (net.ipv4.ip_local_port_range). */
export function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(low) && low > 0) return low
  } catch {}
  // Linux's default, for a system without /proc.
  return 32_768
}

function usable(port: number): boolean {
  return !AVOID.has(port) && !(port >= AVOID_RANGE[0] && port <= AVOID_RANGE[1])
}

/** The usable ports below the ephemeral range, in order. */
function pool(): number[] {
  const ports: number[] = []
  for (let p = FLOOR; p < ephemeralLow(); p++) if (usable(p)) ports.push(p)
  return ports
}

/** The test files of this checkout, as paths relative to it, sorted. */
function testFiles(): string[] {
  const dir = resolve(ROOT, 'test')
  return (readdirSync(dir, { recursive: true }) as string[])
    .map((f) => f.split('\\').join('/'))
    .filter((f) => f.endsWith('.ts') && !f.startsWith('fixtures/') && !f.startsWith('helpers/'))
    .map((f) => `test/${f}`)
    .sort()
}

function hashOf(key: string, blocks: number): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) % blocks
}

/**
 * The block index of every test file: a hash of its path, moved to the next
 * free block when an earlier file (in sorted order) has it, so that the files
 * of one checkout never share a block.
 */
export function blockIndexes(files: readonly string[], blocks: number): Map<string, number> {
  const taken = new Set<number>()
  const out = new Map<string, number>()
  for (const file of files) {
    let index = hashOf(file, blocks)
    for (let i = 0; i < blocks && taken.has(index); i++) index = (index + 1) % blocks
    taken.add(index)
    out.set(file, index)
  }
  return out
}

/**
 * The block of `file` (default: the running test file, `process.argv[1]`):
 * the ports it may name, in the order {@link nextPort} hands them out from.
 */
export function portBlock(file = process.argv[1] ?? 'unknown'): number[] {
  const ports = pool()
  const blocks = Math.floor(ports.length / BLOCK_SIZE)
  if (blocks < 1) throw new Error(`no room for test ports below the ephemeral range (starts at ${ephemeralLow()}): widen net.ipv4.ip_local_port_range's gap`)
  const key = relative(ROOT, resolve(file)).split('\\').join('/')
  const index = blockIndexes(testFiles(), blocks).get(key) ?? hashOf(key, blocks)
  return ports.slice(index * BLOCK_SIZE, (index + 1) * BLOCK_SIZE)
}

let block: number[] | undefined
// A random start within the block: two runs of the same file in different
// checkouts rarely start on the same port, and retry covers it when they do.
let cursor = -1

/** The next port of this test file's block (cycling). Nothing is bound to pick it. */
export function nextPort(): number {
  block ??= portBlock()
  if (cursor < 0) cursor = Math.floor(Math.random() * block.length)
  const port = block[cursor % block.length]!
  cursor++
  return port
}

/** True if a connection to 127.0.0.1:`port` is refused (nothing listens there now). */
export function refuses(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      done(false)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'))
  })
}

/**
 * The next port of the block where nothing listens now (found by connecting,
 * not by binding). A port some other process already listens on is skipped.
 */
export async function idlePort(): Promise<number> {
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const port = nextPort()
    if (await refuses(port)) return port
  }
  throw new Error(`every port of this test file's block is in use: ${portBlock().join(', ')}`)
}

/**
 * A port where connections are refused, for tests of a dead upstream or
 * gateway: an idle port of the block. Only a concurrent run of a test file
 * sharing the block could start listening on it meanwhile.
 */
export const refusedPort = idlePort

/** True for an error saying a port is taken: EADDRINUSE, ERR_PORT_IN_USE, or a message that says so. */
export function isPortInUse(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | undefined
  if (e?.code === 'EADDRINUSE' || e?.code === 'ERR_PORT_IN_USE') return true
  return typeof e?.message === 'string' && /EADDRINUSE|ERR_PORT_IN_USE|already in use/i.test(e.message)
}

/** An error a step throws when it finds its port taken (say, in a child process's log). */
export class PortInUseError extends Error {
  readonly code = 'ERR_PORT_IN_USE'
  constructor(port: number, what: string) {
    super(`port ${port} is already in use (${what})`)
  }
}

/** Options of {@link withPorts}. */
export interface WithPortsOptions {
  /** Attempts before giving up. Default 8. */
  tries?: number
}

/**
 * Runs `step` with `count` idle ports of the test file's block; when it fails
 * because a port is taken ({@link isPortInUse}), comments on `t` and runs it
 * again with the next ones. The step must undo what it started before it
 * throws (or leave it to `t.teardown`), since it may run again.
 */
export async function withPorts<T>(t: Comments, what: string, count: number, step: (ports: number[]) => Promise<T>, options: WithPortsOptions = {}): Promise<T> {
  const tries = options.tries ?? 8
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = []
    for (let i = 0; i < count; i++) ports.push(await idlePort())
    try {
      return await step(ports)
    } catch (err) {
      if (!isPortInUse(err) || attempt >= tries) throw err
      t.comment(`${what}: port ${ports.join(', ')} taken (${(err as Error).message.split('\n')[0]}); retrying with the next port (attempt ${attempt + 1} of ${tries})`)
    }
  }
}

/** {@link withPorts} with one port. */
export function withPort<T>(t: Comments, what: string, step: (port: number) => Promise<T>, options: WithPortsOptions = {}): Promise<T> {
  return withPorts(t, what, 1, ([port]) => step(port!), options)
}
