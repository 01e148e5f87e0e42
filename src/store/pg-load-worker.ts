/**
 * Entry of the PostgreSQL load worker thread (see `loadPackedPolicy`): on its
 * own connection, reads the whole policy at the latest generation in one
 * read-only snapshot (the accounts as one row each, straight into the packed
 * form: `RowPacker`; the whole document when it cannot vouch for them), then
 * checks limits, validates, digests and packs it,
 * and posts the packed policy back (its buffers moved, not copied) with the
 * generation and the policy's frame (settings, resources, roles). Errors go
 * back as plain data (code, message, problems).
 */
import { parentPort, workerData } from 'node:worker_threads'
import pg from 'pg'
import { DocumentError, KeywayError, toKeywayError } from '../errors.js'
import { packedTransferList, packPolicyDocument, RowPacker, type AccountRow, type PackedPolicy, type PolicyDoc } from '../policy/index.js'
import { canonicalPolicy } from './canonical.js'
import type { LoadJob } from './pg-load.js'
import { clientConfig } from './pg-connection.js'
import { storeError } from './pg-errors.js'
import { accountRowsQuery, currentGeneration, loadPolicyDocSorted, loadPolicyFrame } from './pg-rows.js'
import { checkSchema } from './pg-schema.js'

const job = workerData as LoadJob
// Unlike the policy file's worker, this one keeps the process's priority: a
// whole load may carry a revocation (a role changed), and at low priority a
// busy machine can starve it for tens of seconds. It never holds the event
// loop either way.

async function load(): Promise<void> {
  const client = new pg.Client(clientConfig(job.settings))
  // An error between queries (the server stopped) must reject the query under way, not crash the thread.
  client.on('error', () => undefined)
  let frame: PolicyDoc
  let packed: PackedPolicy | undefined
  let doc: PolicyDoc | undefined
  let generation
  try {
    await client.connect()
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    await checkSchema(client)
    generation = await currentGeneration(client)
    if (generation === 0) {
      throw new KeywayError('ERR_STORE_EMPTY', 'the PostgreSQL store holds no policy yet: run `keyway store import FILE`, or make a first change with `keyway admin`', {
        detail: { generation },
      })
    }
    frame = canonicalPolicy(await loadPolicyFrame(client as unknown as pg.PoolClient))
    // Rows straight into the packed form; anything the packer cannot vouch for is
    // compiled from the whole document instead (same snapshot), which reports it.
    const packer = RowPacker.create(frame, { file: job.label, limits: job.limits })
    if (packer !== undefined) {
      const rows = await client.query<unknown[]>(accountRowsQuery(packer.resourceNames, packer.roleNames))
      let vouched = true
      for (const row of rows.rows) {
        if (!packer.add(row as unknown as AccountRow)) {
          vouched = false
          break
        }
      }
      rows.rows.length = 0
      if (vouched) packed = packer.finish()
    }
    if (packed === undefined) doc = await loadPolicyDocSorted(client as unknown as pg.PoolClient)
    await client.query('COMMIT')
  } catch (err) {
    throw storeError(err, 'loading the policy')
  } finally {
    await client.end().catch(() => undefined)
  }
  const path = packed === undefined ? 'document' : 'rows'
  packed ??= packPolicyDocument(doc, { file: job.label, limits: job.limits })
  parentPort!.postMessage({ ok: true, packed, generation, frame, path }, packedTransferList(packed))
}

try {
  await load()
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
