// ISO-8601 instants of the policy (a grant's `expires`, a token record's
// `created` and `expires`): the one parser, which does not allocate on the
// common `YYYY-MM-DDTHH:MM:SSZ` form (a policy may hold a million of them).

const INSTANT = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:(Z)|([+-])(\d{2}):(\d{2}))$/i

/** How to write an instant, for problems about one. */
export const INSTANT_HINT = 'write it like 2026-03-01T00:00:00Z'

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/**
 * Parses an ISO-8601 instant with an explicit zone (`Z` or `±hh:mm`), e.g.
 * `2026-03-01T00:00:00Z`. Returns epoch ms, or NaN when the text is not a real
 * instant (month 13, February 30, hour 24, no zone, ...).
 */
export function parseInstant(text: string): number {
  // Fast path for the common `YYYY-MM-DDTHH:MM:SSZ` and `YYYY-MM-DDTHH:MM:SS.sssZ`, without allocating.
  const len = text.length
  if ((len === 20 || len === 24) && text.charCodeAt(len - 1) === 90 /* Z */ && text.charCodeAt(10) === 84 /* T */) {
    const y = digits(text, 0, 4)
    const mo = digits(text, 5, 2)
    const d = digits(text, 8, 2)
    const h = digits(text, 11, 2)
    const mi = digits(text, 14, 2)
    const s = digits(text, 17, 2)
    const ms = len === 24 ? (text.charCodeAt(19) === 46 /* . */ ? digits(text, 20, 3) : -1) : 0
    const separators =
      text.charCodeAt(4) === 45 && text.charCodeAt(7) === 45 && text.charCodeAt(13) === 58 && text.charCodeAt(16) === 58
    if (separators && y >= 1000 && mo >= 0 && d >= 0 && h >= 0 && mi >= 0 && s >= 0 && ms >= 0) {
      return validDate(y, mo, d, h, mi, s) ? Date.UTC(y, mo - 1, d, h, mi, s, ms) : NaN
    }
  }
  const m = INSTANT.exec(text)
  if (m === null) return NaN
  const y = +m[1]!
  const mo = +m[2]!
  const d = +m[3]!
  const h = +m[4]!
  const mi = +m[5]!
  const s = m[6] === undefined ? 0 : +m[6]
  if (!validDate(y, mo, d, h, mi, s)) return NaN
  const ms = m[7] === undefined ? 0 : Math.floor(+`0.${m[7]}` * 1000)
  let offset = 0
  if (m[8] === undefined) {
    const oh = +m[10]!
    const om = +m[11]!
    if (oh > 23 || om > 59) return NaN
    offset = (oh * 60 + om) * 60000 * (m[9] === '-' ? -1 : 1)
  }
  if (y >= 100) return Date.UTC(y, mo - 1, d, h, mi, s, ms) - offset
  // Date.UTC maps years 0–99 to 1900–1999.
  const date = new Date(0)
  date.setUTCFullYear(y, mo - 1, d)
  date.setUTCHours(h, mi, s, ms)
  return date.getTime() - offset
}

function validDate(y: number, mo: number, d: number, h: number, mi: number, s: number): boolean {
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return false
  const leap = mo === 2 && ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0)
  return d <= DAYS[mo - 1]! + (leap ? 1 : 0)
}

/** The decimal number in text[at, at + n), or -1 when a character is not a digit. */
function digits(text: string, at: number, n: number): number {
  let v = 0
  for (let i = at; i < at + n; i++) {
    const c = text.charCodeAt(i) - 48
    if (c < 0 || c > 9) return -1
    v = v * 10 + c
  }
  return v
}
