/**
 * The REST client. Same origin: the session cookie, with the CSRF token on every write.
 * Another origin (`?api=https://...` or config.js): an API token, sent as `Authorization`.
 * Every error answer has one shape, `{code, detail, fields?}`, raised here as an ApiError.
 */

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const TOKEN_KEY = "switchboard.token";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `The server answered ${status}.`);
    this.status = status;
    this.code = body?.code || "error";
    this.fields = body?.fields || {};
  }

  /** The detail plus each field's complaints, in one line a person can read. */
  describe() {
    const fields = Object.entries(this.fields).map(([name, errors]) => `${name}: ${errors.join(" ")}`);
    return [this.message, ...fields].join(" ");
  }
}

/** The API's base URL: `?api=` in the page's URL, else config.js, else this page's origin. */
export function configuredApiBase() {
  const fromQuery = new URLSearchParams(location.search).get("api");
  const base = fromQuery ?? window.SWITCHBOARD_CONFIG?.apiBase ?? "";
  return base.replace(/\/+$/, "");
}

export class Api {
  constructor(base = "") {
    this.base = base;
    this.crossOrigin = new URL(base || "/", location.href).origin !== location.origin;
    // Cookies of another site are not sent by browsers (SameSite), so that case uses a token.
    this.token = this.crossOrigin ? sessionStorage.getItem(TOKEN_KEY) : null;
    this.csrfToken = null;
  }

  url(path) {
    return new URL(this.base + path, location.href).href;
  }

  socketUrl() {
    const url = new URL(this.url("/ws/"));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  async request(method, path, { body, query } = {}, retried = false) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Token ${this.token}`;
    else if (!SAFE_METHODS.has(method)) headers["X-CSRFToken"] = await this.#csrf();
    const url = query ? `${this.url(path)}?${new URLSearchParams(query)}` : this.url(path);
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: this.crossOrigin ? "omit" : "same-origin",
      });
    } catch {
      throw new ApiError(0, { code: "unreachable", detail: "The server cannot be reached." });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { code: "error", detail: `The server answered ${response.status}.` };
    }
    if (response.status === 403 && headers["X-CSRFToken"] && !retried && /CSRF/.test(data?.detail)) {
      this.csrfToken = null; // rotated meanwhile (a sign-in in another tab): fetch it again
      return this.request(method, path, { body, query }, true);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  get(path, query) {
    return this.request("GET", path, { query });
  }

  post(path, body) {
    return this.request("POST", path, { body });
  }

  patch(path, body) {
    return this.request("PATCH", path, { body });
  }

  put(path, body) {
    return this.request("PUT", path, { body });
  }

  delete(path) {
    return this.request("DELETE", path);
  }

  // ---------------------------------------------------------------- auth

  /** `{authenticated, user}`; a token the server no longer knows is dropped. */
  async me() {
    try {
      return await this.get("/api/auth/me/");
    } catch (error) {
      if (error.status !== 401 || !this.token) throw error;
      this.#setToken(null);
      return this.get("/api/auth/me/");
    }
  }

  async signIn(username, password) {
    if (this.crossOrigin) {
      const { token } = await this.post("/api/auth/token/", { username, password });
      this.#setToken(token);
      return this.me();
    }
    const me = await this.post("/api/auth/login/", { username, password });
    this.csrfToken = null; // Django rotates the CSRF token at login
    return me;
  }

  async signOut() {
    try {
      await this.post("/api/auth/logout/");
    } finally {
      this.#setToken(null);
      this.csrfToken = null;
    }
  }

  /** A file the API serves to signed-in users only (a link works with the cookie, not a token). */
  async download(path, filename) {
    const response = await fetch(this.url(path), { headers: { Authorization: `Token ${this.token}` } });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  #setToken(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  async #csrf() {
    // The token comes in the body too, so this works where the cookie cannot be read.
    this.csrfToken ??= (await this.get("/api/auth/csrf/")).csrf_token;
    return this.csrfToken;
  }
}
