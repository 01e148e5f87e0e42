/**
 * Runs one reload at a time. A reload asked for while one runs is queued to
 * run once after it (it must see the source as it is now, not as the running
 * one read it); any further asks share that queued one. The policy file's
 * store and the PostgreSQL store both reload through one.
 */
export class ReloadQueue<T> {
  readonly #run: () => Promise<T>
  #running: Promise<T> | undefined
  #queued: Promise<T> | undefined

  constructor(run: () => Promise<T>) {
    this.#run = run
  }

  /** The reload under way, if any (to wait for it on close). */
  get running(): Promise<T> | undefined {
    return this.#running
  }

  /** Runs a reload now, or once after the one under way. */
  reload(): Promise<T> {
    if (!this.#running) {
      this.#running = this.#run().finally(() => {
        this.#running = undefined
      })
      return this.#running
    }
    // The queued reload runs whether the running one succeeded or not: its askers get their own answer.
    this.#queued ??= this.#running.then(noop, noop).then(() => {
      this.#queued = undefined
      return this.reload()
    })
    return this.#queued
  }
}

function noop(): void {}
