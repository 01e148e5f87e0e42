/** A live session as the gateway holding it reports it (never its token). */
export interface LiveSessionInfo {
  readonly id: string
  readonly account: { readonly id: string; readonly name: string; readonly type: string }
  readonly resource: string
  /** Epoch ms. */
  readonly startedAt: number
  /** Client → upstream so far. */
  readonly bytesIn: number
  /** Upstream → client so far. */
  readonly bytesOut: number
}

/**
 * The live sessions the admin API can list and end: on the file store, the
 * sessions of the gateway serving the API (`src/daemon.ts` wires its
 * registry in). Absent when the admin server runs alone.
 */
export interface LiveSessionControl {
  /** Names the gateway holding these sessions, shown with each. */
  readonly gateway?: string
  list(): readonly LiveSessionInfo[]
  /** Ends session `id`; false when no such session is live. */
  end(id: string): boolean
}
