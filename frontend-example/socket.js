/**
 * One WebSocket for everything (`/ws/`). It reconnects with backoff when the server restarts
 * or the network drops, authenticates again, and subscribes again to every channel it had,
 * each with `since` (the last `seq` its owner applied), so the stream resumes without a gap.
 *
 * State changes are reported to `onState(state, detail)`: "connecting", "live",
 * "reconnecting" (detail: {retryAt}) or "stopped".
 */

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 8_000;
const PING_EVERY_MS = 20_000;
const SILENCE_LIMIT_MS = 30_000; // nothing heard for this long: the connection is dead
const HANDSHAKE_LIMIT_MS = 10_000; // no `hello` by then: try again
const SIGNED_OUT = 4401; // close code: the session or token this socket used has ended

export class NotConnected extends Error {}

/** An `error` frame that answered one of our requests. */
export class SocketError extends Error {
  constructor(frame) {
    super(frame.detail);
    this.code = frame.code;
  }
}

export class Gateway {
  /**
   * @param {object} options
   * @param {string} options.url ws(s)://host/ws/
   * @param {() => string|null} options.token an API token to send in an `auth` frame, if any
   * @param {(state: string, detail?: object) => void} options.onState
   * @param {(user: object|null) => void} options.onReady after each (re)connection is set up
   * @param {() => void} options.onSignedOut the server closed the socket: its sign-in ended
   */
  constructor({ url, token = () => null, onState = () => {}, onReady = () => {}, onSignedOut = () => {} }) {
    this.url = url;
    this.token = token;
    this.onState = onState;
    this.onReady = onReady;
    this.onSignedOut = onSignedOut;
    this.state = "stopped";
    this.user = null;
    this.socket = null;
    this.attempt = 0;
    this.nextRef = 1;
    this.pending = new Map(); // ref -> {resolve, reject}
    this.channels = new Map(); // channel -> {since, fields, onSubscribed, onError}
    this.listeners = new Map(); // frame type -> Set of handlers
    this.retryTimer = null;
    this.handshakeTimer = null;
    this.keepAlive = null;
    this.lastHeard = 0;
    window.addEventListener("online", () => this.#retryNow());
  }

  /** Calls `handler(frame)` for every server frame of this type. */
  on(type, handler) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(handler);
  }

  start() {
    if (this.state !== "stopped") return;
    this.#connect();
  }

  /** Closes and opens again, e.g. after signing in or out (the handshake carries the cookie). */
  restart() {
    this.stop();
    this.attempt = 0;
    this.#connect();
  }

  stop() {
    this.#setState("stopped");
    clearTimeout(this.retryTimer);
    clearTimeout(this.handshakeTimer);
    this.#dropSocket();
  }

  /**
   * Keeps `channel` subscribed across reconnections. `since()` gives where to resume after
   * (a room's last message `seq`, a job's last output chunk `seq`, a log's byte offset), or
   * null for only what comes from now on. `fields` go into every subscribe frame as they are
   * (a share link's `share` token). A subscription the server ends itself (`unsubscribed`
   * with a `reason`) is not renewed.
   */
  subscribe(channel, { since = () => null, fields = {}, onSubscribed = () => {}, onError = () => {} } = {}) {
    this.channels.set(channel, { since, fields, onSubscribed, onError });
    if (this.state === "live") this.#sendSubscribe(channel);
  }

  isSubscribed(channel) {
    return this.channels.has(channel);
  }

  unsubscribe(channel) {
    if (!this.channels.delete(channel)) return;
    if (this.state === "live") this.request({ type: "unsubscribe", channel }).catch(() => {});
  }

  /** Sends a frame that gets no reply (`chat.typing`) if connected; false when it was not sent. */
  notify(frame) {
    if (this.state !== "live") return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame with a `ref`; resolves with the reply that echoes it, rejects on `error`. */
  request(frame) {
    if (this.state !== "live" && frame.type !== "auth") {
      return Promise.reject(new NotConnected("Not connected."));
    }
    const ref = this.nextRef++;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      this.socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  // ---------------------------------------------------------------- connection

  #connect() {
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      if (socket === this.socket) this.#receive(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      if (event.code === SIGNED_OUT) {
        // Signed out elsewhere (another tab, the token revoked): come back at once, anonymous.
        this.attempt = 0;
        this.onSignedOut();
      }
      this.#lost();
    });
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = setTimeout(() => {
      if (socket === this.socket && this.state !== "live") this.#lost();
    }, HANDSHAKE_LIMIT_MS);
  }

  async #setUp(hello) {
    this.user = hello.user;
    const token = this.token();
    if (token) {
      try {
        this.user = (await this.request({ type: "auth", token })).user;
      } catch (error) {
        if (!(error instanceof SocketError)) return; // the connection went away meanwhile
        this.user = null; // a revoked token: carry on anonymously
      }
    }
    clearTimeout(this.handshakeTimer);
    this.attempt = 0;
    this.#setState("live");
    this.keepAlive = setInterval(() => this.#checkAlive(), PING_EVERY_MS);
    for (const channel of this.channels.keys()) this.#sendSubscribe(channel);
    this.onReady(this.user);
  }

  #sendSubscribe(channel) {
    const { since, fields, onSubscribed, onError } = this.channels.get(channel);
    const frame = { ...fields, type: "subscribe", channel };
    const seq = since();
    if (seq !== null && seq !== undefined) frame.since = seq;
    this.request(frame).then(onSubscribed, (error) => {
      if (error instanceof SocketError) onError(error);
    });
  }

  #receive(text) {
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "hello") {
      this.#setUp(frame);
      return;
    }
    const waiting = frame.ref !== undefined ? this.pending.get(frame.ref) : undefined;
    if (waiting) {
      this.pending.delete(frame.ref);
      if (frame.type === "error") waiting.reject(new SocketError(frame));
      else waiting.resolve(frame);
    }
    // The server ended it (a room one was removed from, a revoked share link): asking again
    // after a reconnection would only be refused.
    if (frame.type === "unsubscribed" && frame.reason) this.channels.delete(frame.channel);
    for (const handler of this.listeners.get(frame.type) ?? []) handler(frame);
  }

  #checkAlive() {
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.#lost(); // not even a pong: the network is gone, whatever the socket says
      return;
    }
    this.socket?.send(JSON.stringify({ type: "ping" }));
  }

  #lost() {
    this.#dropSocket();
    if (this.state === "stopped") return;
    // Exponential backoff with jitter, so a restarted server is not hit by everyone at once.
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.attempt += 1;
    this.#setState("reconnecting", { retryAt: Date.now() + delay });
    this.retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #retryNow() {
    if (this.state !== "reconnecting" || this.socket) return;
    clearTimeout(this.retryTimer);
    this.#connect();
  }

  #dropSocket() {
    clearInterval(this.keepAlive);
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
    for (const { reject } of this.pending.values()) reject(new NotConnected("Connection lost."));
    this.pending.clear();
  }

  #setState(state, detail = {}) {
    this.state = state;
    this.onState(state, detail);
  }
}
