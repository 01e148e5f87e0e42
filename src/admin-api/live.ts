import type { LiveSessionInfo } from '../gateway/index.js'
import type { EndAnswer, SessionFeed } from '../store/index.js'

export type { LiveSessionInfo }

/** A live session and, when known, the name of the gateway holding it. */
export type ListedSession = LiveSessionInfo & { readonly gateway?: string }

/** The live sessions the admin API lists. */
export interface LiveSessionListing {
  readonly sessions: readonly ListedSession[]
  /** Gateways registered in the store that did not answer in time: the list lacks their sessions. */
  readonly unanswered: readonly string[]
}

/**
 * The live sessions the admin API can list and end (`src/daemon.ts` wires
 * one in; absent when `keyway admin serve` runs on the file store):
 * {@link localSessions} on the file store, {@link clusterSessions} on a
 * store several gateways share.
 */
export interface LiveSessionControl {
  list(): Promise<LiveSessionListing>
  /** Ends session `id` wherever it is held; `by` is the admin's account id. */
  end(id: string, by: string): Promise<EndAnswer>
}

/** The sessions of one gateway, as {@link Gateway} offers them. */
export interface LocalSessions {
  list(): readonly LiveSessionInfo[]
  /** Ends session `id`; the session as it was, or undefined when it is not live here. */
  end(id: string): LiveSessionInfo | undefined
}

/** The sessions of the gateway serving the API, and only those (the file store: no feed reaches other gateways). */
export function localSessions(gateway: string, local: LocalSessions): LiveSessionControl {
  return {
    list: async () => ({ sessions: local.list().map((s) => ({ ...s, gateway })), unanswered: [] }),
    end: async (id) => {
      const info = local.end(id)
      return info === undefined ? { ended: false, reason: 'not_found' } : { ended: true, session: { ...info, gateway } }
    },
  }
}

/**
 * The sessions of every gateway sharing the store: the serving gateway's
 * own (`local`, absent for `keyway admin serve`) directly, the others'
 * through the store's {@link SessionFeed}.
 */
export function clusterSessions(feed: SessionFeed, local?: LocalSessions & { readonly instance: string; readonly name: string }): LiveSessionControl {
  const own = local === undefined ? undefined : localSessions(local.name, local)
  return {
    list: async () => {
      const [mine, others] = await Promise.all([own?.list(), feed.list(local?.instance)])
      return { sessions: [...(mine?.sessions ?? []), ...others.sessions], unanswered: others.unanswered }
    },
    end: (id, by) => (own !== undefined && id.startsWith(`${local!.instance}.`) ? own.end(id, by) : feed.end(id, by)),
  }
}
