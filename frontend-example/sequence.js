/**
 * Applies numbered items (a room's messages and their changes by `seq`, a job's log lines by
 * `number`) in order, each exactly once. Items may arrive twice (replay and live, socket and
 * REST) or with a gap (a lost event); a gap is filled by fetching what follows the last applied
 * item over REST.
 *
 * A fetch may know its items are all there is up to a number although some numbers are missing
 * (a room's history has no frames for its edits and deletions, whose effect its messages already
 * show): it returns `{items, complete}`, and the numbers up to `complete` that none of its items
 * has are passed over.
 */
export class Sequence {
  /**
   * @param {object} options
   * @param {(item: any) => number} options.key the item's number (1, 2, 3, ... with no gap)
   * @param {(item: any) => void} options.apply shows one item; called in order, once each
   * @param {(last: number) => Promise<any[] | {items: any[], complete: number}>} options.fetchAfter
   *   items numbered after `last` (and, with `complete`, up to which number they are all there is)
   */
  constructor({ key, apply, fetchAfter, last = 0 }) {
    this.key = key;
    this.apply = apply;
    this.fetchAfter = fetchAfter;
    this.last = last;
    this.waiting = new Map();
    this.filling = null;
    this.closed = false;
  }

  /**
   * Takes items in any order; applies what follows on, and fetches what is missing. Numbers up
   * to `complete` that no item has are passed over (see the class).
   */
  add(items, complete = 0) {
    this.#take(items, complete);
    if (this.waiting.size > 0) this.fill();
  }

  /** Fetches everything after the last applied item (one fetch at a time). */
  fill() {
    this.filling ??= this.#fetchMissing().finally(() => {
      this.filling = null;
    });
    return this.filling;
  }

  close() {
    this.closed = true;
    this.waiting.clear();
  }

  #take(items, complete = 0) {
    for (const item of items) {
      const number = this.key(item);
      if (number > this.last) this.waiting.set(number, item);
    }
    while (!this.closed) {
      const next = this.last + 1;
      if (this.waiting.has(next)) {
        const item = this.waiting.get(next);
        this.waiting.delete(next);
        this.last = next;
        this.apply(item);
      } else if (next <= complete) {
        this.last = next; // no item has it, and none will: passed over
      } else {
        break;
      }
    }
  }

  async #fetchMissing() {
    while (!this.closed) {
      const before = this.last;
      let fetched;
      try {
        fetched = await this.fetchAfter(this.last);
      } catch {
        return; // unreachable for now: the next event, reconnection or poll tries again
      }
      if (this.closed) return;
      const items = Array.isArray(fetched) ? fetched : fetched.items;
      this.#take(items, Array.isArray(fetched) ? 0 : fetched.complete);
      // Stop when a page brought nothing new: everything the server has is applied.
      if (this.last === before || items.length === 0) return;
    }
  }
}
