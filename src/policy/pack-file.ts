import { Worker } from 'node:worker_threads'
import { DocumentError, KeywayError, type ErrorCode, type Problem } from '../errors.js'
import type { PackJob } from './pack-here.js'
import type { PolicyLimits } from './limits.js'
import type { PackedPolicy } from './pack.js'

type Reply =
  | { ok: true; packed: PackedPolicy }
  | { ok: false; code: ErrorCode; message: string; detail?: Record<string, unknown>; problems?: Problem[] }

// Run from the sources (tests load .ts) or from dist/ (.js): the worker is the sibling of this file.
const WORKER_URL = new URL(`./compile-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url)

/** Options of {@link packPolicyFile}. */
export interface PackFileOptions {
  readonly limits: PolicyLimits
  /** Tuning, see `CompileOptions.bitsetMaxBytes`. */
  readonly bitsetMaxBytes?: number
  /** Aborting terminates the worker; the promise then rejects with `ERR_POLICY_IO`. */
  readonly signal?: AbortSignal
}

/**
 * Reads, parses, checks, validates and packs a policy file on a worker
 * thread, so none of it holds the event loop; the packed policy comes back
 * with its buffers moved, not copied (wrap it with `assemblePolicy`).
 * Rejects with the worker's `ERR_POLICY_IO`, `ERR_POLICY_TOO_LARGE` or
 * `DocumentError('ERR_POLICY_INVALID')`; with `ERR_POLICY_TOO_LARGE` too when
 * the worker runs out of memory.
 */
export function packPolicyFile(file: string, options: PackFileOptions): Promise<PackedPolicy> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new KeywayError('ERR_POLICY_IO', `reading policy ${file} was cancelled`))
      return
    }
    const job: PackJob = {
      file,
      limits: { ...options.limits },
      ...(options.bitsetMaxBytes === undefined ? {} : { bitsetMaxBytes: options.bitsetMaxBytes }),
    }
    const worker = new Worker(WORKER_URL, { workerData: job, stdout: false, stderr: false })
    let settled = false
    const settle = (fn: () => void): void => {
      if (settled) return
      settled = true
      options.signal?.removeEventListener('abort', onAbort)
      fn()
      void worker.terminate()
    }
    const onAbort = (): void => settle(() => reject(new KeywayError('ERR_POLICY_IO', `reading policy ${file} was cancelled`)))
    options.signal?.addEventListener('abort', onAbort, { once: true })
    worker.once('message', (reply: Reply) =>
      settle(() => {
        if (reply.ok) resolve(reply.packed)
        else if (reply.problems !== undefined && reply.code === 'ERR_POLICY_INVALID') reject(new DocumentError(reply.code, reply.problems))
        else reject(new KeywayError(reply.code, reply.message, reply.detail === undefined ? {} : { detail: reply.detail }))
      }),
    )
    worker.once('error', (err: Error & { code?: string }) =>
      settle(() =>
        reject(
          err.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new KeywayError('ERR_POLICY_TOO_LARGE', `compiling policy ${file} ran out of memory: make it smaller or lower policyLimits`, { cause: err })
            : new KeywayError('ERR_INTERNAL', `the policy worker failed on ${file}: ${err.message}`, { cause: err }),
        ),
      ),
    )
    worker.once('exit', (code) =>
      settle(() => reject(new KeywayError('ERR_INTERNAL', `the policy worker exited (code ${code}) before compiling ${file}`))),
    )
  })
}
