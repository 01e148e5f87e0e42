import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

// The import rules of docs/dev/architecture.md, checked on the sources:
// another concept folder is reached only through its index.ts, and neither
// folders nor files import each other in a circle (type-only imports count).

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src')

/** `src`-relative path → the `src`-relative paths it imports (relative specifiers only). */
type Sources = ReadonlyMap<string, string>

const IMPORT = /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s*)?['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/gm

function importsOf(file: string, text: string): string[] {
  const out: string[] = []
  // Comments may show example imports; they are not edges.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
  for (const m of code.matchAll(IMPORT)) {
    const spec = (m[1] ?? m[2])!
    out.push(join(dirname(file), spec).replace(/\.js$/, '.ts'))
  }
  return out
}

/** The unit a file belongs to: its concept folder (`policy/`), or itself for a top-level file (`errors.ts`). */
function unitOf(file: string): string {
  const slash = file.indexOf('/')
  return slash === -1 ? file : file.slice(0, slash + 1)
}

function graph(sources: Sources): Map<string, string[]> {
  return new Map([...sources].map(([file, text]) => [file, importsOf(file, text)]))
}

/** Imports of another folder's file other than its index.ts, as `from -> to`. */
export function barrelBypasses(sources: Sources): string[] {
  const out: string[] = []
  for (const [file, targets] of graph(sources)) {
    for (const target of targets) {
      const unit = unitOf(target)
      if (unit === unitOf(file) || !unit.endsWith('/')) continue
      if (target !== `${unit}index.ts`) out.push(`${file} -> ${target}`)
    }
  }
  return out
}

/** Imports of files that do not exist, as `from -> to`. */
function missing(sources: Sources): string[] {
  const out: string[] = []
  for (const [file, targets] of graph(sources)) for (const target of targets) if (!sources.has(target)) out.push(`${file} -> ${target}`)
  return out
}

function cyclesIn(edges: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>()
  const cycles: string[][] = []
  const visit = (node: string, path: string[]): void => {
    state.set(node, 'open')
    path.push(node)
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === 'open') cycles.push([...path.slice(path.indexOf(next)), next])
      else if (!state.has(next)) visit(next, path)
    }
    path.pop()
    state.set(node, 'done')
  }
  for (const node of [...edges.keys()].sort()) if (!state.has(node)) visit(node, [])
  return cycles
}

/** Circles of imports between files, and between units (folders and top-level files). */
export function importCycles(sources: Sources): { files: string[]; units: string[] } {
  const files = graph(sources)
  const units = new Map<string, Set<string>>()
  for (const [file, targets] of files) {
    for (const target of targets) {
      const from = unitOf(file)
      const to = unitOf(target)
      if (from === to) continue
      if (!units.has(from)) units.set(from, new Set())
      units.get(from)!.add(to)
    }
  }
  const unitEdges = new Map([...units].map(([k, v]) => [k, [...v].sort()]))
  return { files: cyclesIn(files).map((c) => c.join(' -> ')), units: cyclesIn(unitEdges).map((c) => c.join(' -> ')) }
}

function readSources(): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else if (name.endsWith('.ts')) out.set(relative(SRC, path), readFileSync(path, 'utf8'))
    }
  }
  walk(SRC)
  return out
}

t.test('the checks find what they look for', async (t) => {
  const sources = new Map([
    ['errors.ts', 'export const x = 1'],
    ['daemon.ts', "import type { Io } from './cli/command.js'\nimport { x } from './errors.js'"],
    ['cli/index.ts', "export { run } from './run.js'"],
    ['cli/run.ts', "import { start } from '../daemon.js'\nconst lazy = () => import('./command.js')"],
    ['cli/command.ts', "export type Io = {}\n// import { nothing } from '../nowhere.js'"],
    ['policy/index.ts', "export { a } from './a.js'"],
    ['policy/a.ts', "import {\n  b,\n  type c,\n} from './b.js'"],
    ['policy/b.ts', "import type { a } from './a.js'\nimport { y } from '../yaml/document.js'"],
    ['yaml/document.ts', 'export const y = 1'],
  ])
  t.same(barrelBypasses(sources), ['daemon.ts -> cli/command.ts', 'policy/b.ts -> yaml/document.ts'])
  const cycles = importCycles(sources)
  t.same(cycles.units, ['cli/ -> daemon.ts -> cli/'], 'a type-only import closes a circle between units')
  t.same(cycles.files, ['policy/a.ts -> policy/b.ts -> policy/a.ts'], 'and between files')
  t.same(missing(sources), [], 'a commented-out import is not an import')
})

t.test('src/: other folders are imported through their index.ts only', async (t) => {
  const sources = readSources()
  t.ok(sources.size > 50, 'the sources were read')
  t.same(missing(sources), [], 'every relative import names an existing file')
  t.same(barrelBypasses(sources), [], 'no import of another folder\'s file other than its index.ts')
  for (const [file] of sources) {
    const unit = unitOf(file)
    if (unit.endsWith('/')) t.ok(sources.has(`${unit}index.ts`), `${unit} has an index.ts`)
  }
})

t.test('src/: no import cycles between folders or files (type-only imports included)', async (t) => {
  const cycles = importCycles(readSources())
  t.same(cycles.units, [], 'between folders and top-level files')
  t.same(cycles.files, [], 'between files')
})

/** `unit -> allowed units` from the **May import** lines of docs/dev/architecture.md. */
function documentedImports(markdown: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  const sections = markdown.split(/^### /m).slice(1)
  for (const section of sections) {
    const unit = /^`([^`]+)`/.exec(section)?.[1]
    const line = /^May import: (.*)$/m.exec(section)?.[1]
    if (unit === undefined || line === undefined) continue
    out.set(unit, new Set([...line.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)))
  }
  return out
}

t.test('docs/dev/architecture.md: a section per folder and top-level file, and every import it does not list fails', async (t) => {
  const doc = readFileSync(join(SRC, '..', 'docs', 'dev', 'architecture.md'), 'utf8')
  const allowed = documentedImports(doc)
  const sources = readSources()
  const units = new Set([...sources.keys()].map(unitOf))
  t.same([...units].filter((u) => !allowed.has(u)).sort(), [], 'every folder and top-level file has a section with a May import line')
  t.same([...allowed.keys()].filter((u) => !units.has(u)).sort(), [], 'every section is a real folder or file')
  const undocumented: string[] = []
  for (const [file, targets] of graph(sources)) {
    for (const target of targets) {
      const from = unitOf(file)
      const to = unitOf(target)
      if (from !== to && !allowed.get(from)?.has(to)) undocumented.push(`${file} -> ${to}`)
    }
  }
  t.same(undocumented, [], 'each import between folders is listed under May import')
  t.same(documentedImports('### `a/`\n\nx\n\nMay import: `b/`, `errors.ts`.\n'), new Map([['a/', new Set(['b/', 'errors.ts'])]]), 'the parser reads a section')
})
