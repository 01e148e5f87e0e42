/** Tests of test/helpers/ports.ts: the port blocks every test file names its fixed ports from. */
import t from 'tap'
import * as net from 'node:net'
import { once } from 'node:events'
import { blockIndexes, BLOCK_SIZE, ephemeralLow, isPortInUse, nextPort, portBlock, PortInUseError, withPort } from './helpers/ports.js'

t.test('a block below the ephemeral range, never a default port, the same for the same file', async (t) => {
  const block = portBlock()
  t.equal(block.length, BLOCK_SIZE)
  t.ok(block.every((p) => p >= 2000 && p < ephemeralLow()), `below ${ephemeralLow()}: ${block[0]}-${block.at(-1)}`)
  t.ok(block.every((p) => ![5432, 7070, 7443, 7444, 9464].includes(p) && !(p >= 15000 && p <= 15999)))
  t.same(portBlock(), block, 'stable')
  const port = nextPort()
  t.ok(block.includes(port))
})

t.test("the test files of a checkout never share a block, even when their hashes collide", async (t) => {
  const files = Array.from({ length: 300 }, (_, i) => `test/x/file-${i}.ts`)
  const indexes = blockIndexes(files, 300)
  t.equal(new Set(indexes.values()).size, 300, 'as many blocks as files: all distinct')
  const real = [portBlock('test/e2e/quick-start-works-on-the-embedded-default.ts')[0], portBlock('test/ports.ts')[0], portBlock('test/daemon.ts')[0]]
  t.equal(new Set(real).size, 3)
})

t.test('withPort runs the step again on the next port when the port is taken, and says so', async (t) => {
  // Something else takes the first port the step is given.
  let taken: net.Server | undefined
  const comments: string[] = []
  const seen: number[] = []
  const got = await withPort({ comment: (m: unknown) => comments.push(String(m)) }, 'a listener', async (port) => {
    seen.push(port)
    if (!taken) {
      taken = net.createServer().listen({ port, host: '127.0.0.1' })
      await once(taken, 'listening')
    }
    const server = net.createServer().listen({ port, host: '127.0.0.1' })
    await once(server, 'listening')
    server.close()
    return port
  })
  taken?.close()
  t.equal(seen.length, 2, 'two attempts')
  t.not(got, seen[0])
  t.match(comments[0], /a listener: port \d+ taken .*EADDRINUSE.*retrying with the next port/)
})

t.test('only a port-in-use failure is retried', async (t) => {
  t.ok(isPortInUse(Object.assign(new Error('x'), { code: 'EADDRINUSE' })))
  t.ok(isPortInUse(new PortInUseError(1234, 'PostgreSQL')))
  t.ok(isPortInUse(new Error('process exited (1) before the log line; stderr:\n{"code":"ERR_PORT_IN_USE"}')))
  t.notOk(isPortInUse(new Error('ECONNREFUSED')))
  let calls = 0
  await t.rejects(
    withPort({ comment: () => {} }, 'x', async () => {
      calls++
      throw new Error('something else')
    }),
    /something else/,
  )
  t.equal(calls, 1)
})
