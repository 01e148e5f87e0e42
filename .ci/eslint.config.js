// Lint: the type-aware rules that guard a proxy full of sockets and promises
// (docs/dev/conventions.md, "Lint"). Run by `npm run lint` (eslint --config
// .ci/eslint.config.js: patterns are then relative to the project root, the
// working directory), which `npm test`'s pretest runs. Style is not linted
// here: only what can hide a bug.
import { fileURLToPath } from 'node:url'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.ci/**', 'test/fixtures/**'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: fileURLToPath(new URL('..', import.meta.url)) },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits or catches loses its error (an unhandled rejection ends the process).
      // tap's subtest promise (t.test()) is the one known-safe promise: tap awaits its subtests itself.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafePromises: [{ from: 'package', package: '@tapjs/core', name: 'PromiseWithSubtest' }] },
      ],
      // An async function where a callback is expected: its rejection goes nowhere.
      '@typescript-eslint/no-misused-promises': 'error',
      // A new frame type, error code or state must be handled everywhere it is switched on.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // Type-only imports vanish from the emitted JavaScript: no module is loaded for a type.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/require-await': 'off',
    },
  },
)
