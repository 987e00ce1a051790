/**
 * Background jobs: a form built from each kind's params schema (GET /api/job-kinds/), and a
 * live list of my jobs. `jobs:mine` brings every state change of every job of mine; each
 * unfinished job is also followed on `job:<id>`, which sends its snapshot on each subscribe
 * and then its log lines, numbered, so a missed line is fetched over REST. A failed job can
 * be retried under its id; its attempts are read over REST when someone opens them.
 *
 * A job's output stream comes in chunks numbered by `seq` (`job.output`). Each job keeps the
 * last `seq` it shows: a chunk it has is ignored, a gap is read over REST first. `job:<id>` is
 * subscribed with `since` that `seq` (0 the first time), so the socket replays what is missing
 * on every (re)subscribe; a finished job, which is not followed, reads its output over REST.
 *
 * Share links: the owner's "Share" makes a read-only link to a job (`POST shares/`), which
 * this page opens as `?job=<id>&share=<token>`: that one job, no sign-in, no buttons that
 * write, every read with `share` (REST `?share=`, the socket's subscribe `share`). A shared
 * job stays followed once finished, since its channel is how the page learns that the link
 * was revoked or expired (`unsubscribed` with that `reason`); from then on it shows no more.
 */

import { clockTime, dateTime, h, $ } from "./dom.js";
import { Sequence } from "./sequence.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const LOG_PAGE = 500;
const OUTPUT_PAGE = 1000; // the most GET output/ returns at once
// The newest characters of a job's output kept on the page: a flood must not swamp it.
const OUTPUT_SHOWN_MAX = 100_000;
// A kind that writes output: its card shows the (empty) area before the first chunk.
const STREAMING_KINDS = new Set(["demo.stream"]);
// What a shared job's page says once its link no longer works, by why.
const LINK_ENDED = {
  share_revoked: "This link was revoked: the job below is no longer updated.",
  share_expired: "This link has expired: the job below is no longer updated.",
  not_found: "This link does not work: it was revoked or has expired, or the job is gone.",
};

/** The job a share link opens, from this page's URL (`?job=<id>&share=<token>`), or null. */
export function sharedJobFromQuery() {
  const query = new URLSearchParams(location.search);
  const [jobId, token] = [query.get("job"), query.get("share")];
  return jobId && token ? { jobId, token } : null;
}

/** This page's address opening a job through a share link (keeping `?api=`, if given). */
function sharedJobUrl(jobId, token) {
  const url = new URL(location.pathname, location.href);
  const api = new URLSearchParams(location.search).get("api");
  if (api) url.searchParams.set("api", api);
  url.searchParams.set("job", jobId);
  url.searchParams.set("share", token);
  return url.href;
}

export class Jobs {
  /** `shared`: {jobId, token} of a share link: this page shows that one job, read-only. */
  constructor({ api, gateway, currentRoom, shared = null }) {
    this.api = api;
    this.gateway = gateway;
    this.currentRoom = currentRoom;
    this.shared = shared;
    this.linkEnded = null; // why the share link stopped working, once it has
    this.user = null;
    this.kinds = [];
    this.jobs = new Map(); // id -> {state, card, log: Sequence, output: Sequence, ...}
    this.elements = {
      signedOut: $("#jobs-signed-out"),
      form: $("#job-form"),
      kind: $("#job-kind"),
      params: $("#job-params"),
      countdown: $("#job-countdown"),
      error: shared ? $("#shared-error") : $("#job-error"),
      list: shared ? $("#shared-job") : $("#job-list"),
      linkStatus: $("#share-status"),
    };
    gateway.on("job.update", (frame) => this.#update(frame.job));
    gateway.on("job.log", (frame) => this.jobs.get(frame.job_id)?.log.add([frame]));
    gateway.on("job.output", (frame) => {
      const job = this.jobs.get(frame.job_id);
      if (!job) return;
      job.card.output.hidden = false;
      job.output.add(frame.chunks);
    });
    gateway.on("unsubscribed", (frame) => {
      // A shared page follows one channel, its job's: the server ended it, the link is over.
      if (shared && frame.reason && frame.channel.startsWith("job:")) this.#endLink(frame.reason);
    });
    this.elements.kind.addEventListener("change", () => this.#renderParams());
    this.elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#enqueue();
    });
    setInterval(() => this.#tick(), 1000);
  }

  async setUser(user) {
    this.user = user;
    this.elements.form.hidden = !user;
    this.elements.signedOut.hidden = Boolean(user);
    for (const id of this.jobs.keys()) this.gateway.unsubscribe(`job:${id}`);
    this.jobs.clear();
    this.elements.list.replaceChildren();
    if (!user) {
      this.gateway.unsubscribe("jobs:mine");
      return;
    }
    this.gateway.subscribe("jobs:mine");
    try {
      this.kinds = await this.api.get("/api/job-kinds/");
    } catch (error) {
      this.#showError(`Job kinds could not be loaded: ${error.message}`);
      return;
    }
    this.elements.kind.replaceChildren(
      ...this.kinds.map((kind) => h("option", { value: kind.name }, `${kind.name} · ${kind.title}`)),
    );
    this.#renderParams();
    await this.refresh();
  }

  /** Reads my jobs (or the shared one) over REST: at start, after each reconnection, and while polling. */
  async refresh({ quiet = false } = {}) {
    if (this.shared) {
      await this.#readShared({ quiet });
      return;
    }
    if (!this.user) return;
    let page;
    try {
      page = await this.api.get("/api/jobs/");
    } catch (error) {
      if (!quiet) this.#showError(`Jobs could not be loaded: ${error.message}`, "refresh");
      return;
    }
    if (this.elements.error.dataset.source === "refresh") this.#showError("");
    for (const state of page.results.slice().reverse()) this.#update(state);
  }

  /** While the socket is down: job states, log lines and output over REST. */
  async poll() {
    await this.refresh({ quiet: true });
    if (this.linkEnded) return;
    for (const job of this.jobs.values()) {
      this.#syncLog(job);
      // Output moves a job's `output_chunks` but not its `seq`, so a state read now may be
      // dropped as not newer: a running job's output is read whatever its state says.
      if (FINAL.has(job.state.status)) this.#syncOutput(job);
      else job.output.fill();
    }
  }

  // ---------------------------------------------------------------- the form

  #renderParams() {
    const kind = this.kinds.find((candidate) => candidate.name === this.elements.kind.value);
    const schema = kind?.params_schema ?? { properties: {} };
    const required = new Set(schema.required ?? []);
    const fields = Object.entries(schema.properties ?? {}).map(([name, declared]) => {
      const property = fieldSchema(schema, declared);
      return h(
        "label",
        { class: "field" },
        h("span", {}, property.title || name),
        this.#input(name, property, required.has(name)),
        property.description ? h("small", {}, property.description) : null,
      );
    });
    this.elements.params.replaceChildren(...fields);
  }

  #input(name, property, required) {
    if (property.enum) {
      return h(
        "select",
        { name, dataset: { type: property.type ?? "string" } },
        property.enum.map((value) => h("option", { value, selected: value === property.default }, value)),
      );
    }
    if (property.type === "boolean") {
      return h("input", { name, type: "checkbox", checked: property.default === true, dataset: { type: "boolean" } });
    }
    const numeric = property.type === "integer" || property.type === "number";
    // A `room` parameter starts as the room that is open: export what you are looking at.
    const value = property.default ?? (name === "room" ? this.currentRoom() : undefined);
    return h("input", {
      name,
      type: numeric ? "number" : "text",
      min: property.minimum,
      max: property.maximum,
      step: property.type === "integer" ? 1 : numeric ? "any" : undefined,
      value,
      required,
      dataset: { type: property.type },
    });
  }

  #params() {
    const params = {};
    for (const field of this.elements.params.querySelectorAll("input, select")) {
      const { type } = field.dataset;
      if (type === "boolean") params[field.name] = field.checked;
      else if (field.value === "") continue; // the server's default applies
      else params[field.name] = type === "integer" || type === "number" ? Number(field.value) : field.value;
    }
    return params;
  }

  async #enqueue() {
    const button = $("button[type=submit]", this.elements.form);
    button.disabled = true;
    this.#showError("");
    try {
      const job = await this.api.post("/api/jobs/", {
        kind: this.elements.kind.value,
        params: this.#params(),
        countdown: Number(this.elements.countdown.value || 0),
      });
      this.#update(job);
    } catch (error) {
      // No answer does not mean no job: if it was enqueued, it shows up in the list anyway.
      const detail =
        error.status === 0 ? `${error.message} If it was enqueued, it will appear below.` : error.describe();
      this.#showError(`Not enqueued: ${detail}`);
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- the list

  /** Applies a job's state; an older one than shown (by `seq`) is ignored. */
  #update(state) {
    if (this.linkEnded) return; // a read answered after the link ended: nothing more is shown
    let job = this.jobs.get(state.id);
    if (job && state.seq <= job.state.seq) return;
    if (!job) {
      job = this.#add(state);
    }
    job.state = state;
    this.#render(job);
    const channel = `job:${state.id}`;
    const final = FINAL.has(state.status);
    if (final) {
      // Its last lines and output may still be on their way: read them, then stop following it
      // (unless shared: its channel says when the link ends).
      this.#syncLog(job);
      this.#syncOutput(job);
    }
    if (final && !this.shared) {
      this.gateway.unsubscribe(channel);
    } else if (!this.gateway.isSubscribed(channel)) {
      // `since`: the socket replays the output after the last chunk shown (all of it at first).
      this.gateway.subscribe(channel, {
        since: () => job.output.last,
        fields: this.shared ? { share: this.shared.token } : {},
        onSubscribed: () => this.#syncLog(job),
        // Through a share link, "no such job" is a link that has ended (while this page was away).
        onError: (error) => {
          if (this.shared && error.code === "not_found") this.#endLink("not_found");
        },
      });
    }
  }

  #add(state) {
    const card = {
      root: h("li", { class: "job", dataset: { jobId: state.id } }),
      kind: h("strong", { class: "job-kind" }, state.kind),
      status: h("span", { class: "job-status" }),
      countdown: h("span", { class: "job-countdown" }),
      cancel: h("button", { type: "button", class: "job-cancel" }, "Cancel"),
      retry: h("button", { type: "button", class: "job-retry" }, "Retry"),
      share: h("button", { type: "button", class: "job-share quiet" }, "Share"),
      shares: h("ul", { class: "job-shares" }), // the links made on this page, newest first
      sharing: h("div", { class: "job-sharing" }),
      attempt: h("p", { class: "job-attempt" }),
      bar: h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }),
      fill: h("div", { class: "bar-fill" }),
      percent: h("span", { class: "job-percent" }),
      message: h("p", { class: "job-message" }),
      logSummary: h("summary"),
      logLines: h("ol", { class: "job-log-lines" }),
      // A finished job's log is read only when someone opens it.
      log: h("details", { class: "job-log", open: !FINAL.has(state.status) }),
      output: h("section", { class: "job-output", hidden: true }),
      outputNote: h("small", { class: "job-output-note muted" }),
      outputText: h("pre", { class: "job-output-text", tabindex: 0 }),
      attemptsSummary: h("summary"),
      attemptsList: h("ol", { class: "job-attempts-list" }),
      // Read when opened, and again when an attempt starts or ends while it is open.
      attempts: h("details", { class: "job-attempts" }),
      outcome: h("div", { class: "job-outcome" }),
      params: h("p", { class: "job-params" }, describeParams(state.params)),
    };
    card.bar.append(card.fill);
    card.log.append(card.logSummary, card.logLines);
    card.output.append(h("div", { class: "job-output-head" }, "Output", card.outputNote), card.outputText);
    card.attempts.append(card.attemptsSummary, card.attemptsList);
    card.sharing.append(card.share, card.shares);
    // Through a share link a job is read-only: its card has no button that writes.
    const actions = this.shared ? [] : [card.cancel, card.retry];
    card.root.append(
      h("div", { class: "job-head" }, card.kind, card.status, card.countdown, ...actions),
      card.params,
      card.attempt,
      h("div", { class: "job-progress" }, card.bar, card.percent),
      card.message,
      card.output,
      card.log,
      card.attempts,
      card.outcome,
      ...(this.shared ? [] : [card.sharing]),
    );
    const job = {
      state,
      card,
      attemptsShown: null, // the `attempts` and status the list was last read for
      attemptsRead: 0, // counts the reads: an answer that a later read overtook is dropped
      log: new Sequence({
        key: (line) => line.number,
        apply: (line) => {
          card.logLines.append(h("li", { value: line.number }, line.line));
          card.logLines.scrollTop = card.logLines.scrollHeight;
          this.#renderLogSummary(job);
        },
        fetchAfter: async (last) =>
          (await this.#read(`/api/jobs/${state.id}/log/`, { after: last, limit: LOG_PAGE })).results,
      }),
      output: new Sequence({
        key: (chunk) => chunk.seq,
        apply: (chunk) => this.#appendOutput(job, chunk.data),
        fetchAfter: async (last) => {
          const page = await this.#read(`/api/jobs/${state.id}/output/`, { after: last, limit: OUTPUT_PAGE });
          // Only the newest chunks are kept: those before the first one the server still has
          // are gone for good, so they are passed over rather than waited for.
          const complete = Math.max(page.first_seq, page.results[0]?.seq ?? 0) - 1;
          if (complete > last) job.outputDropped = `chunks ${last + 1} to ${complete} are no longer kept`;
          return { items: page.results, complete };
        },
      }),
      outputPending: null, // applied text not on the page yet: written once per batch of chunks
      outputPinned: true, // the newest text is in view: keep it there as more comes
      outputCut: false, // older text left the page (OUTPUT_SHOWN_MAX)
      outputDropped: "", // which chunks the server no longer had when they were read, if any
    };
    card.outputText.addEventListener("scroll", () => {
      const pre = card.outputText;
      job.outputPinned = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    });
    card.log.addEventListener("toggle", () => this.#syncLog(job));
    card.attempts.addEventListener("toggle", () => this.#syncAttempts(job));
    card.cancel.addEventListener("click", () => this.#cancel(job));
    card.retry.addEventListener("click", () => this.#retry(job));
    card.share.addEventListener("click", () => this.#share(job));
    this.jobs.set(state.id, job);
    this.elements.list.prepend(card.root);
    return job;
  }

  #render(job) {
    const { state, card } = job;
    const { current, total, message } = state.progress;
    const percent = state.status === "succeeded" ? 100 : total > 0 ? Math.floor((current / total) * 100) : 0;
    card.root.dataset.status = state.status;
    card.status.textContent = stopping(state) ? "cancelling…" : state.status;
    card.status.className = `job-status status-${state.status}`;
    card.bar.setAttribute("aria-valuenow", percent);
    card.fill.style.width = `${percent}%`;
    card.percent.textContent = `${percent}%`;
    card.message.textContent = message || "";
    card.cancel.hidden = FINAL.has(state.status) || stopping(state);
    card.retry.hidden = state.status !== "failed";
    this.#renderCountdown(state, card);
    this.#renderAttempt(state, card);
    this.#renderLogSummary(job);
    if (state.output_chunks > 0 || STREAMING_KINDS.has(state.kind)) card.output.hidden = false;
    this.#syncAttempts(job);
    card.outcome.replaceChildren(...this.#outcome(state));
  }

  /** "attempt N of M" where a job may have more than one; while retrying, why and when next. */
  #renderAttempt(state, card) {
    const { attempts, max_attempts: max } = state;
    if (state.status === "retrying") {
      const seconds = Math.ceil((Date.parse(state.next_attempt_at) - Date.now()) / 1000);
      const next = seconds > 0 ? `next attempt in ${seconds} s` : "next attempt waiting for a worker";
      card.attempt.textContent = `attempt ${attempts} of ${max} failed: ${describeError(state.error)}, ${next}`;
    } else {
      card.attempt.textContent = max > 1 && attempts > 0 ? `attempt ${attempts} of ${max}` : "";
    }
  }

  #outcome(state) {
    if (state.status === "failed" && state.error) {
      return [h("p", { class: "error job-error" }, `Failed: ${describeError(state.error)}`)];
    }
    if (state.status === "cancelled") return [h("p", { class: "muted" }, "Cancelled.")];
    if (state.status !== "succeeded" || !state.result) return [];
    const { download_url: downloadUrl, ...rest } = state.result;
    const parts = [h("p", { class: "job-result" }, `Result: ${describeParams(rest)}`)];
    // Only a path of this API becomes a link (never a `javascript:` or another site's URL); a
    // share link does not open the file, which is its owner's.
    const offered = !this.shared && /^\/api\/[\w./-]+$/.test(downloadUrl ?? "");
    if (offered) parts.push(this.#downloadLink(state, downloadUrl));
    return parts;
  }

  #downloadLink(state, path) {
    const filename = `${state.params.room ?? "export"}-${state.id}.${state.result.format ?? "txt"}`;
    const label = `Download the ${state.result.format ?? ""} file (${state.result.bytes ?? "?"} bytes)`;
    if (!this.api.token) {
      return h("a", { class: "job-download", href: this.api.url(path), download: filename }, label);
    }
    // With a token (another origin) a plain link carries no credentials: fetch, then save.
    return h(
      "button",
      {
        type: "button",
        class: "job-download",
        onclick: () => this.api.download(path, filename).catch((error) => this.#showError(error.message)),
      },
      label,
    );
  }

  /** Reads the lines not shown yet, if the log is open (live lines come on `job:<id>`). */
  #syncLog(job) {
    if (job.card.log.open && job.state.log_lines > job.log.last) job.log.fill();
  }

  /** Reads the output chunks not shown yet (live ones come on `job:<id>`, replayed on subscribe). */
  #syncOutput(job) {
    if (job.state.output_chunks > job.output.last) job.output.fill();
  }

  /** Takes a chunk's text; the page is written once, after the whole batch is applied. */
  #appendOutput(job, data) {
    if (job.outputPending === null) {
      job.outputPending = "";
      queueMicrotask(() => this.#flushOutput(job));
    }
    job.outputPending += data;
  }

  #flushOutput(job) {
    const { outputText: pre, outputNote: note } = job.card;
    const text = job.outputPending;
    job.outputPending = null;
    const node = pre.firstChild ?? pre.appendChild(document.createTextNode(""));
    // Only the newest OUTPUT_SHOWN_MAX characters stay on the page: the oldest make room.
    const excess = node.length + text.length - OUTPUT_SHOWN_MAX;
    if (excess >= node.length) node.data = text.slice(-OUTPUT_SHOWN_MAX);
    else {
      if (excess > 0) node.deleteData(0, excess);
      node.appendData(text);
    }
    job.outputCut ||= excess > 0;
    const notes = [job.outputDropped, job.outputCut ? `showing the last ${OUTPUT_SHOWN_MAX} characters` : ""];
    note.textContent = notes.filter(Boolean).join("; ");
    if (job.outputPinned) pre.scrollTop = pre.scrollHeight;
  }

  #renderLogSummary({ state, card, log }) {
    const lines = Math.max(state.log_lines, log.last);
    card.logSummary.textContent = `Log (${lines} line${lines === 1 ? "" : "s"})`;
  }

  /** The attempts' summary; their list, if open, read again when an attempt started or ended. */
  #syncAttempts(job) {
    const { state, card } = job;
    card.attempts.hidden = state.attempts === 0;
    card.attemptsSummary.textContent = `Attempts (${state.attempts})`;
    // An attempt starts with `attempts`, and ends with a change of status.
    const shown = `${state.attempts} ${state.status}`;
    if (!card.attempts.open || job.attemptsShown === shown) return;
    job.attemptsShown = shown;
    this.#readAttempts(job);
  }

  async #readAttempts(job) {
    if (this.linkEnded) return;
    const read = ++job.attemptsRead;
    let attempts;
    try {
      attempts = await this.#read(`/api/jobs/${job.state.id}/attempts/`);
    } catch (error) {
      job.attemptsShown = null; // read again at the next change, or when opened again
      this.#showError(`Attempts could not be loaded: ${error.message}`);
      return;
    }
    if (read === job.attemptsRead) job.card.attemptsList.replaceChildren(...attempts.map(attemptRow));
  }

  #renderCountdown(state, card) {
    const waiting = state.status === "scheduled" || state.status === "queued";
    const seconds = Math.ceil((Date.parse(state.run_at) - Date.now()) / 1000);
    if (waiting && seconds > 0) card.countdown.textContent = `starts in ${seconds} s`;
    else if (waiting && state.queue_position) card.countdown.textContent = queuePlace(state);
    else if (waiting) card.countdown.textContent = "waiting for a worker";
    else if (state.finished_at) card.countdown.textContent = `at ${clockTime(state.finished_at)}`;
    else card.countdown.textContent = "";
  }

  #tick() {
    for (const job of this.jobs.values()) {
      const waiting = job.state.status === "scheduled" || job.state.status === "queued";
      if (waiting) this.#renderCountdown(job.state, job.card);
      else if (job.state.status === "retrying") this.#renderAttempt(job.state, job.card);
    }
  }

  async #cancel(job) {
    job.card.cancel.disabled = true;
    try {
      this.#update(await this.api.post(`/api/jobs/${job.state.id}/cancel/`));
    } catch (error) {
      this.#showError(`Not cancelled: ${error.message}`);
    } finally {
      job.card.cancel.disabled = false;
    }
  }

  async #retry(job) {
    job.card.retry.disabled = true;
    try {
      this.#update(await this.api.post(`/api/jobs/${job.state.id}/retry/`));
    } catch (error) {
      this.#showError(`Not retried: ${error.message}`);
    } finally {
      job.card.retry.disabled = false;
    }
  }

  // ---------------------------------------------------------------- share links

  /** A read-only link to the job (valid for the server's default, a day), shown on its card. */
  async #share(job) {
    job.card.share.disabled = true;
    try {
      const link = await this.api.post(`/api/jobs/${job.state.id}/shares/`, {});
      job.card.shares.prepend(this.#shareRow(job, link));
      this.#showError("");
    } catch (error) {
      this.#showError(`Not shared: ${error.describe?.() ?? error.message}`);
    } finally {
      job.card.share.disabled = false;
    }
  }

  #shareRow(job, link) {
    const url = h("input", {
      class: "job-share-url",
      value: sharedJobUrl(job.state.id, link.token),
      readonly: true,
      "aria-label": "Share link",
      onfocus: (event) => event.target.select(),
    });
    const note = h("small", { class: "job-share-note muted" }, `read-only, until ${dateTime(link.expires_at)}`);
    const copy = h("button", { type: "button", class: "job-share-copy quiet" }, "Copy");
    const revoke = h("button", { type: "button", class: "job-share-revoke quiet" }, "Revoke");
    const row = h("li", { class: "job-share-link", dataset: { shareId: link.id } }, url, copy, revoke, note);
    copy.addEventListener("click", () => copyLink(url, copy));
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      try {
        await this.api.delete(`/api/jobs/${job.state.id}/shares/${link.id}/`);
      } catch (error) {
        this.#showError(`Not revoked: ${error.describe?.() ?? error.message}`);
        revoke.disabled = false;
        return;
      }
      row.dataset.revoked = "";
      url.disabled = true;
      copy.hidden = true;
      revoke.hidden = true;
      note.textContent = "revoked: it no longer opens this job";
    });
    return row;
  }

  /** The shared job's state over REST; a link that no longer works is said so. */
  async #readShared({ quiet }) {
    if (this.linkEnded) return;
    let state;
    try {
      state = await this.#read(`/api/jobs/${this.shared.jobId}/`);
    } catch (error) {
      if (error.status === 404) this.#endLink("not_found");
      else if (!quiet) this.#showError(`The job could not be loaded: ${error.message}`, "refresh");
      return;
    }
    if (this.elements.error.dataset.source === "refresh") this.#showError("");
    this.#update(state);
  }

  /** The share link was revoked, expired or never worked: say so, and show nothing more. */
  #endLink(reason) {
    if (this.linkEnded) return;
    this.linkEnded = reason;
    for (const [id, job] of this.jobs) {
      this.gateway.unsubscribe(`job:${id}`); // unless the server already ended it
      job.log.close();
      job.output.close();
      job.card.root.dataset.linkEnded = reason;
    }
    this.elements.linkStatus.dataset.ended = reason;
    this.elements.linkStatus.textContent = LINK_ENDED[reason] ?? LINK_ENDED.not_found;
  }

  /** A GET of the job's; through a share link, with its token. */
  #read(path, query) {
    return this.api.get(path, this.shared ? { ...query, share: this.shared.token } : query);
  }

  #showError(text, source = "") {
    this.elements.error.textContent = text;
    this.elements.error.dataset.source = source;
  }
}

/** Copies a share link; where the clipboard may not be written, selects it for the keyboard. */
async function copyLink(input, button) {
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = "Copied";
  } catch {
    input.select();
    button.textContent = "Selected: copy it";
  }
  setTimeout(() => {
    button.textContent = "Copy";
  }, 2_000);
}

function describeParams(params) {
  const entries = Object.entries(params ?? {});
  return entries.length ? entries.map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join(", ") : "no params";
}

/** A running job asked to stop (`cancelling`), or a waiting one about to be `cancelled`. */
function stopping(state) {
  return state.status === "cancelling" || (state.cancel_requested && !FINAL.has(state.status));
}

function describeError(error) {
  return error ? `${error.message} (${error.type})` : "no error given";
}

function attemptRow({ number, status, error, started_at: startedAt, finished_at: finishedAt }) {
  const took = finishedAt && ((Date.parse(finishedAt) - Date.parse(startedAt)) / 1000).toFixed(1);
  const when = finishedAt ? `at ${clockTime(startedAt)}, ${took} s` : `since ${clockTime(startedAt)}`;
  return h(
    "li",
    { class: "job-attempt-row", value: number, dataset: { status } },
    h("span", { class: `job-attempt-status status-${status}` }, status),
    h("span", { class: "muted" }, when),
    error ? h("span", { class: "error" }, describeError(error)) : null,
  );
}

/**
 * A field's schema as a form needs it: a `$ref` (an enum class) read from the schema's
 * `$defs`, and an optional field (`anyOf` with null) as its other type.
 */
function fieldSchema(schema, property) {
  const ref = property.$ref?.match(/^#\/\$defs\/(.+)$/)?.[1];
  const resolved = ref ? { ...schema.$defs?.[ref], ...property } : property;
  const branches = (resolved.anyOf ?? []).filter((branch) => branch.type !== "null");
  return branches.length === 1 ? { ...fieldSchema(schema, branches[0]), ...resolved } : resolved;
}

// "#3, starts in about 4 s": a due job's place among the due ones, and the server's estimate.
function queuePlace(state) {
  const place = `#${state.queue_position}`;
  if (!state.estimated_start_at) return `${place} in the queue`;
  const seconds = Math.max(0, Math.round((Date.parse(state.estimated_start_at) - Date.now()) / 1000));
  return seconds > 0 ? `${place}, starts in about ${seconds} s` : `${place}, starts any moment`;
}
