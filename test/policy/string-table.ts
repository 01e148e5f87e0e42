import t from 'tap'
import fc from 'fast-check'
import { StringTable } from '../../src/policy/string-table.js'
import { compilePolicy, packPolicyDocument } from '../../src/policy/compile.js'
import { packedTransferList } from '../../src/policy/pack.js'
import { assemblePolicySync } from '../../src/policy/assemble.js'

function tableOf(strings: readonly string[]): StringTable {
  const encoder = new TextEncoder()
  const parts = strings.map((s) => encoder.encode(s))
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  const ends = new Int32Array(strings.length)
  let end = 0
  parts.forEach((p, i) => {
    bytes.set(p, end)
    ends[i] = end += p.length
  })
  return new StringTable(bytes, ends)
}

t.test('every string reads back as written, ASCII or not, in any order, across chunks', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 8 })), { maxLength: 700 }), fc.nat(), (strings, seed) => {
      const table = tableOf(strings)
      const order = strings.map((_, i) => (i * 7919 + seed) % strings.length)
      for (const i of order) if (table.get(i) !== strings[i]) return false
      return true
    }),
  )
  const many = Array.from({ length: 600 }, (_, i) => (i === 300 ? 'café ☕ 𝄞' : `account-${i}`))
  const table = tableOf(many)
  t.same(Array.from(many, (_, i) => table.get(i)), many, 'a chunk with one non-ASCII string among ASCII ones')
  t.equal(tableOf(['', 'a', '']).get(2), '', 'empty strings')
})

t.test('a packed policy moves its string table: nothing is copied when it crosses to another thread', async (t) => {
  const doc = {
    version: 1,
    resources: [{ name: 'entrepôt', kind: 'datasource', type: 'postgres', address: '127.0.0.1:5432' }],
    accounts: [{ id: 'usr_zoe', type: 'user', email: 'zoé@example.com', grants: [{ resource: 'entrepôt' }] }],
  }
  const packed = packPolicyDocument(doc as never, { file: 'p' })
  t.ok(packedTransferList(packed).includes(packed.strings.buffer as ArrayBuffer), 'the string table is in the transfer list')
  const moved = structuredClone(packed, { transfer: packedTransferList(packed) })
  t.equal(packed.strings.byteLength, 0, 'the sender no longer holds it')
  const policy = assemblePolicySync(moved, 1)
  const direct = compilePolicy(doc as never, { file: 'p' })
  t.same([...policy.resources.keys()], ['entrepôt'])
  t.equal(policy.accountByName('zoé@example.com')?.id, 'usr_zoe', 'a non-ASCII email')
  t.same(policy.decide('usr_zoe', 'entrepôt', 0), direct.decide('usr_zoe', 'entrepôt', 0), 'the same decision as a direct compile')
})
