import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { createKeySet, createTokenVerifier, generateSigningKey, importSigningKey, type SigningKey, type VerifiedToken } from '../../src/auth/index.js'
import { readPolicy, type AdminContext } from '../../src/admin/index.js'
import type { Clock } from '../../src/clock.js'
import type { CliIo, Command } from '../../src/cli/command.js'
import { COMMANDS } from '../../src/cli/commands.js'
import { runCli } from '../../src/cli/run.js'

/** What one in-process `keyway` run printed and returned. */
export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/** Options of {@link runKeyway}. */
export interface RunKeywayOptions {
  /** The environment the command sees (default empty: nothing leaks from the test's own). */
  env?: Record<string, string | undefined>
  /** Text on stdin (default: empty). */
  stdin?: string
  /** stdin says it is a terminal (for prompts). */
  tty?: boolean
  cwd?: string
  /** Command table (default: the real COMMANDS). */
  commands?: readonly Command[]
}

/** Runs `keyway ARGV` in this process with captured stdout and stderr. */
export async function runKeyway(argv: string[], options: RunKeywayOptions = {}): Promise<CliResult> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const out: Buffer[] = []
  const err: Buffer[] = []
  stdout.on('data', (c: Buffer) => out.push(c))
  stderr.on('data', (c: Buffer) => err.push(c))
  const io: CliIo = {
    stdout,
    stderr,
    stdin: Object.assign(Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]), options.tty === true ? { isTTY: true } : {}),
    env: options.env ?? {},
    cwd: options.cwd ?? process.cwd(),
  }
  const code = await runCli(argv, options.commands ?? COMMANDS, io)
  stdout.end()
  stderr.end()
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }
}

/** A folder with a daemon configuration, a policy, and a signing key with its JWKS. */
export interface AdminSetup {
  dir: string
  configFile: string
  policyFile: string
  jwksFile: string
  signingKey: SigningKey
  /** The admin context of this setup with `clock`. */
  ctx(clock: Clock, lockTimeoutMs?: number): AdminContext
  /** The policy file's text now. */
  policyText(): string
}

/** The policy most admin and CLI tests start from (with comments, to prove they survive). */
export const FIXTURE_POLICY = readFileSync(new URL('../fixtures/admin/policy.yaml', import.meta.url), 'utf8')

/**
 * Writes a setup into `dir` (a fresh test folder): keyway.yaml pointing at
 * policy.yaml (the fixture unless `policy` is given), signing-key.json and
 * jwks.json.
 */
export async function writeAdminSetup(dir: string, policy: string = FIXTURE_POLICY): Promise<AdminSetup> {
  const key = await generateSigningKey()
  const configFile = join(dir, 'keyway.yaml')
  const policyFile = join(dir, 'policy.yaml')
  const jwksFile = join(dir, 'jwks.json')
  writeFileSync(policyFile, policy)
  writeFileSync(join(dir, 'signing-key.json'), JSON.stringify(key.privateJwk), { mode: 0o600 })
  writeFileSync(jwksFile, JSON.stringify({ keys: [key.publicJwk] }))
  writeFileSync(
    configFile,
    ['policy: policy.yaml', 'state: .', 'keys:', '  signing: signing-key.json', '  jwks: jwks.json', 'tokens:', '  issuer: keyway-test', '  audience: keyway-test', ''].join('\n'),
  )
  const signingKey = await importSigningKey(key.privateJwk)
  return {
    dir,
    configFile,
    policyFile,
    jwksFile,
    signingKey,
    ctx: (clock, lockTimeoutMs) => ({
      policyFile,
      clock,
      signingKey,
      issuer: 'keyway-test',
      audience: 'keyway-test',
      ...(lockTimeoutMs === undefined ? {} : { lockTimeoutMs }),
    }),
    policyText: () => readFileSync(policyFile, 'utf8'),
  }
}

/**
 * Verifies tokens as the gateway would: against the setup's JWKS and the
 * policy file as it is at each call (read again every time), with `clock`.
 */
export async function policyVerifier(
  setup: Pick<AdminSetup, 'jwksFile' | 'policyFile'>,
  clock: Clock,
  claims: { issuer: string; audience: string } = { issuer: 'keyway-test', audience: 'keyway-test' },
): Promise<{ verify(token: string): Promise<VerifiedToken> }> {
  const keySet = await createKeySet(JSON.parse(readFileSync(setup.jwksFile, 'utf8')))
  let policy = (await readPolicy(setup.policyFile)).policy
  const verifier = createTokenVerifier({ keySet, ...claims, clock, policy: () => policy, cacheSize: 0 })
  return {
    async verify(token) {
      policy = (await readPolicy(setup.policyFile)).policy
      return verifier.verify(token)
    },
  }
}
