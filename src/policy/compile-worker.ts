/**
 * Entry of the policy worker thread (see `packPolicyFile`): reads, parses,
 * checks limits, validates, digests and packs one policy file, then posts
 * the packed policy back, its buffers moved rather than copied. Errors go
 * back as plain data (code, message, problems).
 */
import { readlinkSync } from 'node:fs'
import { constants, setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import { DocumentError, toKeywayError } from '../errors.js'
import { packedTransferList } from './pack.js'
import { packPolicyFileHere, type PackJob } from './pack-here.js'

const job = workerData as PackJob
// Serving comes first: on Linux, where niceness is per thread, this thread
// yields the CPU to the gateway's event loop (a reload takes longer on a busy
// machine instead of slowing every session). Elsewhere it stays as it is.
try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
  if (Number.isInteger(tid) && tid > 0) setPriority(tid, constants.priority.PRIORITY_LOW)
} catch {
  // No /proc, or not allowed: run at the process's priority.
}
try {
  const packed = packPolicyFileHere(job)
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
