import { LineCounter, parseDocument, isNode, type Document } from 'yaml'
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
  /** Position of the node at `path`, or of its nearest existing parent. */
  locate(path: readonly (string | number)[]): { line: number; col: number }
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
  const locate = (path: readonly (string | number)[]): { line: number; col: number } => {
    for (let n = path.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)
      if (isNode(node) && node.range) {
        const pos = lineCounter.linePos(node.range[0])
        return { line: pos.line, col: pos.col }
      }
    }
    return { line: 1, col: 1 }
  }
  const value = problems.length === 0 ? doc.toJS({ maxAliasCount: 100 }) : undefined
  return { file, value, doc, problems, locate }
}
