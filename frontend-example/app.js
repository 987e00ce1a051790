/**
 * The example SPA: wires the REST client, the one socket, the chat, jobs and (staff) log
 * panes, signing in and out, and the connection badge. Only the public contract is used.
 * Opened from a job's share link (`?job=<id>&share=<token>`), it shows that one job,
 * read-only, and nothing else: no rooms, no account.
 */

import { Api, configuredApiBase } from "./api.js";
import { Chat } from "./chat.js";
import { $, h } from "./dom.js";
import { Jobs, sharedJobFromQuery } from "./jobs.js";
import { Logs } from "./logs.js";
import { Gateway } from "./socket.js";

const POLL_AFTER_MS = 4_000; // the socket has been down this long: read over REST instead
const POLL_EVERY_MS = 5_000;
// Signed in, the rooms you are a member of are live (`rooms:mine`); public ones are read again.
const ROOM_LIST_REFRESH_MS = 30_000;

const api = new Api(configuredApiBase());
const shared = sharedJobFromQuery();
const badge = $("#connection");
$("#api-docs").href = api.url("/api/docs/");
let user = null;
let pollTimer = null;
let downSince = null;

const gateway = new Gateway({
  url: api.socketUrl(),
  token: () => api.token,
  onState: showConnection,
  onReady: () => {
    // Rooms resume from their last seq by themselves; the lists are read again.
    if (!shared) {
      chat.resend();
      chat.loadRooms();
    }
    jobs.refresh();
  },
  onSignedOut: () => {
    if (shared) return; // a shared job's page signs no one in or out: it goes on anonymously
    api.me().then((me) => becomes(me.user), () => {}); // unreachable: the reconnection tells
  },
});
const chat = new Chat({ api, gateway });
const jobs = new Jobs({ api, gateway, currentRoom: () => chat.slug, shared });
const logs = new Logs({ api, gateway });

// ------------------------------------------------------------------ connection state

let retryAt = null;

function showConnection(state, detail = {}) {
  retryAt = detail.retryAt ?? null;
  badge.dataset.state = state;
  renderBadge();
  if (state === "live") {
    downSince = null;
    clearInterval(pollTimer);
    pollTimer = null;
  } else {
    downSince ??= Date.now();
  }
}

function renderBadge() {
  const state = badge.dataset.state;
  const polling = pollTimer ? " (reading over REST)" : "";
  if (state === "live") badge.textContent = "Live";
  else if (state === "connecting") badge.textContent = "Connecting…";
  else if (state === "reconnecting" && retryAt && retryAt > Date.now()) {
    badge.textContent = `Reconnecting in ${Math.ceil((retryAt - Date.now()) / 1000)} s${polling}`;
  } else if (state === "reconnecting") badge.textContent = `Reconnecting…${polling}`;
  else badge.textContent = "Offline";
}

function poll() {
  if (!shared) chat.poll();
  jobs.poll();
}

/** Polling is only the fallback: it runs while the socket stays down. */
setInterval(() => {
  renderBadge();
  if (downSince && !pollTimer && Date.now() - downSince > POLL_AFTER_MS) {
    pollTimer = setInterval(poll, POLL_EVERY_MS);
    poll();
    renderBadge();
  }
}, 1000);

// ------------------------------------------------------------------ signing in and out

function renderAccount() {
  const account = $("#account");
  if (user) {
    account.replaceChildren(
      h("span", { class: "who" }, "Signed in as ", h("strong", { id: "username" }, user.username)),
      h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out"),
    );
  } else {
    account.replaceChildren(
      h(
        "form",
        { id: "sign-in", onsubmit: signIn },
        h("input", {
          name: "username",
          "aria-label": "Username",
          placeholder: "username",
          autocomplete: "username",
          required: true,
        }),
        h("input", {
          name: "password",
          type: "password",
          "aria-label": "Password",
          placeholder: "password",
          autocomplete: "current-password",
          required: true,
        }),
        h("button", { type: "submit" }, "Sign in"),
      ),
    );
  }
  $("#account-error").textContent = "";
}

async function signIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const me = await api.signIn(form.get("username"), form.get("password"));
    await becomes(me.user);
  } catch (error) {
    $("#account-error").textContent = `Sign-in failed: ${error.describe?.() ?? error.message}`;
  }
}

async function signOut() {
  try {
    await api.signOut();
  } catch (error) {
    $("#account-error").textContent = `Sign-out failed: ${error.message}`;
    return;
  }
  await becomes(null);
}

/** The socket authenticates at its handshake, so a new identity means a new socket. */
async function becomes(newUser) {
  if ((newUser?.id ?? null) === (user?.id ?? null)) return;
  user = newUser;
  renderAccount();
  chat.setUser(user);
  gateway.restart();
  logs.setUser(user);
  await jobs.setUser(user);
}

// ------------------------------------------------------------------ start

function roomFromHash() {
  const match = /^#\/rooms\/([^/]+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

window.addEventListener("hashchange", () => {
  const slug = roomFromHash();
  if (slug && !shared) chat.open(slug);
});

async function start() {
  try {
    user = (await api.me()).user;
  } catch (error) {
    $("#account-error").textContent = `The API cannot be reached: ${error.message}`;
  }
  renderAccount();
  chat.setUser(user);
  gateway.start();
  logs.setUser(user);
  setInterval(() => {
    if (!document.hidden) chat.loadRooms({ quiet: true });
  }, ROOM_LIST_REFRESH_MS);
  await chat.loadRooms();
  const slug = roomFromHash() ?? chat.rooms[0]?.slug;
  if (slug) chat.open(slug);
  await jobs.setUser(user);
}

/** A share link's page: the one job, read-only, live; no rooms, no account, no sign-in. */
async function startShared() {
  $("main.layout").hidden = true;
  $("#account").hidden = true;
  $("#shared").hidden = false;
  document.title = "A shared job · Switchboard";
  gateway.start();
  await jobs.refresh();
}

if (shared) startShared();
else start();
