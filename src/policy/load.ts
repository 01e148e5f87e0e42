import { readFile } from 'node:fs/promises'
import { KeywayError } from '../errors.js'
import { compilePolicyText } from './compile.js'
import type { CompiledPolicy } from './types.js'

/**
 * Reads, parses and compiles a policy file. Read errors throw
 * `KeywayError('ERR_POLICY_IO')`; an invalid policy throws
 * `DocumentError('ERR_POLICY_INVALID')`.
 */
export async function loadPolicyFile(path: string, options: { generation?: number } = {}): Promise<CompiledPolicy> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new KeywayError('ERR_POLICY_IO', `cannot read policy file ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      detail: { path, ...(code ? { errno: code } : {}) },
    })
  }
  return compilePolicyText(text, path, options.generation)
}
