import { packPolicyDocument } from './compile.js'
import type { PolicyLimits } from './limits.js'
import type { PackedPolicy } from './pack.js'
import { parsePolicyText } from './parse.js'
import { readPolicyFile } from './read.js'

/** One policy file to pack, and its bounds. */
export interface PackJob {
  readonly file: string
  readonly limits: PolicyLimits
  /** Tuning, see `CompileOptions.bitsetMaxBytes`. */
  readonly bitsetMaxBytes?: number
}

/**
 * Reads (bounded), parses, checks limits, validates and packs a policy file
 * on the calling thread: the policy worker's job (`packPolicyFile` runs it
 * on a worker thread). Throws `ERR_POLICY_IO`, `ERR_POLICY_TOO_LARGE` or
 * `DocumentError('ERR_POLICY_INVALID')`.
 */
export function packPolicyFileHere(job: PackJob): PackedPolicy {
  const text = readPolicyFile(job.file, job.limits.maxBytes)
  const parsed = parsePolicyText(text, job.file)
  return packPolicyDocument(parsed.value, {
    file: job.file,
    locate: parsed.locate,
    limits: job.limits,
    ...(job.bitsetMaxBytes === undefined ? {} : { bitsetMaxBytes: job.bitsetMaxBytes }),
  })
}
