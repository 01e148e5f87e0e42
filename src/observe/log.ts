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

/**
 * A pino JSON logger. Token-shaped fields are redacted as a last line of
 * defence: code logs fingerprints, never tokens.
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['token', '*.token', 'authorization', '*.authorization', 'password', '*.password'], censor: '[redacted]' },
    },
    options.destination ?? pino.destination({ fd: 2, sync: false }),
  )
}

/** A logger that drops everything (for tests that do not read logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
