import { LineCounter, parseDocument, type Document } from 'yaml'
import { locateIn } from '../yaml/index.js'
import { DocumentError, type Problem } from '../errors.js'
import type { PolicyPath, SourcePosition } from './validate.js'

export { locateIn }

/** A policy file parsed into YAML, not yet validated. */
export interface ParsedPolicy {
  readonly file: string
  /** The YAML document, kept so problems can be located by path. */
  readonly document: Document.Parsed
  readonly lineCounter: LineCounter
  /** The plain value of the document (`document.toJS()`): what `compilePolicy` takes. */
  readonly value: unknown
  /**
   * The 1-based line and column of a path: a mapping entry's key, or a
   * sequence item. A path that does not exist (a missing key) resolves to its
   * nearest existing ancestor.
   */
  locate(path: PolicyPath): SourcePosition
}

/**
 * Parses policy YAML. YAML syntax errors (bad indentation, duplicate keys,
 * several documents, ...) throw `DocumentError('ERR_POLICY_INVALID')` with
 * every error located; the document's content is checked later, by
 * `compilePolicy`.
 */
export function parsePolicyText(text: string, file: string): ParsedPolicy {
  const lineCounter = new LineCounter()
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, keepSourceTokens: false })
  if (document.errors.length > 0) {
    const problems: Problem[] = document.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0])
      return { file, line: pos.line, col: pos.col, key: '', message: `YAML syntax: ${e.message}` }
    })
    throw new DocumentError('ERR_POLICY_INVALID', problems)
  }
  // An empty file is a truncated write far more often than a wish to revoke
  // everything: refuse it, so a reload keeps the last good policy.
  if (document.contents === null) {
    throw new DocumentError('ERR_POLICY_INVALID', [
      { file, line: 1, col: 1, key: '', message: 'the policy file is empty: write at least "version: 1" (an empty policy must say so)' },
    ])
  }
  let value: unknown
  try {
    value = document.toJS({ maxAliasCount: 100 })
  } catch (err) {
    // Alias bombs and the like surface here, not as parse errors.
    const message = err instanceof Error ? err.message : String(err)
    throw new DocumentError('ERR_POLICY_INVALID', [{ file, line: 1, col: 1, key: '', message: `YAML: ${message}` }], { cause: err })
  }
  return Object.freeze({
    file,
    document,
    lineCounter,
    value,
    locate: (path: PolicyPath) => locateIn(document, lineCounter, path),
  })
}
