import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml'
import { DocumentError, type Problem } from '../errors.js'
import type { PolicyPath, SourcePosition } from './validate.js'

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

/**
 * Position of `path` in a parsed YAML document (see {@link ParsedPolicy.locate}).
 * Points at the key of a mapping entry, or at a sequence item.
 */
export function locateIn(document: Document, lineCounter: LineCounter, path: PolicyPath): SourcePosition {
  let node: unknown = document.contents
  let offset = (document.contents as Node | null)?.range?.[0] ?? 0
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value === seg || String(p.key.value) === String(seg) : p.key === seg))
      if (pair === undefined) break
      const keyNode = pair.key as Node | null
      if (keyNode?.range) offset = keyNode.range[0]
      node = pair.value
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | null | undefined
      if (item === undefined || item === null || !item.range) break
      offset = item.range[0]
      node = item
    } else break
  }
  return lineCounter.linePos(offset)
}
