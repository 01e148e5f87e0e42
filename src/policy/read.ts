import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { KeywayError } from '../errors.js'
import { policyTooLarge } from './limits.js'

/**
 * Reads a policy file as UTF-8, refusing one over `maxBytes` with
 * `ERR_POLICY_TOO_LARGE` without reading it (and reading at most `maxBytes`
 * + 1 bytes, should it grow meanwhile). Read errors throw `ERR_POLICY_IO`.
 * Synchronous: it runs on the policy worker thread.
 */
export function readPolicyFile(path: string, maxBytes: number): string {
  let fd: number | undefined
  try {
    fd = openSync(path, 'r')
    const size = fstatSync(fd).size
    if (size > maxBytes) throw policyTooLarge(path, 'maxBytes', size, maxBytes, 'bytes')
    // Read to the end, not to the size seen: the file may be rewritten meanwhile.
    const chunks: Buffer[] = []
    let total = 0
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.max(65_536, Math.min(size + 1, maxBytes + 1) - total))
      const got = readSync(fd, chunk, 0, chunk.length, null)
      if (got === 0) break
      total += got
      if (total > maxBytes) throw policyTooLarge(path, 'maxBytes', total, maxBytes, 'bytes (or more)')
      chunks.push(got === chunk.length ? chunk : chunk.subarray(0, got))
    }
    return Buffer.concat(chunks, total).toString('utf8')
  } catch (err) {
    if (err instanceof KeywayError) throw err
    const code = (err as NodeJS.ErrnoException).code
    throw new KeywayError('ERR_POLICY_IO', `cannot read policy file ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      detail: { path, ...(code ? { errno: code } : {}) },
    })
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}
