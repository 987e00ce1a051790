/**
 * Applies numbered items (a room's messages by `seq`, a job's log lines by `number`) in order,
 * each exactly once. Items may arrive twice (replay and live, socket and REST) or with a gap
 * (a lost event); a gap is filled by fetching what follows the last applied item over REST.
 */
export class Sequence {
  /**
   * @param {object} options
   * @param {(item: any) => number} options.key the item's number (1, 2, 3, ... with no gap)
   * @param {(item: any) => void} options.apply shows one item; called in order, once each
   * @param {(last: number) => Promise<any[]>} options.fetchAfter items numbered after `last`
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

  /** Takes items in any order; applies what follows on, and fetches what is missing. */
  add(items) {
    this.#take(items);
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

  #take(items) {
    for (const item of items) {
      const number = this.key(item);
      if (number > this.last) this.waiting.set(number, item);
    }
    while (!this.closed && this.waiting.has(this.last + 1)) {
      const item = this.waiting.get(this.last + 1);
      this.waiting.delete(this.last + 1);
      this.last += 1;
      this.apply(item);
    }
  }

  async #fetchMissing() {
    while (!this.closed) {
      const before = this.last;
      let items;
      try {
        items = await this.fetchAfter(this.last);
      } catch {
        return; // unreachable for now: the next event, reconnection or poll tries again
      }
      if (this.closed) return;
      this.#take(items);
      // Stop when a page brought nothing new: everything the server has is applied.
      if (this.last === before || items.length === 0) return;
    }
  }
}
