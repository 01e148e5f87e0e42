/**
 * Why `connection` (the `postgres.connection` setting) cannot be used, or
 * undefined when it can: it must be a `postgres://` or `postgresql://` URL
 * (or empty, for the `PG*` environment variables) and must not hold a
 * password, which belongs in a password file.
 */
export function connectionProblem(connection: string): string | undefined {
  if (connection === '') return undefined
  let url: URL
  try {
    url = new URL(connection)
  } catch {
    return 'is not a connection URL: write postgresql://USER@HOST:PORT/DATABASE (or leave it empty and use the PG* environment variables)'
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') return `must start with postgresql:// (found ${url.protocol}//)`
  if (url.password !== '' || url.searchParams.has('password')) {
    return 'holds a password: remove it and put the password in the file named by postgres.passwordFile (or PGPASSFILE)'
  }
  return undefined
}
