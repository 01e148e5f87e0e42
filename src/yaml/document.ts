import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml'
import type { Problem } from '../errors.js'

/** A parsed YAML file that can point at any of its keys. */
export interface LocatedDocument {
  /** The file name used in problems. */
  readonly file: string
  /** The plain JavaScript value of the document (undefined for an empty file). */
  readonly value: unknown
  /** The yaml Document, kept for edits that preserve comments and order. */
  readonly doc: Document
  /** Syntax problems; empty when the text parsed. */
  readonly problems: Problem[]
  /** Position of the key at `path`, or of its nearest existing parent. */
  locate(path: YamlPath): SourcePosition
}

/** A path into a YAML document: keys and sequence indexes. */
export type YamlPath = readonly (string | number)[]

/** A 1-based position in a file. */
export interface SourcePosition {
  readonly line: number
  readonly col: number
}

/** Formats a path such as `['accounts', 3, 'roles', 0]` as `accounts[3].roles[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out ? `.${String(part)}` : String(part)
  }
  return out
}

/**
 * Position of `path` in a parsed YAML document: the key of a mapping entry,
 * or a sequence item. A path that does not exist (a missing key) resolves to
 * its nearest existing ancestor.
 */
export function locateIn(document: Document, lineCounter: LineCounter, path: YamlPath): SourcePosition {
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

/**
 * Parses YAML text keeping positions, so that validation can name
 * `file:line:col` for any key it rejects.
 */
export function parseLocated(text: string, file: string): LocatedDocument {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const problems: Problem[] = []
  for (const err of [...doc.errors, ...doc.warnings]) {
    const pos = lineCounter.linePos(err.pos[0])
    problems.push({ file, line: pos.line, col: pos.col, key: '', message: err.message.split('\n')[0] ?? err.message })
  }
  const locate = (path: YamlPath): SourcePosition => locateIn(doc, lineCounter, path)
  const value = problems.length === 0 ? doc.toJS({ maxAliasCount: 100 }) : undefined
  return { file, value, doc, problems, locate }
}
