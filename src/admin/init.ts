import { constants as fsConstants, copyFileSync, mkdirSync } from 'node:fs'
import { chmod, lstat, mkdir, open, readFile, unlink } from 'node:fs/promises'
import { isIP } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import type { Logger } from 'pino'
import { generateSigningKey, loadSigningKey, publicJwkOf, type Jwks } from '../auth/index.js'
import type { Clock } from '../clock.js'
import type { KeywayConfig } from '../config/index.js'
import { KeywayError } from '../errors.js'
import { createDevPki } from '../pki/index.js'
import { writeFileAtomic } from './edit.js'

/** Options of {@link initSetup}. */
export interface InitSetupOptions {
  /** Stamps the development certificates' validity. */
  clock: Clock
  /** Names the gateway certificate is valid for. Default localhost and 127.0.0.1. */
  hosts?: string[]
}

/** What {@link initSetup} wrote. */
export interface InitSetupResult {
  /** The folder, absolute. */
  readonly dir: string
  /** The daemon configuration to pass as `--config` or KEYWAY_CONFIG. */
  readonly configFile: string
  /** Every file written, absolute, in the order written. */
  readonly files: readonly string[]
}

/** The files `keyway init` writes, with their modes; secrets are 0600. */
export const INIT_FILES = {
  'keyway.yaml': 0o644,
  'policy.yaml': 0o644,
  'signing-key.json': 0o600,
  'jwks.json': 0o644,
  'ca.pem': 0o644,
  'ca-key.pem': 0o600,
  'gateway.pem': 0o644,
  'gateway-key.pem': 0o600,
} as const

/**
 * Creates a complete, working setup in `dir`: the daemon configuration
 * (keyway.yaml), an example policy (policy.yaml, with comments), an Ed25519
 * signing key and its JWKS, and a development CA with a gateway certificate
 * for `hosts`. The gateway listens on 127.0.0.1:7443 (metrics on :9464) and
 * sidecars trust ca.pem.
 *
 * It never overwrites: if any of the files exists, nothing is written and
 * ERR_FILE_EXISTS names them.
 *
 * @throws KeywayError ERR_FILE_EXISTS, ERR_CONFIG_IO, ERR_CONFIG_INVALID (a host is not a name or IP)
 */
export async function initSetup(dir: string, options: InitSetupOptions): Promise<InitSetupResult> {
  const root = resolve(dir)
  const hosts = options.hosts ?? ['localhost', '127.0.0.1']
  const present: string[] = []
  for (const name of Object.keys(INIT_FILES)) if (await exists(join(root, name))) present.push(join(root, name))
  if (present.length > 0) {
    throw new KeywayError('ERR_FILE_EXISTS', `refusing to overwrite ${present.join(', ')}; choose an empty folder with --dir, or move them away`, {
      detail: { files: present },
    })
  }
  const key = await generateSigningKey()
  const pki = await createDevPki({ hosts, now: options.clock.now() })
  const jwks: Jwks = { keys: [key.publicJwk] }
  const contents: Record<keyof typeof INIT_FILES, string> = {
    'keyway.yaml': configText(hosts),
    'policy.yaml': EXAMPLE_POLICY,
    'signing-key.json': JSON.stringify(key.privateJwk, null, 2) + '\n',
    'jwks.json': JSON.stringify(jwks, null, 2) + '\n',
    'ca.pem': pki.caCertPem,
    'ca-key.pem': pki.caKeyPem,
    'gateway.pem': pki.certPem,
    'gateway-key.pem': pki.keyPem,
  }
  await mkdirOrFail(root)
  const written: string[] = []
  try {
    for (const [name, mode] of Object.entries(INIT_FILES) as [keyof typeof INIT_FILES, number][]) {
      const path = join(root, name)
      if (!(await writeNew(path, contents[name], mode))) {
        throw new KeywayError('ERR_FILE_EXISTS', `refusing to overwrite ${path}, created while init was running`, { detail: { files: [path] } })
      }
      written.push(path)
    }
  } catch (err) {
    // All or nothing: a half-written setup would be refused by the next init.
    for (const path of written) await unlink(path).catch(() => undefined)
    throw err
  }
  return { dir: root, configFile: join(root, 'keyway.yaml'), files: written }
}

/** Options of {@link ensureDevState}. */
export interface EnsureDevStateOptions {
  /** Stamps the development certificates' validity. */
  clock: Clock
  /** Told about every file created. */
  logger?: Logger
}

/**
 * For a configuration with `bootstrap: true` (the embedded default), creates
 * whichever development files it names are missing: the signing key and its
 * JWKS, and the development CA (plus `ca-key.pem` in the state folder) with
 * the gateway certificate and key. Existing files are never overwritten; a
 * new signing key is added to an existing JWKS. Does nothing without bootstrap.
 *
 * @returns the files created, absolute.
 * @throws KeywayError ERR_CONFIG_IO when some TLS files exist and others not
 *   (a new certificate would need the CA key that signed the others), or a
 *   file cannot be written; ERR_CONFIG_INVALID when an existing key is broken.
 */
export async function ensureDevState(config: KeywayConfig, options: EnsureDevStateOptions): Promise<string[]> {
  if (!config.bootstrap) return []
  const created: string[] = []
  const note = (path: string, what: string): void => {
    created.push(path)
    options.logger?.info({ file: path }, `created ${what}`)
  }
  await mkdirOrFail(config.state)
  if (ensurePolicy(config)) note(config.policy, 'development policy (a copy of bootstrapPolicy)')

  const { signing, jwks } = config.keys
  const hadKey = await exists(signing)
  const hadJwks = await exists(jwks)
  let newPublic: Jwks['keys'][number] | undefined
  if (!hadKey) {
    const key = await generateSigningKey()
    // Losing a race to another process is fine: its key is used below.
    if (await writeNew(signing, JSON.stringify(key.privateJwk, null, 2) + '\n', 0o600)) {
      newPublic = key.publicJwk
      note(signing, 'development token signing key')
    }
  }
  if (!hadJwks) {
    await loadSigningKey(signing) // refuses a broken key before publishing its public part
    const priv = JSON.parse(await readFile(signing, 'utf8')) as Parameters<typeof publicJwkOf>[0]
    if (await writeNew(jwks, JSON.stringify({ keys: [publicJwkOf(priv)] }, null, 2) + '\n', 0o644)) note(jwks, 'token verification key set')
  } else if (newPublic !== undefined) {
    // A key set without the new key would make every new token unverifiable.
    const set = JSON.parse(await readFile(jwks, 'utf8')) as Jwks
    set.keys = [...(Array.isArray(set.keys) ? set.keys : []), newPublic]
    await writeFileAtomic(jwks, JSON.stringify(set, null, 2) + '\n').catch((err: unknown) => {
      throw new KeywayError('ERR_CONFIG_IO', `cannot add the new signing key to ${jwks}: ${(err as Error).message}`, { cause: err })
    })
    options.logger?.warn({ file: jwks }, 'added the new signing key to the existing key set')
  }

  const ca = config.sidecar.ca
  const cert = config.gateway.tls.cert
  const key = config.gateway.tls.key
  const tls = [ca, cert, key]
  const missing: string[] = []
  for (const f of tls) if (!(await exists(f))) missing.push(f)
  if (missing.length === tls.length) {
    const pki = await createDevPki({ hosts: devHosts(config), now: options.clock.now() })
    if (await writeNew(ca, pki.caCertPem, 0o644)) note(ca, 'development CA certificate')
    const caKey = join(config.state, 'ca-key.pem')
    if (await writeNew(caKey, pki.caKeyPem, 0o600)) note(caKey, 'development CA key')
    if (await writeNew(cert, pki.certPem, 0o644)) note(cert, 'development gateway certificate')
    if (await writeNew(key, pki.keyPem, 0o600)) note(key, 'development gateway key')
  } else if (missing.length > 0) {
    const present = tls.filter((f) => !missing.includes(f))
    throw new KeywayError(
      'ERR_CONFIG_IO',
      `development TLS files are incomplete: ${missing.join(', ')} missing while ${present.join(', ')} exist. ` +
        'A new certificate needs the CA that signed the others: remove the remaining ones to have a new development CA created, or restore the missing ones',
      { detail: { missing, present } },
    )
  }
  return created
}

/**
 * With `bootstrap` and a `bootstrapPolicy`, copies that policy to `policy`
 * when the latter does not exist yet (never replacing it), so that edits land
 * in the state folder and the tracked policy stays as it is.
 *
 * @returns whether the copy was made.
 * @throws KeywayError ERR_CONFIG_IO when the seed cannot be read or the copy written.
 */
export function ensurePolicy(config: KeywayConfig): boolean {
  if (!config.bootstrap || config.bootstrapPolicy === '') return false
  try {
    mkdirSync(dirname(config.policy), { recursive: true })
    // EXCL: a policy already there (edited, or copied by a concurrent command) is kept.
    copyFileSync(config.bootstrapPolicy, config.policy, fsConstants.COPYFILE_EXCL)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw new KeywayError('ERR_CONFIG_IO', `cannot copy bootstrapPolicy ${config.bootstrapPolicy} to ${config.policy}: ${(err as Error).message}`, { cause: err })
  }
}

/** The names the development gateway certificate covers: loopback, plus the configured gateway host and server name. */
function devHosts(config: KeywayConfig): string[] {
  const hosts = ['localhost', '127.0.0.1']
  const listen = config.gateway.listen.host
  if (listen !== '0.0.0.0' && listen !== '::' && listen !== '') hosts.push(listen)
  if (config.sidecar.servername !== '') hosts.push(config.sidecar.servername)
  return [...new Set(hosts)]
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new KeywayError('ERR_CONFIG_IO', `cannot check ${path}: ${(err as Error).message}`, { cause: err })
  }
}

async function mkdirOrFail(dir: string): Promise<void> {
  try {
    await mkdirPrivate(dir)
  } catch (err) {
    throw new KeywayError('ERR_CONFIG_IO', `cannot create folder ${dir}: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Creates `dir` and its missing parents with mode 0700 whatever the umask
 * (they hold keys); folders that already exist are left as they are.
 */
async function mkdirPrivate(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: 0o700 })
  if (first === undefined) return
  // The umask may have narrowed the mode (never widened it): set it exactly on each folder made.
  for (let at = resolve(dir); ; at = dirname(at)) {
    await chmod(at, 0o700)
    if (at === resolve(first) || dirname(at) === at) break
  }
}

/** Creates `path` with `content` and `mode`, never replacing a file; false when it already exists. */
async function writeNew(path: string, content: string, mode: number): Promise<boolean> {
  try {
    await mkdirPrivate(dirname(path))
    const fh = await open(path, 'wx', mode)
    try {
      await fh.writeFile(content, 'utf8')
      await fh.chmod(mode)
      await fh.sync()
    } finally {
      await fh.close()
    }
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw new KeywayError('ERR_CONFIG_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err })
  }
}

function configText(hosts: readonly string[]): string {
  const servername = hosts.find((h) => isIP(h) === 0)
  return `# Keyway daemon configuration, created by \`keyway init\`. Relative paths are
# resolved against this file's folder. Any setting can be overridden by an
# environment variable (KEYWAY_GATEWAY_LISTEN, ...) or a flag; see docs/configuration.md.

# The policy: resources, roles, accounts and grants. Edited by \`keyway admin\`.
policy: policy.yaml

# \`keyway init\` created every key and certificate below; nothing is generated at start.
state: .
bootstrap: false

keys:
  # Private Ed25519 key that signs service tokens (mode 0600: keep it secret).
  signing: signing-key.json
  # Public keys that verify tokens; list several while rotating keys.
  jwks: jwks.json

tokens:
  issuer: keyway
  audience: keyway

gateway:
  listen: 127.0.0.1:7443
  # /metrics, /healthz and /readyz over plain HTTP.
  metrics: 127.0.0.1:9464
  tls:
    # Signed by the development CA in ca.pem (its key is ca-key.pem).
    cert: gateway.pem
    key: gateway-key.pem

sidecar:
  gateways: [127.0.0.1:7443]
  # Sidecars trust the gateway certificate through this CA.
  ca: ca.pem
${servername === undefined ? '' : `  servername: ${servername}\n`}`
}

const EXAMPLE_POLICY = `# Keyway policy, created by \`keyway init\`. \`keyway admin ...\` edits this file
# (comments and order are kept); the gateway reloads it on change and on SIGHUP.
# Check it with \`keyway policy check policy.yaml\`.
version: 1

settings:
  # Fixed local ports per resource: sidecars bind 127.0.0.1:<portOverride>.
  portOverrides: true
  # Sidecars bind every granted resource at start (needs portOverrides).
  autoConnect: true
  # Override ports are assigned from this range when a resource has none.
  portRange: [15000, 15999]

# What accounts may reach. kind: datasource, server, cluster, website or cloud.
resources:
  - name: example-postgres
    kind: datasource
    type: postgres
    address: 127.0.0.1:5432
    portOverride: 15432

# A role is a collection of grants; the accounts holding it inherit them.
roles:
  - name: example
    grants: [example-postgres]

# Service accounts and users, e.g. \`keyway admin services create ci --role example\`.
# An account with No Role reaches only the resources granted to it directly.
accounts: []
`
