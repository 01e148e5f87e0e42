/** What replaces a secret in printed text. */
export const MASK = '********'

// A compact JWS anywhere in a text: a token pasted where a path belongs
// (KEYWAY_TOKEN_FILE=$(cat token)) ends up inside paths and error messages.
const JWS_INSIDE = /eyJ[\w-]*\.[\w-]+\.[\w-]+/g

/**
 * Replaces every known secret (`secrets`, e.g. the KEYWAY_TOKEN value) and
 * every compact-JWS-shaped piece of `text` with {@link MASK}. Applied to
 * everything the CLI prints about an error.
 */
export function redact(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text
  for (const s of secrets) if (s && s.length >= 8) out = out.split(s).join(MASK)
  return out.replace(JWS_INSIDE, MASK)
}
