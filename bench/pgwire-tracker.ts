/**
 * What pgwire's message header tracker costs per chunk a PostgreSQL session
 * forwards (server to client), against a copy of the same chunk: the
 * forwarder's fast path moves each chunk at least once. Never part of
 * `npm test`.
 *
 *   npm run build && node dist/bench/pgwire-tracker.js
 */
import { PgWireTracker } from '../src/pgwire/index.js'

const CHUNK = 65_536

/** A StartupMessage (protocol 3.0). */
function startup(): Buffer {
  const body = Buffer.from('user\0postgres\0\0')
  const out = Buffer.alloc(8 + body.length)
  out.writeInt32BE(out.length, 0)
  out.writeInt32BE(196_608, 4)
  body.copy(out, 8)
  return out
}

/** `total` bytes of DataRow messages of `rowSize` bytes each, cut into 64 KiB chunks. */
function stream(rowSize: number, total: number): Buffer[] {
  const row = Buffer.alloc(rowSize, 0x61)
  row.write('D', 0, 'latin1')
  row.writeInt32BE(rowSize - 1, 1)
  const all = Buffer.alloc(total)
  for (let i = 0; i + rowSize <= total; i += rowSize) row.copy(all, i)
  const chunks: Buffer[] = []
  for (let i = 0; i < total; i += CHUNK) chunks.push(all.subarray(i, Math.min(i + CHUNK, total)))
  return chunks
}

function timeNs(fn: () => void): number {
  const t0 = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - t0)
}

const total = 64 * 1024 * 1024
const target = Buffer.alloc(CHUNK)
for (const rowSize of [16, 64, 256, 4096]) {
  const chunks = stream(rowSize, total)
  let best = Infinity
  let bestCopy = Infinity
  for (let round = 0; round < 7; round++) {
    const tracker = new PgWireTracker()
    tracker.aToB(startup())
    best = Math.min(best, timeNs(() => {
      for (const c of chunks) tracker.bToA(c)
    }))
    bestCopy = Math.min(bestCopy, timeNs(() => {
      for (const c of chunks) c.copy(target)
    }))
  }
  const perChunk = best / chunks.length
  const copyPerChunk = bestCopy / chunks.length
  console.log(
    `rows of ${String(rowSize).padStart(4)} B: tracker ${(perChunk / 1000).toFixed(2)} µs per 64 KiB chunk (${((total / best) * 1e9 / 1e9).toFixed(1)} GB/s), ` +
      `a copy of the chunk ${(copyPerChunk / 1000).toFixed(2)} µs; tracker/copy ${(perChunk / copyPerChunk).toFixed(2)}`,
  )
}
