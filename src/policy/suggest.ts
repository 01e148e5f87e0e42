// "Did you mean" suggestions for unknown names and keys of the policy.

/** Returns ` (did you mean "NAME"?)` for an unknown name, or the empty string. */
export type Suggester = (name: string, known: ReadonlyMap<string, number>) => string

/** Suggestions for unknown names; bounded so a document with thousands of typos stays fast. */
export function suggester(): Suggester {
  let budget = 50
  return (name, known) => {
    if (budget <= 0 || known.size > 20000) return ''
    budget--
    const guess = closest(name, known.keys())
    return guess ? ` (did you mean "${guess}"?)` : ''
  }
}

/**
 * The candidate nearest to `word` (case-insensitive edit distance, a swap of
 * neighbours counting one), within a third of its length (1 to 3 edits);
 * undefined when none is that near.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined
  let bestD = Math.max(1, Math.min(3, Math.floor(word.length / 3)))
  const w = word.toLowerCase()
  for (const c of candidates) {
    if (Math.abs(c.length - word.length) > bestD) continue
    const d = distance(w, c.toLowerCase())
    if (d < bestD || (d === bestD && best === undefined)) {
      best = c
      bestD = d
    }
  }
  return best
}

/** Edit distance counting a swap of two neighbours as one edit (optimal string alignment). */
export function distance(a: string, b: string): number {
  let prev2: number[] = []
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, prev2[j - 2]! + 1)
      row.push(d)
    }
    prev2 = prev
    prev = row
  }
  return prev[b.length]!
}
