import { open, unlink, type FileHandle } from 'node:fs/promises'
import { resolve } from 'node:path'
import { KeywayError } from '../errors.js'

/** A token file created empty before the token exists, filled once it does. */
export interface TokenFile {
  /** The file, absolute. */
  readonly path: string
  /** Writes the token and a newline, syncs and closes the file. */
  write(token: string): Promise<void>
  /** Closes and removes the (still empty) file: the token was never issued. */
  discard(): Promise<void>
}

/**
 * Creates `path` (relative to `cwd`) for a new token: mode 0600, `O_EXCL`, so
 * an existing file, and the token it may hold, is never emptied or replaced.
 * Call it before issuing the token, so that a refusal loses nothing.
 *
 * @throws KeywayError ERR_FILE_EXISTS when the file exists; ERR_CONFIG_IO when
 *   it cannot be created.
 */
export async function createTokenFile(path: string, cwd: string): Promise<TokenFile> {
  const file = resolve(cwd, path)
  let fh: FileHandle
  try {
    fh = await open(file, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new KeywayError('ERR_FILE_EXISTS', `refusing to overwrite ${file}: it may hold a token that cannot be shown again; move it away or name another file with --token-file`, {
        cause: err,
        detail: { files: [file] },
      })
    }
    throw new KeywayError('ERR_CONFIG_IO', `cannot create the token file ${file}: ${(err as Error).message}`, { cause: err })
  }
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await fh.close()
  }
  return {
    path: file,
    async write(token) {
      try {
        // The umask may have narrowed the mode further, never widened it; set it exactly.
        await fh.chmod(0o600)
        await fh.writeFile(token + '\n', 'utf8')
        await fh.sync()
      } catch (err) {
        throw new KeywayError('ERR_CONFIG_IO', `cannot write the token file ${file}: ${(err as Error).message}`, { cause: err })
      } finally {
        await close()
      }
    },
    async discard() {
      await close()
      await unlink(file).catch(() => undefined)
    },
  }
}
