import t from 'tap'
import { randomBytes } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { COALESCE_MAX, COALESCE_MIN, Outbox } from '../../src/forward/outbox.js'

const KiB = 1024
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** An outbox over a recording writer: `hold` says whether the writer keeps the bytes it is given. */
function recorded(hold: () => boolean = () => false): { out: Outbox; writes: Buffer[]; copies: Buffer[] } {
  const writes: Buffer[] = []
  const copies: Buffer[] = []
  const out = new Outbox((bytes) => {
    writes.push(bytes)
    copies.push(Buffer.from(bytes))
    return hold()
  })
  return { out, writes, copies }
}

t.test('the bounds say which chunks are combined', async (t) => {
  t.ok(COALESCE_MIN <= 16 * KiB && COALESCE_MAX > 16 * KiB, 'a TLS record (16 KiB) is combined')
  t.ok(COALESCE_MAX <= 64 * KiB, 'a full socket read is not')
})

t.test("a turn's chunks leave in 64 KiB writes, the rest at the end of the turn, in order", async (t) => {
  const { out, writes, copies } = recorded()
  const chunks = Array.from({ length: 10 }, () => randomBytes(16 * KiB - 8))
  for (const chunk of chunks) out.add(chunk)
  t.equal(writes.length, 2, 'two full buffers written during the turn')
  t.ok(writes.every((w) => w.length === 64 * KiB))
  t.equal(out.pending, 10 * (16 * KiB - 8) - 128 * KiB, 'the rest waits')
  await turn()
  t.equal(writes.length, 3, 'the rest is written at the end of the turn')
  t.equal(out.pending, 0)
  t.ok(Buffer.concat(copies).equals(Buffer.concat(chunks)), 'byte-exact, in order')
})

t.test('flush() writes what is pending at once', async (t) => {
  const { out, writes } = recorded()
  out.add(Buffer.from('abc'))
  out.flush()
  t.same(writes.map(String), ['abc'])
  out.flush()
  t.equal(writes.length, 1, 'nothing pending: no write')
  await turn()
  t.equal(writes.length, 1, 'the end of the turn finds nothing either')
})

t.test('a buffer the writer still holds is never refilled; one it let go of is', async (t) => {
  let holding = true
  const { out, writes, copies } = recorded(() => holding)
  out.add(Buffer.alloc(64 * KiB, 1)) // A, held
  out.add(Buffer.alloc(64 * KiB, 2)) // B, held
  t.not(writes[1]!.buffer, writes[0]!.buffer, 'held: the next fill gets another buffer')
  holding = false
  out.add(Buffer.alloc(64 * KiB, 3)) // C, written at once: B, held before it, is free too
  out.add(Buffer.alloc(64 * KiB, 4))
  t.equal(writes[3]!.buffer, writes[2]!.buffer, 'let go: the same buffer takes the next fill')
  holding = true
  out.add(Buffer.alloc(64 * KiB, 5)) // C again, now held
  out.add(Buffer.alloc(64 * KiB, 6))
  t.equal(writes[5]!.buffer, writes[1]!.buffer, 'the buffer held before the write that completed at once comes back')
  t.notOk([writes[2]!.buffer].includes(writes[5]!.buffer), 'not the one held now')
  writes.forEach((w, i) => t.ok(writes.slice(i + 1).some((later) => later.buffer === w.buffer) || w.equals(copies[i]!), `write ${i + 1}: intact unless its buffer was written again later`))
  t.ok(writes[4]!.equals(copies[4]!), 'the bytes held now are intact')
})

t.test('after a turn that filled less than half a buffer, the buffers go', async (t) => {
  const { out, writes } = recorded()
  out.add(Buffer.alloc(8 * KiB))
  await turn()
  out.add(Buffer.alloc(8 * KiB))
  await turn()
  t.equal(writes.length, 2)
  t.not(writes[1]!.buffer, writes[0]!.buffer, 'a new buffer after an idle tail')
  out.add(Buffer.alloc(40 * KiB))
  await turn()
  out.add(Buffer.alloc(40 * KiB))
  await turn()
  t.equal(writes[3]!.buffer, writes[2]!.buffer, 'kept while the turns carry bulk')
})

t.test('discard() drops what is pending and writes nothing more', async (t) => {
  const { out, writes } = recorded()
  out.add(Buffer.alloc(10 * KiB))
  out.discard()
  t.equal(out.pending, 0)
  out.add(Buffer.alloc(10 * KiB))
  out.flush()
  await turn()
  t.equal(writes.length, 0)
})

t.test('a turn is marked by its first chunk; after a bulk turn the next is combined from its start, and a turn with nothing ends that', async (t) => {
  const { out, writes } = recorded()
  t.equal(out.inTurn, false, 'no turn yet')
  out.markTurn()
  t.equal(out.inTurn, true, 'a chunk written directly marks the turn')
  await turn()
  t.equal(out.inTurn, false, 'a turn that carried no bulk ends with the turn')

  out.add(Buffer.alloc(40 * KiB, 1))
  await turn()
  t.equal(writes.length, 1)
  t.equal(out.inTurn, true, 'after a bulk turn the next one is combined from its first chunk')
  await turn()
  t.equal(out.inTurn, false, 'a turn that brought nothing ends it')
  out.add(Buffer.alloc(8 * KiB, 2))
  await turn()
  t.not(writes[1]!.buffer, writes[0]!.buffer, 'and the buffers went with it')
})

t.test('a buffer still held by the writer is let go of at the end of a transfer', async (t) => {
  // Nothing observable holds it but the outbox: a weak reference shows whether the outbox dropped it.
  let held: WeakRef<ArrayBufferLike> | undefined
  const out = new Outbox((bytes) => {
    held ??= new WeakRef(bytes.buffer)
    return true
  })
  out.add(Buffer.alloc(64 * KiB))
  await turn()
  await turn()
  t.equal(out.inTurn, false, 'the transfer is over')
  // gc() without --expose-gc on the command line: set the flag, then take gc from a fresh context.
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  gc()
  await turn()
  gc()
  t.equal(held?.deref(), undefined, 'collected: the outbox kept no reference')
})
