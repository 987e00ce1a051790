/**
 * Server logs, for staff: the files the server offers (GET /api/logs/) and the chosen one's
 * lines, live on `log:<name>`. Each line comes with the byte offset just after it; after a
 * reconnection the socket subscribes again with `since` the last one, so no line is missed or
 * shown twice.
 */

import { $, h } from "./dom.js";

const KEEP_LINES = 1_000; // older lines leave the page
const ROTATED = "The file was rotated or truncated: its lines go on from the new one.";
const SKIPPED = "Older lines were skipped: the connection was down too long.";

export class Logs {
  constructor({ api, gateway }) {
    this.api = api;
    this.gateway = gateway;
    this.user = null;
    this.channel = null;
    this.offset = null; // after the last line shown: where to resume
    this.elements = {
      panel: $("#logs"),
      select: $("#log-name"),
      status: $("#log-status"),
      lines: $("#log-lines"),
      error: $("#log-error"),
    };
    gateway.on("log.lines", (frame) => {
      if (frame.channel === this.channel) this.#show(frame.lines);
    });
    this.elements.select.addEventListener("change", () => this.#follow(this.elements.select.value));
  }

  /** Staff see the panel and follow the first log; anyone else never asks for one. */
  async setUser(user) {
    this.user = user;
    this.#follow(null);
    this.elements.select.replaceChildren();
    this.elements.panel.hidden = !user?.is_staff;
    if (!user?.is_staff) return;
    let files;
    try {
      files = await this.api.get("/api/logs/");
    } catch (error) {
      this.#showError(`The logs could not be listed: ${error.message}`);
      return;
    }
    if (this.user !== user) return; // signed out or in as someone else meanwhile
    this.elements.select.replaceChildren(
      ...files.map((file) => h("option", { value: file.name }, `${file.name} (${describeSize(file.size)})`)),
    );
    if (files.length) this.#follow(files[0].name);
    else this.elements.status.textContent = "No log files are configured.";
  }

  #follow(name) {
    if (this.channel) this.gateway.unsubscribe(this.channel);
    this.channel = name ? `log:${name}` : null;
    this.offset = null;
    this.elements.lines.replaceChildren();
    this.elements.status.textContent = "";
    this.#showError("");
    if (!this.channel) return;
    const channel = this.channel;
    this.gateway.subscribe(channel, {
      since: () => this.offset,
      onSubscribed: (reply) => {
        if (channel === this.channel) this.#subscribed(reply.seq);
      },
      onError: (error) => {
        if (channel === this.channel) this.#showError(`${name}: ${error.message}`);
      },
    });
  }

  /** `seq` is where the lines start: at our offset, unless the file changed or we fell behind. */
  #subscribed(seq) {
    if (this.offset !== null && seq < this.offset) this.#mark(ROTATED);
    else if (this.offset !== null && seq > this.offset) this.#mark(SKIPPED);
    this.offset = seq;
    this.elements.status.textContent = "live";
  }

  #show(lines) {
    const list = this.elements.lines;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 8;
    for (const line of lines) {
      if (this.offset !== null && line.offset <= this.offset) this.#mark(ROTATED); // counts from 0 again
      list.append(
        h(
          "li",
          {
            class: line.cut ? "log-line cut" : "log-line",
            title: line.cut ? "Longer than the server sends: the end is left out" : undefined,
            dataset: { offset: line.offset },
          },
          line.text,
        ),
      );
      this.offset = line.offset;
    }
    while (list.childElementCount > KEEP_LINES) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  #mark(text) {
    this.elements.lines.append(h("li", { class: "log-mark" }, text));
  }

  #showError(text) {
    this.elements.error.textContent = text;
  }
}

function describeSize(bytes) {
  if (bytes === null || bytes === undefined) return "not there yet";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
