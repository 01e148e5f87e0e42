import type { Writable } from 'node:stream'
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'

export type { Logger } from 'pino'

/** Options of {@link createLogger}. */
export interface CreateLoggerOptions {
  level?: LoggerOptions['level']
  /** Where JSON lines go; stderr by default (stdout is for command output). */
  destination?: DestinationStream
  /** Fields bound on every line, e.g. `{ component: 'gateway' }`. */
  base?: Record<string, unknown>
}

/** What a secret-bearing field's value is replaced with. */
const CENSOR = '[redacted]'

/** The fields whose values are censored, at the top level and one level down. */
const SECRET_KEYS = ['token', 'authorization', 'password'] as const

function isSecretKey(key: string): boolean {
  return (SECRET_KEYS as readonly string[]).includes(key)
}

function holdsSecret(value: object): boolean {
  return SECRET_KEYS.some((key) => key in value)
}

/** A copy of `value` (same prototype and properties, so an Error stays an Error for pino's serializer) with its secret fields censored. */
function censored(value: object): object {
  const descriptors = Object.getOwnPropertyDescriptors(value)
  // Accessors read the original's internals (V8's Error#stack): the copy takes their values.
  for (const [key, d] of Object.entries(descriptors)) {
    if (d.get !== undefined) descriptors[key] = { value: (value as Record<string, unknown>)[key], enumerable: d.enumerable ?? false, writable: true, configurable: true }
  }
  const copy = Object.create(Object.getPrototypeOf(value) as object | null, descriptors) as object
  for (const key of SECRET_KEYS) {
    if (key in value) Object.defineProperty(copy, key, { value: CENSOR, enumerable: true, writable: true, configurable: true })
  }
  return copy
}

/**
 * Censors `token`, `authorization` and `password`, at the top level and one
 * level down (what pino's `redact` paths `token`, `*.token`, ... did). A line
 * without such a field is returned as it is: pino's path-based redaction ran
 * every field of every line through a redactor that re-parsed its paths (issue
 * 22: ~1.5 % of the sidecar's CPU per connection); this costs a few
 * comparisons per field.
 */
export function redactSecrets<T extends Record<string, unknown>>(fields: T): T {
  let out: Record<string, unknown> | undefined
  for (const key in fields) {
    if (!Object.hasOwn(fields, key)) continue
    const value = fields[key]
    if (value === undefined) continue
    if (isSecretKey(key)) (out ??= { ...fields })[key] = CENSOR
    else if (typeof value === 'object' && value !== null && holdsSecret(value)) (out ??= { ...fields })[key] = censored(value)
  }
  return (out ?? fields) as T
}

/**
 * A pino JSON logger. Token-shaped fields are redacted as a last line of
 * defence: code logs fingerprints, never tokens.
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const logger = pino(
    {
      level: options.level ?? 'info',
      base: { ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: redactSecrets, bindings: redactSecrets },
    },
    options.destination ?? pino.destination({ fd: 2, sync: false }),
  )
  return redactingChildren(logger, logger.child)
}

/** pino gives a child the identity bindings formatter: its bindings are redacted here, and so are its own children's. */
function redactingChildren(logger: Logger, makeChild: Logger['child']): Logger {
  const child = (bindings: Record<string, unknown>, options?: Parameters<Logger['child']>[1]): Logger =>
    redactingChildren(makeChild.call(logger, redactSecrets(bindings), options) as unknown as Logger, makeChild)
  logger.child = child as unknown as Logger['child']
  return logger
}

/** A logger that drops everything (for tests that do not read logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}

/**
 * A log destination that gathers the lines of one event-loop turn and hands
 * them to `stream` in one write after the turn (`setImmediate`), and at once
 * on {@link flush}, {@link close} and process exit, so no line is lost when
 * the process ends (`process.exit()`, an uncaught error). The sidecar's lines
 * went to `process.stderr` one synchronous write each (Node makes stderr
 * synchronous for files and pipes): a system call per line on the
 * connection's path.
 */
export class LineBatcher implements DestinationStream {
  readonly #stream: Writable
  #pending = ''
  #scheduled: NodeJS.Immediate | undefined
  #closed = false
  #onExit = false
  readonly #flush = (): void => this.flush()

  constructor(stream: Writable) {
    this.#stream = stream
  }

  /** Takes one line (pino's call); written after this turn. */
  write(line: string): void {
    if (this.#closed) {
      this.#stream.write(line)
      return
    }
    this.#pending += line
    if (this.#scheduled !== undefined) return
    this.#scheduled = setImmediate(this.#flush)
    if (!this.#onExit) {
      // 'exit' runs no more turns: lines still gathered then are written there (synchronously, for stderr
      // on a file or pipe). Added once and kept until close(), not added and removed every turn.
      process.on('exit', this.#flush)
      this.#onExit = true
    }
  }

  /** Writes what this turn gathered now; then calls `done` (pino's `logger.flush(cb)` passes one). */
  flush(done?: (err?: Error) => void): void {
    if (this.#scheduled !== undefined) {
      clearImmediate(this.#scheduled)
      this.#scheduled = undefined
    }
    if (this.#pending !== '') {
      const lines = this.#pending
      this.#pending = ''
      this.#stream.write(lines)
    }
    done?.()
  }

  /** Flushes; every later line is written at once. Idempotent. */
  close(): void {
    this.flush()
    this.#closed = true
    if (this.#onExit) process.removeListener('exit', this.#flush)
    this.#onExit = false
  }
}
