/** HTML that is already safe to put in a page: made only by {@link html} or {@link trusted}. */
export class SafeHtml {
  readonly #text: string

  /** Use {@link html} or {@link trusted}; never wrap text that came from a request or the policy. */
  constructor(text: string) {
    this.#text = text
  }

  toString(): string {
    return this.#text
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' }

/** Escapes text for an HTML text node or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!)
}

/** A value an {@link html} template may interpolate. */
export type HtmlValue = SafeHtml | string | number | boolean | null | undefined | readonly HtmlValue[]

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false || value === true) return ''
  if (value instanceof SafeHtml) return value.toString()
  if (Array.isArray(value)) return value.map((v: HtmlValue) => render(v)).join('')
  return escapeHtml(String(value))
}

/**
 * The one way pages build HTML: every interpolation is escaped unless it is
 * a {@link SafeHtml} (another template's result, or {@link trusted}); arrays
 * are joined; null, undefined and booleans render nothing (so
 * `${cond && html`...`}` works).
 */
export function html(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): SafeHtml {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!
  return new SafeHtml(out)
}

/** Marks a constant written in this folder's source as HTML. Never for data. */
export function trusted(constant: string): SafeHtml {
  return new SafeHtml(constant)
}
