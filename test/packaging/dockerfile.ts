/**
 * The Dockerfile, proved without Docker: its instructions are parsed, checked
 * (pinned base, non-root user, entrypoint, healthcheck), and its build and run
 * steps are executed in a scratch folder outside the repository, from a build
 * context made with .dockerignore exactly as `docker build` would send it:
 * the build stage's `npm ci` and `npm run build`, then a runtime folder with
 * only what the runtime stage's COPY lines copy plus its production install.
 * The result must start (`--version`, every command's `--help`), carry no
 * TypeScript or dev dependency, run the image's default command as a real
 * sidecar, and answer the image's HEALTHCHECK and the Kubernetes startup probe.
 *
 * Set KEYWAY_SKIP_PACKAGING=1 to skip the build (it runs `npm ci` twice,
 * from the local npm cache when warm).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, chownSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { COMMANDS } from '../../src/cli/commands.js'
import { createTestPki, startFakeGateway } from '../helpers/fake-gateway.js'
import { refusedPort } from '../helpers/ports.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
}
const SKIP = process.env.KEYWAY_SKIP_PACKAGING === '1'
// Shaped like a service token (a compact JWS); only the fake gateway checks it.
const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzdmNfcGFja2FnaW5nIn0.cGFja2FnaW5nLXRlc3Qtc2lnbmF0dXJl'

// ---------------------------------------------------------------- parsing

/** One Dockerfile instruction: `COPY --from=build /app/dist ./dist`. */
interface Instruction {
  readonly line: number
  readonly keyword: string
  /** `--name=value` options before the arguments. */
  readonly flags: Record<string, string>
  /** The arguments after the flags, as written (continuations joined). */
  readonly rest: string
}

interface Stage {
  readonly image: string
  readonly name: string
  readonly instructions: Instruction[]
}

interface Dockerfile {
  /** ARGs before the first FROM, with their defaults. */
  readonly args: Record<string, string>
  readonly stages: Stage[]
}

function splitFlags(text: string): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {}
  let rest = text
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest)
    if (!m) return { flags, rest }
    flags[m[1]!] = m[2] ?? ''
    rest = rest.slice(m[0].length)
  }
}

/** A small Dockerfile parser: comments, `\` continuations, flags, ARG substitution in FROM. */
function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]!.trim()
    if (first === '' || first.startsWith('#')) continue
    const start = i + 1
    let joined = first
    while (joined.endsWith('\\')) {
      joined = joined.slice(0, -1)
      // Comment lines inside a continuation are dropped, as Docker does.
      do i++
      while (i < lines.length && lines[i]!.trim().startsWith('#'))
      joined += ' ' + (lines[i] ?? '').trim()
    }
    const m = /^(\S+)\s*(.*)$/.exec(joined)!
    const { flags, rest } = splitFlags(m[2]!)
    instructions.push({ line: start, keyword: m[1]!.toUpperCase(), flags, rest: rest.trim() })
  }
  const args: Record<string, string> = {}
  const stages: Stage[] = []
  for (const ins of instructions) {
    if (ins.keyword === 'ARG' && stages.length === 0) {
      const [name, value = ''] = ins.rest.split('=', 2) as [string, string?]
      args[name] = value
    } else if (ins.keyword === 'FROM') {
      const [image, as, name] = ins.rest.split(/\s+/)
      const resolved = image!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args[(a ?? b)!] ?? '')
      stages.push({ image: resolved, name: as?.toUpperCase() === 'AS' ? name! : String(stages.length), instructions: [] })
    } else {
      if (stages.length === 0) throw new Error(`line ${ins.line}: ${ins.keyword} before FROM`)
      stages[stages.length - 1]!.instructions.push(ins)
    }
  }
  return { args, stages }
}

function execForm(ins: Instruction): string[] {
  const value = JSON.parse(ins.rest) as unknown
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new Error(`line ${ins.line}: ${ins.keyword} is not in exec (JSON) form`)
  return value
}

function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {}
  for (const ins of stage.instructions.filter((i) => i.keyword === 'ENV')) {
    for (const m of ins.rest.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, '')
  }
  return env
}

function last(stage: Stage, keyword: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1)
}

// ------------------------------------------------------------ .dockerignore

function globToRegExp(pattern: string): RegExp {
  let re = ''
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/'
      re += slash ? '(?:.*/)?' : '.*'
      i += slash ? 2 : 1
    } else if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = pattern.indexOf(']', i)
      re += pattern.slice(i, end + 1)
      i = end
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/**
 * Docker's .dockerignore semantics: patterns relative to the context root,
 * a pattern that matches a folder excludes everything in it, `!` re-includes,
 * and the last matching pattern wins.
 */
function dockerignore(text: string): { ignored(path: string): boolean; mayReinclude(dir: string): boolean } {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!')
      const pattern = posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, '')
      return { negate, pattern, re: globToRegExp(pattern) }
    })
  return {
    ignored(path) {
      const parts = path.split('/')
      const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
      let excluded = false
      for (const r of rules) if (prefixes.some((p) => r.re.test(p))) excluded = !r.negate
      return excluded
    },
    mayReinclude(dir) {
      return rules.some((r) => r.negate && (r.pattern.startsWith(dir + '/') || r.pattern.startsWith('**')))
    },
  }
}

/** The files `docker build .` would send, relative to the repository. */
function buildContext(): string[] {
  const ignore = dockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'))
  const out: string[] = []
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(ROOT, rel))) {
      const path = rel ? `${rel}/${name}` : name
      const st = lstatSync(join(ROOT, path))
      if (st.isDirectory()) {
        if (!ignore.ignored(path) || ignore.mayReinclude(path)) walk(path)
      } else if (!ignore.ignored(path)) out.push(path)
    }
  }
  walk('')
  return out.sort()
}

// ---------------------------------------------------------------- running

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'npm_config_cache', 'npm_config_registry']) {
    const v = process.env[k]
    if (v !== undefined) env[k] = v
  }
  return env
}

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/** The uid and gid to run image commands as: the Dockerfile's USER when the test can switch to it (as root). */
interface RunAs {
  uid?: number
  gid?: number
}

/**
 * `argv` run with exactly `env`: tap's process tracking adds its NODE_OPTIONS
 * (an --import of a file in this checkout) to whatever env a test passes to
 * spawn, which the image's user may not be able to read and the image never
 * has. `env -i` drops it, and everything else of the runner's.
 */
function exactly(argv: string[], env: Record<string, string>): [string, string[]] {
  return ['/usr/bin/env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv]]
}

async function run(argv: string[], options: { cwd: string; env: Record<string, string> } & RunAs): Promise<Ran> {
  const [file, args] = exactly(argv, options.env)
  const child = spawn(file, args, { cwd: options.cwd, uid: options.uid, gid: options.gid, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}

/**
 * The node binary the image's user runs: the runner's own when that user can
 * run it, else a copy in the image's /usr/local/bin (where the base image has
 * its node).
 */
async function nodeFor(root: string, as: RunAs): Promise<string> {
  if (as.uid === undefined) return process.execPath
  const probe = await run([process.execPath, '-e', ''], { cwd: root, env: {}, ...as }).catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }))
  if (probe.code === 0) return process.execPath
  const copy = join(root, 'usr/local/bin/node')
  mkdirSync(dirname(copy), { recursive: true })
  cpSync(process.execPath, copy)
  chmodSync(copy, 0o755)
  return copy
}

/** The commands of a RUN line the test knows how to run outside Docker. */
function runCommands(ins: Instruction): string[][] {
  if (ins.rest.startsWith('[')) return [execForm(ins)]
  return ins.rest.split('&&').map((part) => {
    const words = part.trim().split(/\s+/)
    if (words[0] !== 'npm' || (words[1] !== 'ci' && words[1] !== 'run')) {
      throw new Error(`Dockerfile line ${ins.line}: the packaging test cannot run "${part.trim()}" outside Docker; teach test/packaging/dockerfile.ts`)
    }
    // The local npm cache first (the registry is the fallback), as CI has it.
    if (words[1] === 'ci') for (const f of ['--prefer-offline', '--no-audit', '--no-fund']) if (!words.includes(f)) words.push(f)
    return words
  })
}

/** Maps an image path to the scratch folder standing for the stage's file system. */
function inStage(root: string, workdir: string, path: string): string {
  return path.startsWith('/') ? join(root, path) : join(root, workdir, path)
}

interface Built {
  context: string
  roots: Record<string, string>
  /** The runtime stage's file system root. */
  runtime: string
}

/** Runs every stage's WORKDIR, COPY and RUN in scratch folders. */
async function buildStages(df: Dockerfile, scratch: string, context: string): Promise<Built> {
  const roots: Record<string, string> = {}
  for (const [i, stage] of df.stages.entries()) {
    const root = join(scratch, `stage-${i}-${stage.name}`)
    mkdirSync(root, { recursive: true })
    roots[stage.name] = root
    let workdir = '/'
    const env: Record<string, string> = {}
    for (const ins of stage.instructions) {
      if (ins.keyword === 'WORKDIR') {
        workdir = posix.resolve(workdir, ins.rest)
        mkdirSync(join(root, workdir), { recursive: true })
      } else if (ins.keyword === 'ENV') Object.assign(env, envOf({ ...stage, instructions: [ins] }))
      else if (ins.keyword === 'COPY') {
        const parts = ins.rest.startsWith('[') ? execForm(ins) : ins.rest.split(/\s+/)
        const dest = parts.pop()!
        const from = ins.flags.from
        for (const src of parts) {
          const source = from === undefined ? join(context, src) : join(roots[from] ?? '', src)
          if (!existsSync(source)) throw new Error(`Dockerfile line ${ins.line}: COPY source ${src} is not in the ${from ?? 'build context'}`)
          const target = inStage(root, workdir, dest)
          const into = statSync(source).isFile() && (dest.endsWith('/') || parts.length > 1) ? join(target, basename(src)) : target
          mkdirSync(dirname(into), { recursive: true })
          cpSync(source, into, { recursive: true })
        }
      } else if (ins.keyword === 'RUN') {
        for (const argv of runCommands(ins)) {
          const r = await run(argv, { cwd: join(root, workdir), env: { ...baseEnv(), ...env } })
          if (r.code !== 0) throw new Error(`Dockerfile line ${ins.line}: ${argv.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`)
        }
      }
    }
  }
  return { context, roots, runtime: roots[df.stages.at(-1)!.name]! }
}

// ------------------------------------------------------------------ tests

// Two npm installs and a compile take about 30 s on an idle machine; a busy CI
// runner running other files in parallel can take several times that, beyond
// the 120 s of .taprc. The root timeout tells the runner.
if (!SKIP) t.setTimeout(300_000)

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
const runtime = dockerfile.stages.at(-1)!
const build = dockerfile.stages[0]!

t.test('the base image is a pinned Node 26, in every stage', async (t) => {
  t.ok(dockerfile.stages.length >= 2, 'multi-stage: a build stage and a runtime stage')
  for (const stage of dockerfile.stages) {
    const m = /^node:(\d+)\.(\d+)\.(\d+)-[a-z]+-slim(@sha256:[0-9a-f]{64})?$/.exec(stage.image)
    t.ok(m, `${stage.name}: ${stage.image} names a full version`)
    t.equal(m?.[1], '26', `${stage.name}: Node 26, the primary runtime of package.json engines and CI`)
    t.notMatch(stage.image, /latest/, `${stage.name}: no latest`)
  }
  t.equal(new Set(dockerfile.stages.map((s) => s.image)).size, 1, 'build and runtime use the same base')
})

t.test('the runtime stage ships compiled JavaScript and production dependencies only', async (t) => {
  const runs = runtime.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.rest)
  t.ok(runs.some((r) => /npm ci\b.*--omit=dev/.test(r) && /--ignore-scripts/.test(r)), 'npm ci --omit=dev --ignore-scripts')
  t.notOk(runs.some((r) => /npm run build|tsc/.test(r)), 'no compilation at run time')
  const copies = runtime.instructions.filter((i) => i.keyword === 'COPY')
  const fromBuild = copies.filter((c) => c.flags.from !== undefined)
  t.same(fromBuild.map((c) => [c.flags.from, c.rest]), [[build.name, '/app/dist ./dist']], 'only dist/ comes from the build stage')
  const sources = copies.filter((c) => c.flags.from === undefined).flatMap((c) => c.rest.split(/\s+/).slice(0, -1))
  for (const needed of ['bin', 'config', 'package.json', 'package-lock.json']) t.ok(sources.includes(needed), `copies ${needed}`)
  t.notOk(sources.some((s) => /^(src|test|tsconfig)/.test(s)), 'no sources or compiler configuration')
  t.ok(build.instructions.some((i) => i.keyword === 'RUN' && /npm run build/.test(i.rest)), 'the build stage compiles')
})

t.test('the container runs keyway as an unprivileged user, listen by default', async (t) => {
  const user = last(runtime, 'USER')?.rest ?? 'root'
  const name = user.split(':')[0]!
  t.not(name, 'root', 'not root')
  t.not(name, '0', 'not uid 0')
  t.match(name, /^[1-9]\d*$/, 'numeric, so Kubernetes runAsNonRoot can verify it')
  t.same(execForm(last(runtime, 'ENTRYPOINT')!), ['node', '/app/bin/keyway.js'], 'keyway is the entrypoint (exec form: signals reach node)')
  t.same(execForm(last(runtime, 'CMD')!), ['listen'], 'the sidecar is the default command')
  const env = envOf(runtime)
  t.equal(env.KEYWAY_CONFIG, '/etc/keyway/keyway.yaml', 'the container configuration')
  t.notOk('KEYWAY_TOKEN' in env, 'no token baked into the image')
  const health = last(runtime, 'HEALTHCHECK')
  t.ok(health, 'a HEALTHCHECK')
  t.match(health!.rest, /^CMD \[/, 'in exec form (no shell needed)')
  t.ok(health!.flags.interval && health!.flags.timeout, 'with an interval and a timeout')
})

t.test('.dockerignore keeps secrets, state and local builds out of the context', async (t) => {
  const ignore = dockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'))
  for (const p of ['demo-job.token', 'src/cli/x.token', 'state/ca-key.pem', 'node_modules/zod/package.json', 'dist/src/main.js', '.git/config', '.tap/x', 'npm-debug.log', 'config/node_modules/x']) {
    t.ok(ignore.ignored(p), `${p} is not sent`)
  }
  for (const p of ['package.json', 'package-lock.json', 'src/main.ts', 'bin/keyway.js', 'config/keyway.yaml', 'deploy/docker/keyway.yaml']) {
    t.notOk(ignore.ignored(p), `${p} is sent`)
  }
  // Whatever git ignores, Docker ignores too.
  for (const line of readFileSync(join(ROOT, '.gitignore'), 'utf8').split('\n')) {
    const p = line.trim().replace(/\/$/, '')
    if (p && !p.startsWith('#')) t.ok(ignore.ignored(p.replace(/\*/g, 'x')) && ignore.ignored(`${p.replace(/\*/g, 'x')}/x`), `gitignored ${line.trim()}`)
  }
  const context = new Set(buildContext())
  for (const stage of dockerfile.stages) {
    for (const c of stage.instructions.filter((i) => i.keyword === 'COPY' && i.flags.from === undefined)) {
      for (const src of c.rest.split(/\s+/).slice(0, -1)) {
        t.ok(context.has(src) || [...context].some((f) => f.startsWith(src + '/')), `COPY ${src} (line ${c.line}) is in the context`)
      }
    }
  }
})

t.test('build and run the image steps outside Docker', { skip: SKIP ? 'KEYWAY_SKIP_PACKAGING=1' : false }, async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 'keyway-image-'))
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
  const context = join(scratch, 'context')
  for (const file of buildContext()) {
    mkdirSync(dirname(join(context, file)), { recursive: true })
    cpSync(join(ROOT, file), join(context, file))
  }
  const built = await buildStages(dockerfile, scratch, context)
  const root = built.runtime
  const app = join(root, 'app')
  // Run the image's commands as its USER when this test runs as root (CI does), as Docker would:
  // proves the unprivileged user can read everything and needs to write nothing.
  const [uid, gid] = (last(runtime, 'USER')?.rest ?? '0').split(':').map(Number) as [number, number | undefined]
  const as: RunAs = process.getuid?.() === 0 && uid > 0 ? { uid, gid: gid ?? uid } : {}
  if (as.uid !== undefined) chmodSync(scratch, 0o755) // mkdtemp makes it 0700

  // The image has its own node; the runner's may sit where the image's user cannot go (a
  // checkout-local Node under a 0700 home): then the image gets a copy, as it would have one.
  const node = await nodeFor(root, as)
  // The image's environment, as Docker gives it: the image's ENV (its absolute paths inside the
  // scratch root), a PATH and a HOME, and nothing of the runner's (NODE_OPTIONS, npm_*, TAP_*...).
  const imageEnv: Record<string, string> = { PATH: `${dirname(node)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: '/' }
  for (const [k, v] of Object.entries(envOf(runtime))) imageEnv[k] = v.startsWith('/') && existsSync(join(root, v)) ? join(root, v) : v
  const inImage = (argv: string[]): string[] =>
    argv.map((a, i) => (i === 0 && a === 'node' ? node : a.startsWith('/') && existsSync(join(root, a)) ? join(root, a) : a))
  const entrypoint = [...execForm(last(runtime, 'ENTRYPOINT')!)]
  // HEALTHCHECK [OPTIONS] CMD ["node", "/app/healthcheck.mjs"], as docker exec runs it.
  const healthcheckCommand = (): string[] => {
    const health = last(runtime, 'HEALTHCHECK')!
    return inImage(execForm({ ...health, rest: health.rest.replace(/^CMD\s+/, '') }))
  }
  const keyway = (args: string[], env: Record<string, string> = {}) => run(inImage([...entrypoint, ...args]), { cwd: app, env: { ...imageEnv, ...env }, ...as })

  t.test('no TypeScript and no dev dependency at run time', async (t) => {
    for (const dev of Object.keys(PKG.devDependencies)) {
      if (!(dev in PKG.dependencies)) t.notOk(existsSync(join(app, 'node_modules', dev)), `${dev} is not installed`)
    }
    t.notOk(existsSync(join(app, 'node_modules', 'typescript')), 'typescript is not installed')
    t.notOk(existsSync(join(app, 'node_modules', 'tap')), 'tap is not installed')
    for (const dep of Object.keys(PKG.dependencies)) t.ok(existsSync(join(app, 'node_modules', dep)), `${dep} is installed`)
    const ts: string[] = []
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        if (name === 'node_modules') continue
        const path = join(dir, name)
        if (statSync(path).isDirectory()) walk(path)
        else if (/\.(c|m)?ts$/.test(name)) ts.push(path)
      }
    }
    walk(app)
    t.same(ts, [], 'no .ts file in /app')
    t.notOk(existsSync(join(app, 'src')), 'no src/')
    t.ok(existsSync(join(app, 'dist', 'src', 'main.js')), 'dist/src/main.js')
  })

  t.test('keyway --version and every command --help run from the image', async (t) => {
    const v = await keyway(['--version'])
    t.equal(v.code, 0, v.stderr)
    t.equal(v.stdout.trim(), PKG.version)
    for (const c of COMMANDS) {
      const r = await keyway([c.name, '--help'])
      t.equal(r.code, 0, `${c.name} --help: ${r.stderr}`)
      t.match(r.stdout, /Usage: keyway/, `${c.name} prints its usage`)
    }
  })

  t.test('the image reads its container configuration', async (t) => {
    const r = await keyway(['config', 'print', '--json'])
    t.equal(r.code, 0, r.stderr)
    const config = JSON.parse(r.stdout) as Record<string, any>
    t.equal(config.file, join(root, 'etc/keyway/keyway.yaml'))
    t.equal(config.bootstrap, false, 'no key generation in a container')
    t.equal(config.sidecar.tokenFile, '/var/run/secrets/keyway/token', 'the token file is the mounted secret')
    t.equal(config.sidecar.control, '127.0.0.1:7070')
    t.equal(config.gateway.listen, '0.0.0.0:7443', 'the gateway listens on the container network')
    t.equal(config.gateway.metrics, '127.0.0.1:9464')
    // Any readable file passes for the CA here: the control address is refused before any TLS.
    const refused = await keyway(['listen'], { KEYWAY_TOKEN: TOKEN, KEYWAY_CA: join(root, 'etc/keyway/keyway.yaml'), KEYWAY_CONTROL: '0.0.0.0:7070' })
    t.equal(refused.code, 1, 'the sidecar control endpoint never leaves loopback')
    t.match(refused.stderr, /ERR_CONFIG_INVALID.*loopback/)
  })

  t.test('the default command is a real sidecar: HEALTHCHECK, startup probe and SIGTERM', async (t) => {
    const pki = await createTestPki()
    const gateway = await startFakeGateway(t, { pki, token: TOKEN, view: { settings: { portOverrides: false, autoConnect: false }, resources: [] } })
    const caFile = join(scratch, 'ca.pem')
    writeFileSync(caFile, pki.caCertPem)
    // The runtime directory as the Kubernetes job gives it (an emptyDir at /run/keyway the pod's
    // user may write): not the shared /tmp/keyway-<uid> that any other sidecar of that user may hold.
    const emptyDir = join(root, 'run/keyway')
    // /run itself as the image has it (0755): a recursive mkdir would give it 0700 too, and root's.
    mkdirSync(join(root, 'run'), { recursive: true, mode: 0o755 })
    mkdirSync(emptyDir, { recursive: true, mode: 0o700 })
    if (as.uid !== undefined) chownSync(emptyDir, as.uid, as.gid ?? as.uid)
    const rt = { KEYWAY_SIDECAR_RUNTIME_DIR: join(emptyDir, 'sidecar') }
    const env = { ...imageEnv, ...rt, KEYWAY_TOKEN: TOKEN, KEYWAY_GATEWAY: gateway.address, KEYWAY_CA: caFile, KEYWAY_CONTROL: '127.0.0.1:0' }
    const [command, args] = exactly(inImage([...entrypoint, ...execForm(last(runtime, 'CMD')!)]), env)
    const child = spawn(command, args, { cwd: app, ...as, stdio: ['ignore', 'ignore', 'pipe'] })
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    })
    let log = ''
    const control = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (c: Buffer) => {
        log += c.toString()
        const m = /"event":"control_listening","address":"([^"]+)"/.exec(log)
        if (m) resolve(m[1]!)
      })
      void exited.then(([code]) => reject(new Error(`keyway listen exited ${code} before listening:\n${log}`)))
    })
    if (as.uid !== undefined && existsSync(`/proc/${child.pid}/status`)) {
      t.match(readFileSync(`/proc/${child.pid}/status`, 'utf8'), new RegExp(`^Uid:\\s+${as.uid}\\s`, 'm'), `runs as the image's user ${as.uid}`)
    }
    // In the container the address is the fixed 127.0.0.1:7070; here port 0 picked one.
    // Only the sidecar's endpoint: whatever else listens on this machine's 9464 must not count.
    const probeEnv = { ...imageEnv, ...rt, KEYWAY_CONTROL: control, KEYWAY_GATEWAY_METRICS: '' }
    const healthcheck = healthcheckCommand()
    const healthy = await run(healthcheck, { cwd: app, env: probeEnv, ...as })
    t.equal(healthy.code, 0, `HEALTHCHECK passes: ${healthy.stdout}${healthy.stderr}`)

    const job = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes/job-with-sidecar.yaml'), 'utf8')).map((d) => d.toJS() as any)
    const sidecar = job.find((d) => d.kind === 'Job').spec.template.spec.initContainers.find((c: any) => c.restartPolicy === 'Always')
    const startup = inImage(sidecar.startupProbe.exec.command as string[])
    const ready = await run(startup, { cwd: app, env: probeEnv, ...as })
    t.equal(ready.code, 0, `the Kubernetes startupProbe command passes once the sidecar is ready: ${ready.stderr}`)
    t.ok(gateway.counts.resourcePolls > 0, 'the sidecar asked the gateway for its resources')

    child.kill('SIGTERM')
    const [code, signal] = await exited
    t.equal(code, 0, `SIGTERM drains and exits 0 (signal ${signal})`)
    t.match(log, /"event":"sidecar_stopping"/)
    const unhealthy = await run(healthcheck, { cwd: app, env: probeEnv, ...as })
    t.equal(unhealthy.code, 1, `HEALTHCHECK fails when nothing answers: ${unhealthy.stdout}`)
    const notReady = await run(inImage(['node', '/app/bin/keyway.js', 'wait', '--timeout', '0.2']), { cwd: app, env: probeEnv, ...as })
    t.equal(notReady.code, 1, 'keyway wait fails without a sidecar')
    t.match(notReady.stderr, /ERR_NOT_READY/)
  })

  t.test('HEALTHCHECK against the gateway metrics endpoint', async (t) => {
    let status = 200
    const server = http.createServer((req, res) => {
      res.writeHead(req.url === '/healthz' ? status : 404)
      res.end()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const port = (server.address() as AddressInfo).port
    const nobody = await refusedPort()
    const healthcheck = healthcheckCommand()
    const env = { ...imageEnv, KEYWAY_CONTROL: `127.0.0.1:${nobody}`, KEYWAY_GATEWAY_METRICS: `0.0.0.0:${port}` }
    const ok = await run(healthcheck, { cwd: app, env, ...as })
    t.equal(ok.code, 0, `a wildcard metrics address is probed on loopback: ${ok.stdout}`)
    const gatewayOnly = await run([...healthcheck, 'gateway'], { cwd: app, env, ...as })
    t.equal(gatewayOnly.code, 0, gatewayOnly.stdout)
    const listenOnly = await run([...healthcheck, 'listen'], { cwd: app, env, ...as })
    t.equal(listenOnly.code, 1, `asked for the sidecar only, the gateway's answer does not count: ${listenOnly.stdout}`)
    status = 500
    const failing = await run(healthcheck, { cwd: app, env, ...as })
    t.equal(failing.code, 1, `a non-200 /healthz is unhealthy: ${failing.stdout}`)
  })
})
