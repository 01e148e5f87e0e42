import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { pino } from 'pino'
import { stringify } from 'yaml'
import { generateSigningKey, importSigningKey, issueToken, newTokenId, tokenFingerprint, type SigningKey } from '../../src/auth/index.js'
import { ManualClock, systemClock, type Clock } from '../../src/clock.js'
import { loadConfig, type KeywayConfig } from '../../src/config/index.js'
import { startGateway, type RunningGateway } from '../../src/daemon.js'
import { packPolicyFileHere, type PackFileOptions } from '../../src/policy/index.js'
import type { Logger } from '../../src/observe/index.js'
import { createDevPki } from '../../src/pki/index.js'
import type { AccountDoc, PolicyDoc } from '../../src/policy/index.js'
import { ALPN_TUNNEL, encodeHello, ReplyParser, type Reply } from '../../src/protocol/index.js'
import type { Teardown } from './net.js'


/**
 * The policy worker's steps on the test's own thread: gateways of in-process
 * tests pack their policy here (a worker start costs seconds under the test
 * runner's TypeScript loader). The worker itself is tested by
 * test/policy/pack-file.ts, test/policy/store.ts and the e2e tests (dist/).
 */
export const packPolicyHere = async (file: string, o: PackFileOptions) =>
  packPolicyFileHere({ file, limits: o.limits, ...(o.bitsetMaxBytes === undefined ? {} : { bitsetMaxBytes: o.bitsetMaxBytes }) })

export type { Teardown }

/** A log line as the gateway wrote it. */
export type LogLine = Record<string, unknown> & { event?: string; msg?: string; level?: string }

/** Collects JSON log lines and lets tests wait for one. */
export class LogSink extends Writable {
  readonly lines: LogLine[] = []
  #waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = []

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const text of chunk.toString('utf8').split('\n')) {
      if (!text) continue
      const line = JSON.parse(text) as LogLine
      this.lines.push(line)
      this.#waiters = this.#waiters.filter((w) => (w.pred(line) ? (w.resolve(line), false) : true))
    }
    cb()
  }

  /** Resolves with the first line (past or future) that matches. */
  waitFor(pred: (l: LogLine) => boolean): Promise<LogLine> {
    const seen = this.lines.find(pred)
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }))
  }

  /** Lines of one event. */
  events(event: string): LogLine[] {
    return this.lines.filter((l) => l.event === event)
  }

  /** Everything written, as text (to grep for secrets). */
  text(): string {
    return this.lines.map((l) => JSON.stringify(l)).join('\n')
  }
}

/** A throwaway Keyway setup: keys, development CA, policy and configuration. */
export interface World {
  readonly dir: string
  readonly config: KeywayConfig
  readonly caPem: string
  readonly signingKey: SigningKey
  readonly logs: LogSink
  readonly logger: Logger
  readonly clock: Clock
  /** The policy document as last written. */
  policy: PolicyDoc
  /** Rewrites the policy file (a running gateway reloads on `gateway.reload()`). */
  writePolicy(doc: PolicyDoc): void
  /** Edits the policy document in place and writes it. */
  editPolicy(fn: (doc: PolicyDoc) => void): void
  /** Issues a service token for `accountId` and lists it in the policy. */
  serviceToken(accountId: string, options?: { expiresAt?: number; recordExpires?: string }): Promise<string>
  /** Starts a gateway on 127.0.0.1:0 with this world's clock and logger; stopped in teardown. */
  startGateway(): Promise<RunningGateway>
}

/** Options of {@link createWorld}. */
export interface WorldOptions {
  policy: PolicyDoc
  clock?: Clock
  /** Extra `gateway:` settings for keyway.yaml. */
  gateway?: Record<string, unknown>
  tokens?: Record<string, unknown>
  /** Extra top-level keys of keyway.yaml (e.g. `store: postgres` with `postgres:`). */
  config?: Record<string, unknown>
}

/** Builds a world in a fresh temporary folder, removed in teardown. */
export async function createWorld(t: Teardown, options: WorldOptions): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-world-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const key = await generateSigningKey()
  const pki = await createDevPki({ hosts: ['localhost', '127.0.0.1'] })
  writeFileSync(join(dir, 'signing-key.json'), JSON.stringify(key.privateJwk), { mode: 0o600 })
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [key.publicJwk] }))
  writeFileSync(join(dir, 'ca.pem'), pki.caCertPem)
  writeFileSync(join(dir, 'gateway.pem'), pki.certPem)
  writeFileSync(join(dir, 'gateway-key.pem'), pki.keyPem, { mode: 0o600 })
  const config = {
    policy: 'policy.yaml',
    state: '.',
    keys: { signing: 'signing-key.json', jwks: 'jwks.json' },
    tokens: { issuer: 'keyway-test', audience: 'keyway-test', ...options.tokens },
    gateway: {
      listen: '127.0.0.1:0',
      metrics: '',
      tls: { cert: 'gateway.pem', key: 'gateway-key.pem' },
      watchPolicy: false,
      drainGrace: '2s',
      ...options.gateway,
    },
    admin: { listen: '' },
    // Its own runtime directory: a sidecar started from this file must not share /run/keyway with other tests.
    sidecar: { gateways: ['127.0.0.1:1'], ca: 'ca.pem', servername: 'localhost', control: '127.0.0.1:0', runtimeDir: join(dir, 'rt') },
    log: { level: 'debug' },
    ...options.config,
  }
  writeFileSync(join(dir, 'keyway.yaml'), stringify(config))
  const clock = options.clock ?? systemClock
  const logs = new LogSink()
  const logger = pino({ level: 'debug', base: {}, formatters: { level: (label) => ({ level: label }) } }, logs)
  const signingKey = await importSigningKey(key.privateJwk)
  const world: World = {
    dir,
    config: undefined as never,
    caPem: pki.caCertPem,
    signingKey,
    logs,
    logger,
    clock,
    policy: options.policy,
    writePolicy(doc) {
      world.policy = doc
      writeFileSync(join(dir, 'policy.yaml'), stringify(doc))
    },
    editPolicy(fn) {
      fn(world.policy)
      world.writePolicy(world.policy)
    },
    async serviceToken(accountId, opts = {}) {
      const tokenId = newTokenId()
      const token = await issueToken(signingKey, {
        issuer: 'keyway-test',
        audience: 'keyway-test',
        subject: accountId,
        tokenId,
        kind: 'service',
        now: clock.now(),
        ...(opts.expiresAt === undefined ? {} : { expiresAt: opts.expiresAt }),
      })
      world.editPolicy((doc) => {
        const account = doc.accounts?.find((a: AccountDoc) => a.id === accountId)
        if (!account) throw new Error(`no account ${accountId} in the test policy`)
        ;(account.tokens ??= []).push({ id: tokenId, fingerprint: tokenFingerprint(token), ...(opts.recordExpires ? { expires: opts.recordExpires } : {}) })
      })
      return token
    },
    async startGateway() {
      const running = await startGateway(world.config, { logger, clock, packPolicy: packPolicyHere })
      t.teardown(() => running.close())
      return running
    },
  }
  world.writePolicy(options.policy)
  ;(world as { config: KeywayConfig }).config = loadConfig({ file: join(dir, 'keyway.yaml'), env: { KEYWAY_FORWARD_NODE_INTERNALS: process.env.KEYWAY_FORWARD_NODE_INTERNALS } })
  return world
}

/** A tunnel as a test client sees it. */
export interface TestTunnel {
  socket: TLSSocket
  reply: Reply
  /** Bytes that came after the reply in the same read. */
  rest: Buffer
}

/** Opens a raw TLS connection to the gateway with the given ALPN. */
export function connectTls(t: Teardown, port: number, caPem: string, alpn: string[] = [ALPN_TUNNEL]): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost', ALPNProtocols: alpn, allowHalfOpen: true } as ConnectionOptions, () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
    t.teardown(() => socket.destroy())
  })
}

/** Reads one reply frame from a tunnel socket. */
export function readReply(socket: TLSSocket): Promise<{ reply: Reply; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const parser = new ReplyParser()
    const onData = (chunk: Buffer) => {
      const r = parser.push(chunk)
      if (r.state === 'need') return
      cleanup()
      if (r.state === 'error') reject(r.error)
      else resolve({ reply: r.value, rest: r.rest })
    }
    const onEnd = () => {
      cleanup()
      reject(new Error('tunnel closed before a reply'))
    }
    const cleanup = () => {
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      socket.pause()
    }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
  })
}

/** Opens a tunnel: TLS, hello (plus optional first bytes), reply. */
export async function openTunnel(t: Teardown, port: number, caPem: string, token: string, resource: string, first?: Buffer): Promise<TestTunnel> {
  const socket = await connectTls(t, port, caPem)
  socket.write(first ? Buffer.concat([encodeHello({ token, resource }), first]) : encodeHello({ token, resource }))
  const { reply, rest } = await readReply(socket)
  return { socket, reply, rest }
}

export { ManualClock }
