/**
 * Runs the tests' TypeScript on Node's own type stripping instead of a
 * compiler: `.taprc` loads this file into every test process
 * (`node-arg: --import=./test/helpers/typescript-hooks.ts`, with tap's
 * `type-strip-only`, so tap's ts-node loader stays out). Node strips types from
 * `.ts` files by itself (Node 24 and 26); what it does not do, and these two
 * in-thread hooks (`module.registerHooks`) add:
 *
 * - resolve: sources and tests import `./x.js` for `./x.ts` (TypeScript's
 *   NodeNext convention, docs/dev/conventions.md); a relative `.js` import from
 *   a `.ts` file loads the `.ts` sibling when there is one, as tsc resolves it.
 * - load: a file using TypeScript syntax that has no erasable form (a
 *   constructor parameter property: `constructor(readonly usage: string)` in
 *   src/cli/command.ts) is compiled by TypeScript's `transpileModule` instead
 *   of stripped, with a source map for stack traces; only the processes that
 *   load such a file pay for loading the compiler.
 *
 * Why not ts-node (tap's default): it loads the TypeScript compiler into every
 * test process and every child it spawns, about half of `npm test`'s time
 * (docs/dev/testing.md, "How long npm test takes"). Type checking is
 * `npm run typecheck`'s job (npm test's pretest), not the loader's.
 *
 * A test that starts another Node process on a `.ts` file passes it the same
 * flag: `process.execArgv` holds it (test/admin/edit.ts).
 */
import { createRequire, registerHooks, stripTypeScriptTypes } from 'node:module'
import type * as TypeScript from 'typescript'

const RELATIVE = /^\.\.?\//

registerHooks({
  resolve(specifier, context, nextResolve) {
    const parent = context.parentURL
    if (parent?.startsWith('file:') && parent.endsWith('.ts') && RELATIVE.test(specifier) && specifier.endsWith('.js')) {
      try {
        return nextResolve(`${specifier.slice(0, -3)}.ts`, context)
      } catch (error) {
        // No .ts sibling: a real .js file (bin/keyway.js, dist/), resolved as written.
        if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error
      }
    }
    return nextResolve(specifier, context)
  },
  load(url, context, nextLoad) {
    const loaded = nextLoad(url, context)
    if (loaded.format !== 'module-typescript' || loaded.source === undefined) return loaded
    const source = typeof loaded.source === 'string' ? loaded.source : new TextDecoder().decode(loaded.source)
    let code: string
    try {
      code = stripTypeScriptTypes(source)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX') throw error
      // Node 26 dropped stripTypeScriptTypes' transform mode: compile this one file with
      // TypeScript, loaded only by a process that meets such a file.
      const ts = createRequire(import.meta.url)('typescript') as typeof TypeScript
      code = ts.transpileModule(source, {
        fileName: url,
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: true },
      }).outputText
    }
    return { ...loaded, format: 'module', source: code }
  },
})
