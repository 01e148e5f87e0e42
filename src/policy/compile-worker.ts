/**
 * Entry of the policy worker thread (see `packPolicyFile`): reads, parses,
 * checks limits, validates, digests and packs one policy file, then posts
 * the packed policy back, its buffers moved rather than copied. Errors go
 * back as plain data (code, message, problems).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { DocumentError, toKeywayError } from '../errors.js'
import { packPolicyDocument } from './compile.js'
import type { PolicyLimits } from './limits.js'
import { packedTransferList } from './pack.js'
import { parsePolicyText } from './parse.js'
import { readPolicyFile } from './read.js'

/** What the worker is given. */
export interface PackJob {
  readonly file: string
  readonly limits: PolicyLimits
  readonly bitsetMaxBytes?: number
}

const job = workerData as PackJob
try {
  const text = readPolicyFile(job.file, job.limits.maxBytes)
  const parsed = parsePolicyText(text, job.file)
  const packed = packPolicyDocument(parsed.value, {
    file: job.file,
    locate: parsed.locate,
    limits: job.limits,
    ...(job.bitsetMaxBytes === undefined ? {} : { bitsetMaxBytes: job.bitsetMaxBytes }),
  })
  parentPort!.postMessage({ ok: true, packed }, packedTransferList(packed))
} catch (err) {
  const e = toKeywayError(err, 'ERR_INTERNAL')
  parentPort!.postMessage({
    ok: false,
    code: e.code,
    message: e.message,
    detail: e.detail,
    problems: e instanceof DocumentError ? e.problems : undefined,
  })
}
