import { readFileSync } from 'node:fs'
import { KeywayError } from '../errors.js'

/**
 * Reads a text file the configuration names (a certificate, a key, a token
 * file); an unreadable one is ERR_CONFIG_IO naming what it is and where.
 */
export function readConfiguredFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    throw new KeywayError('ERR_CONFIG_IO', `cannot read the ${what} ${path}: ${(err as Error).message}`, { cause: err })
  }
}
