import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

// Issue 22: a sidecar runs next to every job, so `keyway listen` loads only
// what a sidecar runs (not even jose: it never verifies a token), and
// `keyway gateway` loads the admin API (fastify), the development PKI
// (@peculiar/x509) and pg only when it uses them. Checked twice:
// on the sources (the static import graph, what survives compilation) and on
// the built CLI (every module a real `keyway COMMAND --help` process loaded,
// dependencies' own imports included).

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const SRC = join(ROOT, 'src')
const BIN = join(ROOT, 'bin', 'keyway.js')

const STATEMENT = /(?:^|[\s;}])(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]|(?:^|[\s;}])import\s+['"]([^'"]+)['"]/gm

/** `{ type a, type b }`: TypeScript drops such an import from the output. */
function onlyTypes(clause: string): boolean {
  const named = /^\{([\s\S]*)\}$/.exec(clause.trim())?.[1]
  if (named === undefined) return false
  const items = named.split(',').map((s) => s.trim()).filter((s) => s !== '')
  return items.length > 0 && items.every((s) => s.startsWith('type '))
}

/** The static imports of a source file that stay in the built JavaScript (not `import type`, not `import()`). */
export function runtimeImports(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
  const out: string[] = []
  for (const m of code.matchAll(STATEMENT)) {
    if (m[5] !== undefined) out.push(m[5])
    else if (m[2] === undefined && !onlyTypes(m[3]!)) out.push(m[4]!)
  }
  return out
}

/** Every `src/` file reached from `entry` through runtime imports, and the packages (and node: builtins) they import. */
export function staticGraph(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string): void => {
    if (files.has(file)) return
    files.add(file)
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec).replace(/\.js$/, '.ts'))
      else packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
    }
  }
  visit(join(SRC, entry))
  return { files: [...files].map((f) => relative(SRC, f)).sort(), packages: [...packages].sort() }
}

/** Folders and files of `src/` the sidecar must not load, and packages it must not load. */
const NOT_IN_SIDECAR = ['daemon.ts', 'gateway/', 'admin/', 'admin-api/', 'admin-ui/', 'store/', 'pki/', 'credentials/']
const NOT_IN_SIDECAR_PACKAGES = ['fastify', 'pg', '@peculiar/x509', 'reflect-metadata', 'jose']

t.test('the import scanner keeps value imports and drops what compilation drops', async (t) => {
  const text = [
    "import { a } from './a.js'",
    "import type { B } from './b.js'",
    "import { type C, type D } from './c.js'",
    "import { type E, f } from './e.js'",
    "export { g } from './g.js'",
    "export type { H } from './h.js'",
    "import 'reflect-metadata'",
    "const lazy = () => import('./lazy.js')",
    "// import { commented } from './commented.js'",
    'import {\n  x,\n  y,\n} from "pg"',
  ].join('\n')
  t.same(runtimeImports(text), ['./a.js', './e.js', './g.js', 'reflect-metadata', 'pg'])
  t.ok(staticGraph('cli/listen.ts').packages.includes('yaml'), 'the graph walk finds yaml four imports deep behind `keyway listen` (so it can find anything)')
})

t.test('the CLI dispatch loads no command: main.ts reaches neither daemon', async (t) => {
  const { files, packages } = staticGraph('main.ts')
  t.same(files.filter((f) => f.startsWith('daemon')), [], 'no daemon wiring')
  t.same(packages.filter((p) => !p.startsWith('node:')), [], `no package at all (${packages.join(', ')})`)
})

t.test('`keyway listen` statically imports no gateway, admin, store or PKI code, and neither fastify nor pg', async (t) => {
  const { files, packages } = staticGraph('cli/listen.ts')
  t.ok(files.includes('daemon-sidecar.ts') && files.includes('sidecar/index.ts'), 'the sidecar wiring is in the graph')
  t.same(files.filter((f) => NOT_IN_SIDECAR.some((n) => f === n || f.startsWith(n))), [], 'no gateway-side source file')
  t.same(packages.filter((p) => NOT_IN_SIDECAR_PACKAGES.includes(p)), [], 'no gateway-side package')
})

t.test('`keyway gateway` statically imports neither the admin API (fastify), the development PKI (@peculiar/x509) nor pg', async (t) => {
  const { files, packages } = staticGraph('cli/gateway.ts')
  t.ok(files.includes('daemon.ts') && files.includes('gateway/index.ts'), 'the gateway wiring is in the graph')
  t.same(files.filter((f) => f.startsWith('admin-api/') || f.startsWith('admin-ui/') || f === 'pki/dev-pki.ts'), [], 'loaded only when used')
  t.same(packages.filter((p) => ['fastify', '@peculiar/x509', 'reflect-metadata', 'pg'].includes(p)), [], 'no admin API, PKI or PostgreSQL package')
})

t.test('no source imports the ESM namespace of node:http (on Node 26 it loads undici, http2 and zlib: ~15 MB)', async (t) => {
  const offenders: string[] = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else if (name.endsWith('.ts') && runtimeImports(readFileSync(path, 'utf8')).includes('node:http')) offenders.push(relative(SRC, path))
    }
  }
  walk(SRC)
  t.same(offenders, [], "use process.getBuiltinModule('node:http') (type imports are fine)")
})

/** The package a loaded module's URL belongs to (`fastify`, `@peculiar/x509`), or undefined for other files. */
function packageOf(url: string): string | undefined {
  const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  return m?.[1]
}

/**
 * Runs `keyway ARGS` (the built CLI; npm test builds dist/ first) with a
 * module hook that records every module the process loaded, and the
 * built-in modules (`process.moduleLoadList`).
 */
async function loadedBy(args: string[]): Promise<{ packages: string[]; files: string[]; builtins: string[]; code: number | null }> {
  const dir = mkdtempSync(join(tmpdir(), 'keyway-footprint-'))
  try {
    const out = join(dir, 'loaded.json')
    const hook = join(dir, 'hook.mjs')
    writeFileSync(
      hook,
      [
        "import { registerHooks } from 'node:module'",
        "import { writeFileSync } from 'node:fs'",
        'const seen = new Set()',
        'registerHooks({ load(url, context, next) { seen.add(url); return next(url, context) } })',
        `process.on('exit', () => writeFileSync(${JSON.stringify(out)}, JSON.stringify({ urls: [...seen], builtins: process.moduleLoadList })))`,
      ].join('\n'),
    )
    const env = { ...process.env }
    for (const k of Object.keys(env)) if (k.startsWith('KEYWAY_') || k === 'NODE_OPTIONS') delete env[k]
    const child = spawn(process.execPath, ['--import', pathToFileURL(hook).href, BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
    let loaded: { urls: string[]; builtins: string[] }
    try {
      loaded = JSON.parse(readFileSync(out, 'utf8')) as { urls: string[]; builtins: string[] }
    } catch (err) {
      throw new Error(`keyway ${args.join(' ')} wrote no module list (exit ${code}): ${stderr}`, { cause: err })
    }
    const srcUrl = pathToFileURL(join(ROOT, 'dist', 'src')).href + '/'
    return {
      code,
      packages: [...new Set(loaded.urls.map(packageOf).filter((p): p is string => p !== undefined))].sort(),
      files: loaded.urls.filter((u) => u.startsWith(srcUrl)).map((u) => u.slice(srcUrl.length)).sort(),
      builtins: loaded.builtins,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

t.test('a real `keyway listen` process loads no gateway-side code or package, and not undici', async (t) => {
  const listen = await loadedBy(['listen', '--help'])
  t.equal(listen.code, 0, 'keyway listen --help exits 0')
  t.ok(listen.packages.includes('pino') && listen.packages.includes('zod'), 'the module hook sees the packages a command loads, CommonJS (pino) and ESM (zod)')
  t.ok(listen.files.includes('daemon-sidecar.js'), 'the sidecar wiring was loaded')
  t.same(listen.files.filter((f) => NOT_IN_SIDECAR.some((n) => f === n.replace(/\.ts$/, '.js') || f.startsWith(n))), [], 'no gateway-side file')
  t.same(listen.packages.filter((p) => NOT_IN_SIDECAR_PACKAGES.includes(p)), [], `no gateway-side package (loaded: ${listen.packages.join(', ')})`)
  t.same(listen.builtins.filter((b) => b.includes('undici')), [], 'undici stays unloaded')
})

t.test('a real `keyway gateway` process loads neither fastify, @peculiar/x509 nor pg until it needs them', async (t) => {
  const gateway = await loadedBy(['gateway', '--help'])
  t.equal(gateway.code, 0, 'keyway gateway --help exits 0')
  t.ok(gateway.files.includes('daemon.js'), 'the gateway wiring was loaded')
  t.same(gateway.packages.filter((p) => ['fastify', '@peculiar/x509', 'reflect-metadata', 'pg'].includes(p)), [], `loaded: ${gateway.packages.join(', ')}`)
  t.same(gateway.builtins.filter((b) => b.includes('undici')), [], 'undici stays unloaded')
})
