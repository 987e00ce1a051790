/**
 * Rooms and chat: the room list (REST; public rooms and the private and direct rooms you are a
 * member of, each with its kind), creating a room (private if asked), opening a direct room
 * with someone, one open room with its members (inviting and removing for its owners and
 * admins, joining and leaving), one open room whose history is read over REST and
 * whose new messages stream over the socket from the last `seq` applied, its presence list,
 * who is typing, and a composer that posts over the socket (over REST while the socket is down;
 * a post the server has not confirmed is kept and tried again, with the same client_id, so it
 * lands once) and tells the room while you type. Your own messages can be edited in place and
 * deleted; edits show "(edited)" and deleted messages "message deleted", live for everyone.
 * Signed in, the room list is live (`rooms:mine`: each room's last activity and your unread
 * count, a badge), the open room is marked read as its messages are shown, and "seen by" under
 * the last message says which other members have read up to it.
 */

import { ago, clockTime, h, $, newId } from "./dom.js";
import { ApiError } from "./api.js";
import { NotConnected } from "./socket.js";
import { Sequence } from "./sequence.js";

/** What the page says when the server ends a room's subscription, by its `reason`. */
const ENDED = {
  removed: "You were removed from this room.",
  left: "You left this room.",
  deleted: "This room was deleted.",
};

const HISTORY_PAGE = 50;
const CATCH_UP_PAGE = 200;
// While you type, the room is told at most this often; the server forwards one `typing` per
// CHAT_TYPING_INTERVAL (3 s) and each shows for twice that, so it does not flicker.
const TYPING_EVERY_MS = 2_000;
// The open room is marked read at most this often (the server stores one a second anyway).
const READ_EVERY_MS = 1_000;
// "Seen by" is read again this often while a room is open (others' reads are not pushed).
const SEEN_BY_EVERY_MS = 3_000;

export class Chat {
  constructor({ api, gateway }) {
    this.api = api;
    this.gateway = gateway;
    this.user = null;
    this.rooms = [];
    this.outbox = new Map(); // client_id -> a post not confirmed yet
    // {slug, channel, messages: Sequence, presenceVersion, firstSeq, lastShown, shown: Map}
    this.room = null;
    this.typingSentAt = 0; // when this tab last told the open room that you type
    this.typingShown = false; // ...and has not said since that you stopped
    this.typers = new Map(); // user id -> {username, timer}: who types in the open room
    this.readTimer = null; // a mark-read waiting for READ_EVERY_MS
    this.readSentAt = 0;
    this.seenByTimer = null;
    this.elements = {
      rooms: $("#room-list"),
      createForm: $("#room-create"),
      directForm: $("#direct-open"),
      title: $("#room-title"),
      kind: $("#room-kind"),
      members: $("#members"),
      memberList: $("#member-list"),
      inviteForm: $("#member-invite"),
      join: $("#room-join"),
      leave: $("#room-leave"),
      online: $("#room-online"),
      messages: $("#messages"),
      earlier: $("#load-earlier"),
      outbox: $("#outbox"),
      presence: $("#presence-list"),
      anonymous: $("#presence-anonymous"),
      composer: $("#composer"),
      input: $("#message-input"),
      typing: $("#typing"),
      seenBy: $("#seen-by"),
      error: $("#chat-error"),
    };
    // The live room list: the rooms you are a member of, with your unread count in each.
    gateway.on("rooms.snapshot", (frame) => {
      for (const state of frame.rooms) this.#roomState(state);
      this.#renderRooms();
    });
    gateway.on("room.state", (frame) => {
      this.#roomState(frame.room);
      this.#renderRooms();
    });
    gateway.on("room.removed", (frame) => {
      this.rooms = this.rooms.filter(
        (room) => room.slug !== frame.room || (room.kind === "public" && frame.reason !== "deleted"),
      );
      const left = this.rooms.find((room) => room.slug === frame.room);
      if (left) Object.assign(left, { role: null, unread: null, last_read_seq: null });
      this.#renderRooms();
    });
    // Read on another tab: its badge clears here too.
    gateway.on("read", (frame) => {
      this.#updateRoom(frame.room, { unread: frame.unread, last_read_seq: frame.last_read_seq });
    });
    gateway.on("chat.message", (frame) => {
      if (frame.room !== this.room?.slug) return;
      this.room.messages.add([frame]);
      if (frame.author) this.#notTyping(frame.author.id); // what they typed has arrived
    });
    // An edit or a deletion has a `seq` of its own in the room's sequence, in order with messages.
    for (const type of ["message.edited", "message.deleted"]) {
      gateway.on(type, (frame) => {
        if (frame.room === this.room?.slug) this.room.messages.add([frame]);
      });
    }
    gateway.on("presence", (frame) => this.#showPresence(frame));
    gateway.on("typing", (frame) => this.#showTyping(frame));
    // The server ended a subscription itself: this user may no longer read that room.
    gateway.on("unsubscribed", (frame) => {
      if (!frame.reason) return;
      const slug = frame.channel.replace(/^room:/, "");
      this.rooms = this.rooms.filter((room) => room.slug !== slug);
      if (slug === this.slug) {
        this.#close();
        this.elements.title.textContent = "Pick a room";
        this.elements.kind.textContent = "";
        this.#showError(ENDED[frame.reason] ?? "This room is no longer yours.");
      }
      this.#renderRooms();
    });
    this.elements.directForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#openDirect(new FormData(event.target));
    });
    this.elements.inviteForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#invite(new FormData(event.target));
    });
    this.elements.join.addEventListener("click", () => this.#join());
    this.elements.leave.addEventListener("click", () => this.#removeMember(this.user?.id));
    this.elements.input.addEventListener("input", () => this.#typed());
    this.elements.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#send();
    });
    this.elements.earlier.addEventListener("click", () => this.#loadEarlier());
    this.elements.createForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#createRoom(new FormData(event.target));
    });
  }

  setUser(user) {
    this.user = user;
    if (user) this.gateway.subscribe("rooms:mine");
    else this.gateway.unsubscribe("rooms:mine");
    this.typingShown = false; // a new identity gets a new socket, which told nobody anything
    this.elements.createForm.hidden = !user;
    this.elements.directForm.hidden = !user;
  }

  get slug() {
    return this.room?.slug ?? null;
  }

  // ---------------------------------------------------------------- rooms

  async loadRooms({ quiet = false } = {}) {
    try {
      const page = await this.api.get("/api/rooms/");
      this.rooms = page.results;
    } catch (error) {
      if (!quiet) this.#showError(`Rooms could not be loaded: ${error.message}`);
      return;
    }
    this.#renderRooms();
  }

  #renderRooms() {
    const items = this.rooms.map((room) =>
      h(
        "li",
        { class: room.slug === this.slug ? "room current" : "room", dataset: { slug: room.slug } },
        h(
          "a",
          { href: `#/rooms/${encodeURIComponent(room.slug)}` },
          h("span", { class: "room-title" }, room.title || room.slug),
          h("span", { class: "room-kind" }, room.kind === "public" ? "" : room.kind),
          h("span", { class: "room-online" }, room.online == null ? "" : `${room.online} online`),
          h("span", { class: "room-activity" }, ago(room.last_message_at)),
          room.unread ? h("span", { class: "unread", title: "unread messages" }, room.unread >= 100 ? "99+" : String(room.unread)) : null,
        ),
      ),
    );
    if (items.length === 0) items.push(h("li", { class: "empty" }, "No rooms yet."));
    this.elements.rooms.replaceChildren(...items);
  }

  /** A room's state from `rooms:mine`: its place in the list, added if it is new to it. */
  #roomState(state) {
    const room = this.rooms.find((candidate) => candidate.slug === state.slug);
    if (room) Object.assign(room, state);
    else this.rooms.push({ ...state, online: null });
    this.rooms.sort((a, b) => (b.last_message_at ?? "").localeCompare(a.last_message_at ?? "") || a.slug.localeCompare(b.slug));
    if (state.slug === this.slug && state.unread) this.#markRead();
  }

  #updateRoom(slug, change) {
    const room = this.rooms.find((candidate) => candidate.slug === slug);
    if (!room) return;
    Object.assign(room, change);
    this.#renderRooms();
  }

  async #createRoom(form) {
    const slug = form.get("slug").trim();
    const kind = form.get("private") ? "private" : "public";
    try {
      await this.api.post("/api/rooms/", { slug, title: form.get("title").trim(), kind });
    } catch (error) {
      this.#showError(`The room was not created: ${error.describe()}`);
      return;
    }
    this.elements.createForm.reset();
    await this.loadRooms();
    location.hash = `#/rooms/${encodeURIComponent(slug)}`;
  }

  /** The direct room of you and someone: the same room every time, made the first time. */
  async #openDirect(form) {
    let room;
    try {
      room = await this.api.post("/api/direct-rooms/", { username: form.get("username").trim() });
    } catch (error) {
      this.#showError(`No direct room: ${error.describe()}`);
      return;
    }
    this.elements.directForm.reset();
    await this.loadRooms();
    location.hash = `#/rooms/${encodeURIComponent(room.slug)}`;
  }

  // ---------------------------------------------------------------- members

  #roomPath(room = this.room) {
    return `/api/rooms/${encodeURIComponent(room.slug)}/`;
  }

  /** The open room's settings (kind, your role) and its members, with what you may do. */
  async #loadMembers() {
    const room = this.room;
    if (!room) return;
    let detail;
    let members;
    try {
      detail = await this.api.get(this.#roomPath(room));
      members = await this.api.get(`${this.#roomPath(room)}members/`);
    } catch (error) {
      if (this.room === room) this.#showError(`Members could not be loaded: ${error.message}`);
      return;
    }
    if (this.room !== room) return;
    room.kind = detail.kind;
    room.role = detail.role;
    this.elements.kind.textContent = detail.kind === "public" ? "" : detail.kind;
    const manages = detail.role === "owner" || detail.role === "admin";
    this.elements.memberList.replaceChildren(
      ...members.results.map((member) => {
        const removable =
          manages && detail.kind !== "direct" && member.user.id !== this.user?.id && (detail.role === "owner" || member.role === "member");
        return h(
          "li",
          { class: "member", dataset: { userId: member.user.id } },
          member.user.username,
          h("span", { class: "role" }, member.role),
          removable ? h("button", { type: "button", class: "quiet", onclick: () => this.#removeMember(member.user.id) }, "remove") : null,
        );
      }),
    );
    this.elements.members.hidden = false;
    this.elements.inviteForm.hidden = !manages || detail.kind === "direct";
    this.elements.join.hidden = !this.user || detail.kind !== "public" || detail.role !== null;
    this.elements.leave.hidden = !this.user || detail.kind === "direct" || detail.role === null;
  }

  async #invite(form) {
    try {
      await this.api.post(`${this.#roomPath()}members/`, { username: form.get("username").trim() });
    } catch (error) {
      this.#showError(`Not invited: ${error.describe()}`);
      return;
    }
    this.elements.inviteForm.reset();
    await this.#loadMembers();
  }

  async #join() {
    try {
      await this.api.post(`${this.#roomPath()}join/`);
    } catch (error) {
      this.#showError(`Not joined: ${error.describe()}`);
      return;
    }
    await this.#loadMembers();
  }

  /** Removes a member, or (your own id) leaves the room. */
  async #removeMember(userId) {
    const room = this.room;
    if (!room || userId == null) return;
    try {
      await this.api.delete(`${this.#roomPath(room)}members/${userId}/`);
    } catch (error) {
      this.#showError(`Not removed: ${error.describe()}`);
      return;
    }
    if (userId === this.user?.id && room.kind !== "public") {
      this.rooms = this.rooms.filter((candidate) => candidate.slug !== room.slug);
      if (this.room === room) this.#close();
      this.#renderRooms();
      return;
    }
    await this.#loadMembers();
  }

  // ---------------------------------------------------------------- one room

  /** Shows a room: its recent history over REST, then the socket from the last `seq`. */
  async open(slug) {
    if (slug === this.slug) return;
    this.#close();
    const path = `/api/rooms/${encodeURIComponent(slug)}/messages/`;
    const messages = new Sequence({
      key: (item) => item.seq,
      apply: (item) => (item.type?.startsWith("message.") ? this.#applyChange(item) : this.#showMessage(item)),
      // History is messages as they are now: the `seq`s of edits and deletions are gaps in it.
      fetchAfter: async (last) => {
        const page = await this.api.get(path, { after: last, limit: CATCH_UP_PAGE });
        const full = page.results.length === CATCH_UP_PAGE;
        return { items: page.results, complete: full ? page.results.at(-1).seq : page.last_seq };
      },
    });
    const room = { slug, channel: `room:${slug}`, messages, presenceVersion: -1, firstSeq: null, shown: new Map() };
    this.room = room;
    this.#renderRooms();
    const known = this.rooms.find((candidate) => candidate.slug === slug);
    this.elements.title.textContent = known?.title || slug;
    this.elements.kind.textContent = known && known.kind !== "public" ? known.kind : "";
    this.elements.input.disabled = false;
    this.#showError("");
    this.#loadMembers();

    let page;
    try {
      page = await this.api.get(path, { limit: HISTORY_PAGE });
    } catch (error) {
      if (this.room === room) this.#showError(`This room cannot be read: ${error.message}`);
      return;
    }
    if (this.room !== room) return; // another room was opened meanwhile
    messages.last = page.results.length ? page.results[0].seq - 1 : page.last_seq;
    room.firstSeq = messages.last + 1;
    messages.add(page.results, page.last_seq);
    this.elements.earlier.hidden = room.firstSeq <= 1;
    this.#showEmptyHint();
    this.#markRead();
    this.#loadSeenBy();
    this.gateway.subscribe(room.channel, {
      since: () => messages.last,
      onSubscribed: (reply) => {
        // `since` was too far behind to replay: catch up over REST; live messages wait in order.
        if (reply.type === "resync_required") messages.fill();
      },
      onError: (error) => this.#showError(`Live updates for this room failed: ${error.message}`),
    });
  }

  #close() {
    if (!this.room) return;
    clearTimeout(this.readTimer);
    this.readTimer = null;
    clearTimeout(this.seenByTimer);
    this.elements.seenBy.textContent = "";
    this.#stopTyping();
    for (const typer of this.typers.values()) clearTimeout(typer.timer);
    this.typers.clear();
    this.elements.typing.textContent = "";
    this.gateway.unsubscribe(this.room.channel);
    this.room.messages.close();
    this.room = null;
    this.elements.messages.replaceChildren();
    this.elements.outbox.replaceChildren();
    this.elements.earlier.hidden = true;
    this.elements.presence.replaceChildren();
    this.elements.anonymous.textContent = "";
    this.elements.online.textContent = "";
    this.elements.members.hidden = true;
    this.elements.memberList.replaceChildren();
  }

  /** History before the first message shown, a page at a time, above it. */
  async #loadEarlier() {
    const room = this.room;
    if (!room || room.firstSeq <= 1) return;
    let page;
    try {
      page = await this.api.get(`/api/rooms/${encodeURIComponent(room.slug)}/messages/`, {
        before: room.firstSeq,
        limit: HISTORY_PAGE,
      });
    } catch (error) {
      this.#showError(`Earlier messages could not be loaded: ${error.message}`);
      return;
    }
    if (this.room !== room || page.results.length === 0) return;
    const list = this.elements.messages;
    const fromBottom = list.scrollHeight - list.scrollTop;
    list.prepend(...page.results.map((message, index) => this.#shownItem(message, page.results[index - 1])));
    list.scrollTop = list.scrollHeight - fromBottom; // keep what was in view where it was
    room.firstSeq = page.results[0].seq;
    this.elements.earlier.hidden = room.firstSeq <= 1;
  }

  /** A message's item, kept by its `seq` so that its edits and deletion find it. */
  #shownItem(message, previous) {
    const item = this.#messageItem(message, previous);
    this.room.shown.set(message.seq, { message, item });
    return item;
  }

  #messageItem(message, previous) {
    const mine = Boolean(this.user) && message.author?.id === this.user.id;
    // A run of messages from one person within a few minutes shows its name once.
    const continued =
      previous?.author_name === message.author_name &&
      Date.parse(message.created_at) - Date.parse(previous.created_at) < 5 * 60_000;
    return h(
      "li",
      {
        class: ["message", mine && "mine", continued && "continued", message.deleted && "deleted"]
          .filter(Boolean)
          .join(" "),
        dataset: { seq: message.seq, id: message.id },
      },
      h("span", { class: "author" }, message.author_name || "anonymous"),
      h("time", { datetime: message.created_at, title: message.created_at }, clockTime(message.created_at)),
      ...this.#messageContent(message, mine),
    );
  }

  /** A message's text (or that it was deleted), "(edited)", and for your own, edit and delete. */
  #messageContent(message, mine) {
    if (message.deleted) return [h("p", { class: "body tombstone" }, "message deleted")];
    const parts = [h("p", { class: "body" }, message.body)];
    if (message.edited_at) {
      parts.push(h("span", { class: "edited", title: message.edited_at }, "(edited)"));
    }
    if (mine) {
      const edit = h("button", { type: "button", class: "edit" }, "Edit");
      const remove = h("button", { type: "button", class: "delete" }, "Delete");
      edit.addEventListener("click", () => this.#startEditing(message));
      remove.addEventListener("click", () => this.#change(message, { type: "chat.delete" }));
      parts.push(h("span", { class: "actions" }, edit, remove));
    }
    return parts;
  }

  /** An edit or a deletion, live or replayed, applied to the message if it is shown. */
  #applyChange(frame) {
    this.#updateRoom(frame.room, { last_seq: frame.seq });
    const shown = this.room.shown.get(frame.message_seq);
    if (!shown) return; // not loaded: read as it is now when it is
    const changed =
      frame.type === "message.deleted"
        ? { ...shown.message, body: "", deleted: true }
        : { ...shown.message, body: frame.body, edited_at: frame.edited_at };
    this.#redraw(changed);
  }

  /** Shows a message as it now is, in place (its item keeps its place and its run). */
  #redraw(message) {
    const shown = this.room?.shown.get(message.seq);
    if (!shown) return;
    shown.message = message;
    const mine = Boolean(this.user) && message.author?.id === this.user.id;
    shown.item.querySelectorAll(":scope > :not(.author, time)").forEach((part) => part.remove());
    shown.item.append(...this.#messageContent(message, mine));
    shown.item.classList.toggle("deleted", Boolean(message.deleted));
  }

  /** Your own message's text becomes a field: Enter saves, Escape gives up. */
  #startEditing(message) {
    const shown = this.room?.shown.get(message.seq);
    if (!shown) return;
    const input = h("input", { class: "edit-input", value: message.body, "aria-label": "Edit message" });
    input.value = message.body;
    const form = h("form", { class: "edit-form" }, input);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = input.value;
      if (body.trim() && body !== message.body) this.#change(message, { type: "chat.edit", body });
      else this.#redraw(message);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.#redraw(message);
    });
    shown.item.querySelectorAll(":scope > :not(.author, time)").forEach((part) => part.remove());
    shown.item.append(form);
    input.focus();
  }

  /**
   * Edits (`body`) or deletes your message over the socket, else over REST; the change shows
   * when its frame comes (over REST, from the answer). One client_id for every try of an edit.
   */
  async #change(message, { type, body }) {
    const room = this.room;
    const path = `${this.#roomPath(room)}messages/${message.id}/`;
    const clientId = newId();
    try {
      try {
        const frame = { type, room: room.slug, id: message.id, client_id: clientId };
        await this.gateway.request(type === "chat.edit" ? { ...frame, body } : frame);
      } catch (error) {
        if (!(error instanceof NotConnected)) throw error;
        if (type === "chat.edit") {
          const edited = await this.api.patch(path, { body, client_id: clientId });
          if (this.room === room) this.#redraw(edited);
        } else {
          await this.api.delete(path);
          if (this.room === room) this.#redraw({ ...message, body: "", deleted: true });
        }
      }
    } catch (error) {
      if (this.room === room) {
        this.#redraw(message);
        this.#showError(`${type === "chat.edit" ? "Not edited" : "Not deleted"}: ${error.message}`);
      }
    }
  }

  #showMessage(message) {
    const item = this.#shownItem(message, this.room.lastShown);
    this.room.lastShown = message;
    const list = this.elements.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    $(".empty", list)?.remove();
    list.append(item);
    if (message.client_id) {
      this.outbox.delete(message.client_id); // sent from here: confirmed, whichever way it came
      for (const pending of this.elements.outbox.children) {
        if (pending.dataset.clientId === message.client_id) {
          pending.remove();
          break;
        }
      }
    }
    if (atBottom || item.classList.contains("mine")) list.scrollTop = list.scrollHeight;
    this.#updateRoom(message.room, { last_message_at: message.created_at, last_seq: message.seq });
    this.#markRead();
    this.#renderSeenBy();
  }

  #showEmptyHint() {
    if (this.elements.messages.children.length === 0) {
      this.elements.messages.append(h("li", { class: "empty" }, "No messages yet. Say hello!"));
    }
  }

  #showPresence(frame) {
    const room = this.room;
    if (!room || frame.channel !== room.channel || frame.version < room.presenceVersion) return;
    room.presenceVersion = frame.version;
    this.elements.presence.replaceChildren(
      ...frame.users.map((user) => h("li", { class: "present", dataset: { userId: user.id } }, user.username)),
    );
    this.elements.anonymous.textContent = frame.anonymous ? `and ${frame.anonymous} anonymous` : "";
    this.elements.online.textContent = `${frame.count} online`;
    this.#updateRoom(room.slug, { online: frame.count });
  }

  // ---------------------------------------------------------------- read state

  /** The open room is read up to its last message shown: tell the server (members only),
   * at most every READ_EVERY_MS, over the socket or else over REST. */
  #markRead() {
    const room = this.room;
    if (!room || !this.user || this.readTimer || room.messages.last == null) return;
    const wait = Math.max(0, this.readSentAt + READ_EVERY_MS - Date.now());
    this.readTimer = setTimeout(() => this.#sendRead(room), wait);
  }

  async #sendRead(room) {
    this.readTimer = null;
    if (this.room !== room || document.hidden) return;
    const listed = this.rooms.find((candidate) => candidate.slug === room.slug);
    if (!listed || listed.role == null) return; // read state is kept for members only
    const seq = room.messages.last;
    if (listed.last_read_seq != null && seq <= listed.last_read_seq && !listed.unread) return;
    this.readSentAt = Date.now();
    let state;
    try {
      try {
        state = await this.gateway.request({ type: "chat.read", room: room.slug, seq });
      } catch (error) {
        if (!(error instanceof NotConnected)) throw error;
        state = await this.api.put(`${this.#roomPath(room)}read/`, { last_read_seq: seq });
      }
    } catch {
      return; // a badge that stays is no harm: the next message tries again
    }
    this.#updateRoom(room.slug, { unread: state.unread, last_read_seq: state.last_read_seq });
  }

  /** "Seen by": which other members have read up to the open room's last message. */
  async #loadSeenBy() {
    const room = this.room;
    clearTimeout(this.seenByTimer);
    if (!room || !this.user) return;
    try {
      room.readers = (await this.api.get(`${this.#roomPath(room)}readers/`)).results;
    } catch {
      room.readers = []; // too large a room, or not readable: nothing to say
    }
    if (this.room !== room) return;
    this.#renderSeenBy();
    this.seenByTimer = setTimeout(() => this.#loadSeenBy(), SEEN_BY_EVERY_MS);
  }

  #renderSeenBy() {
    const room = this.room;
    const last = room?.lastShown;
    if (!room || !last || !room.readers) {
      this.elements.seenBy.textContent = "";
      return;
    }
    const names = room.readers
      .filter((reader) => reader.user.id !== this.user?.id && reader.user.id !== last.author?.id)
      .filter((reader) => reader.last_read_seq >= last.seq)
      .map((reader) => reader.user.username);
    this.elements.seenBy.textContent = names.length ? `Seen by ${names.join(", ")}` : "";
  }

  // ---------------------------------------------------------------- typing

  /** Someone else types in the open room: shown for `expires_in` s unless renewed or stopped. */
  #showTyping(frame) {
    if (!this.room || frame.channel !== this.room.channel) return;
    if (!frame.typing) {
      this.#notTyping(frame.user.id);
      return;
    }
    clearTimeout(this.typers.get(frame.user.id)?.timer);
    const timer = setTimeout(() => this.#notTyping(frame.user.id), frame.expires_in * 1000);
    this.typers.set(frame.user.id, { username: frame.user.username, timer });
    this.#renderTypers();
  }

  #notTyping(userId) {
    const typer = this.typers.get(userId);
    if (!typer) return;
    clearTimeout(typer.timer);
    this.typers.delete(userId);
    this.#renderTypers();
  }

  #renderTypers() {
    const names = [...this.typers.values()].map((typer) => typer.username);
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names[0]}, ${names[1]} and ${names.length - 2} more are typing…`;
    this.elements.typing.textContent = text;
  }

  /** A keystroke in the composer: tell the room, at most every TYPING_EVERY_MS (signed in only). */
  #typed() {
    if (!this.room || !this.user) return;
    if (!this.elements.input.value.trim()) {
      this.#stopTyping();
      return;
    }
    const now = Date.now();
    if (now - this.typingSentAt < TYPING_EVERY_MS) return;
    if (this.gateway.notify({ type: "chat.typing", room: this.room.slug })) {
      this.typingSentAt = now;
      this.typingShown = true;
    }
  }

  /** The text was sent or cleared: the others stop showing that you type. */
  #stopTyping() {
    if (!this.typingShown || !this.room) return;
    this.typingShown = false;
    this.typingSentAt = 0;
    this.gateway.notify({ type: "chat.typing", room: this.room.slug, typing: false });
  }

  // ---------------------------------------------------------------- posting

  #send() {
    const room = this.room;
    const body = this.elements.input.value;
    if (!room || !body.trim()) return;
    this.elements.input.value = "";
    this.#stopTyping();
    this.#showError("");
    // One client_id for every try: the server posts it once, however often it is sent.
    const clientId = newId();
    const element = h("li", { class: "message pending", dataset: { clientId } }, h("p", { class: "body" }, body));
    this.elements.outbox.append(element);
    const post = { room, body, clientId, element };
    this.outbox.set(clientId, post);
    this.#deliver(post);
  }

  /** Over the socket, else over REST; kept for the next try while the server is unreachable. */
  async #deliver(post) {
    const { room, body, clientId, element } = post;
    element.classList.remove("waiting");
    try {
      try {
        await this.gateway.request({ type: "chat.send", room: room.slug, body, client_id: clientId });
      } catch (error) {
        if (!(error instanceof NotConnected)) throw error;
        const message = await this.api.post(`/api/rooms/${encodeURIComponent(room.slug)}/messages/`, {
          body,
          client_id: clientId,
        });
        if (this.room === room) room.messages.add([message]);
      }
      this.outbox.delete(clientId); // its element goes when the message itself arrives
    } catch (error) {
      if (error instanceof ApiError && error.status === 0) {
        element.classList.add("waiting");
        return;
      }
      this.outbox.delete(clientId);
      element.remove();
      if (this.room === room && !this.elements.input.value) this.elements.input.value = body;
      this.#showError(`Not sent: ${error.message}`);
    }
  }

  /** Tries again what could not be sent (on reconnection, and while polling). */
  resend() {
    for (const post of this.outbox.values()) {
      if (post.element.classList.contains("waiting")) this.#deliver(post);
    }
  }

  // ---------------------------------------------------------------- fallback

  /** While the socket is down: read what is new over REST. */
  poll() {
    this.loadRooms({ quiet: true });
    this.resend();
    this.room?.messages.fill();
  }

  #showError(text) {
    this.elements.error.textContent = text;
  }
}
