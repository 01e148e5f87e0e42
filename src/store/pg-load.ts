import { Worker } from 'node:worker_threads'
import { DocumentError, KeywayError, type ErrorCode, type Problem } from '../errors.js'
import type { PackedPolicy, PolicyDoc, PolicyLimits } from '../policy/index.js'
import type { PostgresSettings } from './pg-connection.js'

/** What the load worker is given (cloned to it: plain data only). */
export interface LoadJob {
  readonly settings: PostgresSettings
  readonly limits: PolicyLimits
  /** What names the database in problems. */
  readonly label: string
}

/** The whole policy at one generation, packed, with its frame (settings, resources, roles; no accounts). */
export interface LoadedPolicy {
  readonly packed: PackedPolicy
  readonly generation: number
  readonly frame: PolicyDoc
  /** How it was packed: from the account rows (`RowPacker`), or from the whole document (rows it could not vouch for). */
  readonly path: 'rows' | 'document'
}

type Reply =
  | { ok: true; packed: PackedPolicy; generation: number; frame: PolicyDoc; path: 'rows' | 'document' }
  | { ok: false; code: ErrorCode; message: string; detail?: Record<string, unknown>; problems?: Problem[] }

// Run from the sources (tests load .ts) or from dist/ (.js): the worker is the sibling of this file.
const WORKER_URL = new URL(`./pg-load-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url)

/**
 * Reads the whole policy from PostgreSQL at its latest generation, validates
 * and packs it, all on a worker thread with its own connection, so none of
 * it holds the event loop (a gateway keeps serving while it loads whole);
 * wrap the result with `assemblePolicy`. Rejects with the errors of a load
 * (`ERR_STORE_*`, `ERR_POLICY_TOO_LARGE`, `DocumentError('ERR_POLICY_INVALID')`);
 * with `ERR_POLICY_TOO_LARGE` too when the worker runs out of memory.
 */
export function loadPackedPolicy(job: LoadJob): Promise<LoadedPolicy> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL, {
      workerData: { ...job, settings: { ...job.settings }, limits: { ...job.limits } },
      stdout: false,
      stderr: false,
      // A larger young generation: most of what a load allocates dies young (rows, parsed
      // JSON), and the default one made the collector a third of the worker's time.
      resourceLimits: { maxYoungGenerationSizeMb: 64 },
    })
    let settled = false
    const settle = (fn: () => void): void => {
      if (settled) return
      settled = true
      fn()
      void worker.terminate()
    }
    worker.once('message', (reply: Reply) =>
      settle(() => {
        if (reply.ok) resolve({ packed: reply.packed, generation: reply.generation, frame: reply.frame, path: reply.path })
        else if (reply.problems !== undefined && reply.code === 'ERR_POLICY_INVALID') reject(new DocumentError(reply.code, reply.problems))
        else reject(new KeywayError(reply.code, reply.message, reply.detail === undefined ? {} : { detail: reply.detail }))
      }),
    )
    worker.once('error', (err: Error & { code?: string }) =>
      settle(() =>
        reject(
          err.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new KeywayError('ERR_POLICY_TOO_LARGE', `loading the policy from ${job.label} ran out of memory: make it smaller or lower policyLimits`, { cause: err })
            : new KeywayError('ERR_INTERNAL', `the policy load worker failed: ${err.message}`, { cause: err }),
        ),
      ),
    )
    worker.once('exit', (code) => settle(() => reject(new KeywayError('ERR_INTERNAL', `the policy load worker exited (code ${code}) before loading the policy`))))
  })
}
